using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace BlipSharp.Bench;

/// <summary>
/// Process settings that must be in place before libtorch loads, and the numbers Linux keeps about this
/// process (/proc/self). libgomp reads <c>OMP_WAIT_POLICY</c> once, when it is loaded, from the C environment.
/// </summary>
internal static class NativeRuntime
{
    private const int MTrimThreshold = -1;
    private const int MMmapThreshold = -3;

    [DllImport("libc", SetLastError = true)]
    private static extern int setenv(string name, string value, int overwrite);

    [DllImport("libc")]
    private static extern int mallopt(int param, int value);

    /// <summary>What <c>OMP_WAIT_POLICY</c> is for this process.</summary>
    public static string OmpWaitPolicy => Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") ?? "(unset)";

    /// <summary>Runs before <c>Main</c>, so before any torch call: idle OpenMP threads must sleep, not spin.</summary>
    [ModuleInitializer]
    internal static void SetPassiveOpenMp()
    {
        if (!OperatingSystem.IsLinux()) return;
        if (Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is null)
        {
            setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
            Environment.SetEnvironmentVariable("OMP_WAIT_POLICY", "PASSIVE");
        }
    }

    /// <summary>
    /// Keeps freed memory in the process instead of returning it to the OS after every large free: glibc
    /// allocates blocks up to 32 MB from the heap (not fresh mmaps) and trims the heap only above 1 GB. Each
    /// page returned is page-faulted back in (zeroed) by the next forward pass.
    /// </summary>
    public static bool TuneAllocator() =>
        OperatingSystem.IsLinux() && mallopt(MMmapThreshold, 32 << 20) == 1 && mallopt(MTrimThreshold, 1 << 30) == 1;

    /// <summary>Resident set size now, in MiB.</summary>
    public static double RssMiB => StatusKiB("VmRSS") / 1024.0;

    /// <summary>Peak resident set size since start or the last <see cref="ResetPeak"/>, in MiB.</summary>
    public static double PeakRssMiB => StatusKiB("VmHWM") / 1024.0;

    /// <summary>Resets VmHWM to the current RSS (Linux 4.0+); false where the kernel does not allow it.</summary>
    public static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Minor page faults of this process so far (a page touched for the first time, or again after it was returned).</summary>
    public static long MinorFaults
    {
        get
        {
            string stat = File.ReadAllText("/proc/self/stat");
            string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[7], CultureInfo.InvariantCulture); // field 10, minflt
        }
    }

    /// <summary>The 1, 5 and 15 minute load averages.</summary>
    public static string LoadAverage
    {
        get
        {
            try { return string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
            catch (IOException) { return "n/a"; }
        }
    }

    /// <summary>
    /// CPU pressure (Linux PSI): the share of the last 10 and 60 seconds in which some runnable task waited for
    /// a CPU. Near 0% on an idle machine; above ~20% timings are inflated by other processes.
    /// </summary>
    public static string CpuPressure
    {
        get
        {
            try
            {
                string some = File.ReadLines("/proc/pressure/cpu").First(l => l.StartsWith("some", StringComparison.Ordinal));
                var fields = some.Split(' ').Skip(1).Select(f => f.Split('=')).ToDictionary(f => f[0], f => f[1]);
                return $"{fields["avg10"]}% (10 s), {fields["avg60"]}% (60 s)";
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException or KeyNotFoundException)
            {
                return "n/a";
            }
        }
    }

    /// <summary>The CPU's model name.</summary>
    public static string CpuModel
    {
        get
        {
            try
            {
                return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))
                    ?.Split(':', 2)[1].Trim() ?? "unknown";
            }
            catch (IOException) { return "unknown"; }
        }
    }

    /// <summary>Whether the CPU advertises the given /proc/cpuinfo flag (e.g. avx512_bf16).</summary>
    public static bool HasCpuFlag(string flag)
    {
        try
        {
            string? line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal));
            return line is not null && line.Split(' ').Contains(flag);
        }
        catch (IOException) { return false; }
    }

    private static long StatusKiB(string key)
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (!line.StartsWith(key + ":", StringComparison.Ordinal)) continue;
            string value = line[(key.Length + 1)..].Trim();
            return long.Parse(value.Split(' ')[0], CultureInfo.InvariantCulture);
        }
        return 0;
    }
}
