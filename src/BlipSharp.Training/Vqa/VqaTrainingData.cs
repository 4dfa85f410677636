using BlipSharp.Processing;
using BlipSharp.Training.Data;
using BlipSharp.Training.Finetuning;
using static TorchSharp.torch;

namespace BlipSharp.Training.Vqa;

/// <summary>
/// Where the images of VQA annotation records are: BLIP's <c>vqa_root</c> (COCO, for <c>"dataset": "vqa"</c>) and
/// <c>vg_root</c> (Visual Genome, for <c>"dataset": "vg"</c>), each falling back to <see cref="Default"/>, and that to
/// the folder of the annotation file the record comes from.
/// </summary>
/// <param name="Vqa">The root of <c>"vqa"</c> records' images (null: <see cref="Default"/>).</param>
/// <param name="VisualGenome">The root of <c>"vg"</c> records' images (null: <see cref="Default"/>).</param>
/// <param name="Default">The root of every record without its own (null: the annotation file's folder).</param>
public sealed record VqaImageRoots(string? Vqa = null, string? VisualGenome = null, string? Default = null)
{
    /// <summary>The image file of <paramref name="annotation"/>, read from <paramref name="annotationFile"/>.</summary>
    /// <param name="annotation">The record.</param>
    /// <param name="annotationFile">The file it comes from.</param>
    public string Resolve(VqaAnnotation annotation, string annotationFile)
    {
        ArgumentNullException.ThrowIfNull(annotation);
        string root = (annotation.Source == VqaSource.Vqa ? Vqa : VisualGenome) ?? Default
            ?? Path.GetDirectoryName(Path.GetFullPath(annotationFile))!;
        return Path.Combine(root, annotation.Image);
    }
}

/// <summary>One training question: its cleaned text, weighted answers and image, and where it was read.</summary>
/// <param name="Item">The question after <c>pre_question</c> and its weighted answers (<see cref="VqaAnswerWeighting.Weigh"/>).</param>
/// <param name="Image">The image file.</param>
/// <param name="Source">The annotation file.</param>
/// <param name="Location">The record, e.g. <c>record 12</c>, for messages.</param>
public sealed record VqaTrainingSample(VqaTrainingItem Item, string Image, string Source, string Location);

/// <summary>
/// One VQA training batch that owns its tensors (the <see cref="VqaTask"/> inputs) and knows where it is in the
/// stream; disposing it disposes every tensor.
/// </summary>
/// <param name="Tensors">Images, questions, answers, weights and counts.</param>
/// <param name="Position">The batch's (epoch, batch) position.</param>
public sealed record VqaBatch(VqaTrainingBatch Tensors, LoaderPosition Position) : IDisposable
{
    /// <summary>Questions in the batch.</summary>
    public int Count => (int)Tensors.PixelValues.shape[0];

    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        Tensors.PixelValues.Dispose();
        Tensors.QuestionIds.Dispose();
        Tensors.QuestionMask.Dispose();
        Tensors.AnswerIds.Dispose();
        Tensors.AnswerMask.Dispose();
        Tensors.Weights.Dispose();
        Tensors.AnswerCounts.Dispose();
    }
}

/// <summary>
/// BLIP's VQA training data (<c>vqa_dataset(split='train')</c> over <c>train_files</c>, e.g. vqa_train + vqa_val +
/// vg_qa) and its batches: every record of every file, in order, questions through <c>pre_question</c>, answers
/// weighted (<see cref="VqaAnswerWeighting"/>); each batch's images go through the fine-tuning train transform and the
/// texts through <c>vqa_collate_fn</c> and BLIP_VQA's tokenizer calls (<see cref="VqaTask.CreateBatch"/>).
/// </summary>
public static class VqaTrainingData
{
    /// <summary>
    /// Reads the annotation files in order. Every record needs an answer; its image must exist (checked here, once per
    /// distinct file, so a wrong root fails before training). Errors name the file and the record.
    /// </summary>
    /// <param name="files">BLIP-format VQA annotation files.</param>
    /// <param name="roots">Where the images are.</param>
    /// <param name="maxQuestionWords">The <c>max_ques_words</c> of <c>pre_question</c> (BLIP: 50).</param>
    /// <exception cref="DataFormatException">A file or record is malformed, or an image is missing.</exception>
    public static IReadOnlyList<VqaTrainingSample> Load(IReadOnlyList<string> files, VqaImageRoots roots, int maxQuestionWords = TextCleaning.DefaultMaxWords)
    {
        ArgumentNullException.ThrowIfNull(files);
        ArgumentNullException.ThrowIfNull(roots);
        var samples = new List<VqaTrainingSample>();
        var existing = new HashSet<string>(StringComparer.Ordinal);
        foreach (string file in files)
        {
            var annotations = VqaAnnotationReader.Read(file, VqaSplit.Train);
            for (int i = 0; i < annotations.Count; i++)
            {
                string location = $"record {i}";
                string image = roots.Resolve(annotations[i], file);
                if (!existing.Contains(image))
                {
                    if (!File.Exists(image))
                        throw new DataFormatException(new DataIssue(file, location, $"image '{annotations[i].Image}' not found: {image} does not exist (check the image root of \"{SourceName(annotations[i].Source)}\" records)"));
                    existing.Add(image);
                }
                VqaTrainingItem item;
                try
                {
                    item = VqaAnswerWeighting.Weigh(annotations[i], maxQuestionWords);
                }
                catch (ArgumentException e)
                {
                    throw new DataFormatException(new DataIssue(file, location, e.Message), e);
                }
                samples.Add(new VqaTrainingSample(item, image, file, location));
            }
        }
        return samples;
    }

    /// <summary>
    /// The resumable batch source over <paramref name="samples"/> (<see cref="SampleBatchSource{TBatch}"/>: a seeded
    /// permutation per epoch, the last incomplete batch dropped, batches built ahead on a background task).
    /// </summary>
    /// <param name="samples">The training questions.</param>
    /// <param name="tokenizer">BLIP's tokenizer.</param>
    /// <param name="transform">The train transform (random resized crop, flip, RandomAugment).</param>
    /// <param name="options">Batch size, seed, workers, left/right swapping.</param>
    public static SampleBatchSource<VqaBatch> CreateSource(IReadOnlyList<VqaTrainingSample> samples, BlipTokenizer tokenizer, IImageTransform transform, VqaBatchOptions options)
    {
        ArgumentNullException.ThrowIfNull(samples);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(transform);
        ArgumentNullException.ThrowIfNull(options);
        return new SampleBatchSource<VqaBatch>(samples.Count, options.BatchSize, options.Seed,
            (request, token) => Build(samples, request, tokenizer, transform, options, token),
            b => b.Count, b => b.Position, options.Prefetch);
    }

    /// <summary>
    /// Builds one batch: each sample's image decoded and transformed with a <see cref="Random"/> seeded by (the batch
    /// seed, the sample's index), so the batch is a function of the request; a mirrored image's question and answers
    /// have "left" and "right" swapped when <see cref="VqaBatchOptions.SwapLeftRightOnFlip"/>; then collated and
    /// tokenized. The tensors are the batch's own (not in any dispose scope).
    /// </summary>
    /// <param name="samples">The training questions.</param>
    /// <param name="request">Which samples, where, and the batch seed.</param>
    /// <param name="tokenizer">BLIP's tokenizer.</param>
    /// <param name="transform">The train transform.</param>
    /// <param name="options">Workers and left/right swapping.</param>
    /// <param name="cancellationToken">Stops between images.</param>
    /// <exception cref="ImageDecodeException">An image cannot be read; the message names it.</exception>
    public static VqaBatch Build(IReadOnlyList<VqaTrainingSample> samples, SampleBatchRequest request, BlipTokenizer tokenizer, IImageTransform transform,
        VqaBatchOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(samples);
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(transform);
        ArgumentNullException.ThrowIfNull(options);
        int n = request.Indices.Count;
        if (n == 0) throw new ArgumentException("a batch needs at least one sample.", nameof(request));
        int s = transform.OutputSize;
        int perImage = 3 * s * s;
        var values = new float[(long)n * perImage];
        var items = new VqaTrainingItem[n];
        try
        {
            Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = options.Workers, CancellationToken = cancellationToken }, i =>
            {
                int index = request.Indices[i];
                var sample = samples[index];
                var image = ImageSource.FromFile(sample.Image).Decode();
                var info = transform.Apply(image, SeededRandom.Create(request.Seed, index, 0, 1), values.AsSpan(i * perImage, perImage));
                items[i] = info.Flipped && options.SwapLeftRightOnFlip ? SwapLeftRight(sample.Item) : sample.Item;
            });
        }
        catch (AggregateException e) when (e.Flatten().InnerExceptions.Count >= 1)
        {
            var first = e.Flatten().InnerExceptions[0];
            if (first is OperationCanceledException or ImageDecodeException) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
            throw;
        }

        using var scope = NewDisposeScope();
        var pixels = tensor(values, new long[] { n, 3, s, s });                         // (B, 3, S, S)
        var batch = VqaTask.CreateBatch(tokenizer, pixels, VqaAnswerWeighting.Collate(items));
        return new VqaBatch(new VqaTrainingBatch(
            batch.PixelValues.DetachFromDisposeScope(), batch.QuestionIds.DetachFromDisposeScope(), batch.QuestionMask.DetachFromDisposeScope(),
            batch.AnswerIds.DetachFromDisposeScope(), batch.AnswerMask.DetachFromDisposeScope(), batch.Weights.DetachFromDisposeScope(),
            batch.AnswerCounts.DetachFromDisposeScope()), request.Position);
    }

    /// <summary>The item of a mirrored image: "left" and "right" swapped in the question and every answer (weights kept).</summary>
    /// <param name="item">The item.</param>
    public static VqaTrainingItem SwapLeftRight(VqaTrainingItem item)
    {
        ArgumentNullException.ThrowIfNull(item);
        return item with
        {
            Question = TextCleaning.SwapLeftRight(item.Question),
            Answers = item.Answers.Select(a => a with { Answer = TextCleaning.SwapLeftRight(a.Answer) }).ToList(),
        };
    }

    internal static string SourceName(VqaSource source) => source == VqaSource.Vqa ? "vqa" : "vg";
}

/// <summary>How <see cref="VqaTrainingData.CreateSource"/> batches.</summary>
public sealed record VqaBatchOptions
{
    /// <summary>Questions per batch (BLIP: 16 per GPU).</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>The run's seed: the epoch permutations and every augmentation derive from it.</summary>
    public long Seed { get; init; }

    /// <summary>Threads that decode and augment one batch's images.</summary>
    public int Workers { get; init; } = 2;

    /// <summary>Batches built ahead.</summary>
    public int Prefetch { get; init; } = 2;

    /// <summary>
    /// Swap "left" and "right" in the question and answers of a mirrored image (BLIP does not: its flip makes such
    /// answers wrong; the synthetic world asks where objects are, so its recipe turns this on).
    /// </summary>
    public bool SwapLeftRightOnFlip { get; init; }
}
