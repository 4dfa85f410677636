using System.Text.Json;
using BlipSharp.Checkpoints;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Pretraining;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Retrieval;

/// <summary>
/// BLIP_Retrieval's weights: a model built with <see cref="BlipPretrainingConfig.ForRetrieval"/> has exactly the
/// original BLIP_Retrieval state_dict (key_map.json), loads a pretraining checkpoint as blip_retrieval(pretrained=...)
/// does (decoder entries logged as unused, fresh id queue and pointer) and a retrieval checkpoint strictly.
/// </summary>
[Trait("Category", "Parity")]
public sealed class RetrievalCheckpointTests
{
    public static IEnumerable<object[]> Cases() => OriginalFixtures.RetrievalCaseNames();

    private static BlipPretrainingConfig Config(string dir) => OriginalFixtures.PretrainingConfig(dir).ForRetrieval();

    /// <summary>The original keys of the model written from <paramref name="dir"/> (key_map.json, entry whose folder is the case folder).</summary>
    private static List<(string Key, long[] Shape)> OriginalKeys(string dir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Fixtures.BlipOriginalDir, "key_map.json")));
        foreach (var model in doc.RootElement.GetProperty("models").EnumerateObject())
        {
            if (model.Value.GetProperty("folder").GetString() != Path.GetFileName(dir)) continue;
            return model.Value.GetProperty("original_keys").EnumerateArray()
                .Select(e => (e.GetProperty("key").GetString()!, e.GetProperty("shape").EnumerateArray().Select(s => s.GetInt64()).ToArray()))
                .ToList();
        }
        throw new InvalidOperationException($"{Fixtures.BlipOriginalDir}/key_map.json has no model for folder '{Path.GetFileName(dir)}'");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void StateDictKeysAreBlipRetrievalsAndThePretrainingCheckpointLoadsAsBlipDoes(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        var log = new List<string>();
        using var model = OriginalBlipCheckpoint.LoadPretraining(OriginalFixtures.WeightsFile(dir), Config(dir), new OriginalLoadOptions { Log = log.Add });
        var state = model.state_dict();
        var expected = OriginalKeys(dir).Where(k => !OriginalBlipKeyMap.IsPositionIds(k.Key)).ToList();
        Assert.Equal(expected.Select(k => OriginalBlipKeyMap.Rename(k.Key)).Order(StringComparer.Ordinal), state.Keys.Order(StringComparer.Ordinal));
        foreach (var (key, shape) in expected)
            Assert.True(shape.SequenceEqual(state[OriginalBlipKeyMap.Rename(key)].shape), $"{name}: '{key}' shape");
        Assert.Null(model.text_decoder);
        Assert.Empty(model.SharedParameterNames);
        Assert.True(model.idx_queue!.eq(-100).all().ToBoolean());
        Assert.Equal(0L, model.queue_ptr.ToInt64());
        Assert.Contains(log, l => l.Contains("text_decoder.* entries not used by this model", StringComparison.Ordinal));

        var original = TorchCheckpoint.LoadStateDict(OriginalFixtures.WeightsFile(dir));
        try
        {
            foreach (var (key, _) in expected.Where(k => k.Key is not ("idx_queue" or "ptr_queue")))
                Assert.True(original[key].eq(state[OriginalBlipKeyMap.Rename(key)]).all().ToBoolean(), $"{name}: '{key}' differs from the checkpoint");
        }
        finally
        {
            foreach (var t in original.Values) t.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ARetrievalCheckpointLoadsStrictlyWithItsIdQueueAndPointer(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        var original = RetrievalCheckpoint(dir);
        try
        {
            using var model = new BlipPretrainingModel(Config(dir));
            OriginalBlipCheckpoint.LoadInto(model, original, "retrieval.pth");
            Assert.Equal(original["idx_queue"].data<long>().ToArray(), model.idx_queue!.data<long>().ToArray());
            Assert.Equal(original["ptr_queue"].ToInt64(), model.queue_ptr.ToInt64());
            Assert.True(original["text_queue"].eq(model.text_queue).all().ToBoolean());

            // Strict: a missing entry and a mis-shaped entry are errors naming the key.
            var missing = new Dictionary<string, Tensor>(original);
            missing.Remove("itm_head.bias");
            using (var m = new BlipPretrainingModel(Config(dir)))
                Assert.Contains("itm_head.bias", Assert.Throws<CheckpointFormatException>(() => OriginalBlipCheckpoint.LoadInto(m, missing, "retrieval.pth")).Message);
            using var wrong = zeros(1, 3, dtype: ScalarType.Int64);
            var misShaped = new Dictionary<string, Tensor>(original) { ["idx_queue"] = wrong };
            using (var m = new BlipPretrainingModel(Config(dir)))
                Assert.Contains("idx_queue", Assert.Throws<CheckpointFormatException>(() => OriginalBlipCheckpoint.LoadInto(m, misShaped, "retrieval.pth")).Message);
        }
        finally
        {
            foreach (var t in original.Values) t.Dispose();
        }
    }

    /// <summary>
    /// A checkpoint in BLIP_Retrieval's own layout (what train_retrieval.py saves): the pretraining entries without
    /// the decoder, <c>ptr_queue</c> instead of <c>queue_ptr</c>, and a filled <c>idx_queue</c>.
    /// </summary>
    private static Dictionary<string, Tensor> RetrievalCheckpoint(string dir)
    {
        var pretrain = TorchCheckpoint.LoadStateDict(OriginalFixtures.WeightsFile(dir));
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (key, value) in pretrain)
        {
            if (key.StartsWith("text_decoder.", StringComparison.Ordinal) || key == "queue_ptr") value.Dispose();
            else result[key] = value;
        }
        long q = result["image_queue"].shape[1];
        result["idx_queue"] = arange(q, dtype: ScalarType.Int64).add(7).view(1, q);  // (1, Q)
        result["ptr_queue"] = tensor(new long[] { q / 2 });
        return result;
    }
}
