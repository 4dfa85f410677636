using System.Text.Json;
using BlipSharp.Checkpoints;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Pretraining;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Pretraining;

/// <summary>
/// Loading salesforce/BLIP checkpoints: every pretrain fixture's model.pth loads strictly through the key map, with
/// the values of its safetensors copy and the tied aliases re-created as shared Parameters; damaged checkpoints
/// fail naming the key; the ViT position embeddings are interpolated as BLIP's interpolate_pos_embed does.
/// </summary>
[Trait("Category", "Parity")]
public sealed class PretrainCheckpointTests
{
    public static IEnumerable<object[]> Cases() => OriginalFixtures.PretrainCaseNames();

    private static string Pth(string dir) => Path.Combine(dir, "model.pth");

    [Theory]
    [MemberData(nameof(Cases))]
    public void PthLoadsStrictlyWithTheSafetensorsValues(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        var log = new List<string>();
        using var model = OriginalBlipCheckpoint.LoadPretraining(Pth(dir), OriginalFixtures.PretrainingConfig(dir), new OriginalLoadOptions { Log = log.Add });
        var header = SafeTensors.ReadHeader(Path.Combine(dir, "model.safetensors"));
        var order = JsonSerializer.Deserialize<string[]>(header.Metadata["state_dict_order"])!;
        var aliases = JsonSerializer.Deserialize<Dictionary<string, string>>(header.Metadata["tied_aliases"])!;
        var reference = SafeTensors.Load(Path.Combine(dir, "model.safetensors"));
        try
        {
            var state = model.state_dict();
            var expectedKeys = new HashSet<string>(StringComparer.Ordinal);
            foreach (string key in order)
            {
                if (OriginalBlipKeyMap.IsPositionIds(key)) continue;
                string ours = key == OriginalBlipKeyMap.DecoderBiasAlias ? OriginalBlipKeyMap.DecoderBias : OriginalBlipKeyMap.Rename(key);
                expectedKeys.Add(ours);
                Assert.True(state.ContainsKey(ours), $"{name}: '{key}' maps to '{ours}', which the model lacks");
                var expected = reference[aliases.GetValueOrDefault(key, key)];
                Assert.True(expected.shape.SequenceEqual(state[ours].shape), $"{name}: '{ours}' shape");
                Assert.True(expected.eq(state[ours]).all().ToBoolean(), $"{name}: '{ours}' differs from '{key}' of the checkpoint");
            }
            Assert.Equal(expectedKeys.Order(StringComparer.Ordinal), state.Keys.Order(StringComparer.Ordinal));
            Assert.Contains(log, l => l.Contains("position_ids", StringComparison.Ordinal));
            Assert.Contains(log, l => l.Contains(OriginalBlipKeyMap.DecoderBiasAlias, StringComparison.Ordinal));
        }
        finally
        {
            foreach (var t in reference.Values) t.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TiedAliasesAreOneParameterAndTheMomentumCopiesAreFrozen(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        using var model = OriginalBlipCheckpoint.LoadPretraining(Pth(dir), OriginalFixtures.PretrainingConfig(dir));
        using var config = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "config.json")));
        var byName = model.NamedParametersWithAliases().ToDictionary(p => p.Name, p => p.Parameter);
        int tied = 0;
        foreach (var alias in config.RootElement.GetProperty("tied_aliases_in_state_dict").EnumerateObject())
        {
            if (alias.Name == OriginalBlipKeyMap.DecoderBiasAlias) continue; // no key of its own here: it is cls.predictions.bias
            string a = OriginalBlipKeyMap.Rename(alias.Name), b = OriginalBlipKeyMap.Rename(alias.Value.GetString()!);
            Assert.True(ReferenceEquals(byName[a], byName[b]), $"{name}: '{a}' and '{b}' must be one Parameter");
            Assert.Equal(b, model.SharedParameterNames[a]);
            tied++;
        }
        Assert.Equal(tied, model.SharedParameterNames.Count);
        Assert.All(byName.Where(p => p.Key.Split('.')[0].EndsWith("_m", StringComparison.Ordinal)), p => Assert.False(p.Value.requires_grad, p.Key));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void DamagedCheckpointsFailNamingTheKey(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        var config = OriginalFixtures.PretrainingConfig(dir);
        var original = TorchCheckpoint.LoadStateDict(Pth(dir));
        try
        {
            using var model = new BlipPretrainingModel(config);
            void Expect(Dictionary<string, Tensor> weights, params string[] fragments)
            {
                var e = Assert.ThrowsAny<CheckpointFormatException>(() => OriginalBlipCheckpoint.LoadInto(model, weights, "damaged.pth"));
                foreach (string f in fragments) Assert.Contains(f, e.Message);
            }

            var missing = new Dictionary<string, Tensor>(original);
            missing.Remove("visual_encoder.blocks.0.attn.proj.weight");
            Expect(missing, "vision_model.encoder.layers.0.self_attn.projection.weight", "missing");

            var extra = new Dictionary<string, Tensor>(original) { ["visual_encoder.head.weight"] = zeros(2, 2) };
            Expect(extra, "visual_encoder.head.weight", "unexpected");

            using var changed = original["text_decoder.bert.encoder.layer.0.output.dense.weight"].clone().add_(1);
            var untied = new Dictionary<string, Tensor>(original) { ["text_decoder.bert.encoder.layer.0.output.dense.weight"] = changed };
            Expect(untied, "text_decoder.bert.encoder.layer.0.output.dense.weight", "text_encoder.encoder.layer.0.output.dense.weight");

            using var shifted = original["text_encoder.embeddings.position_ids"].add(1);
            var positions = new Dictionary<string, Tensor>(original) { ["text_encoder.embeddings.position_ids"] = shifted };
            Expect(positions, "text_encoder.embeddings.position_ids", "arange");
        }
        finally
        {
            foreach (var t in original.Values) t.Dispose();
        }
    }

    [Fact]
    public void PositionEmbeddingsAreInterpolatedToTheTrainingResolutionAsBlipDoes()
    {
        foreach (string captionDir in OriginalFixtures.CaseDirs("models.blip.BLIP_Decoder"))
        {
            using var cases = new FixtureCases(captionDir);
            using var weightsInfo = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(captionDir, "config.json")));
            string pth = Path.GetFullPath(Path.Combine(captionDir, weightsInfo.RootElement.GetProperty("weights").GetProperty("file").GetString()!));
            string pretrainDir = Path.GetDirectoryName(pth)!;
            var expected = cases.Tensor("interpolate_pos_embed.output");                   // (1, 1+G*G, D)
            int grid = (int)Math.Round(Math.Sqrt(expected.shape[1] - 1));
            var config = OriginalFixtures.PretrainingConfig(pretrainDir);
            config = config with { VisionConfig = config.VisionConfig with { ImageSize = grid * config.VisionConfig.PatchSize } };
            var log = new List<string>();
            using var model = OriginalBlipCheckpoint.LoadPretraining(pth, config, new OriginalLoadOptions { Log = log.Add });
            FixtureModels.Check(cases, "interpolate_pos_embed.output", model.vision_model.embeddings.position_embedding);
            // The momentum ViT's position embeddings go through the same step.
            var original = TorchCheckpoint.LoadStateDict(pth);
            try
            {
                using var momentum = BlipSharp.Modeling.Vision.PositionEmbeddings.Interpolate(original["visual_encoder_m.pos_embed"], grid, grid);
                TensorAssert.Close(momentum, model.vision_model_m.embeddings.position_embedding, 0, "vision_model_m position embedding");
                TensorAssert.Close(original["visual_encoder.pos_embed"], cases.Tensor("interpolate_pos_embed.input"), 0, "interpolate_pos_embed.input");
            }
            finally
            {
                foreach (var t in original.Values) t.Dispose();
            }
            Assert.Equal(2, log.Count(l => l.Contains("interpolated", StringComparison.Ordinal)));
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void AnIdQueueModelStartsWithAnEmptyIdQueueAsBlipRetrievalDoes(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        var config = OriginalFixtures.PretrainingConfig(dir) with { IdQueue = true };
        var log = new List<string>();
        using var model = OriginalBlipCheckpoint.LoadPretraining(Pth(dir), config, new OriginalLoadOptions { Log = log.Add });
        using var cases = new FixtureCases(dir);
        Assert.True(model.idx_queue!.eq(-100).all().ToBoolean());
        Assert.Equal(0, model.queue_ptr.ToInt64());
        TensorAssert.Close(cases.Tensor("step1.queue_before.image_queue"), model.image_queue, 0, "image_queue");
        Assert.Contains(log, l => l.Contains("idx_queue", StringComparison.Ordinal));

        using var reset = OriginalBlipCheckpoint.LoadPretraining(Pth(dir), OriginalFixtures.PretrainingConfig(dir), new OriginalLoadOptions { ResetQueues = true });
        Assert.False(reset.image_queue.eq(cases.Tensor("step1.queue_before.image_queue")).all().ToBoolean());
        Assert.Equal(1.0, reset.image_queue.norm(0).mean().ToDouble(), 5);
    }

    [Fact]
    public void TheKeyMapRenamesTheVitAsTransformersConverterDoes()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Fixtures.BlipOriginalDir, "key_map.json")));
        int compared = 0;
        foreach (var model in doc.RootElement.GetProperty("models").EnumerateObject())
        {
            if (!model.Value.TryGetProperty("to_hf", out var toHf)) continue;
            foreach (var entry in toHf.EnumerateArray())
            {
                string original = entry.GetProperty("original").GetString()!;
                if (entry.GetProperty("status").GetString() != "ok" || original.Contains("_m.", StringComparison.Ordinal)) continue;
                Assert.Equal(entry.GetProperty("hf").GetString(), OriginalBlipKeyMap.Rename(original));
                compared++;
            }
        }
        Assert.True(compared > 0, "key_map.json has no to_hf entries");
        // The momentum ViT stays apart (transformers' converter would put it under vision_model.encoder_m).
        Assert.Equal("vision_model_m.encoder.layers.3.self_attn.qkv.bias", OriginalBlipKeyMap.Rename("visual_encoder_m.blocks.3.attn.qkv.bias"));
        Assert.Equal("queue_ptr", OriginalBlipKeyMap.Rename("ptr_queue"));
        Assert.True(OriginalBlipKeyMap.IsPositionIds("text_decoder.bert.embeddings.position_ids"));
    }
}
