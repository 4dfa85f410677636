using System.Runtime;

namespace BlipSharp.Training.Training;

/// <summary>
/// Keeps the .NET garbage collector from running while a training step is in native code, because TorchSharp 0.107
/// frees its temporary <c>Scalar</c>s in finalizers without keeping them alive across the native call that reads
/// them. <c>a + b</c> on two tensors, for instance, passes a <c>Scalar</c> alpha of 1 made for the call; once the
/// native call has started, nothing references it, so a collection started by another thread (the data loader's
/// workers allocate images all the time) can finalize it while libtorch is still reading it. The step then dies with
/// <c>Expected false to be true ... toFloat at c10/core/Scalar.h:140</c> (a Scalar whose memory was freed), in our
/// runs within 150 steps in half of the tiny-recipe runs with <c>--threads 1</c>. Collections the training thread
/// triggers itself are harmless (it is in managed code then), so pausing collections for the length of a step and
/// letting them run between steps removes the window.
/// </summary>
/// <remarks>
/// <see cref="GC.TryStartNoGCRegion(long)"/> is asked for <see cref="Budget"/> bytes; a step that allocates more
/// ends the pause early (the runtime collects and goes on), so this narrows the window rather than proving it shut,
/// and costs one collection per step when the heap has not got the room free (a few milliseconds for a training
/// process's small managed heap).
/// </remarks>
public sealed class ManagedCollectionPause : IDisposable
{
    /// <summary>Bytes the step and the loader's workers may allocate before a collection is allowed again.</summary>
    public const long Budget = 128L * 1024 * 1024;

    private readonly bool _started;

    private ManagedCollectionPause(bool started) => _started = started;

    /// <summary>Whether the pause took effect (false when the runtime refused it, e.g. inside another pause).</summary>
    public bool Started => _started;

    /// <summary>Starts a pause; dispose it when the step's native work is done.</summary>
    public static ManagedCollectionPause Begin()
    {
        if (GCSettings.LatencyMode == GCLatencyMode.NoGCRegion) return new ManagedCollectionPause(false);
        try
        {
            return new ManagedCollectionPause(GC.TryStartNoGCRegion(Budget));
        }
        catch (Exception e) when (e is ArgumentOutOfRangeException or InvalidOperationException)
        {
            return new ManagedCollectionPause(false); // a budget larger than this runtime's ephemeral space, or a pause already on
        }
    }

    /// <summary>Ends the pause if it is still on (a step that outgrew the budget has ended it already).</summary>
    public void Dispose()
    {
        if (!_started || GCSettings.LatencyMode != GCLatencyMode.NoGCRegion) return;
        try
        {
            GC.EndNoGCRegion();
        }
        catch (InvalidOperationException)
        {
            // The region ended by a collection after the check above, or by an allocation over the budget.
        }
    }
}
