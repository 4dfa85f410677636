using System.Runtime;
using BlipSharp.Training.Training;
using Xunit;

namespace BlipSharp.Tests.Training;

/// <summary>Runs alone: a no-GC region is process-wide, so a trainer in another test class would share it.</summary>
[CollectionDefinition(nameof(ManagedCollectionPauseCollection), DisableParallelization = true)]
public sealed class ManagedCollectionPauseCollection;

/// <summary>The per-step collection pause: it starts, refuses to nest, and always leaves the runtime in its normal mode.</summary>
[Collection(nameof(ManagedCollectionPauseCollection))]
public sealed class ManagedCollectionPauseTests
{
    [Fact]
    public void PausesCollectionsUntilDisposed()
    {
        GCLatencyMode before = GCSettings.LatencyMode;
        using (var pause = ManagedCollectionPause.Begin())
        {
            Assert.True(pause.Started);
            Assert.Equal(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
            int collections = GC.CollectionCount(0);
            var small = new byte[1024 * 1024]; // well inside the budget: no collection may run for it
            GC.KeepAlive(small);
            Assert.Equal(collections, GC.CollectionCount(0));

            using var nested = ManagedCollectionPause.Begin();
            Assert.False(nested.Started);
        }
        Assert.Equal(before, GCSettings.LatencyMode);
    }

    [Fact]
    public void AStepThatOutgrowsTheBudgetEndsThePauseAndDisposeStillSucceeds()
    {
        GCLatencyMode before = GCSettings.LatencyMode;
        var pause = ManagedCollectionPause.Begin();
        Assert.True(pause.Started);
        for (int i = 0; i < 3; i++) GC.KeepAlive(new byte[ManagedCollectionPause.Budget]); // past the budget: the runtime ends the region
        pause.Dispose();
        pause.Dispose();
        Assert.Equal(before, GCSettings.LatencyMode);
    }
}
