using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace BlipSharp.Tests.TestSupport;

/// <summary>
/// Runs before any test: OpenMP threads must not spin while idle (they slow everything else on a 2-core
/// machine), which libgomp reads from the process environment at load time, so it is set with setenv
/// before the first torch call. Torch uses at most 2 threads.
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
        Environment.SetEnvironmentVariable("OMP_WAIT_POLICY", Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") ?? "PASSIVE");
        TorchSharp.torch.set_num_threads(Math.Min(2, Environment.ProcessorCount));
    }
}
