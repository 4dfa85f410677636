using System.Threading.Channels;
using BlipSharp.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Data;

/// <summary>Settings of <see cref="ImageTextLoader"/>; the defaults follow BLIP's training loaders.</summary>
public sealed record DataLoaderOptions
{
    /// <summary>Samples per batch.</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>Visit the dataset in a new seeded order every epoch (BLIP's training loaders do).</summary>
    public bool Shuffle { get; init; } = true;

    /// <summary>Seeds the epoch orders, the augmentations and the caption choices.</summary>
    public int Seed { get; init; }

    /// <summary>Drop the last incomplete batch of an epoch (BLIP: true for training, false for evaluation).</summary>
    public bool DropLast { get; init; } = true;

    /// <summary>Threads that decode and augment (at least 1).</summary>
    public int Workers { get; init; } = 2;

    /// <summary>Batches prepared ahead of the consumer (the bound of the channel, at least 1).</summary>
    public int Prefetch { get; init; } = 2;

    /// <summary>Clean captions with <see cref="TextCleaning.PreCaption"/> (as every BLIP dataset does).</summary>
    public bool CleanCaptions { get; init; } = true;

    /// <summary><c>max_words</c> for the cleaning (BLIP's datasets: 30).</summary>
    public int MaxWords { get; init; } = TextCleaning.DatasetMaxWords;

    /// <summary>Text put before every caption after cleaning (BLIP's captioning prompt is <c>"a picture of "</c>).</summary>
    public string Prompt { get; init; } = "";

    /// <summary>When the transform mirrored an image, swap the words "left" and "right" in its caption.</summary>
    public bool SwapLeftRightOnFlip { get; init; }

    /// <summary>Throw on the first image that cannot be read or decoded, instead of logging and skipping it.</summary>
    public bool Strict { get; init; }

    /// <summary>Called for every skipped image (from a worker thread).</summary>
    public Action<DataIssue>? OnIssue { get; init; }

    /// <summary>How images are decoded; the default when null.</summary>
    public ImageDecoderOptions? Decoder { get; init; }
}

/// <summary>A place in the stream of batches: epoch and batch within it, both from 0. Resuming there gives the same batches.</summary>
/// <param name="Epoch">The epoch.</param>
/// <param name="Batch">The batch within the epoch.</param>
public readonly record struct LoaderPosition(int Epoch, int Batch);

/// <summary>
/// One batch: the pixels as a float32 CPU tensor (B, 3, S, S) that the batch owns (dispose the batch, or take the
/// tensor out with <see cref="DetachPixels"/>), and per sample its caption, dataset index, entry and flip.
/// B can be smaller than the batch size when images failed to load.
/// </summary>
public sealed class ImageTextBatch : IDisposable
{
    private Tensor? _pixels;

    internal ImageTextBatch(Tensor pixels, IReadOnlyList<string> captions, IReadOnlyList<int> indices, IReadOnlyList<ImageTextEntry> entries,
        IReadOnlyList<bool> flipped, LoaderPosition position, LoaderPosition next, int skipped)
    {
        _pixels = pixels;
        Captions = captions;
        Indices = indices;
        Entries = entries;
        Flipped = flipped;
        Position = position;
        Next = next;
        Skipped = skipped;
    }

    /// <summary>The images, normalised: float32 (B, 3, S, S) on the CPU, in no dispose scope.</summary>
    public Tensor Pixels => _pixels ?? throw new ObjectDisposedException(nameof(ImageTextBatch), "the batch was disposed or its pixels detached");

    /// <summary>Number of samples B.</summary>
    public int Count => Indices.Count;

    /// <summary>Captions, cleaned and prefixed as the options say.</summary>
    public IReadOnlyList<string> Captions { get; }

    /// <summary>Dataset index of each sample.</summary>
    public IReadOnlyList<int> Indices { get; }

    /// <summary>The dataset entry of each sample (image id, image index, extra fields).</summary>
    public IReadOnlyList<ImageTextEntry> Entries { get; }

    /// <summary>The dense image index of each sample (BLIP's <c>img_id</c> used for ITC positives).</summary>
    public IReadOnlyList<int> ImageIndices => Entries.Select(e => e.ImageIndex).ToArray();

    /// <summary>Whether each image was mirrored.</summary>
    public IReadOnlyList<bool> Flipped { get; }

    /// <summary>Where this batch is.</summary>
    public LoaderPosition Position { get; }

    /// <summary>Where to resume to continue after this batch.</summary>
    public LoaderPosition Next { get; }

    /// <summary>Samples of this batch's slot that were skipped because their image could not be loaded.</summary>
    public int Skipped { get; }

    /// <summary>Hands the pixel tensor to the caller, who must dispose it; disposing the batch then leaves it alone.</summary>
    public Tensor DetachPixels()
    {
        var t = Pixels;
        _pixels = null;
        return t;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _pixels?.Dispose();
        _pixels = null;
    }
}

/// <summary>
/// A background loader in the manner of PyTorch's <c>DataLoader</c>: a producer task decodes and augments the
/// samples of upcoming batches on <see cref="DataLoaderOptions.Workers"/> threads and queues finished batches in
/// a bounded channel. Everything random is a function of (seed, epoch, sample index), so the batches are the same
/// whatever the thread timing, and starting at a <see cref="LoaderPosition"/> reproduces a run from that point.
/// Images that cannot be read are logged in <see cref="Issues"/> and left out of their batch (strict mode throws).
/// </summary>
public sealed class ImageTextLoader
{
    private readonly IImageTransform _transform;

    /// <summary>Creates a loader.</summary>
    /// <param name="dataset">The samples.</param>
    /// <param name="transform">The image transform, for example <see cref="BlipTrainTransform"/>.</param>
    /// <param name="options">Batch size, seed, workers; defaults when null.</param>
    public ImageTextLoader(ImageTextDataset dataset, IImageTransform transform, DataLoaderOptions? options = null)
    {
        Dataset = dataset ?? throw new ArgumentNullException(nameof(dataset));
        _transform = transform ?? throw new ArgumentNullException(nameof(transform));
        Options = options ?? new DataLoaderOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(Options.BatchSize, 1, nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(Options.Workers, 1, nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(Options.Prefetch, 1, nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(Options.MaxWords, 1, nameof(options));
        Issues = new DataIssueLog(Options.Strict, Options.OnIssue);
        int n = dataset.Count;
        BatchesPerEpoch = Options.DropLast ? n / Options.BatchSize : (n + Options.BatchSize - 1) / Options.BatchSize;
    }

    /// <summary>The samples.</summary>
    public ImageTextDataset Dataset { get; }

    /// <summary>The settings.</summary>
    public DataLoaderOptions Options { get; }

    /// <summary>Images skipped so far because they could not be read or decoded.</summary>
    public DataIssueLog Issues { get; }

    /// <summary>Batches in one epoch.</summary>
    public int BatchesPerEpoch { get; }

    /// <summary>The order in which an epoch visits the dataset (a seeded permutation, or 0..N-1 without shuffling).</summary>
    /// <param name="epoch">The epoch.</param>
    public int[] EpochOrder(int epoch)
    {
        var order = new int[Dataset.Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        if (!Options.Shuffle) return order;
        var rng = SeededRandom.Create(Options.Seed, epoch, -1, 0);
        for (int i = order.Length - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    /// <summary>The batches of one epoch from <paramref name="startBatch"/> on, prepared in the background.</summary>
    /// <param name="epoch">The epoch.</param>
    /// <param name="startBatch">The first batch to produce (to resume mid-epoch).</param>
    /// <param name="cancellationToken">Stops the producer.</param>
    public IEnumerable<ImageTextBatch> ReadEpoch(int epoch, int startBatch = 0, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        ArgumentOutOfRangeException.ThrowIfNegative(startBatch);
        return Run(new LoaderPosition(epoch, startBatch), epoch + 1, cancellationToken);
    }

    /// <summary>An endless stream of batches from <paramref name="start"/>, epoch after epoch.</summary>
    /// <param name="start">Where to begin (a batch's <see cref="ImageTextBatch.Next"/> to resume after it).</param>
    /// <param name="cancellationToken">Stops the producer.</param>
    public IEnumerable<ImageTextBatch> Read(LoaderPosition start = default, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(start.Epoch, nameof(start));
        ArgumentOutOfRangeException.ThrowIfNegative(start.Batch, nameof(start));
        if (BatchesPerEpoch == 0) throw new InvalidOperationException($"the dataset ({Dataset.Count} samples) has no complete batch of {Options.BatchSize}");
        return Run(start, int.MaxValue, cancellationToken);
    }

    /// <summary>Builds one batch on the calling thread (no background work); null when every image of it failed.</summary>
    /// <param name="position">Which batch.</param>
    public ImageTextBatch? LoadBatch(LoaderPosition position) => Build(position, EpochOrder(position.Epoch), CancellationToken.None);

    private IEnumerable<ImageTextBatch> Run(LoaderPosition start, int endEpoch, CancellationToken cancellationToken)
    {
        var channel = Channel.CreateBounded<ImageTextBatch>(new BoundedChannelOptions(Options.Prefetch)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var token = cts.Token;
        var producer = Task.Run(async () =>
        {
            try
            {
                for (int epoch = start.Epoch; epoch < endEpoch; epoch++)
                {
                    var order = EpochOrder(epoch);
                    for (int b = epoch == start.Epoch ? start.Batch : 0; b < BatchesPerEpoch; b++)
                    {
                        token.ThrowIfCancellationRequested();
                        var batch = Build(new LoaderPosition(epoch, b), order, token);
                        if (batch == null) continue;
                        try
                        {
                            await channel.Writer.WriteAsync(batch, token).ConfigureAwait(false);
                        }
                        catch
                        {
                            batch.Dispose();
                            throw;
                        }
                    }
                    if (BatchesPerEpoch == 0) break;
                }
                channel.Writer.TryComplete();
            }
            catch (Exception e)
            {
                channel.Writer.TryComplete(e);
            }
        }, CancellationToken.None);

        try
        {
            while (true)
            {
                ImageTextBatch? batch;
                while (!channel.Reader.TryRead(out batch))
                {
                    bool more;
                    try
                    {
                        more = channel.Reader.WaitToReadAsync(cancellationToken).AsTask().GetAwaiter().GetResult();
                    }
                    catch (ChannelClosedException e) when (e.InnerException != null)
                    {
                        throw Unwrap(e.InnerException);
                    }
                    if (!more)
                    {
                        channel.Reader.Completion.GetAwaiter().GetResult(); // rethrows the producer's error
                        yield break;
                    }
                }
                yield return batch;
            }
        }
        finally
        {
            cts.Cancel();
            try
            {
                producer.GetAwaiter().GetResult();
            }
            catch (OperationCanceledException)
            {
            }
            while (channel.Reader.TryRead(out var leftover)) leftover.Dispose();
        }
    }

    /// <summary>
    /// The error to report from parallel workers: a single inner error as itself; when several workers failed on
    /// bad records in strict mode, the data error of the earliest record (so the exception type does not depend on
    /// how many workers happened to fail first).
    /// </summary>
    private static Exception Unwrap(Exception e)
    {
        if (e is not AggregateException a) return e;
        var inner = a.Flatten().InnerExceptions;
        if (inner.Count == 1) return inner[0];
        var data = inner.OfType<DataFormatException>().ToList();
        return data.Count > 0 ? data.OrderBy(d => d.Issue.Location.Length).ThenBy(d => d.Issue.Location, StringComparer.Ordinal).First() : e; // "record 3" before "record 12"
    }

    private ImageTextBatch? Build(LoaderPosition position, int[] order, CancellationToken token)
    {
        if (position.Batch >= BatchesPerEpoch)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"an epoch has {BatchesPerEpoch} batches");
        int first = position.Batch * Options.BatchSize;
        int n = Math.Min(Options.BatchSize, order.Length - first);
        int s = _transform.OutputSize;
        int perImage = 3 * s * s;
        var values = new float[(long)n * perImage];
        var ok = new bool[n];
        var captions = new string[n];
        var flipped = new bool[n];
        try
        {
            Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = Options.Workers, CancellationToken = token }, i =>
            {
                int index = order[first + i];
                var entry = Dataset[index];
                RgbImage image;
                try
                {
                    image = entry.Image.Decode(Options.Decoder);
                }
                catch (ImageDecodeException e)
                {
                    Issues.Report(new DataIssue(entry.Source, entry.Location, e.Message), e);
                    return;
                }
                var rng = SeededRandom.Create(Options.Seed, position.Epoch, index, 1);
                var info = _transform.Apply(image, rng, values.AsSpan(i * perImage, perImage));
                captions[i] = Caption(entry, position.Epoch, index, info);
                flipped[i] = info.Flipped;
                ok[i] = true;
            });
        }
        catch (AggregateException e)
        {
            throw Unwrap(e.Flatten());
        }
        int count = ok.Count(x => x);
        if (count == 0) return null;
        if (count < n)
        {
            // Close the gaps left by skipped images.
            int w = 0;
            for (int i = 0; i < n; i++)
            {
                if (!ok[i]) continue;
                if (w != i) Array.Copy(values, (long)i * perImage, values, (long)w * perImage, perImage);
                w++;
            }
            Array.Resize(ref values, count * perImage);
        }
        var indices = new List<int>(count);
        var entries = new List<ImageTextEntry>(count);
        var keptCaptions = new List<string>(count);
        var keptFlips = new List<bool>(count);
        for (int i = 0; i < n; i++)
        {
            if (!ok[i]) continue;
            int index = order[first + i];
            indices.Add(index);
            entries.Add(Dataset[index]);
            keptCaptions.Add(captions[i]);
            keptFlips.Add(flipped[i]);
        }
        var pixels = torch.tensor(values, new long[] { count, 3, s, s }).DetachFromDisposeScope(); // (B, 3, S, S)
        var next = position.Batch + 1 < BatchesPerEpoch ? position with { Batch = position.Batch + 1 } : new LoaderPosition(position.Epoch + 1, 0);
        return new ImageTextBatch(pixels, keptCaptions, indices, entries, keptFlips, position, next, n - count);
    }

    private string Caption(ImageTextEntry entry, int epoch, int index, TransformInfo info)
    {
        string caption = entry.Captions.Count == 1
            ? entry.Captions[0]
            : entry.Captions[SeededRandom.Create(Options.Seed, epoch, index, 2).Next(entry.Captions.Count)];
        if (Options.CleanCaptions) caption = TextCleaning.PreCaption(caption, Options.MaxWords);
        if (info.Flipped && Options.SwapLeftRightOnFlip) caption = TextCleaning.SwapLeftRight(caption);
        return Options.Prompt + caption;
    }
}

/// <summary>Derives independent, reproducible <see cref="Random"/> streams from a seed and a few integers (SplitMix64 mixing).</summary>
public static class SeededRandom
{
    /// <summary>A <see cref="Random"/> seeded from (<paramref name="seed"/>, <paramref name="a"/>, <paramref name="b"/>, <paramref name="c"/>).</summary>
    /// <param name="seed">The run's seed.</param>
    /// <param name="a">First key (for example the epoch).</param>
    /// <param name="b">Second key (for example the sample index).</param>
    /// <param name="c">Third key (which stream).</param>
    public static Random Create(long seed, long a, long b, long c) => new(DeriveSeed(seed, a, b, c));

    /// <summary>The 31-bit seed <see cref="Create"/> uses.</summary>
    /// <param name="seed">The run's seed.</param>
    /// <param name="a">First key.</param>
    /// <param name="b">Second key.</param>
    /// <param name="c">Third key.</param>
    public static int DeriveSeed(long seed, long a, long b, long c)
    {
        ulong h = Mix((ulong)seed);
        h = Mix(h ^ (ulong)a);
        h = Mix(h ^ (ulong)b);
        h = Mix(h ^ (ulong)c);
        return (int)(h & 0x7FFFFFFF);
    }

    private static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
