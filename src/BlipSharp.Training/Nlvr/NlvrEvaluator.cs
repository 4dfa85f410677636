using BlipSharp.Modeling;
using BlipSharp.Processing;
using BlipSharp.Training.Data;
using BlipSharp.Training.Finetuning;
using static TorchSharp.torch;

namespace BlipSharp.Training.Nlvr;

/// <summary>The model's verdict on one statement.</summary>
/// <param name="Index">The statement's position in the evaluated list (the record order of the annotation file).</param>
/// <param name="Example">The statement as the model read it.</param>
/// <param name="Prediction">The predicted label: true when the True logit is the larger (a tie is False, as BLIP's <c>max(1)</c>).</param>
/// <param name="TrueProbability">softmax(logits)[True].</param>
public sealed record NlvrPrediction(int Index, NlvrExample Example, bool Prediction, double TrueProbability)
{
    /// <summary>The statement's label.</summary>
    public bool Label => Example.Target == 1;

    /// <summary>The prediction equals the label.</summary>
    public bool Correct => Prediction == Label;
}

/// <summary>The predictions on a list of statements and their accuracy.</summary>
/// <param name="Predictions">One per statement, in order.</param>
public sealed record NlvrEvaluationResult(IReadOnlyList<NlvrPrediction> Predictions)
{
    /// <summary>Statements evaluated.</summary>
    public int Total => Predictions.Count;

    /// <summary>Statements predicted right.</summary>
    public int Correct => Predictions.Count(p => p.Correct);

    /// <summary>Statements predicted true.</summary>
    public int PredictedTrue => Predictions.Count(p => p.Prediction);

    /// <summary>Statements whose label is true.</summary>
    public int LabelTrue => Predictions.Count(p => p.Label);

    /// <summary>The share predicted right, in percent (as the BLIP paper reports NLVR2; <c>train_nlvr.py</c> prints the fraction).</summary>
    public double AccuracyPercent => Total == 0 ? double.NaN : 100.0 * Correct / Total;
}

/// <summary>
/// Scores a <see cref="BlipForNlvr"/> on NLVR2 statements as BLIP's <c>train_nlvr.evaluate</c> does: each pair through
/// BLIP's test transform (bicubic resize to the model's image size, normalise), the sentence cleaned by
/// <c>pre_caption(sentence, max_words)</c> and tokenized with <c>padding='longest'</c>, the eval-mode logits, the
/// arg-max as the prediction. Unlike BLIP (whose NLVR dataset swaps pairs at random in every split) nothing is swapped,
/// so the score is deterministic.
/// </summary>
public static class NlvrEvaluator
{
    /// <summary>Evaluates <paramref name="model"/> on <paramref name="items"/>.</summary>
    /// <param name="model">The model (set to eval mode here; its dtype is used for the pixels).</param>
    /// <param name="tokenizer">The tokenizer.</param>
    /// <param name="items">The statements.</param>
    /// <param name="maxWords">The <c>max_words</c> of <c>pre_caption</c> (BLIP: 40).</param>
    /// <param name="batchSize">Statements per forward (BLIP: 64).</param>
    /// <param name="progress">Receives (done, total) statements after each batch.</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    public static NlvrEvaluationResult Evaluate(BlipForNlvr model, BlipTokenizer tokenizer, IReadOnlyList<NlvrItem> items, int maxWords, int batchSize,
        IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(items);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var transform = new BlipEvalTransform(model.Config.Blip.VisionConfig.ImageSize);
        var textOptions = NlvrBatches.TextOptions(model.Config.Blip.TextConfig.MaxPositionEmbeddings);
        var dtype = model.cls_head.parameters().First().dtype;
        var predictions = new List<NlvrPrediction>(items.Count);
        const string Stage = "classifying statements";
        progress?.Report(new EvaluationProgress(Stage, 0, items.Count, "statements"));
        model.eval();
        using var inference = inference_mode();
        for (int from = 0; from < items.Count; from += batchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var examples = items.Skip(from).Take(batchSize).Select(i => NlvrExamples.ForEvaluation(i, maxWords)).ToList();
            using var scope = NewDisposeScope();
            using var batch = NlvrBatches.Build(examples, transform, _ => new Random(0), tokenizer, textOptions, new(0, from / batchSize));
            using var pixels0 = batch.Batch.PixelValues0.to_type(dtype);                                   // (B, 3, S, S)
            using var pixels1 = batch.Batch.PixelValues1.to_type(dtype);                                   // (B, 3, S, S)
            using var output = model.Forward(pixels0, pixels1, batch.Batch.InputIds, batch.Batch.AttentionMask);
            using var logits = output.Logits.to_type(ScalarType.Float32);                                  // (B, 2)
            using var predicted = BlipForNlvr.Predictions(logits);                                         // (B)
            using var probabilities = nn.functional.softmax(logits, 1);                                    // (B, 2)
            var labels = predicted.data<long>().ToArray();
            using var truth = probabilities.select(1, 1).contiguous();                                     // (B)
            var trueProbability = truth.data<float>().ToArray();
            for (int i = 0; i < examples.Count; i++)
                predictions.Add(new NlvrPrediction(from + i, examples[i], labels[i] == 1, trueProbability[i]));
            progress?.Report(new EvaluationProgress(Stage, predictions.Count, items.Count, "statements"));
        }
        return new NlvrEvaluationResult(predictions);
    }
}
