using System.Text.Json;
using BlipSharp.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Tests.TestSupport;

/// <summary>
/// Locates the golden fixture folders. Each is read from its environment variable or, by default, from
/// <c>../shared/fixtures/...</c> beside the repository root. A missing folder is a test failure, never a skip.
/// </summary>
public static class Fixtures
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string HfBlipDir => Resolve("BLIP_FIXTURES_DIR", "hf-blip");
    public static string BlipOriginalDir => Resolve("BLIP_ORIGINAL_FIXTURES_DIR", "blip-original");
    public static string MetricsDir => Resolve("BLIP_METRICS_FIXTURES_DIR", "metrics");

    /// <summary>Every model folder (a folder with config.json and cases.json) of the hf-blip fixtures.</summary>
    public static IEnumerable<string> HfModelDirs() =>
        Directory.GetDirectories(HfBlipDir)
            .Where(d => File.Exists(Path.Combine(d, "config.json")) && File.Exists(Path.Combine(d, "cases.json")))
            .OrderBy(d => d, StringComparer.Ordinal);

    /// <summary>xunit member data: one row per model folder name.</summary>
    public static IEnumerable<object[]> HfModelNames()
    {
        var names = HfModelDirs().Select(Path.GetFileName).ToList();
        if (names.Count == 0) throw new InvalidOperationException($"no model folders (config.json + cases.json) in {HfBlipDir}");
        return names.Select(n => new object[] { n! });
    }

    public static string HfModelDir(string name) => Path.Combine(HfBlipDir, name);

    /// <summary>One input image of the hf-blip fixtures, as a model folder's cases.json lists it.</summary>
    public sealed record FixtureImage(string Path, int Width, int Height, string Mode);

    /// <summary>The input images the first model folder's cases.json lists (paths resolved against the hf-blip folder).</summary>
    public static IReadOnlyList<FixtureImage> HfImages()
    {
        string dir = HfModelDirs().First();
        using var doc = JsonDocument.Parse(File.ReadAllBytes(System.IO.Path.Combine(dir, "cases.json")));
        var images = doc.RootElement.GetProperty("images").EnumerateArray().Select(e => new FixtureImage(
            System.IO.Path.Combine(HfBlipDir, e.GetProperty("file").GetString()!),
            e.GetProperty("width").GetInt32(), e.GetProperty("height").GetInt32(), e.GetProperty("mode").GetString()!)).ToList();
        if (images.Count == 0) throw new InvalidOperationException($"{dir}/cases.json lists no images");
        return images;
    }

    private static string Resolve(string variable, string defaultName)
    {
        string? fromEnv = Environment.GetEnvironmentVariable(variable);
        string dir = !string.IsNullOrEmpty(fromEnv)
            ? Path.GetFullPath(fromEnv, RepoRoot)
            : Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "fixtures", defaultName));
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException(
                $"fixture folder not found: {dir} (set {variable} or place the fixtures at ../shared/fixtures/{defaultName} beside the repository)");
        return dir;
    }

    private static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null)
        {
            if (File.Exists(Path.Combine(dir.FullName, "BlipSharp.sln"))) return dir.FullName;
            dir = dir.Parent;
        }
        throw new InvalidOperationException($"cannot find BlipSharp.sln above {AppContext.BaseDirectory}");
    }
}

/// <summary>One model folder's <c>cases.json</c> and <c>cases.safetensors</c>.</summary>
public sealed class FixtureCases : IDisposable
{
    public string Dir { get; }
    public JsonElement Json { get; }
    private readonly JsonDocument _doc;
    private readonly Dictionary<string, Tensor> _tensors;

    public FixtureCases(string dir)
    {
        Dir = dir;
        _doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "cases.json")));
        Json = _doc.RootElement;
        _tensors = SafeTensors.Load(Path.Combine(dir, "cases.safetensors"));
    }

    public IEnumerable<string> TensorNames => _tensors.Keys;

    public bool Has(string name) => _tensors.ContainsKey(name);

    /// <summary>The named tensor; a missing one fails the test with the folder named.</summary>
    public Tensor Tensor(string name) =>
        _tensors.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"{Dir}/cases.safetensors has no tensor '{name}'");

    /// <summary>The recorded fp32-vs-fp64 noise of a tensor (0 when not recorded).</summary>
    public double Noise(string name) =>
        Json.GetProperty("tensors").TryGetProperty(name, out var t) && t.TryGetProperty("max_abs_diff_fp32_vs_fp64", out var n) && n.ValueKind == JsonValueKind.Number
            ? n.GetDouble() : 0.0;

    /// <summary>The recorded absmax of a tensor (falls back to computing it).</summary>
    public double AbsMax(string name) =>
        Json.GetProperty("tensors").TryGetProperty(name, out var t) && t.TryGetProperty("stats", out var s) && s.TryGetProperty("absmax", out var a)
            ? a.GetDouble() : Tensor(name).abs().max().ToDouble();

    /// <summary>
    /// The tolerance for comparing our fp32 result with the fixture: a small multiple of the recorded
    /// fp32-vs-fp64 noise (both fp32 implementations sit about that far from the exact value), with a floor
    /// of a few float32 ulps of the tensor's magnitude for tensors whose recorded noise is 0.
    /// </summary>
    public double Tolerance(string name) => Tolerances.FromNoise(Noise(name), AbsMax(name));

    public void Dispose()
    {
        foreach (var t in _tensors.Values) t.Dispose();
        _doc.Dispose();
    }
}

public static class Tolerances
{
    /// <summary>Multiple of the recorded fp32-vs-fp64 noise allowed between two fp32 implementations.</summary>
    public const double NoiseFactor = 8.0;

    /// <summary>Floor in float32 ulps of the tensor's largest magnitude.</summary>
    public const double UlpFloor = 16.0;

    public static double FromNoise(double noise, double absMax) =>
        Math.Max(NoiseFactor * noise, UlpFloor * Math.Max(absMax, 1.0) * 1.1920929e-7);
}
