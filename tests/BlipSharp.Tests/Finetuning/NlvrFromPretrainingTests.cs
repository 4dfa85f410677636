using BlipSharp.Checkpoints;
using BlipSharp.Configuration;
using BlipSharp.Modeling;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Nlvr;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Finetuning;

/// <summary>
/// Starting NLVR fine-tuning from a BLIP pretraining checkpoint (<c>blip_nlvr.load_checkpoint</c>): the pretrained
/// cross-attention is duplicated into both image branches, merge layers and the head start fresh, the decoder,
/// momentum encoders, projections and queues are skipped by name. The pretraining fixture's text model has its own
/// depth (2 layers in the public fixture): an NLVR model of that depth is built, once with BLIP's merge-from-layer (so
/// no merge layer exists) and once merging from the last layer (so a merge layer must start fresh).
/// </summary>
[Trait("Category", "Parity")]
public sealed class NlvrFromPretrainingTests
{
    public static IEnumerable<object[]> Cases() => OriginalFixtures.PretrainCaseNames();

    private static string PretrainCheckpoint(string dir)
    {
        string pth = Path.Combine(dir, "model.pth");
        Assert.True(File.Exists(pth), $"{dir}: the pretraining fixture has no model.pth");
        return pth;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TheCrossAttentionIsCopiedIntoBothImageBranches(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        var baseConfig = NlvrReplay.ConfigFor(dir);
        var blip = baseConfig.Blip;
        int layers = blip.TextConfig.NumHiddenLayers;
        foreach (int mergeFrom in new[] { BlipNlvrConfig.BlipMergeFromLayer, layers - 1 })
        {
            var config = baseConfig with { MergeFromLayer = mergeFrom };
            using var model = new BlipForNlvr(config);
            var log = new List<string>();
            NlvrCheckpoint.FromPretraining(model, PretrainCheckpoint(dir), log.Add);
            var original = OriginalTaskCheckpoint.ReadStateDict(PretrainCheckpoint(dir));
            try
            {
                var state = model.state_dict();
                for (int i = 0; i < layers; i++)
                {
                    string p = $"text_encoder.encoder.layer.{i}.crossattention.";
                    foreach (string part in new[] { "query", "key", "value" })
                    {
                        foreach (string kind in new[] { "weight", "bias" })
                        {
                            var pretrained = original[$"{p}self.{part}.{kind}"];
                            AssertSame(pretrained, state[$"{p}self0.{part}.{kind}"], $"{name}: layer {i} self0.{part}.{kind}");
                            AssertSame(pretrained, state[$"{p}self1.{part}.{kind}"], $"{name}: layer {i} self1.{part}.{kind}");
                        }
                    }
                    foreach (string kind in new[] { "weight", "bias" })
                    {
                        AssertSame(original[$"{p}output.dense.{kind}"], state[$"{p}output.dense0.{kind}"], $"{name}: layer {i} dense0.{kind}");
                        AssertSame(original[$"{p}output.dense.{kind}"], state[$"{p}output.dense1.{kind}"], $"{name}: layer {i} dense1.{kind}");
                        AssertSame(original[$"{p}output.LayerNorm.{kind}"], state[$"{p}output.LayerNorm.{kind}"], $"{name}: layer {i} LayerNorm.{kind}");
                    }
                    AssertSame(original[$"text_encoder.encoder.layer.{i}.attention.self.query.weight"], state[$"text_encoder.encoder.layer.{i}.attention.self.query.weight"], $"{name}: layer {i} self-attention");
                    AssertSame(original[$"text_encoder.encoder.layer.{i}.output.dense.weight"], state[$"text_encoder.encoder.layer.{i}.output.dense.weight"], $"{name}: layer {i} feed-forward");

                    string merge = $"{p}output.merge_layer.";
                    Assert.Equal(i >= mergeFrom, state.ContainsKey(merge + "weight"));
                    if (i >= mergeFrom)
                    {
                        // BERT's init: N(0, initializer_range) weights, zero bias.
                        double std = state[merge + "weight"].std().ToDouble();
                        double range = config.Blip.TextConfig.InitializerRange;
                        Assert.InRange(std, 0.8 * range, 1.2 * range);
                        Assert.Equal(0.0, state[merge + "bias"].abs().max().ToDouble());
                    }
                }
                AssertSame(original["text_encoder.embeddings.word_embeddings.weight"], state["text_encoder.embeddings.word_embeddings.weight"], $"{name}: word embeddings");
                AssertSame(original["visual_encoder.blocks.0.attn.qkv.weight"], state["vision_model.encoder.layers.0.self_attn.qkv.weight"], $"{name}: ViT");
                AssertSame(original["visual_encoder.pos_embed"], state["vision_model.embeddings.position_embedding"], $"{name}: ViT position embeddings");

                Assert.Contains(log, l => l.Contains("copied into self0 and self1", StringComparison.Ordinal) && l.Contains($"in {layers} text layer(s)", StringComparison.Ordinal));
                Assert.Contains(log, l => l.Contains("initialised here", StringComparison.Ordinal) && l.Contains("cls_head", StringComparison.Ordinal));
                Assert.Contains(log, l => l.Contains("skipped", StringComparison.Ordinal) && l.Contains("'text_decoder.*'", StringComparison.Ordinal)
                    && l.Contains("'text_encoder_m.*'", StringComparison.Ordinal));
            }
            finally
            {
                foreach (var t in original.Values) t.Dispose();
            }
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void APretrainingCheckpointIsNotAnNlvrCheckpoint(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        using var model = new BlipForNlvr(NlvrReplay.ConfigFor(dir));
        var e = Assert.ThrowsAny<CheckpointFormatException>(() => NlvrCheckpoint.LoadNlvr(model, PretrainCheckpoint(dir)));
        Assert.Contains("self0", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AccuracyIsTheShareOfArgmaxEqualToTheTarget()
    {
        using var logits = tensor(new float[] { 0.1f, 0.9f, 0.8f, 0.2f, 0.3f, 0.7f, 0.5f, 0.5f }).reshape(4, 2);
        using var targets = tensor(new long[] { 1, 1, 1, 0 });
        using var accuracy = NlvrTask.Accuracy(logits, targets);
        Assert.Equal(0.75f, accuracy.ToSingle()); // rows 0 and 2 right, row 1 wrong, row 3 a tie -> 0 (first maximum), right
        Assert.ThrowsAny<ArgumentException>(() => NlvrTask.Accuracy(logits, tensor(new long[] { 1, 0 })));
    }

    private static void AssertSame(Tensor expected, Tensor actual, string what)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape), $"{what}: shape [{string.Join(", ", actual.shape)}], expected [{string.Join(", ", expected.shape)}]");
        Assert.True(expected.eq(actual).all().ToBoolean(), $"{what}: values differ from the pretraining checkpoint");
    }
}
