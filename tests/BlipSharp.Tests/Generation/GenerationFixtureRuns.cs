using System.Text.Json;
using System.Text.RegularExpressions;
using BlipSharp.Generation;
using BlipSharp.Modeling;
using BlipSharp.Tests.TestSupport;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Generation;

/// <summary>
/// The <c>generate</c> runs a fixture folder records (<c>cases.generate.&lt;run&gt;</c>), turned into our inputs and
/// options. Runs are discovered from cases.json; a run with a keyword we do not map fails instead of being skipped.
/// </summary>
public static class GenerationFixtureRuns
{
    /// <summary>xunit member data: (model folder, run) for every recorded generate run.</summary>
    public static IEnumerable<object[]> All()
    {
        var rows = new List<object[]>();
        foreach (var dir in Fixtures.HfModelDirs())
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "cases.json")));
            if (!doc.RootElement.GetProperty("cases").TryGetProperty("generate", out var runs)) continue;
            foreach (var run in runs.EnumerateObject()) rows.Add([Path.GetFileName(dir), run.Name]);
        }
        if (rows.Count == 0) throw new InvalidOperationException($"no generate runs in any model folder of {Fixtures.HfBlipDir}");
        return rows;
    }

    /// <summary>The run's kwargs as options; unknown keywords are an error.</summary>
    public static GenerationOptions Options(JsonElement run, bool useCache = true, bool outputLogits = false)
    {
        var options = new GenerationOptions { UseCache = useCache, OutputLogits = outputLogits };
        foreach (var kw in run.GetProperty("kwargs").EnumerateObject())
        {
            options = kw.Name switch
            {
                "max_length" => options with { MaxLength = kw.Value.GetInt32() },
                "min_length" => options with { MinLength = kw.Value.GetInt32() },
                "num_beams" => options with { NumBeams = kw.Value.GetInt32() },
                "max_new_tokens" => options with { MaxNewTokens = kw.Value.GetInt32() },
                "length_penalty" => options with { LengthPenalty = kw.Value.GetDouble() },
                "early_stopping" => options with { EarlyStopping = kw.Value.GetBoolean() },
                "num_return_sequences" => options with { NumReturnSequences = kw.Value.GetInt32() },
                "repetition_penalty" => options with { RepetitionPenalty = kw.Value.GetDouble() },
                "no_repeat_ngram_size" => options with { NoRepeatNgramSize = kw.Value.GetInt32() },
                _ => throw new NotSupportedException($"generate keyword '{kw.Name}' is not mapped by the test"),
            };
        }
        return options;
    }

    /// <summary>Runs a recorded generate call on the loaded model.</summary>
    public static GeneratedSequences Run(FixtureCases cases, nn.Module model, string runName, JsonElement run, GenerationOptions options)
    {
        var pixels = cases.Tensor("pixel_values");
        switch (model)
        {
            case BlipForConditionalGeneration caption:
            {
                var images = SelectImages(pixels, run);
                Tensor? promptIds = null, promptMask = null;
                if (run.TryGetProperty("prompt", out var prompt) && prompt.ValueKind == JsonValueKind.String)
                {
                    promptIds = cases.Tensor("generate.prompt.input_ids").to_type(ScalarType.Int64);
                    promptMask = run.TryGetProperty("prompt_attention_mask_from_processor", out var m)
                        ? tensor(m.EnumerateArray().SelectMany(r => r.EnumerateArray().Select(v => v.GetInt64())).ToArray(), promptIds.shape)
                        : null;
                }
                return caption.Generate(images, promptIds, promptMask, options);
            }
            case BlipForQuestionAnswering vqa:
            {
                var ids = cases.Tensor("question.input_ids").to_type(ScalarType.Int64);
                var mask = cases.Tensor("question.attention_mask").to_type(ScalarType.Int64);
                long n = pixels.shape[0];
                using var index = arange(ids.shape[0], dtype: ScalarType.Int64).remainder(n); // question i reads image i % n
                using var paired = pixels.index_select(0, index);
                return vqa.Generate(paired, ids, mask, options);
            }
            default:
                throw new InvalidOperationException($"{cases.Dir}: generate run '{runName}' on a {model.GetType().Name}");
        }
    }

    /// <summary>"pixel_values[1:2]" selects rows 1..2; any other description means every image.</summary>
    private static Tensor SelectImages(Tensor pixels, JsonElement run)
    {
        if (!run.TryGetProperty("pixel_values", out var desc)) return pixels;
        var m = Regex.Match(desc.GetString() ?? "", @"\[(\d+):(\d+)\]");
        if (!m.Success) return pixels;
        long from = long.Parse(m.Groups[1].Value), to = long.Parse(m.Groups[2].Value);
        return pixels.narrow(0, from, to - from);
    }

    /// <summary>The tolerance for decoder logits: the largest noise-derived tolerance among the folder's logit tensors.</summary>
    public static double LogitTolerance(FixtureCases cases)
    {
        var names = cases.TensorNames.Where(n => n.EndsWith("logits", StringComparison.Ordinal) && cases.Tensor(n).shape.Length == 3).ToList();
        if (names.Count == 0) throw new InvalidOperationException($"{cases.Dir}: no decoder logits tensor to derive a tolerance from");
        return names.Max(cases.Tolerance);
    }
}
