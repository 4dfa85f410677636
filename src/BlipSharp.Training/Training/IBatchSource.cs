using BlipSharp.Training.Data;

namespace BlipSharp.Training.Training;

/// <summary>
/// A resumable stream of batches for the <see cref="Trainer{TBatch}"/>: batches are numbered by
/// <see cref="LoaderPosition"/> (epoch, batch), and reading from a position gives the same batches every time.
/// </summary>
/// <typeparam name="TBatch">The batch type.</typeparam>
public interface IBatchSource<TBatch> where TBatch : IDisposable
{
    /// <summary>Batches in one epoch (at least 1).</summary>
    int BatchesPerEpoch { get; }

    /// <summary>
    /// Batches from <paramref name="start"/> on, epoch after epoch, without end. A batch that could not be built may be
    /// missing from the stream (its position is then skipped).
    /// </summary>
    /// <param name="start">The first batch.</param>
    /// <param name="cancellationToken">Stops background work.</param>
    IEnumerable<TBatch> Read(LoaderPosition start, CancellationToken cancellationToken);

    /// <summary>Where <paramref name="batch"/> is in the stream.</summary>
    /// <param name="batch">A batch this source produced.</param>
    LoaderPosition PositionOf(TBatch batch);

    /// <summary>Samples in <paramref name="batch"/> (for throughput).</summary>
    /// <param name="batch">A batch this source produced.</param>
    int SampleCount(TBatch batch);
}

/// <summary>The <see cref="ImageTextLoader"/> as a batch source.</summary>
/// <param name="loader">The loader.</param>
public sealed class ImageTextBatchSource(ImageTextLoader loader) : IBatchSource<ImageTextBatch>
{
    /// <summary>The loader.</summary>
    public ImageTextLoader Loader { get; } = loader ?? throw new ArgumentNullException(nameof(loader));

    /// <inheritdoc />
    public int BatchesPerEpoch => Loader.BatchesPerEpoch;

    /// <inheritdoc />
    public IEnumerable<ImageTextBatch> Read(LoaderPosition start, CancellationToken cancellationToken) => Loader.Read(start, cancellationToken);

    /// <inheritdoc />
    public LoaderPosition PositionOf(ImageTextBatch batch) => batch.Position;

    /// <inheritdoc />
    public int SampleCount(ImageTextBatch batch) => batch.Count;
}
