using System.Threading.Channels;
using BlipSharp.Training.Data;
using BlipSharp.Training.Training;

namespace BlipSharp.Training.Finetuning;

/// <summary>The samples of one batch: their dataset indices and where the batch is in the stream.</summary>
/// <param name="Indices">The dataset indices, in batch order.</param>
/// <param name="Position">The batch's (epoch, batch) position.</param>
/// <param name="Seed">A seed for this batch's random choices (augmentation, swaps), derived from the run's seed and the position.</param>
public sealed record SampleBatchRequest(IReadOnlyList<int> Indices, LoaderPosition Position, int Seed);

/// <summary>
/// A resumable <see cref="IBatchSource{TBatch}"/> for any sample list: each epoch visits the samples in a seeded
/// permutation (the same one <see cref="ImageTextLoader.EpochOrder"/> draws), cut into batches of a fixed size (the
/// last incomplete one dropped, as BLIP's loaders with <c>drop_last=True</c>), and a task-specific function builds a
/// batch from its indices (decoding and augmenting images, tokenizing). Batches are built
/// <paramref name="prefetch"/> ahead on a background task. Everything random is a function of (seed, epoch, batch), so
/// starting at a position reproduces the run from there. Used by the VQA and NLVR fine-tuning tasks, whose batches
/// are not image-caption pairs.
/// </summary>
/// <typeparam name="TBatch">The batch type.</typeparam>
/// <param name="count">Samples in the dataset.</param>
/// <param name="batchSize">Samples per batch.</param>
/// <param name="seed">The run's seed (the permutation and the batch seeds derive from it).</param>
/// <param name="build">Builds a batch; null skips the batch (every sample of it failed).</param>
/// <param name="sampleCount">Samples in a built batch (for throughput).</param>
/// <param name="positionOf">Where a built batch is in the stream.</param>
/// <param name="prefetch">Batches built ahead.</param>
public sealed class SampleBatchSource<TBatch>(int count, int batchSize, long seed, Func<SampleBatchRequest, CancellationToken, TBatch?> build,
    Func<TBatch, int> sampleCount, Func<TBatch, LoaderPosition> positionOf, int prefetch = 2) : IBatchSource<TBatch> where TBatch : class, IDisposable
{
    private readonly Func<SampleBatchRequest, CancellationToken, TBatch?> _build = build ?? throw new ArgumentNullException(nameof(build));
    private readonly int _prefetch = prefetch >= 1 ? prefetch : throw new ArgumentOutOfRangeException(nameof(prefetch), prefetch, "must be at least 1");

    /// <summary>Samples per batch.</summary>
    public int BatchSize { get; } = batchSize >= 1 ? batchSize : throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "must be at least 1");

    /// <summary>Samples in the dataset.</summary>
    public int Count { get; } = count >= 0 ? count : throw new ArgumentOutOfRangeException(nameof(count), count, "must be at least 0");

    /// <inheritdoc />
    public int BatchesPerEpoch => Count / BatchSize;

    /// <summary>The order in which an epoch visits the samples: a permutation seeded by (seed, epoch).</summary>
    /// <param name="epoch">The epoch.</param>
    public int[] EpochOrder(int epoch)
    {
        var order = new int[Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        var rng = SeededRandom.Create(unchecked((int)seed), epoch, -1, 0);
        for (int i = order.Length - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    /// <summary>The request for the batch at <paramref name="position"/>.</summary>
    /// <param name="position">The batch.</param>
    /// <param name="order">That epoch's <see cref="EpochOrder"/>.</param>
    public SampleBatchRequest Request(LoaderPosition position, int[] order) =>
        new(order.AsSpan(position.Batch * BatchSize, BatchSize).ToArray(), position,
            SeededRandom.DeriveSeed(unchecked((int)seed), position.Epoch, position.Batch, 1));

    /// <inheritdoc />
    public IEnumerable<TBatch> Read(LoaderPosition start, CancellationToken cancellationToken)
    {
        if (BatchesPerEpoch == 0) throw new InvalidOperationException($"the dataset ({Count} samples) has no complete batch of {BatchSize}");
        var channel = Channel.CreateBounded<TBatch>(new BoundedChannelOptions(_prefetch) { SingleReader = true, SingleWriter = true });
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var token = cts.Token;
        var producer = Task.Run(async () =>
        {
            try
            {
                for (int epoch = start.Epoch; ; epoch++)
                {
                    var order = EpochOrder(epoch);
                    for (int b = epoch == start.Epoch ? start.Batch : 0; b < BatchesPerEpoch; b++)
                    {
                        token.ThrowIfCancellationRequested();
                        var batch = _build(Request(new LoaderPosition(epoch, b), order), token);
                        if (batch is null) continue;
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
                }
            }
            catch (Exception e)
            {
                channel.Writer.TryComplete(e is OperationCanceledException ? null : e);
            }
        }, token);
        try
        {
            while (true)
            {
                TBatch? next;
                try
                {
                    if (!channel.Reader.WaitToReadAsync(token).AsTask().GetAwaiter().GetResult()) yield break;
                    if (!channel.Reader.TryRead(out next)) continue;
                }
                catch (OperationCanceledException)
                {
                    yield break;
                }
                yield return next;
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
            while (channel.Reader.TryRead(out var left)) left.Dispose();
        }
    }

    /// <inheritdoc />
    public LoaderPosition PositionOf(TBatch batch) => positionOf(batch);

    /// <inheritdoc />
    public int SampleCount(TBatch batch) => sampleCount(batch);
}
