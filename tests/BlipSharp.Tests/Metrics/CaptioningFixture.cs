using System.Text.Json;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Evaluation.Captioning;

namespace BlipSharp.Tests.Metrics;

/// <summary>The captioning golden fixture (<c>captioning_golden.json</c> in the metrics folder), read once.</summary>
public static class CaptioningFixture
{
    private static readonly Lazy<JsonElement> Root = new(() =>
    {
        string path = Path.Combine(Fixtures.MetricsDir, "captioning_golden.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"metrics fixture missing: {path}", path);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        return doc.RootElement.Clone();
    });

    /// <summary>The whole fixture.</summary>
    public static JsonElement Json => Root.Value;

    /// <summary>Relative tolerance the README gives for scores (numpy summation order and <c>np.e**x</c>).</summary>
    public const double RelativeTolerance = 1e-12;

    /// <summary>The inputs: image id (as text), candidate, references.</summary>
    public static IReadOnlyList<CaptionEvaluationItem> Items() =>
        Json.GetProperty("images").EnumerateArray().Select(e => new CaptionEvaluationItem(
            e.GetProperty("image_id").GetRawText().Trim('"'),
            e.GetProperty("candidate").GetString()!,
            e.GetProperty("references").EnumerateArray().Select(r => r.GetString()!).ToList())).ToList();

    /// <summary>The expected results of one tokenisation (<c>ptb</c> or <c>simple</c>).</summary>
    public static JsonElement Results(string tokenization) => Json.GetProperty("results").GetProperty(tokenization);

    /// <summary>xunit member data: both tokenisations.</summary>
    public static IEnumerable<object[]> Tokenizations() => [["ptb"], ["simple"]];

    /// <summary>The enum for a fixture tokenisation name.</summary>
    public static CaptionTokenization Kind(string name) => name switch
    {
        "ptb" => CaptionTokenization.Ptb,
        "simple" => CaptionTokenization.Simple,
        _ => throw new ArgumentException(name),
    };

    /// <summary>Asserts <paramref name="actual"/> equals <paramref name="expected"/> within the relative tolerance (absolute for values near 0).</summary>
    public static void Close(double expected, double actual, string what)
    {
        double tolerance = RelativeTolerance * Math.Max(Math.Abs(expected), 1e-300) + 1e-300;
        if (!(Math.Abs(expected - actual) <= tolerance))
            throw new Xunit.Sdk.XunitException($"{what}: expected {expected:R}, got {actual:R} (|diff| {Math.Abs(expected - actual):E3} > {tolerance:E3})");
    }
}
