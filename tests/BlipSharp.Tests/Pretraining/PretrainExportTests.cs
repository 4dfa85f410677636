using System.Text.Json;
using BlipSharp.Configuration;
using BlipSharp.Generation;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Checkpoints;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Pretraining;

/// <summary>
/// Export of a pretraining model (loaded from BLIP's model.pth) to Hugging Face task folders: the inference side's
/// FromPretrained loads them and reproduces what salesforce/BLIP's BLIP_Decoder and BLIP_Retrieval computed from
/// the same checkpoint (caption/ and retrieval/ fixtures).
/// </summary>
[Trait("Category", "Parity")]
public sealed class PretrainExportTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), $"blip-export-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private static string PretrainDirOf(string caseDir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(caseDir, "config.json")));
        string pth = Path.GetFullPath(Path.Combine(caseDir, doc.RootElement.GetProperty("weights").GetProperty("file").GetString()!));
        return Path.GetDirectoryName(pth)!;
    }

    private static string TokenizerDir => Fixtures.HfModelDirs().First(d => File.Exists(Path.Combine(d, "vocab.txt")));

    private string Export(string pretrainDir, bool caption)
    {
        string dir = Path.Combine(_root, (caption ? "caption-" : "retrieval-") + Path.GetFileName(pretrainDir));
        using var model = OriginalBlipCheckpoint.LoadPretraining(Path.Combine(pretrainDir, "model.pth"), OriginalFixtures.PretrainingConfig(pretrainDir));
        var options = new HuggingFaceExportOptions { TokenizerDirectory = TokenizerDir };
        if (caption) HuggingFaceExport.SaveForConditionalGeneration(model, dir, options);
        else HuggingFaceExport.SaveForImageTextRetrieval(model, dir, options);
        return dir;
    }

    [Fact]
    public void CaptioningExportReproducesBlipDecoder()
    {
        foreach (string caseDir in OriginalFixtures.CaseDirs("models.blip.BLIP_Decoder"))
        {
            using var cases = new FixtureCases(caseDir);
            string dir = Export(PretrainDirOf(caseDir), caption: true);
            var config = BlipConfig.FromPretrained(dir);
            Assert.Equal(OriginalFixtures.LayerNormEps(JsonDocument.Parse(File.ReadAllText(Path.Combine(caseDir, "config.json"))).RootElement.GetProperty("vision").GetProperty("norm_layer").GetString()!),
                config.VisionConfig.LayerNormEps);
            using var model = BlipForConditionalGeneration.FromPretrained(dir);
            using var scope = NewDisposeScope();
            using var _ = no_grad();

            var image = model.EncodeImage(cases.Tensor("pixel_values"));
            FixtureModels.Check(cases, "train.image_embeds", image);
            var decoded = model.Decode(image, FixtureModels.Long(cases, "train.decoder_input_ids"), FixtureModels.Long(cases, "train.attention_mask"),
                labels: FixtureModels.Long(cases, "train.decoder_targets"), labelSmoothing: 0.1);
            FixtureModels.Check(cases, "train.sequence_output", decoded.LastHiddenState);
            FixtureModels.Check(cases, "train.loss", decoded.Loss!);

            // Greedy decoding is the same in transformers 4.15 and 4.40 (beam scores are not): every greedy run.
            int greedyRuns = 0;
            foreach (var run in cases.Json.GetProperty("cases").GetProperty("generate").EnumerateObject())
            {
                if (run.Value.ValueKind != JsonValueKind.Object || !run.Value.TryGetProperty("text_decoder_generate_kwargs", out var kwargs)
                    || kwargs.GetProperty("num_beams").GetInt32() != 1 || (kwargs.TryGetProperty("do_sample", out var sample) && sample.GetBoolean()))
                    continue;
                var options = new GenerationOptions
                {
                    MaxLength = kwargs.GetProperty("max_length").GetInt32(),
                    MinLength = kwargs.GetProperty("min_length").GetInt32(),
                    EosTokenId = kwargs.GetProperty("eos_token_id").GetInt64(),
                    PadTokenId = kwargs.GetProperty("pad_token_id").GetInt64(),
                };
                using var generated = model.GenerateFromImageEmbeds(image, FixtureModels.Long(cases, "generate.decoder_start_ids"), null, options);
                var expected = FixtureModels.Long(cases, $"generate.{run.Name}.sequences");
                for (int row = 0; row < expected.shape[0]; row++)
                {
                    long[] want = expected[row].data<long>().ToArray();
                    long[] got = generated.Sequences[row];
                    int eos = Array.IndexOf(want, options.EosTokenId!.Value);
                    int length = eos < 0 ? want.Length : eos + 1;
                    Assert.True(got.Length >= length, $"{run.Name} row {row}: {got.Length} tokens, BLIP {length}");
                    Assert.Equal(want.Take(length), got.Take(length));
                }
                greedyRuns++;
            }
            Assert.True(greedyRuns > 0, $"{caseDir}: no greedy generate run in cases.json");

            var processor = BlipProcessor.FromPretrained(dir);
            Assert.Equal(config.VisionConfig.ImageSize, processor.ImageProcessor.Options.Height);
            Assert.Equal(30523, processor.Tokenizer.EncTokenId);
        }
    }

    [Fact]
    public void RetrievalExportReproducesBlipRetrievalEvaluation()
    {
        foreach (string caseDir in OriginalFixtures.CaseDirs("models.blip_retrieval.BLIP_Retrieval"))
        {
            using var cases = new FixtureCases(caseDir);
            string dir = Export(PretrainDirOf(caseDir), caption: false);
            using var model = BlipForImageTextRetrieval.FromPretrained(dir);
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var ids = FixtureModels.Long(cases, "eval.input_ids");
            var mask = FixtureModels.Long(cases, "eval.attention_mask");
            FixtureModels.Check(cases, "eval.text_feat", model.TextFeatures(model.EncodeText(ids, mask)));
            var imageEmbeds = cases.Tensor("eval.image_embeds");
            FixtureModels.Check(cases, "eval.image_feat", model.ImageFeatures(imageEmbeds));

            // ITM re-ranking: each image with its top-k texts ([ENC] first), as train_retrieval.evaluation does.
            var itmIds = FixtureModels.Long(cases, "eval.itm_input_ids");
            var topk = FixtureModels.Long(cases, "eval.i2t.topk_idx");                  // (I, k)
            long images = topk.shape[0], k = topk.shape[1];
            var scores = new List<Tensor>();
            for (long i = 0; i < images; i++)
            {
                var rows = topk[i];
                var repeated = imageEmbeds[i].unsqueeze(0).expand(k, -1, -1);
                using var itm = model.ImageTextMatchingFromEmbeds(repeated, itmIds.index_select(0, rows), mask.index_select(0, rows));
                scores.Add(itm.Logits.select(1, 1).clone());
            }
            FixtureModels.Check(cases, "eval.i2t.itm_score", stack(scores, 0));
            Assert.True(File.Exists(Path.Combine(dir, "vocab.txt")) && File.Exists(Path.Combine(dir, "preprocessor_config.json")));
        }
    }
}
