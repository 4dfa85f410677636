using BlipSharp.Checkpoints;
using BlipSharp.Modeling;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Checkpoints;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Finetuning;

/// <summary>
/// Loading salesforce/BLIP checkpoints into the Hugging Face-layout task models: a captioner from a pretraining
/// checkpoint (BLIP's blip_decoder(pretrained=...): only the ViT and the decoder are used, the rest is named as
/// skipped), a VQA model from its own safetensors copy with tied aliases; every value arrives; anything else fails
/// naming the key.
/// </summary>
[Trait("Category", "Parity")]
public sealed class OriginalTaskCheckpointTests
{
    private const string CaptionModel = "models.blip.BLIP_Decoder";
    private const string VqaModel = "models.blip_vqa.BLIP_VQA";

    public static IEnumerable<object[]> CaptionCases() => OriginalFixtures.CaseDirs(CaptionModel).Select(d => new object[] { Path.GetFileName(d) });
    public static IEnumerable<object[]> VqaCases() => OriginalFixtures.CaseDirs(VqaModel).Select(d => new object[] { Path.GetFileName(d) });

    [Theory]
    [MemberData(nameof(CaptionCases))]
    public void ACaptionerLoadsTheViTAndDecoderOfAPretrainingCheckpoint(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        string weights = OriginalFixtures.WeightsFile(dir);
        var log = new List<string>();
        using var model = new BlipForConditionalGeneration(OriginalFixtures.TaskConfig(dir));
        OriginalTaskCheckpoint.LoadInto(model, weights, new OriginalTaskLoadOptions
        {
            Log = log.Add,
            UnusedPrefixes = ["text_encoder", "vision_model_m.", "vision_proj", "text_proj", "itm_head", "temp", "image_queue", "text_queue", "queue_ptr", "idx_queue"],
        });
        var original = OriginalTaskCheckpoint.ReadStateDict(weights);
        try
        {
            var state = model.state_dict();
            AssertSame(original["visual_encoder.blocks.1.attn.qkv.weight"], state["vision_model.encoder.layers.1.self_attn.qkv.weight"]);
            AssertSame(original["visual_encoder.pos_embed"], state["vision_model.embeddings.position_embedding"]);
            AssertSame(original["text_decoder.bert.encoder.layer.1.crossattention.self.key.weight"], state["text_decoder.bert.encoder.layer.1.crossattention.self.key.weight"]);
            AssertSame(original["text_decoder.cls.predictions.bias"], state["text_decoder.cls.predictions.bias"]);
            AssertSame(original["text_decoder.bert.embeddings.word_embeddings.weight"], state["text_decoder.cls.predictions.decoder.weight"]);
            Assert.Contains(log, l => l.Contains("skipped", StringComparison.Ordinal) && l.Contains("'text_encoder*'", StringComparison.Ordinal));
        }
        finally
        {
            foreach (var t in original.Values) t.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(CaptionCases))]
    public void WithoutNamingTheSkippedPartsAPretrainingCheckpointIsRefusedNamingAKey(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        using var model = new BlipForConditionalGeneration(OriginalFixtures.TaskConfig(dir));
        var e = Assert.ThrowsAny<CheckpointFormatException>(() => OriginalTaskCheckpoint.LoadInto(model, OriginalFixtures.WeightsFile(dir)));
        Assert.Contains("text_encoder", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(VqaCases))]
    public void AVqaCheckpointLoadsStrictlyWithItsTiedAliases(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        string weights = OriginalFixtures.WeightsFile(dir);
        using var model = new BlipForQuestionAnswering(OriginalFixtures.TaskConfig(dir));
        OriginalTaskCheckpoint.LoadInto(model, weights);
        var original = OriginalTaskCheckpoint.ReadStateDict(weights);
        try
        {
            var state = model.state_dict();
            foreach (var (key, value) in original)
            {
                if (OriginalBlipKeyMap.IsPositionIds(key) || key == OriginalBlipKeyMap.DecoderBiasAlias) continue;
                string ours = OriginalBlipKeyMap.Rename(key);
                Assert.True(state.ContainsKey(ours), $"{name}: '{key}' -> '{ours}' missing");
                AssertSame(value, state[ours]);
            }
        }
        finally
        {
            foreach (var t in original.Values) t.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(VqaCases))]
    public void AMisShapedOrUnknownEntryIsAnErrorNamingTheKey(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        var original = OriginalTaskCheckpoint.ReadStateDict(OriginalFixtures.WeightsFile(dir));
        try
        {
            using var model = new BlipForQuestionAnswering(OriginalFixtures.TaskConfig(dir));
            var extra = new Dictionary<string, Tensor>(original) { ["text_encoder.surprise.weight"] = original["text_encoder.embeddings.LayerNorm.weight"] };
            var e = Assert.ThrowsAny<CheckpointFormatException>(() => OriginalTaskCheckpoint.LoadInto(model, extra, "extra.pth"));
            Assert.Contains("text_encoder.surprise.weight", e.Message, StringComparison.Ordinal);

            using var wrong = zeros(3, 3);
            var misShaped = new Dictionary<string, Tensor>(original) { ["text_encoder.embeddings.LayerNorm.weight"] = wrong };
            e = Assert.ThrowsAny<CheckpointFormatException>(() => OriginalTaskCheckpoint.LoadInto(model, misShaped, "mis.pth"));
            Assert.Contains("text_encoder.embeddings.LayerNorm.weight", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var t in original.Values) t.Dispose();
        }
    }

    private static void AssertSame(Tensor expected, Tensor actual)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape), $"shape [{string.Join(", ", expected.shape)}] vs [{string.Join(", ", actual.shape)}]");
        Assert.True(expected.eq(actual).all().ToBoolean());
    }
}
