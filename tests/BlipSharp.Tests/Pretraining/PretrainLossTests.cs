using System.Text.Json;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Losses;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Pretraining;

/// <summary>
/// The three losses and the hard-negative weights, each alone: against BLIP's recorded tensors (pretraining:
/// identity targets and epsilon 1e-4; retrieval: same-id positives, epsilon 0) and against hand-worked values.
/// </summary>
public sealed class PretrainLossTests
{
    private static IEnumerable<string> CaseDirs(string model) => OriginalFixtures.CaseDirs(model);

    private static List<JsonElement> Steps(FixtureCases cases) => cases.Json.GetProperty("cases").GetProperty("steps").EnumerateArray().ToList();

    [Fact]
    [Trait("Category", "Parity")]
    public void ContrastiveLossMatchesBlipPretrainFromRecordedFeatures()
    {
        foreach (string dir in CaseDirs(OriginalFixtures.PretrainModel))
        {
            using var cases = new FixtureCases(dir);
            var steps = Steps(cases);
            for (int k = 1; k <= steps.Count; k++)
            {
                string p = $"step{k}.";
                using var scope = NewDisposeScope();
                var output = new ContrastiveLoss().Forward(cases.Tensor(p + "image_feat"), cases.Tensor(p + "text_feat"),
                    cases.Tensor(p + "image_feat_m"), cases.Tensor(p + "text_feat_m"), cases.Tensor(p + "queue_before.image_queue"),
                    cases.Tensor(p + "queue_before.text_queue"), cases.Tensor(p + "temp_used").reshape(Array.Empty<long>()), steps[k - 1].GetProperty("alpha").GetDouble());
                FixtureModels.Check(cases, p + "sim_i2t_m", output.SimImageToTextM);
                FixtureModels.Check(cases, p + "sim_t2i_m", output.SimTextToImageM);
                FixtureModels.Check(cases, p + "sim_i2t_targets", output.TargetsImageToText);
                FixtureModels.Check(cases, p + "sim_t2i_targets", output.TargetsTextToImage);
                FixtureModels.Check(cases, p + "sim_i2t", output.SimImageToText);
                FixtureModels.Check(cases, p + "sim_t2i", output.SimTextToImage);
                FixtureModels.Check(cases, p + "loss_i2t", output.LossImageToText);
                FixtureModels.Check(cases, p + "loss_t2i", output.LossTextToImage);
                FixtureModels.Check(cases, p + "loss_ita", output.Loss);
            }
        }
    }

    [Fact]
    [Trait("Category", "Parity")]
    public void ContrastiveToleranceRejectsAWrongAlpha()
    {
        // The tolerance can fail: the targets of an alpha off by 0.01 are outside it.
        string dir = CaseDirs(OriginalFixtures.PretrainModel).First();
        using var cases = new FixtureCases(dir);
        double alpha = Steps(cases)[0].GetProperty("alpha").GetDouble();
        using var scope = NewDisposeScope();
        var output = new ContrastiveLoss().Forward(cases.Tensor("step1.image_feat"), cases.Tensor("step1.text_feat"),
            cases.Tensor("step1.image_feat_m"), cases.Tensor("step1.text_feat_m"), cases.Tensor("step1.queue_before.image_queue"),
            cases.Tensor("step1.queue_before.text_queue"), cases.Tensor("step1.temp_used").reshape(Array.Empty<long>()), alpha + 0.01);
        double diff = (output.TargetsImageToText - cases.Tensor("step1.sim_i2t_targets")).abs().max().ToDouble();
        Assert.True(diff > 10 * cases.Tolerance("step1.sim_i2t_targets"), $"diff {diff:E2} vs tol {cases.Tolerance("step1.sim_i2t_targets"):E2}");
    }

    [Fact]
    [Trait("Category", "Parity")]
    public void ContrastiveLossWithImageIdsMatchesBlipRetrieval()
    {
        foreach (string dir in CaseDirs("models.blip_retrieval.BLIP_Retrieval"))
        {
            using var cases = new FixtureCases(dir);
            var steps = Steps(cases);
            for (int k = 1; k <= steps.Count; k++)
            {
                string p = $"step{k}.";
                using var scope = NewDisposeScope();
                var ids = cases.Tensor(p + "idx");
                var positives = ContrastiveLoss.Positives(ids.shape[0], cases.Tensor(p + "sim_targets").shape[1], ids, cases.Tensor(p + "idx_queue_before"), ScalarType.Float32, CPU);
                FixtureModels.Check(cases, p + "sim_targets", positives);
                var output = new ContrastiveLoss().Forward(cases.Tensor(p + "image_feat"), cases.Tensor(p + "text_feat"),
                    cases.Tensor(p + "image_feat_m"), cases.Tensor(p + "text_feat_m"), cases.Tensor(p + "image_queue_before"),
                    cases.Tensor(p + "text_queue_before"), cases.Tensor(p + "temp_used").reshape(Array.Empty<long>()),
                    steps[k - 1].GetProperty("alpha").GetDouble(), ids, cases.Tensor(p + "idx_queue_before"));
                FixtureModels.Check(cases, p + "sim_i2t_m", output.SimImageToTextM);
                FixtureModels.Check(cases, p + "sim_t2i_m", output.SimTextToImageM);
                FixtureModels.Check(cases, p + "sim_i2t_targets", output.TargetsImageToText);
                FixtureModels.Check(cases, p + "sim_t2i_targets", output.TargetsTextToImage);
                FixtureModels.Check(cases, p + "itc.sim_i2t", output.SimImageToText);
                FixtureModels.Check(cases, p + "itc.sim_t2i", output.SimTextToImage);
                FixtureModels.Check(cases, p + "itc.loss_i2t", output.LossImageToText);
                FixtureModels.Check(cases, p + "itc.loss_t2i", output.LossTextToImage);
                FixtureModels.Check(cases, p + "loss_ita", output.Loss);
            }
        }
    }

    [Fact]
    [Trait("Category", "Parity")]
    public void HardNegativeWeightsMatchBlipPretrainAndRetrieval()
    {
        foreach (string dir in CaseDirs(OriginalFixtures.PretrainModel))
        {
            using var cases = new FixtureCases(dir);
            for (int k = 1; k <= Steps(cases).Count; k++)
            {
                string p = $"step{k}.";
                using var scope = NewDisposeScope();
                long b = cases.Tensor(p + "weights_t2i").shape[0];
                // Pretraining: the in-batch columns of the ITC logits (online vs momentum), + 1e-4, diagonal zeroed.
                var t2i = HardNegativeMining.SamplingWeights(cases.Tensor(p + "sim_t2i").narrow(1, 0, b), null, HardNegativeMining.PretrainingEpsilon);
                var i2t = HardNegativeMining.SamplingWeights(cases.Tensor(p + "sim_i2t").narrow(1, 0, b), null, HardNegativeMining.PretrainingEpsilon);
                FixtureModels.Check(cases, p + "weights_t2i", t2i);
                FixtureModels.Check(cases, p + "weights_i2t", i2t);
                Assert.True(t2i.diagonal().eq(0).all().ToBoolean());
            }
        }
        foreach (string dir in CaseDirs("models.blip_retrieval.BLIP_Retrieval"))
        {
            using var cases = new FixtureCases(dir);
            for (int k = 1; k <= Steps(cases).Count; k++)
            {
                string p = $"step{k}.";
                using var scope = NewDisposeScope();
                var ids = cases.Tensor(p + "idx");
                // Retrieval: online-vs-online similarities, no epsilon, every same-id pair masked.
                var t2i = HardNegativeMining.SamplingWeights(cases.Tensor(p + "itm.sim_t2i"), ids, 0.0);
                var i2t = HardNegativeMining.SamplingWeights(cases.Tensor(p + "itm.sim_i2t"), ids, 0.0);
                FixtureModels.Check(cases, p + "weights_t2i", t2i);
                FixtureModels.Check(cases, p + "weights_i2t", i2t);
                TensorAssert.Equal(cases.Tensor(p + "mask"), ids.view(-1, 1).eq(ids.view(1, -1)), $"{p}mask");
                // The recorded draws are allowed negatives (weight > 0); the fixed sampler checks exactly that.
                var step = Steps(cases)[k - 1];
                var drawn = new FixedNegativeSampler(step.GetProperty("neg_image_idx").EnumerateArray().Select(e => e.GetInt64()).ToArray(),
                    step.GetProperty("neg_text_idx").EnumerateArray().Select(e => e.GetInt64()).ToArray()).Sample(t2i, i2t);
                TensorAssert.Equal(cases.Tensor(p + "neg_image_idx"), drawn.ImageIndices, $"{p}neg_image_idx");
            }
        }
    }

    [Fact]
    public void FixedSamplerRejectsAPositiveAsNegative()
    {
        using var scope = NewDisposeScope();
        var sim = tensor(new float[] { 1, 0, 0, 1 }).view(2, 2);
        var weights = HardNegativeMining.SamplingWeights(sim, null, HardNegativeMining.PretrainingEpsilon);
        var e = Assert.Throws<ArgumentException>(() => new FixedNegativeSampler([0, 0], [1, 0]).Sample(weights, weights));
        Assert.Contains("row 0", e.Message);
    }

    [Fact]
    public void MultinomialSamplerDrawsOnlyNegativesInProportionToTheWeights()
    {
        using var scope = NewDisposeScope();
        // Row 0: weights 0 (itself), 3, 1 -> image 1 three times as often as image 2.
        var weights = tensor(new float[] { 0, 3, 1, 1, 0, 1, 1, 1, 0 }).view(3, 3);
        var sampler = new MultinomialNegativeSampler(new Generator(1234));
        var counts = new int[3, 3];
        for (int i = 0; i < 2000; i++)
        {
            using var inner = NewDisposeScope();
            var drawn = sampler.Sample(weights, weights);
            for (int row = 0; row < 3; row++) counts[row, drawn.ImageIndices[row].ToInt64()]++;
        }
        for (int row = 0; row < 3; row++) Assert.Equal(0, counts[row, row]);
        double ratio = counts[0, 1] / (double)counts[0, 2];
        Assert.InRange(ratio, 2.6, 3.4);
        var single = tensor(new float[] { 0 }).view(1, 1);
        Assert.Throws<InvalidOperationException>(() => sampler.Sample(single, single));
    }

    [Fact]
    public void SamplingWeightsMaskSameIdPairs()
    {
        using var scope = NewDisposeScope();
        var sim = zeros(3, 3);
        var ids = tensor(new long[] { 7, 8, 7 });
        var w = HardNegativeMining.SamplingWeights(sim, ids, 0.0);
        // softmax of a zero row is 1/3 each; same-id pairs (0,0), (0,2), (1,1), (2,0), (2,2) are zeroed.
        var expected = tensor(new float[] { 0, 1f / 3, 0, 1f / 3, 0, 1f / 3, 0, 1f / 3, 0 }).view(3, 3);
        TensorAssert.Close(expected, w, 1e-7, "weights");
        var eps = HardNegativeMining.SamplingWeights(sim, null, 1e-4);
        Assert.Equal(1.0 / 3 + 1e-4, eps[0, 1].ToDouble(), 6);
        Assert.Equal(0.0, eps[1, 1].ToDouble());
    }

    [Fact]
    public void MatchingLossIsCrossEntropyOverPositivesThenNegatives()
    {
        using var scope = NewDisposeScope();
        var logits = tensor(new float[] { 0, 2, 1, -1, 0.5f, 0.5f }).view(3, 2);
        var output = new MatchingLoss().Forward(logits, positives: 1);
        TensorAssert.Equal(tensor(new long[] { 1, 0, 0 }), output.Labels, "labels");
        // -log softmax: row 0 label 1: log(1 + e^-2); row 1 label 0: log(1 + e^-2); row 2: log 2.
        double expected = (2 * Math.Log(1 + Math.Exp(-2)) + Math.Log(2)) / 3;
        Assert.Equal(expected, output.Loss.ToDouble(), 6);
    }

    [Fact]
    public void LanguageModelingLossShiftsSmoothsAndIgnoresPadding()
    {
        using var scope = NewDisposeScope();
        // One sequence of 3 tokens over a vocabulary of 3: positions 0 and 1 predict labels[1] and labels[2].
        float[] l = [1, 2, 0, 0, 0, 3, 5, 5, 5];
        var logits = tensor(l).view(1, 3, 3);
        var labels = tensor(new long[] { 9, 1, 2 }).view(1, 3);
        var output = new LanguageModelingLoss(0.1).Forward(logits, labels);
        double Smoothed(int pos, int target)
        {
            double[] row = [l[pos * 3], l[pos * 3 + 1], l[pos * 3 + 2]];
            double lse = Math.Log(row.Sum(Math.Exp));
            double nll = lse - row[target];
            double uniform = row.Sum(x => lse - x) / 3;
            return 0.9 * nll + 0.1 * uniform;
        }
        Assert.Equal(Smoothed(0, 1), output.PerToken[0, 0].ToDouble(), 5);
        Assert.Equal(Smoothed(1, 2), output.PerToken[0, 1].ToDouble(), 5);
        Assert.Equal((Smoothed(0, 1) + Smoothed(1, 2)) / 2, output.Loss.ToDouble(), 5);

        // [PAD] -> -100 is ignored: the mean is over the one remaining target.
        var padded = LanguageModelingLoss.Targets(tensor(new long[] { 9, 1, 0 }).view(1, 3), padTokenId: 0);
        TensorAssert.Equal(tensor(new long[] { 9, 1, -100 }).view(1, 3), padded, "targets");
        var masked = new LanguageModelingLoss(0.1).Forward(logits, padded);
        Assert.Equal(0.0, masked.PerToken[0, 1].ToDouble());
        Assert.Equal(Smoothed(0, 1), masked.Loss.ToDouble(), 5);
    }
}
