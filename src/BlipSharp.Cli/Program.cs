using BlipSharp.Training.Training;

namespace BlipSharp.Cli;

internal static class Program
{
    private static Task<int> Main(string[] args)
    {
        CpuReproducibility.Configure(); // before the first torch call: identical numbers run to run (exact resume)
        return BlipCli.RunAsync(args, Console.Out, Console.Error);
    }
}
