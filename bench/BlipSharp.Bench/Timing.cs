using System.Diagnostics;
using TorchSharp;

namespace BlipSharp.Bench;

/// <summary>One measured case: a name and the work of one call.</summary>
internal sealed record BenchCase(string Name, Action Body);

/// <summary>The timed calls of one case, one per round, in seconds, with the page faults each call took.</summary>
internal sealed class Samples
{
    public List<double> Seconds { get; } = [];
    public List<long> Faults { get; } = [];

    public double Median => MedianOf(Seconds);
    public double Min => Seconds.Min();
    public double MedianFaults => MedianOf(Faults.Select(f => (double)f).ToList());

    /// <summary>Median over rounds of this case's time divided by <paramref name="other"/>'s in the same round.</summary>
    public double MedianRatioTo(Samples other) =>
        MedianOf(Seconds.Zip(other.Seconds, (a, b) => a / b).ToList());

    public static double MedianOf(IReadOnlyList<double> values)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToList();
        int n = sorted.Count;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
}

/// <summary>
/// Runs cases round-robin: after the warm-up, every round calls each case once, alternating the order
/// (A B C, C B A, ...) so that a slow drift of background load falls on all cases alike. Every call runs in its
/// own dispose scope (its tensors are freed before the clock stops) and in inference mode.
/// </summary>
internal static class Interleaved
{
    public static Dictionary<string, Samples> Run(IReadOnlyList<BenchCase> cases, int warmup, int rounds, string label)
    {
        var results = cases.ToDictionary(c => c.Name, _ => new Samples());
        using var inference = torch.inference_mode();
        for (int w = 0; w < warmup; w++)
            foreach (var c in cases) Call(c.Body);
        Console.Error.Write($"  {label}: {rounds} rounds of {cases.Count} cases");
        for (int r = 0; r < rounds; r++)
        {
            Progress($"  {label}: round {r + 1}/{rounds}   ");
            IEnumerable<BenchCase> order = r % 2 == 0 ? cases : cases.Reverse();
            foreach (var c in order)
            {
                var (seconds, faults) = Call(c.Body);
                results[c.Name].Seconds.Add(seconds);
                results[c.Name].Faults.Add(faults);
            }
        }
        Console.Error.WriteLine();
        return results;
    }

    /// <summary>Rewrites the progress line on a terminal; silent when stderr goes to a file.</summary>
    public static void Progress(string line)
    {
        if (!Console.IsErrorRedirected) Console.Error.Write("\r" + line);
    }

    /// <summary>Times one call of <paramref name="body"/> in its own dispose scope.</summary>
    public static (double Seconds, long Faults) Call(Action body)
    {
        long faults = NativeRuntime.MinorFaults;
        var clock = Stopwatch.StartNew();
        using (torch.NewDisposeScope()) body();
        double seconds = clock.Elapsed.TotalSeconds;
        return (seconds, NativeRuntime.MinorFaults - faults);
    }
}
