using BlipSharp.Modeling;
using BlipSharp.Modeling.Text;
using BlipSharp.Tests.TestSupport;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Parity;

/// <summary>
/// Every tensor that transformers recorded in each model folder of the hf-blip fixtures, reproduced from the
/// folder's own checkpoint and inputs. The folders are discovered, not listed: any folder of the same layout
/// (other sizes, other seeds) is checked the same way.
/// </summary>
[Trait("Category", "Parity")]
public sealed class ModelParityTests
{
    public static IEnumerable<object[]> Models() => Fixtures.HfModelNames();

    [Theory]
    [MemberData(nameof(Models))]
    public void StateDictKeysEqualTheSavedTensorNames(string model)
    {
        string dir = Fixtures.HfModelDir(model);
        using var cases = new FixtureCases(dir);
        using var m = FixtureModels.Load(dir, FixtureModels.Architecture(cases));
        var expected = cases.Json.GetProperty("saved_tensor_names").EnumerateArray().Select(e => e.GetString()!).Order(StringComparer.Ordinal).ToList();
        var actual = m.state_dict().Keys.Order(StringComparer.Ordinal).ToList();
        Assert.Equal(expected, actual);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void VisionEncoderMatches(string model)
    {
        string dir = Fixtures.HfModelDir(model);
        using var cases = new FixtureCases(dir);
        using var m = FixtureModels.Load(dir, FixtureModels.Architecture(cases));
        var vision = (Modeling.Vision.BlipVisionModel)m.named_children().Single(c => c.name == "vision_model").module;
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var output = vision.Forward(cases.Tensor("pixel_values"), outputHiddenStates: true);
        FixtureModels.Check(cases, "vision.last_hidden_state", output.LastHiddenState);
        FixtureModels.Check(cases, "vision.pooler_output", output.PoolerOutput);
        FixtureModels.Check(cases, "vision.hidden_states", output.HiddenStates!);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void TaskOutputsMatch(string model)
    {
        string dir = Fixtures.HfModelDir(model);
        using var cases = new FixtureCases(dir);
        string architecture = FixtureModels.Architecture(cases);
        using var m = FixtureModels.Load(dir, architecture);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        switch (m)
        {
            case BlipForConditionalGeneration caption: CheckCaptioning(cases, caption); break;
            case BlipForImageTextRetrieval retrieval: CheckRetrieval(cases, retrieval); break;
            case BlipForQuestionAnswering vqa: CheckQuestionAnswering(cases, vqa); break;
            case BlipModel blip: CheckContrastive(cases, blip); break;
            default: Assert.Fail($"{dir}: no checks for {architecture}"); break;
        }
    }

    private static void CheckCaptioning(FixtureCases cases, BlipForConditionalGeneration model)
    {
        var pixels = cases.Tensor("pixel_values");
        var ids = FixtureModels.Long(cases, "forward.input_ids");
        var mask = FixtureModels.Long(cases, "forward.attention_mask");

        var forward = model.Forward(pixels, ids, mask, labels: ids);
        FixtureModels.Check(cases, "forward.logits", forward.Logits);
        FixtureModels.Check(cases, "forward.loss", forward.Loss!);
        FixtureModels.Check(cases, "forward.decoder_last_hidden_state", forward.DecoderLastHiddenState);

        var masked = ids.masked_fill(mask.eq(0), -100);
        FixtureModels.Check(cases, "forward_masked_labels.loss", model.Forward(pixels, ids, mask, labels: masked).Loss!);

        var decIds = LongFromJson(cases, "cases", "forward_dec_bos", "input_ids");
        var decLabels = LongFromJson(cases, "cases", "forward_dec_bos", "labels");
        var dec = model.Forward(pixels, decIds, mask, labels: decLabels);
        FixtureModels.Check(cases, "forward_dec_bos.loss", dec.Loss!);
        FixtureModels.Check(cases, "forward_dec_bos.logits_last_position", dec.Logits[.., -1, ..]);

        double smoothing = cases.Json.GetProperty("cases").GetProperty("forward_dec_bos_ls01").GetProperty("label_smoothing").GetDouble();
        FixtureModels.Check(cases, "forward_dec_bos_ls01.loss", model.Forward(pixels, decIds, mask, labels: decLabels, labelSmoothing: smoothing).Loss!);
    }

    private static void CheckRetrieval(FixtureCases cases, BlipForImageTextRetrieval model)
    {
        var pixels = cases.Tensor("pixel_values");
        var ids = FixtureModels.Long(cases, "itm.input_ids");
        var mask = FixtureModels.Long(cases, "itm.attention_mask");
        var image = model.EncodeImage(pixels);

        FixtureModels.Check(cases, "text_encoder.unimodal.last_hidden_state", model.EncodeText(ids, mask));
        FixtureModels.Check(cases, "text_encoder.image_grounded.last_hidden_state", model.EncodeMultimodal(ids, mask, image));

        var itm = model.ImageTextMatching(pixels, ids, mask);
        FixtureModels.Check(cases, "itm.logits", itm.Logits);
        FixtureModels.Check(cases, "itm.probs", itm.Probabilities);

        var encIds = FixtureModels.Long(cases, "itm_enc_token.input_ids");
        FixtureModels.Check(cases, "itm_enc_token.logits", model.ImageTextMatching(pixels, encIds, mask).Logits);

        var itc = model.ContrastiveSimilarity(pixels, ids, mask);
        FixtureModels.Check(cases, "itc.cosine", itc.Cosine);
        FixtureModels.Check(cases, "itc.image_feat", itc.ImageFeatures);
        FixtureModels.Check(cases, "itc.text_feat", itc.TextFeatures);

        var all = model.ContrastiveSimilarity(pixels, FixtureModels.Long(cases, "itc_all_texts.input_ids"), FixtureModels.Long(cases, "itc_all_texts.attention_mask"));
        FixtureModels.Check(cases, "itc_all_texts.cosine", all.Cosine);
    }

    private static void CheckQuestionAnswering(FixtureCases cases, BlipForQuestionAnswering model)
    {
        var pixels = cases.Tensor("pixel_values");
        var ids = FixtureModels.Long(cases, "question.input_ids");
        var mask = FixtureModels.Long(cases, "question.attention_mask");
        var image = model.EncodeImage(pixels);
        var question = model.EncodeQuestion(image, ids, mask);
        FixtureModels.Check(cases, "question_embeds", question);

        var labels = FixtureModels.Long(cases, "loss_cls_labels.labels");
        var output = model.Forward(pixels, ids, mask, labels: labels);
        FixtureModels.Check(cases, "loss_cls_labels.loss", output.Loss!);
        FixtureModels.Check(cases, "loss_cls_labels.decoder_logits", output.DecoderLogits);

        var decIds = FixtureModels.Long(cases, "loss_dec_bos.decoder_input_ids");
        var decMask = FixtureModels.Long(cases, "loss_dec_bos.decoder_attention_mask");
        var decLabels = FixtureModels.Long(cases, "loss_dec_bos.labels");
        FixtureModels.Check(cases, "loss_dec_bos.loss", model.Forward(pixels, ids, mask, decIds, decMask, decLabels).Loss!);
    }

    private static void CheckContrastive(FixtureCases cases, BlipModel model)
    {
        var pixels = cases.Tensor("pixel_values");
        var ids = FixtureModels.Long(cases, "input_ids");
        var mask = FixtureModels.Long(cases, "attention_mask");
        var output = model.Forward(pixels, ids, mask);
        FixtureModels.Check(cases, "text_embeds", output.TextEmbeds);
        FixtureModels.Check(cases, "image_embeds", output.ImageEmbeds);
        FixtureModels.Check(cases, "logits_per_image", output.LogitsPerImage);
        FixtureModels.Check(cases, "logits_per_text", output.LogitsPerText);

        var text = model.text_model.Forward(ids, mask);
        FixtureModels.Check(cases, "text_model.last_hidden_state", text.LastHiddenState);
        FixtureModels.Check(cases, "text_model.pooler_output", text.PoolerOutput!);
        FixtureModels.Check(cases, "get_text_features", model.GetTextFeatures(ids, mask));
        FixtureModels.Check(cases, "get_image_features", model.GetImageFeatures(pixels));

        long n = pixels.shape[0];
        var paired = model.Forward(pixels, ids[..(int)n], mask[..(int)n], returnLoss: true);
        FixtureModels.Check(cases, "paired.loss", paired.Loss!);
        FixtureModels.Check(cases, "paired.logits_per_image", paired.LogitsPerImage);
    }

    private static Tensor LongFromJson(FixtureCases cases, params string[] path)
    {
        var e = cases.Json;
        foreach (string p in path) e = e.GetProperty(p);
        var rows = e.EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt64()).ToArray()).ToArray();
        return tensor(rows.SelectMany(r => r).ToArray(), [rows.Length, rows[0].Length]);
    }
}
