using BlipSharp.Checkpoints;
using BlipSharp.Generation;
using BlipSharp.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Bench;

/// <summary>
/// How far bfloat16 inference moves the outputs: every hf-blip fixture model run in float32 and in bfloat16 on the
/// fixture's own inputs, with the largest logit difference, its size relative to the logits, and whether greedy
/// generation still gives the same ids.
/// </summary>
internal static class FixtureDeviation
{
    public static string Table()
    {
        string root = FixturesDir();
        var table = new MarkdownTable("fixture model", "output", "max abs(bf16 - fp32)", "fp32 absmax", "relative", "greedy ids identical");
        foreach (var dir in Directory.GetDirectories(root).Where(d => File.Exists(Path.Combine(d, "cases.safetensors"))).Order(StringComparer.Ordinal))
        {
            using var scope = NewDisposeScope();
            using var inference = inference_mode();
            var cases = SafeTensors.Load(Path.Combine(dir, "cases.safetensors"));
            string name = Path.GetFileName(dir);
            var fp32Options = new BlipLoadOptions();
            var bf16Options = new BlipLoadOptions { DType = ScalarType.BFloat16 };
            string architecture = File.ReadAllText(Path.Combine(dir, "config.json"));
            var pixels = cases["pixel_values"];
            if (architecture.Contains($"\"{nameof(BlipForConditionalGeneration)}\""))
            {
                using var a = BlipForConditionalGeneration.FromPretrained(dir, fp32Options);
                using var b = BlipForConditionalGeneration.FromPretrained(dir, bf16Options);
                var ids = cases["forward.input_ids"].to_type(ScalarType.Int64);
                var mask = cases["forward.attention_mask"].to_type(ScalarType.Int64);
                var greedy = new GenerationOptions { MaxLength = 20 };
                using var ga = a.Generate(pixels, options: greedy);
                using var gb = b.Generate(pixels, options: greedy);
                Add(table, name, "captioning logits", a.Forward(pixels, ids, mask).Logits, b.Forward(pixels, ids, mask).Logits, Same(ga, gb));
            }
            else if (architecture.Contains($"\"{nameof(BlipForImageTextRetrieval)}\""))
            {
                using var a = BlipForImageTextRetrieval.FromPretrained(dir, fp32Options);
                using var b = BlipForImageTextRetrieval.FromPretrained(dir, bf16Options);
                var ids = cases["itm.input_ids"].to_type(ScalarType.Int64);
                var mask = cases["itm.attention_mask"].to_type(ScalarType.Int64);
                Add(table, name, "ITM logits", a.ImageTextMatching(pixels, ids, mask).Logits, b.ImageTextMatching(pixels, ids, mask).Logits, "");
                Add(table, name, "ITC cosine", a.ContrastiveSimilarity(pixels, ids, mask).Cosine, b.ContrastiveSimilarity(pixels, ids, mask).Cosine, "");
            }
            else if (architecture.Contains($"\"{nameof(BlipForQuestionAnswering)}\""))
            {
                using var a = BlipForQuestionAnswering.FromPretrained(dir, fp32Options);
                using var b = BlipForQuestionAnswering.FromPretrained(dir, bf16Options);
                var ids = cases["question.input_ids"].to_type(ScalarType.Int64);
                var mask = cases["question.attention_mask"].to_type(ScalarType.Int64);
                var dec = cases["loss_dec_bos.decoder_input_ids"].to_type(ScalarType.Int64);
                var decMask = cases["loss_dec_bos.decoder_attention_mask"].to_type(ScalarType.Int64);
                using var ga = a.Generate(pixels, ids, mask, new GenerationOptions());
                using var gb = b.Generate(pixels, ids, mask, new GenerationOptions());
                Add(table, name, "answer decoder logits", a.Forward(pixels, ids, mask, dec, decMask).DecoderLogits,
                    b.Forward(pixels, ids, mask, dec, decMask).DecoderLogits, Same(ga, gb));
            }
            else if (architecture.Contains($"\"{nameof(BlipModel)}\""))
            {
                using var a = BlipModel.FromPretrained(dir, fp32Options);
                using var b = BlipModel.FromPretrained(dir, bf16Options);
                var ids = cases["input_ids"].to_type(ScalarType.Int64);
                var mask = cases["attention_mask"].to_type(ScalarType.Int64);
                Add(table, name, "logits_per_image", a.Forward(pixels, ids, mask).LogitsPerImage, b.Forward(pixels, ids, mask).LogitsPerImage, "");
            }
            foreach (var t in cases.Values) t.Dispose();
        }
        return $"### bfloat16 vs float32 on the hf-blip fixture models ({root})\n\n" +
               "The fixture models are tiny and random: their logits are flatter than a trained model's, so greedy ids can flip where two tokens are close.\n\n" + table;
    }

    private static void Add(MarkdownTable table, string model, string output, Tensor fp32, Tensor bf16, string identical)
    {
        double diff = (bf16.to_type(ScalarType.Float64) - fp32.to_type(ScalarType.Float64)).abs().max().item<double>();
        double absMax = fp32.abs().max().to_type(ScalarType.Float64).item<double>();
        table.Add(model, output, $"{diff:E2}", $"{absMax:F3}", $"{diff / absMax:P2}", identical);
    }

    private static string Same(GeneratedSequences a, GeneratedSequences b) =>
        a.Sequences.Count == b.Sequences.Count && a.Sequences.Zip(b.Sequences).All(p => p.First.SequenceEqual(p.Second))
            ? "yes" : $"no ({a.Sequences.Zip(b.Sequences).Count(p => !p.First.SequenceEqual(p.Second))} of {a.Sequences.Count} rows differ)";

    /// <summary>The hf-blip fixtures: BLIP_FIXTURES_DIR, else ../shared/fixtures/hf-blip beside the repository.</summary>
    internal static string FixturesDir()
    {
        string? env = Environment.GetEnvironmentVariable("BLIP_FIXTURES_DIR");
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "BlipSharp.sln"))) dir = dir.Parent;
        string repo = dir?.FullName ?? Directory.GetCurrentDirectory();
        string path = !string.IsNullOrEmpty(env) ? Path.GetFullPath(env, repo) : Path.GetFullPath(Path.Combine(repo, "..", "shared", "fixtures", "hf-blip"));
        if (!Directory.Exists(path)) throw new DirectoryNotFoundException($"hf-blip fixtures not found at {path} (set BLIP_FIXTURES_DIR)");
        return path;
    }
}
