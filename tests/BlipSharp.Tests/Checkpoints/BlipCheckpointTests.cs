using System.Text.Json.Nodes;
using BlipSharp.Checkpoints;
using BlipSharp.Configuration;
using BlipSharp.Modeling;
using BlipSharp.Modeling.Vision;
using BlipSharp.Tests.TestSupport;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Checkpoints;

public sealed class BlipCheckpointTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("blipsharp-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.allclose(b, 0, 0);

    private static string FolderOf(string architecture) =>
        Fixtures.HfModelDirs().First(d =>
        {
            using var c = new FixtureCases(d);
            return FixtureModels.Architecture(c) == architecture;
        });

    /// <summary>A copy of a fixture folder whose config.json is edited by <paramref name="edit"/>.</summary>
    private string CopyWithConfig(string source, Action<JsonObject> edit)
    {
        string dir = Path.Combine(_tmp, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        foreach (string f in Directory.GetFiles(source)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
        edit(json);
        File.WriteAllText(Path.Combine(dir, "config.json"), json.ToJsonString());
        return dir;
    }

    [Fact]
    public void MissingConfigNamesThePath()
    {
        string dir = Path.Combine(_tmp, "empty");
        Directory.CreateDirectory(dir);
        var e = Assert.Throws<FileNotFoundException>(() => BlipCheckpoint.LoadForConditionalGeneration(dir));
        Assert.Contains(Path.Combine(dir, "config.json"), e.Message);
    }

    [Fact]
    public void MissingWeightsAreNamed()
    {
        string dir = Path.Combine(_tmp, "noweights");
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(FolderOf(nameof(BlipForConditionalGeneration)), "config.json"), Path.Combine(dir, "config.json"));
        var e = Assert.Throws<FileNotFoundException>(() => BlipCheckpoint.LoadForConditionalGeneration(dir));
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void PytorchModelBinLoadsTheSameWeightsAsSafetensors()
    {
        string source = FolderOf(nameof(BlipForConditionalGeneration));
        string dir = CopyWithConfig(source, _ => { });
        File.Delete(Path.Combine(dir, "model.safetensors"));
        var weights = SafeTensors.Load(Path.Combine(source, "model.safetensors"));
        var pickle = new PickleBuilder().Proto(2).NewOrderedDict().Mark();
        var storages = new Dictionary<string, byte[]>();
        int i = 0;
        foreach (var (name, t) in weights)
        {
            string key = (i++).ToString();
            var strides = new long[t.shape.Length];
            long stride = 1;
            for (int d = t.shape.Length - 1; d >= 0; d--) { strides[d] = stride; stride *= t.shape[d]; }
            pickle.Str(name).Tensor("FloatStorage", key, t.numel(), 0, t.shape, strides);
            storages[key] = t.bytes.ToArray();
        }
        TorchSaveArchive.Write(Path.Combine(dir, "pytorch_model.bin"), pickle.SetItems().Stop().ToArray(), storages);

        Assert.EndsWith("pytorch_model.bin", BlipCheckpoint.FindWeights(dir));
        using var fromBin = BlipCheckpoint.LoadForConditionalGeneration(dir);
        using var fromSafetensors = BlipCheckpoint.LoadForConditionalGeneration(source);
        var expected = fromSafetensors.state_dict();
        foreach (var (key, value) in fromBin.state_dict())
            Assert.True(Same(expected[key], value), key);
    }

    [Fact]
    public void CheckpointForAnotherTaskIsRefusedByArchitecture()
    {
        string dir = FolderOf(nameof(BlipForConditionalGeneration));
        var e = Assert.Throws<CheckpointFormatException>(() => BlipCheckpoint.LoadForImageTextRetrieval(dir));
        Assert.Contains("BlipForConditionalGeneration checkpoint, not a BlipForImageTextRetrieval", e.Message);
    }

    [Fact]
    public void CheckpointForAnotherTaskWithoutArchitecturesListsTheKeys()
    {
        string dir = CopyWithConfig(FolderOf(nameof(BlipForConditionalGeneration)), c => c.Remove("architectures"));
        var e = Assert.Throws<CheckpointFormatException>(() => BlipCheckpoint.LoadForImageTextRetrieval(dir));
        Assert.Contains("missing from the checkpoint: 'itm_head.weight'", e.Message);
        Assert.Contains("unexpected in the checkpoint: 'text_decoder.", e.Message);
        Assert.Contains("model.safetensors does not fit BlipForImageTextRetrieval", e.Message);
    }

    [Fact]
    public void MisShapedKeyNamesBothShapes()
    {
        string source = FolderOf(nameof(BlipForImageTextRetrieval));
        var text = BlipConfig.FromPretrained(source).TextConfig;
        int wrong = text.IntermediateSize + 3;
        string dir = CopyWithConfig(source, c => c["text_config"]!["intermediate_size"] = wrong);
        var e = Assert.Throws<CheckpointFormatException>(() => BlipCheckpoint.LoadForImageTextRetrieval(dir));
        Assert.Contains($"shape mismatch: 'text_encoder.encoder.layer.0.intermediate.dense.weight' is [{text.IntermediateSize}, {text.HiddenSize}] in the checkpoint, the model needs [{wrong}, {text.HiddenSize}]", e.Message);
    }

    [Fact]
    public void ConfigOfAnotherModelTypeIsRefused()
    {
        string dir = CopyWithConfig(FolderOf(nameof(BlipForImageTextRetrieval)), c => c["model_type"] = "clip");
        var e = Assert.Throws<InvalidDataException>(() => BlipCheckpoint.LoadForImageTextRetrieval(dir));
        Assert.Contains("model_type is 'clip'", e.Message);
    }

    [Fact]
    public void InconsistentConfigNamesTheField()
    {
        string source = FolderOf(nameof(BlipForImageTextRetrieval));
        int hidden = BlipConfig.FromPretrained(source).VisionConfig.HiddenSize;
        string dir = CopyWithConfig(source, c => c["vision_config"]!["num_attention_heads"] = hidden + 1);
        var e = Assert.Throws<InvalidDataException>(() => BlipCheckpoint.LoadForImageTextRetrieval(dir));
        Assert.Contains($"vision_config.hidden_size ({hidden}) must be divisible by num_attention_heads ({hidden + 1})", e.Message);
    }

    [Fact]
    public void AbsentConfigFieldsTakeTheTransformersDefaults()
    {
        var config = BlipConfig.Parse("{}");
        Assert.Equal(768, config.VisionConfig.HiddenSize);
        Assert.Equal(384, config.VisionConfig.ImageSize);
        Assert.Equal(12, config.VisionConfig.NumAttentionHeads);
        Assert.Equal(8, config.TextConfig.NumAttentionHeads);
        Assert.Equal(30524, config.TextConfig.VocabSize);
        Assert.Equal(1e-12, config.TextConfig.LayerNormEps);
        Assert.Equal(1e-5, config.VisionConfig.LayerNormEps);
        Assert.Equal(256, config.ImageTextHiddenSize);
        Assert.Equal(512, config.ProjectionDim);
        var mixed = BlipConfig.Parse("""{"vision_config":{"hidden_size":40,"num_attention_heads":5},"text_config":{"hidden_size":32,"num_attention_heads":4}}""");
        Assert.Equal(40, mixed.TextConfig.EncoderHiddenSize); // transformers copies the vision width
        Assert.Equal(mixed with { ModelType = "blip" }, BlipConfig.Parse(mixed.ToJson()));
    }

    [Fact]
    public void ParityCheckFailsOnASmallWeightPerturbation()
    {
        string dir = FolderOf(nameof(BlipForImageTextRetrieval));
        using var cases = new FixtureCases(dir);
        using var model = BlipCheckpoint.LoadForImageTextRetrieval(dir);
        using (no_grad()) model.text_encoder.encoder.layer[0].output.layer_norm.bias!.add_(1e-4);
        using var _ = no_grad();
        using var itm = model.ImageTextMatching(cases.Tensor("pixel_values"), FixtureModels.Long(cases, "itm.input_ids"), FixtureModels.Long(cases, "itm.attention_mask"));
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => FixtureModels.Check(cases, "itm.logits", itm.Logits));
    }

    [Theory]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void HalfPrecisionCheckpointsLoadIntoFloat32OrStayHalf(ScalarType dtype)
    {
        string source = FolderOf(nameof(BlipForImageTextRetrieval));
        string dir = CopyWithConfig(source, _ => { });
        var weights = SafeTensors.Load(Path.Combine(source, "model.safetensors"), dtype);
        SafeTensors.Save(Path.Combine(dir, "model.safetensors"), weights, new Dictionary<string, string> { ["format"] = "pt" });

        using var asFloat = BlipCheckpoint.LoadForImageTextRetrieval(dir);
        Assert.All(asFloat.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
        Assert.True(Same(weights["itm_head.weight"].to_type(ScalarType.Float32), asFloat.itm_head.weight!));

        using var asHalf = BlipCheckpoint.LoadForImageTextRetrieval(dir, new BlipLoadOptions { DType = dtype });
        Assert.All(asHalf.parameters(), p => Assert.Equal(dtype, p.dtype));
        Assert.True(Same(weights["itm_head.weight"], asHalf.itm_head.weight!));

        // The half-precision model runs on float32 pixels and stays near the float32 result
        // (measured: fp16 1.6e-3, bf16 7.7e-3 on the fixture ITM logits).
        using var cases = new FixtureCases(source);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var pixels = cases.Tensor("pixel_values");
        var ids = FixtureModels.Long(cases, "itm.input_ids");
        var mask = FixtureModels.Long(cases, "itm.attention_mask");
        var half = asHalf.ImageTextMatching(pixels, ids, mask).Logits;
        Assert.Equal(dtype, half.dtype);
        var full = asFloat.ImageTextMatching(pixels, ids, mask).Logits;
        double deviation = (half.to_type(ScalarType.Float32) - full).abs().max().item<float>();
        Assert.True(deviation < 0.03, $"{dtype} ITM logits deviate by {deviation} from float32");
    }

    [Fact]
    public void TiedDecoderWeightIsFilledFromTheWordEmbeddingsWhenNotStored()
    {
        string source = FolderOf(nameof(BlipForConditionalGeneration));
        string dir = CopyWithConfig(source, _ => { });
        var weights = SafeTensors.Load(Path.Combine(source, "model.safetensors"));
        weights.Remove("text_decoder.cls.predictions.decoder.weight");
        SafeTensors.Save(Path.Combine(dir, "model.safetensors"), weights);
        var log = new List<string>();
        using var model = BlipCheckpoint.LoadForConditionalGeneration(dir, new BlipLoadOptions { Log = log.Add });
        Assert.Contains(log, l => l.Contains("tied to 'text_decoder.bert.embeddings.word_embeddings.weight'"));
        Assert.True(Same(model.text_decoder.cls.predictions.decoder.weight!, model.text_decoder.bert.embeddings.word_embeddings.weight!));
    }

    [Fact]
    public void PositionEmbeddingsAreInterpolatedForAnotherImageSize()
    {
        string dir = FolderOf(nameof(BlipForImageTextRetrieval));
        using var cases = new FixtureCases(dir);
        var config = BlipConfig.FromPretrained(dir);
        int size = config.VisionConfig.ImageSize * 2;
        var log = new List<string>();
        using var model = BlipCheckpoint.LoadForImageTextRetrieval(dir, new BlipLoadOptions { ImageSize = size, Log = log.Add });
        int grid = size / config.VisionConfig.PatchSize;
        Assert.Equal(new long[] { 1, grid * grid + 1, config.VisionConfig.HiddenSize }, model.vision_model.embeddings.position_embedding.shape);
        Assert.Contains(log, l => l.Contains("interpolated from"));
        using var _ = no_grad();
        using var pixels = nn.functional.interpolate(cases.Tensor("pixel_values"), [size, size], mode: InterpolationMode.Bilinear);
        using var states = model.EncodeImage(pixels);
        Assert.Equal(grid * grid + 1, states.shape[1]);
    }

    [Fact]
    public void InterpolationKeepsTheClassTokenAndIsIdentityAtTheSameGrid()
    {
        using var _ = no_grad();
        var pos = randn(1, 1 + 4 * 4, 8);
        using var same = PositionEmbeddings.Interpolate(pos, 4, 4);
        Assert.True(Same(same, pos));
        using var bigger = PositionEmbeddings.Interpolate(pos, 8, 8);
        Assert.Equal(new long[] { 1, 65, 8 }, bigger.shape);
        Assert.True(Same(bigger[.., 0, ..], pos[.., 0, ..]));
        // A constant grid stays constant under bicubic resizing.
        var constant = cat([zeros(1, 1, 8), ones(1, 16, 8) * 3.0], 1);
        using var resized = PositionEmbeddings.Interpolate(constant, 6, 6);
        Assert.True((resized[.., 1.., ..] - 3.0).abs().max().item<float>() < 1e-5);
    }
}
