using System.Text.Json;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Losses;
using BlipSharp.Training.Optimization;
using BlipSharp.Training.Pretraining;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Pretraining;

/// <summary>
/// Replays a pretrain fixture folder's training steps the way BLIP's pretrain.py runs them (zero_grad; forward with
/// the recorded alpha and negatives; backward of the sum; AdamW step), starting from its model.pth loaded through
/// the key map, and keeps every value the fixture records under the fixture's names (original BLIP keys).
/// </summary>
public sealed class PretrainReplay : IStepReplay, IDisposable
{
    public string Dir { get; }
    public string Name => Path.GetFileName(Dir);
    public FixtureCases Cases { get; }
    public List<string> LoadLog { get; } = [];

    /// <summary>Our values under the fixture's tensor names (step{k}.*).</summary>
    public Dictionary<string, Tensor> Actual { get; } = new(StringComparer.Ordinal);

    /// <summary>Per step: [sum, L2] of every parameter's gradient under its original key (null: no gradient).</summary>
    public List<Dictionary<string, (double Sum, double L2, long Count)?>> GradStats { get; } = [];

    /// <summary>Per step: [sum, L2] of every state_dict entry after the step, under its original key.</summary>
    public List<Dictionary<string, (double Sum, double L2, long Count)>> StateStats { get; } = [];

    /// <summary>Per step: the losses as logged.</summary>
    public List<IReadOnlyDictionary<string, double>> Logged { get; } = [];

    public PretrainReplay(string dir)
    {
        Dir = dir;
        Cases = new FixtureCases(dir);
        var config = OriginalFixtures.PretrainingConfig(dir);
        using var model = OriginalBlipCheckpoint.LoadPretraining(Path.Combine(dir, "model.pth"), config, new OriginalLoadOptions { Log = LoadLog.Add });
        model.train();
        using var optimizer = BlipOptimizer.CreateAdamW(model.TrainableParameters(), OriginalFixtures.AdamW(dir));
        var task = new PretrainingTask(model);
        var parameters = model.NamedParametersWithAliases().GroupBy(p => p.Name).ToDictionary(g => g.Key, g => g.First().Parameter);

        var steps = Cases.Json.GetProperty("cases").GetProperty("steps").EnumerateArray().ToList();
        for (int k = 1; k <= steps.Count; k++)
        {
            var step = steps[k - 1];
            string p = $"step{k}.";
            Keep(p + "queue_before.image_queue", model.image_queue);
            Keep(p + "queue_before.text_queue", model.text_queue);
            Keep(p + "queue_before.queue_ptr", model.queue_ptr);
            Keep(p + "temp_before", model.temp.reshape(1));

            task.Sampler = new FixedNegativeSampler(Longs(step.GetProperty("neg_image_idx")), Longs(step.GetProperty("neg_text_idx")));
            optimizer.zero_grad();
            using (NewDisposeScope())
            {
                var batch = new PretrainingBatch(Cases.Tensor(p + "pixel_values"), Cases.Tensor(p + "text.input_ids"), Cases.Tensor(p + "text.attention_mask"));
                var losses = task.Step(batch, step.GetProperty("alpha").GetDouble());
                Logged.Add(losses.ToLogValues());
                Keep(p + "temp_used", model.temp.reshape(1));
                RecordForward(p, losses);
                losses.Total.backward();
                RecordGradients(p, step, parameters);
                optimizer.step();
            }
            RecordState(p, step, model);
        }
    }

    private void RecordForward(string p, PretrainingLosses l)
    {
        var c = l.Contrastive;
        Keep(p + "image_embeds", l.Features.ImageEmbeds);
        Keep(p + "image_feat", l.Features.ImageFeatures);
        Keep(p + "text_feat", l.Features.TextFeatures);
        Keep(p + "image_feat_m", l.Features.ImageFeaturesM);
        Keep(p + "text_feat_m", l.Features.TextFeaturesM);
        Keep(p + "sim_i2t_m", c.SimImageToTextM);
        Keep(p + "sim_t2i_m", c.SimTextToImageM);
        Keep(p + "sim_i2t_targets", c.TargetsImageToText);
        Keep(p + "sim_t2i_targets", c.TargetsTextToImage);
        Keep(p + "sim_i2t", c.SimImageToText);
        Keep(p + "sim_t2i", c.SimTextToImage);
        Keep(p + "loss_i2t", c.LossImageToText);
        Keep(p + "loss_t2i", c.LossTextToImage);
        Keep(p + "loss_ita", l.Itc);
        Keep(p + "weights_t2i", l.Matching.WeightsTextToImage);
        Keep(p + "weights_i2t", l.Matching.WeightsImageToText);
        Keep(p + "neg_image_idx", l.Matching.Negatives.ImageIndices);
        Keep(p + "neg_text_idx", l.Matching.Negatives.TextIndices);
        Keep(p + "vl_output", l.Matching.Logits);
        Keep(p + "itm_labels", l.Matching.Labels);
        Keep(p + "loss_itm", l.Itm);
        Keep(p + "lm.per_token_loss", l.LanguageModeling.PerToken);
        Keep(p + "loss_lm", l.Lm);
        Keep(p + "loss", l.Total.reshape(1));
    }

    private void RecordGradients(string p, JsonElement step, Dictionary<string, Parameter> parameters)
    {
        var stats = new Dictionary<string, (double, double, long)?>(StringComparer.Ordinal);
        foreach (var entry in step.GetProperty("grad_stats_sum_l2").EnumerateObject())
        {
            string ours = OriginalBlipKeyMap.Rename(entry.Name);
            if (!parameters.TryGetValue(ours, out var parameter))
                throw new InvalidOperationException($"{Name}: the fixture has a gradient for '{entry.Name}' but the model has no parameter '{ours}'");
            var grad = parameter.grad;
            stats[entry.Name] = grad is null ? null : Stats(grad);
            string full = p + "grad." + entry.Name;
            if (grad is not null && Cases.Has(full)) Keep(full, grad);
        }
        GradStats.Add(stats);
        var wordIds = Cases.Tensor(p + "word_ids").to_type(ScalarType.Int64);
        var wordGrad = parameters["text_encoder.embeddings.word_embeddings.weight"].grad;
        if (wordGrad is not null) Keep(p + "grad.text_encoder.embeddings.word_embeddings.weight.rows", wordGrad.index_select(0, wordIds));
    }

    private void RecordState(string p, JsonElement step, BlipPretrainingModel model)
    {
        var state = model.state_dict();
        var stats = new Dictionary<string, (double, double, long)>(StringComparer.Ordinal);
        foreach (var entry in step.GetProperty("state_stats_after_sum_l2").EnumerateObject())
        {
            if (OriginalBlipKeyMap.IsPositionIds(entry.Name)) continue; // not stored here (checked to be arange when loading)
            string ours = entry.Name == OriginalBlipKeyMap.DecoderBiasAlias ? OriginalBlipKeyMap.DecoderBias : OriginalBlipKeyMap.Rename(entry.Name);
            if (!state.TryGetValue(ours, out var value))
                throw new InvalidOperationException($"{Name}: the fixture has state '{entry.Name}' but the model has no '{ours}'");
            stats[entry.Name] = Stats(value);
            string full = p + "after." + entry.Name;
            if (Cases.Has(full)) Keep(full, value);
        }
        StateStats.Add(stats);
        var wordIds = Cases.Tensor(p + "word_ids").to_type(ScalarType.Int64);
        Keep(p + "after.text_encoder.embeddings.word_embeddings.weight.rows", state["text_encoder.embeddings.word_embeddings.weight"].index_select(0, wordIds));
        Keep(p + "after.text_encoder_m.embeddings.word_embeddings.weight.rows", state["text_encoder_m.embeddings.word_embeddings.weight"].index_select(0, wordIds));
        Keep(p + "after.image_queue", model.image_queue);
        Keep(p + "after.text_queue", model.text_queue);
        Keep(p + "after.queue_ptr", model.queue_ptr);
    }

    private static (double, double, long) Stats(Tensor t)
    {
        using var scope = NewDisposeScope();
        var d = t.detach().to_type(ScalarType.Float64);
        return (d.sum().ToDouble(), d.square().sum().sqrt().ToDouble(), t.numel());
    }

    private void Keep(string name, Tensor value)
    {
        if (Actual.Remove(name, out var old)) old.Dispose();
        Actual[name] = value.detach().clone().DetachFromDisposeScope();
    }

    private static long[] Longs(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt64()).ToArray();

    public void Dispose()
    {
        foreach (var t in Actual.Values) t.Dispose();
        Cases.Dispose();
    }
}
