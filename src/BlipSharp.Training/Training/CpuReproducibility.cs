using System.Runtime.InteropServices;

namespace BlipSharp.Training.Training;

/// <summary>
/// Bit-for-bit reproducible float32 matrix products on the CPU. libtorch's CPU build calls Intel MKL, whose kernels
/// may sum in a different order depending on the memory alignment of their inputs: measured here, a (4, 768) x
/// (768, 1) product gave last-bit differences in 143 of 400 identical calls on freshly allocated copies. Then a
/// resumed run (or a second run) drifts from the first by an ulp per step. MKL's conditional numerical
/// reproducibility, <c>MKL_CBWR=AUTO</c>, removes that at no measured speed cost (a 1024^3 GEMM took the same time);
/// MKL reads it once, at its first call, so it must be set before any torch computation.
/// </summary>
public static class CpuReproducibility
{
    /// <summary>The MKL environment variable.</summary>
    public const string Variable = "MKL_CBWR";

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv(string name, string value, int overwrite);

    [DllImport("libc", EntryPoint = "getenv")]
    private static extern IntPtr GetEnv(string name);

    /// <summary>
    /// Sets <c>MKL_CBWR=AUTO</c> in the process environment unless it is already set (call it first thing in
    /// <c>Main</c>, before any torch call). Does nothing on Windows, where MKL reads the environment the same way but
    /// the variable must be set before the process starts.
    /// </summary>
    public static void Configure()
    {
        if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS()) SetEnv(Variable, "AUTO", 0);
    }

    /// <summary>Whether the process environment (as native code sees it) sets <c>MKL_CBWR</c>.</summary>
    public static bool IsConfigured =>
        OperatingSystem.IsLinux() || OperatingSystem.IsMacOS()
            ? GetEnv(Variable) != IntPtr.Zero
            : Environment.GetEnvironmentVariable(Variable) is not null;
}
