using System.Runtime.InteropServices;
using BlipSharp.Training.Training;

namespace BlipSharp.Cli;

internal static class Program
{
    private static Task<int> Main(string[] args)
    {
        // Both are read once, when the native libraries start, so they are set before the first torch call.
        CpuReproducibility.Configure(); // MKL_CBWR=AUTO: identical numbers run to run (exact resume)
        if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS())
        {
            // OpenMP threads that spin while idle starve the threads that decode images beside the model (the
            // training loader, caption's read-ahead): 8 steps of configs/pretrain-tiny.json took 44 s with the
            // default (ACTIVE) and 16.5 s with PASSIVE on a shared 2-core machine. An explicit OMP_WAIT_POLICY wins.
            setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
        }
        return BlipCli.RunAsync(args, Console.Out, Console.Error);
    }

    [DllImport("libc")]
    private static extern int setenv(string name, string value, int overwrite);
}
