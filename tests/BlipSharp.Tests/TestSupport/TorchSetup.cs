using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace BlipSharp.Tests.TestSupport;

/// <summary>
/// Runs before any test: OpenMP threads must not spin while idle (they slow everything else on a 2-core
/// machine), which libgomp reads from the process environment at load time, so it is set with setenv
/// before the first torch call. Torch uses at most 2 threads. MKL_CBWR=AUTO makes float32 products independent of
/// memory alignment, so the same computation gives the same bits every time (the trainer's exact-resume tests).
/// </summary>
internal static class TorchSetup
{
    [DllImport("libc", SetLastError = true)]
    private static extern int setenv(string name, string value, int overwrite);

    [ModuleInitializer]
    internal static void Init()
    {
        if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS())
        {
            setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
        }
        BlipSharp.Training.Training.CpuReproducibility.Configure();
        Environment.SetEnvironmentVariable("OMP_WAIT_POLICY", Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") ?? "PASSIVE");
        TorchSharp.torch.set_num_threads(Math.Min(2, Environment.ProcessorCount));
    }
}
