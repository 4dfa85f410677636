using System.Text.Json;
using BlipSharp.Processing;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Losses;
using BlipSharp.Training.Optimization;
using BlipSharp.Training.Pretraining;
using BlipSharp.Training.Retrieval;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Retrieval;

/// <summary>
/// Replays a retrieval fixture folder as salesforce/BLIP ran it: BLIP_Retrieval built from the pretraining checkpoint
/// its config.json names (<c>weights.file</c>), then the training iterations of train_retrieval.py (zero_grad; forward
/// with the recorded alpha, image ids and negatives; backward of ITC + ITM; one AdamW over all steps). Every value
/// the fixture records is kept under the fixture's name (original BLIP keys).
/// </summary>
public sealed class RetrievalReplay : IStepReplay, IDisposable
{
    public string Dir { get; }
    public string Name => Path.GetFileName(Dir);
    public FixtureCases Cases { get; }
    public List<string> LoadLog { get; } = [];
    public Dictionary<string, Tensor> Actual { get; } = new(StringComparer.Ordinal);
    public List<Dictionary<string, (double Sum, double L2, long Count)?>> GradStats { get; } = [];
    public List<Dictionary<string, (double Sum, double L2, long Count)>> StateStats { get; } = [];
    public List<IReadOnlyDictionary<string, double>> Logged { get; } = [];

    /// <summary>The fixture's step tensors that are inputs (fed, not produced).</summary>
    public static readonly string[] InputSuffixes = ["pixel_values", "idx", "text.input_ids", "text.attention_mask", "word_ids"];

    public RetrievalReplay(string dir)
    {
        Dir = dir;
        Cases = new FixtureCases(dir);
        var config = OriginalFixtures.PretrainingConfig(dir).ForRetrieval();
        using var model = OriginalBlipCheckpoint.LoadPretraining(OriginalFixtures.WeightsFile(dir), config, new OriginalLoadOptions { Log = LoadLog.Add });
        // cases.json eval_then_train: BLIP's evaluation ran on the freshly loaded model, before the training steps.
        Evaluate(model, config.VisionConfig.ImageSize);
        model.train();
        using var optimizer = BlipOptimizer.CreateAdamW(model.TrainableParameters(), OriginalFixtures.AdamW(dir));
        var task = new RetrievalTask(model);
        var parameters = model.NamedParametersWithAliases().GroupBy(p => p.Name).ToDictionary(g => g.Key, g => g.First().Parameter);

        var steps = StepReplayChecks.Steps(this);
        for (int k = 1; k <= steps.Count; k++)
        {
            var step = steps[k - 1];
            string p = $"step{k}.";
            Keep(p + "idx_queue_before", model.idx_queue!);
            Keep(p + "ptr_queue_before", model.queue_ptr);
            Keep(p + "temp_before", model.temp.reshape(1));
            Keep(p + "image_queue_before", model.image_queue);
            Keep(p + "text_queue_before", model.text_queue);

            task.Sampler = new FixedNegativeSampler(Longs(step.GetProperty("neg_image_idx")), Longs(step.GetProperty("neg_text_idx")));
            optimizer.zero_grad();
            using (NewDisposeScope())
            {
                var ids = Cases.Tensor(p + "idx");
                var idQueueBefore = model.idx_queue!.clone();
                var imageQueueBefore = model.image_queue.clone();
                var textQueueBefore = model.text_queue.clone();
                var batch = new RetrievalBatch(Cases.Tensor(p + "pixel_values"), Cases.Tensor(p + "text.input_ids"), Cases.Tensor(p + "text.attention_mask"), ids);
                var losses = task.Step(batch, step.GetProperty("alpha").GetDouble());
                Logged.Add(losses.ToLogValues());
                Keep(p + "temp_used", model.temp.reshape(1));
                RecordForward(p, losses, ids, idQueueBefore, imageQueueBefore, textQueueBefore);
                losses.Total.backward();
                RecordGradients(p, step, parameters);
                optimizer.step();
            }
            RecordState(p, step, model);
        }
    }

    /// <summary>Batch sizes that do not divide the fixture's counts, so every chunking path runs.</summary>
    public static RetrievalEvaluatorOptions EvalOptions(int kTest) => new() { KTest = kTest, ImageBatchSize = 3, TextBatchSize = 5, ItmBatchSize = 4 };

    private void Evaluate(BlipPretrainingModel model, int imageSize)
    {
        var eval = Cases.Json.GetProperty("cases").GetProperty("eval");
        var texts = eval.GetProperty("texts").EnumerateArray().Select(t => t.GetString()!).ToList();
        int imageCount = eval.GetProperty("img2txt").EnumerateObject().Count();
        var files = Cases.Json.GetProperty("images").EnumerateArray().Select(i => Path.Combine(Fixtures.BlipOriginalDir, i.GetProperty("file").GetString()!)).ToList();
        if (files.Count < imageCount) throw new InvalidDataException($"{Dir}/cases.json: {imageCount} evaluation images but {files.Count} image files");
        var processor = BlipImageProcessor.Create(new BlipImageProcessorOptions { Height = imageSize, Width = imageSize });
        using var pixels = processor.Preprocess(files.Take(imageCount));                                        // (N_img, 3, S, S)
        var tokenizer = BlipTokenizer.FromPretrained(Fixtures.HfModelDir("BlipForImageTextRetrieval"));
        var evaluator = new RetrievalEvaluator(model, EvalOptions(eval.GetProperty("k_test").GetInt32()));
        using var tokens = evaluator.Tokenize(tokenizer, texts);
        bool wasTraining = model.training;
        using var result = evaluator.Evaluate(imageCount, (start, count) => pixels.narrow(0, start, count), tokens.InputIds, tokens.AttentionMask);
        EvalTrainingModeRestored = model.training == wasTraining;
        Keep("eval.input_ids", tokens.InputIds);
        Keep("eval.attention_mask", tokens.AttentionMask);
        Keep("eval.text_feat", result.TextFeatures);
        Keep("eval.image_feat", result.ImageFeatures);
        using (NewDisposeScope())
        {
            model.eval();
            Keep("eval.image_embeds", evaluator.EncodeImages(pixels).Embeds);
            model.train(wasTraining);
            Keep("eval.itm_input_ids", evaluator.MatchingInputIds(tokens.InputIds));
            Keep("eval.sims_i2t", result.ImageFeatures.matmul(result.TextFeatures.t()));                     // (N_img, N_txt)
            Keep("eval.score_matrix_i2t", result.DenseImageToText());
            Keep("eval.score_matrix_t2i", result.DenseTextToImage());
        }
        foreach (var (prefix, candidates) in new[] { ("eval.i2t.", result.ImageToText), ("eval.t2i.", result.TextToImage) })
        {
            Keep(prefix + "topk_idx", candidates.Indices);
            Keep(prefix + "topk_sim", candidates.Similarities);
            Keep(prefix + "itm_score", candidates.MatchScores);
        }
    }

    /// <summary>Whether the evaluator left the model in the mode it found it in.</summary>
    public bool EvalTrainingModeRestored { get; private set; }

    private void RecordForward(string p, RetrievalLosses l, Tensor ids, Tensor idQueueBefore, Tensor imageQueueBefore, Tensor textQueueBefore)
    {
        var c = l.Contrastive;
        Keep(p + "image_embeds", l.Features.ImageEmbeds);
        Keep(p + "image_feat", l.Features.ImageFeatures);
        Keep(p + "text_feat", l.Features.TextFeatures);
        // BLIP's intermediate tensors that are plain concatenations of the loss inputs.
        Keep(p + "idx_all", cat([ids.view(1, -1), idQueueBefore.view(1, -1)], 1));                             // (1, B+Q)
        Keep(p + "pos_idx", l.Positives.gt(0).to_type(ScalarType.Float32));                                  // (B, B+Q)
        Keep(p + "sim_targets", l.Positives);
        Keep(p + "image_feat_m", l.Features.ImageFeaturesM);
        Keep(p + "text_feat_m", l.Features.TextFeaturesM);
        Keep(p + "image_feat_m_all", cat([l.Features.ImageFeaturesM.t(), imageQueueBefore], 1));             // (E, B+Q)
        Keep(p + "text_feat_m_all", cat([l.Features.TextFeaturesM.t(), textQueueBefore], 1));                // (E, B+Q)
        Keep(p + "sim_i2t_m", c.SimImageToTextM);
        Keep(p + "sim_t2i_m", c.SimTextToImageM);
        Keep(p + "sim_i2t_targets", c.TargetsImageToText);
        Keep(p + "sim_t2i_targets", c.TargetsTextToImage);
        Keep(p + "itc.sim_i2t", c.SimImageToText);
        Keep(p + "itc.sim_t2i", c.SimTextToImage);
        Keep(p + "itc.loss_i2t", c.LossImageToText);
        Keep(p + "itc.loss_t2i", c.LossTextToImage);
        Keep(p + "loss_ita", l.Itc);
        Keep(p + "encoder_input_ids", l.EncoderInputIds);
        Keep(p + "mask", l.SameImage);
        Keep(p + "itm.sim_i2t", l.MatchSimImageToText);
        Keep(p + "itm.sim_t2i", l.MatchSimTextToImage);
        Keep(p + "weights_t2i", l.Matching.WeightsTextToImage);
        Keep(p + "weights_i2t", l.Matching.WeightsImageToText);
        Keep(p + "neg_image_idx", l.Matching.Negatives.ImageIndices);
        Keep(p + "neg_text_idx", l.Matching.Negatives.TextIndices);
        Keep(p + "text_ids_all", cat([l.EncoderInputIds, l.EncoderInputIds.index_select(0, l.Matching.Negatives.TextIndices)], 0)); // (2B, T)
        Keep(p + "vl_output", l.Matching.Logits);
        Keep(p + "itm_labels", l.Matching.Labels);
        Keep(p + "loss_itm", l.Itm);
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
            stats[entry.Name] = grad is null ? null : StepReplayChecks.Stats(grad);
            string full = p + "grad." + entry.Name;
            if (grad is not null && Cases.Has(full)) Keep(full, grad);
        }
        if (stats.Count != parameters.Count)
            throw new InvalidOperationException($"{Name}: the fixture has gradient stats for {stats.Count} parameters, the model has {parameters.Count}");
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
            string ours = OriginalBlipKeyMap.Rename(entry.Name);
            if (!state.TryGetValue(ours, out var value))
                throw new InvalidOperationException($"{Name}: the fixture has state '{entry.Name}' but the model has no '{ours}'");
            stats[entry.Name] = StepReplayChecks.Stats(value);
            string full = p + "after." + entry.Name;
            if (Cases.Has(full)) Keep(full, value);
        }
        if (stats.Count != state.Count)
            throw new InvalidOperationException($"{Name}: the fixture has state stats for {stats.Count} entries (position_ids aside), the model has {state.Count}");
        StateStats.Add(stats);
        var wordIds = Cases.Tensor(p + "word_ids").to_type(ScalarType.Int64);
        Keep(p + "after.text_encoder.embeddings.word_embeddings.weight.rows", state["text_encoder.embeddings.word_embeddings.weight"].index_select(0, wordIds));
        Keep(p + "after.text_encoder_m.embeddings.word_embeddings.weight.rows", state["text_encoder_m.embeddings.word_embeddings.weight"].index_select(0, wordIds));
    }

    internal void Keep(string name, Tensor value)
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
