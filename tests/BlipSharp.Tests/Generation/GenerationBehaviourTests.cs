using BlipSharp.Generation;
using BlipSharp.Modeling;
using BlipSharp.Tests.Pipelines;
using BlipSharp.Tests.TestSupport;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Generation;

/// <summary>Generation behaviour the fixtures do not record: limits, stopping, sampling and beam sampling, the cache.</summary>
public sealed class GenerationBehaviourTests
{
    private static (BlipForConditionalGeneration Model, Tensor Pixels, FixtureCases Cases) Load()
    {
        string dir = PipelineFixtures.Dirs(nameof(BlipForConditionalGeneration))[0];
        var cases = new FixtureCases(dir);
        return (BlipForConditionalGeneration.FromPretrained(dir), cases.Tensor("pixel_values"), cases);
    }

    [Fact]
    public void MaxNewTokensCountsOnlyGeneratedTokensAndMinLengthHolds()
    {
        var (model, pixels, cases) = Load();
        using (cases) using (model)
        {
            using var prompt = tensor(new long[] { 101, 1037, 3861, 1997, 102 }, [1, 5]);
            using var result = model.Generate(pixels, prompt, null, new GenerationOptions { MaxNewTokens = 3 });
            Assert.Equal(4, result.PromptLength);
            Assert.All(result.Sequences, s => Assert.True(s.Length <= 7));
            using var longer = model.Generate(pixels, null, null, new GenerationOptions { MinLength = 12, MaxLength = 15 });
            for (int r = 0; r < longer.Sequences.Count; r++)
                Assert.True(longer.GeneratedTokens(r).Length >= 11, $"row {r}: {longer.GeneratedTokens(r).Length} tokens before the end");
            Assert.Throws<ArgumentException>(() => model.Generate(pixels, prompt, null, new GenerationOptions { MaxLength = 4 }));
        }
    }

    [Fact]
    public void EarlyStoppingBeamSearchEndsNoLaterThanTheDefault()
    {
        var (model, pixels, cases) = Load();
        using (cases) using (model)
        {
            var options = new GenerationOptions { NumBeams = 3, MaxLength = 20, OutputLogits = true };
            using var normal = model.Generate(pixels, null, null, options);
            using var early = model.Generate(pixels, null, null, options with { EarlyStopping = true });
            Assert.True(early.StepLogits!.shape[0] <= normal.StepLogits!.shape[0]);
            // The fixture's beam3_min0 image 1 ends with [SEP] after 2 tokens, so its stored hypotheses fill up early.
            Assert.Contains(early.Sequences, s => s.Contains(102L));
        }
    }

    [Fact]
    public void SamplingIsReproducibleForASeedAndBeamSamplingReturnsScoredDistinctSequences()
    {
        var (model, pixels, cases) = Load();
        using (cases) using (model)
        {
            var sample = GenerationOptions.Nucleus with { Seed = 3, NumReturnSequences = 3 };
            using var a = model.Generate(pixels, null, null, sample);
            using var b = model.Generate(pixels, null, null, sample);
            Assert.Equal(6, a.Sequences.Count); // 2 images x 3
            for (int r = 0; r < 6; r++) Assert.Equal(a.Sequences[r], b.Sequences[r]);
            Assert.Null(a.SequenceScores);

            // Cached and recomputed sampling draw the same tokens from the same generator state.
            using var full = model.Generate(pixels, null, null, sample with { UseCache = false });
            for (int r = 0; r < 6; r++) Assert.Equal(a.Sequences[r], full.Sequences[r]);

            var beamSample = new GenerationOptions { DoSample = true, NumBeams = 3, NumReturnSequences = 2, Seed = 5, MaxLength = 12 };
            using var c = model.Generate(pixels, null, null, beamSample);
            Assert.Equal(4, c.Sequences.Count);
            Assert.NotNull(c.SequenceScores);
            Assert.True(c.SequenceScores![0] >= c.SequenceScores[1]);
        }
    }

    [Fact]
    public void CacheReorderFollowsTheBeamsAndRepetitionPenaltyChangesTheOutput()
    {
        var (model, pixels, cases) = Load();
        using (cases) using (model)
        {
            var options = new GenerationOptions { NumBeams = 4, NumReturnSequences = 4, MaxLength = 16, RepetitionPenalty = 1.5, NoRepeatNgramSize = 2 };
            using var cached = model.Generate(pixels, null, null, options);
            using var full = model.Generate(pixels, null, null, options with { UseCache = false });
            for (int r = 0; r < cached.Sequences.Count; r++) Assert.Equal(full.Sequences[r], cached.Sequences[r]);
            foreach (var s in cached.Sequences)
            {
                var bigrams = s.Zip(s.Skip(1)).Where(p => p.First != 0 && p.Second != 0).ToList();
                Assert.Equal(bigrams.Count, bigrams.Distinct().Count());
            }
            using var plain = model.Generate(pixels, null, null, options with { RepetitionPenalty = 1.0, NoRepeatNgramSize = 0 });
            Assert.False(Enumerable.Range(0, plain.Sequences.Count).All(r => plain.Sequences[r].SequenceEqual(cached.Sequences[r])));
        }
    }
}
