using BlipSharp.Processing;
using BlipSharp.Training.Data;
using BlipSharp.Training.Finetuning;
using BlipSharp.Training.Training;
using static TorchSharp.torch;

namespace BlipSharp.Training.Nlvr;

/// <summary>
/// A built NLVR2 batch that owns its tensors (<see cref="Batch"/>), with the examples it holds and where it is in the
/// training stream.
/// </summary>
public sealed class NlvrSampleBatch : IDisposable
{
    /// <summary>Takes ownership of the tensors of <paramref name="batch"/>.</summary>
    /// <param name="batch">The tensors.</param>
    /// <param name="examples">The examples, in batch order.</param>
    /// <param name="position">The batch's position in the stream.</param>
    public NlvrSampleBatch(NlvrBatch batch, IReadOnlyList<NlvrExample> examples, LoaderPosition position)
    {
        Batch = batch ?? throw new ArgumentNullException(nameof(batch));
        Examples = examples ?? throw new ArgumentNullException(nameof(examples));
        Position = position;
    }

    /// <summary>The tensors the model reads.</summary>
    public NlvrBatch Batch { get; }

    /// <summary>The examples, in batch order (sentences as tokenized, swaps).</summary>
    public IReadOnlyList<NlvrExample> Examples { get; }

    /// <summary>The (epoch, batch) position; for evaluation batches, epoch 0 and the batch number.</summary>
    public LoaderPosition Position { get; }

    /// <summary>Samples in the batch.</summary>
    public int Count => Examples.Count;

    /// <summary>Disposes the tensors.</summary>
    public void Dispose()
    {
        Batch.PixelValues0.Dispose();
        Batch.PixelValues1.Dispose();
        Batch.InputIds.Dispose();
        Batch.AttentionMask.Dispose();
        Batch.Targets.Dispose();
    }
}

/// <summary>
/// Builds NLVR2 batches: both images of every example through an image transform, the sentences tokenized as
/// BLIP_NLVR does (<c>padding='longest'</c>; cut at the text model's position limit), targets as int64.
/// </summary>
public static class NlvrBatches
{
    /// <summary>The tokenizer settings of BLIP_NLVR's forward (<c>padding='longest'</c>), cut at <paramref name="maxLength"/> tokens.</summary>
    /// <param name="maxLength">The text model's <c>max_position_embeddings</c>.</param>
    public static TokenizerEncodeOptions TextOptions(int maxLength) =>
        new() { Padding = PaddingStrategy.Longest, Truncation = true, MaxLength = maxLength };

    /// <summary>
    /// The training batches of a recipe: a <see cref="SampleBatchSource{TBatch}"/> over <paramref name="items"/> (a
    /// seeded permutation per epoch, <c>data.batch_size</c>, the last incomplete batch dropped), each example made by
    /// <see cref="NlvrExamples.ForTraining"/> (the random swap) with <c>data.max_words</c>, its images through
    /// BLIP's fine-tuning train transform (<see cref="TrainingData.TrainTransform"/>). Every random choice derives from
    /// the batch seed and the example's slot in the batch.
    /// </summary>
    /// <param name="items">The training statements.</param>
    /// <param name="data">The recipe's <c>data</c> section.</param>
    /// <param name="seed">The recipe's seed.</param>
    /// <param name="tokenizer">The tokenizer.</param>
    /// <param name="textOptions">How sentences are tokenized (<see cref="TextOptions"/>).</param>
    public static SampleBatchSource<NlvrSampleBatch> TrainingSource(IReadOnlyList<NlvrItem> items, DataConfig data, long seed, BlipTokenizer tokenizer,
        TokenizerEncodeOptions textOptions)
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(tokenizer);
        var transform = TrainingData.TrainTransform(data);
        int maxWords = data.MaxWords;
        return new SampleBatchSource<NlvrSampleBatch>(items.Count, data.BatchSize, seed,
            (request, _) => Build(TrainingExamples(items, request, maxWords), transform, slot => ImageRandom(request.Seed, slot), tokenizer, textOptions, request.Position),
            batch => batch.Count, batch => batch.Position, Math.Max(1, data.Prefetch));
    }

    /// <summary>The examples of a training batch: <see cref="NlvrExamples.ForTraining"/> with a random source per slot.</summary>
    /// <param name="items">The training statements.</param>
    /// <param name="request">The batch.</param>
    /// <param name="maxWords">The <c>max_words</c> of <c>pre_caption</c>.</param>
    public static IReadOnlyList<NlvrExample> TrainingExamples(IReadOnlyList<NlvrItem> items, SampleBatchRequest request, int maxWords)
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(request);
        var examples = new NlvrExample[request.Indices.Count];
        for (int slot = 0; slot < examples.Length; slot++)
            examples[slot] = NlvrExamples.ForTraining(items[request.Indices[slot]], maxWords, SeededRandom.Create(request.Seed, slot, 0, 2));
        return examples;
    }

    /// <summary>
    /// Builds one batch: pixels (B, 3, S, S) of the first and of the second images, token ids and mask (B, T),
    /// targets (B). An image that cannot be read is an error naming the annotation file, the record and the image.
    /// </summary>
    /// <param name="examples">The examples, in batch order.</param>
    /// <param name="transform">The image transform (train or eval).</param>
    /// <param name="random">The random source of the images of slot i (both images of a slot share it, first image first).</param>
    /// <param name="tokenizer">The tokenizer.</param>
    /// <param name="textOptions">How sentences are tokenized.</param>
    /// <param name="position">The batch's position.</param>
    /// <exception cref="InvalidDataException">An image cannot be read.</exception>
    public static NlvrSampleBatch Build(IReadOnlyList<NlvrExample> examples, IImageTransform transform, Func<int, Random> random, BlipTokenizer tokenizer,
        TokenizerEncodeOptions textOptions, LoaderPosition position)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(transform);
        ArgumentNullException.ThrowIfNull(random);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (examples.Count == 0) throw new ArgumentException("a batch needs at least one example", nameof(examples));
        int b = examples.Count, s = transform.OutputSize, size = 3 * s * s;
        var first = new float[b * size];
        var second = new float[b * size];
        var targets = new long[b];
        for (int i = 0; i < b; i++)
        {
            var example = examples[i];
            var rng = random(i);
            transform.Apply(Decode(example, example.First), rng, first.AsSpan(i * size, size));
            transform.Apply(Decode(example, example.Second), rng, second.AsSpan(i * size, size));
            targets[i] = example.Target;
        }
        var text = tokenizer.EncodeToTensors(examples.Select(e => e.Sentence).ToList(), textOptions);         // (B, T) ids and mask
        var batch = new NlvrBatch(
            tensor(first, new long[] { b, 3, s, s }),                                                          // (B, 3, S, S)
            tensor(second, new long[] { b, 3, s, s }),                                                         // (B, 3, S, S)
            text.InputIds, text.AttentionMask,
            tensor(targets));                                                                                  // (B)
        return new NlvrSampleBatch(batch, examples, position);
    }

    /// <summary>The random source of the images of slot <paramref name="slot"/> of the batch with seed <paramref name="batchSeed"/>.</summary>
    private static Random ImageRandom(int batchSeed, int slot) => SeededRandom.Create(batchSeed, slot, 0, 3);

    private static RgbImage Decode(NlvrExample example, ImageSource image)
    {
        try
        {
            return image.Decode();
        }
        catch (Exception e) when (e is IOException or ImageDecodeException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"{example.Item.Source}: {example.Item.Location}: image {image.Name} cannot be read: {e.Message}", e);
        }
    }
}
