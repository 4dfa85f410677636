using System.Text.Json;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using BlipSharp.Tests.TestSupport;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Parity;

/// <summary>
/// The whole chain a user runs: image files and caption strings -> <see cref="BlipProcessor"/> -> model, compared
/// with the tensors transformers recorded from the same files and strings.
/// </summary>
[Trait("Category", "Parity")]
public sealed class EndToEndParityTests
{
    public static IEnumerable<object[]> Models() => Fixtures.HfModelNames();

    [Theory]
    [MemberData(nameof(Models))]
    public void FilesAndStringsReproduceTheRecordedOutputs(string model)
    {
        string dir = Fixtures.HfModelDir(model);
        using var cases = new FixtureCases(dir);
        var processor = BlipProcessor.FromPretrained(dir);
        var images = cases.Json.GetProperty("images").EnumerateArray()
            .Select(i => Path.Combine(Fixtures.HfBlipDir, i.GetProperty("file").GetString()!)).ToList();
        using var m = FixtureModels.Load(dir, FixtureModels.Architecture(cases));
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var c = cases.Json.GetProperty("cases");
        switch (m)
        {
            case BlipForConditionalGeneration caption:
            {
                var inputs = processor.Process(images.Take(2).ToList(), Texts(c.GetProperty("forward")));
                CheckInputs(cases, inputs, "pixel_values", "forward.input_ids", "forward.attention_mask");
                FixtureModels.Check(cases, "forward.logits", caption.Forward(inputs.PixelValues!, inputs.InputIds!, inputs.AttentionMask!).Logits);
                break;
            }
            case BlipForImageTextRetrieval retrieval:
            {
                var inputs = processor.Process(images.Take(2).ToList(), Texts(c.GetProperty("itm")));
                CheckInputs(cases, inputs, "pixel_values", "itm.input_ids", "itm.attention_mask");
                FixtureModels.Check(cases, "itm.logits", retrieval.ImageTextMatching(inputs.PixelValues!, inputs.InputIds!, inputs.AttentionMask!).Logits);
                break;
            }
            case BlipForQuestionAnswering vqa:
            {
                var questions = c.GetProperty("questions");
                var imageIndex = questions.GetProperty("image_index").EnumerateArray().Select(e => e.GetInt32()).ToList();
                var inputs = processor.Process(imageIndex.Select(i => images[i]).ToList(), Texts(questions));
                CheckInputs(cases, inputs, "pixel_values", "question.input_ids", "question.attention_mask");
                using var image = vqa.EncodeImage(inputs.PixelValues!);
                FixtureModels.Check(cases, "question_embeds", vqa.EncodeQuestion(image, inputs.InputIds!, inputs.AttentionMask!));
                break;
            }
            case BlipModel blip:
            {
                var inputs = processor.Process(images.Take(2).ToList(), Texts(c));
                CheckInputs(cases, inputs, "pixel_values", "input_ids", "attention_mask");
                FixtureModels.Check(cases, "logits_per_image", blip.Forward(inputs.PixelValues!, inputs.InputIds!, inputs.AttentionMask!).LogitsPerImage);
                break;
            }
            default:
                Assert.Fail($"{dir}: no end-to-end check for {m.GetType().Name}");
                break;
        }
    }

    private static List<string> Texts(JsonElement e) => e.GetProperty("texts").EnumerateArray().Select(t => t.GetString()!).ToList();

    private static void CheckInputs(FixtureCases cases, BlipInputs inputs, string pixels, string ids, string mask)
    {
        string name = Path.GetFileName(cases.Dir);
        TensorAssert.Close(cases.Tensor(pixels), inputs.PixelValues!, 0.0, $"{name}: {pixels} from files");
        TensorAssert.Equal(cases.Tensor(ids), inputs.InputIds!, $"{name}: {ids} from strings");
        TensorAssert.Equal(cases.Tensor(mask), inputs.AttentionMask!, $"{name}: {mask} from strings");
    }
}
