using BlipSharp.Modeling;
using BlipSharp.Tests.TestSupport;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Parity;

/// <summary>
/// Forward passes must not leak tensors. With one dispose scope per call (the style guide's rule) and also
/// without any scope (the modules dispose their own intermediates), the number of live tensors on this thread
/// is the same after many calls as after the first.
/// </summary>
public sealed class TensorLifetimeTests
{
    public static IEnumerable<object[]> Models() => Fixtures.HfModelNames();

    [Theory]
    [MemberData(nameof(Models))]
    public void RepeatedForwardPassesLeaveNoLiveTensors(string name)
    {
        string dir = Fixtures.HfModelDir(name);
        using var cases = new FixtureCases(dir);
        using var model = FixtureModels.Load(dir, FixtureModels.Architecture(cases));
        var pixels = cases.Tensor("pixel_values");
        using var _ = no_grad();
        Action call = model switch
        {
            BlipForConditionalGeneration m => () =>
            {
                var ids = cases.Tensor("forward.input_ids");
                using var o = m.Forward(pixels, ids, cases.Tensor("forward.attention_mask"), labels: ids);
            },
            BlipForImageTextRetrieval m => () =>
            {
                var ids = cases.Tensor("itm.input_ids");
                var mask = cases.Tensor("itm.attention_mask");
                using var itm = m.ImageTextMatching(pixels, ids, mask);
                using var itc = m.ContrastiveSimilarity(pixels, ids, mask);
            },
            BlipForQuestionAnswering m => () =>
            {
                using var o = m.Forward(pixels, cases.Tensor("question.input_ids"), cases.Tensor("question.attention_mask"),
                    labels: cases.Tensor("loss_cls_labels.labels"));
            },
            BlipModel m => () =>
            {
                long n = pixels.shape[0];
                using var ids = cases.Tensor("input_ids")[..(int)n];
                using var mask = cases.Tensor("attention_mask")[..(int)n];
                using var o = m.Forward(pixels, ids, mask, returnLoss: true);
            },
            _ => throw new InvalidOperationException($"no call for {model.GetType().Name}"),
        };

        call(); // first call: lazily created state, if any
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 50; i++)
        {
            using (NewDisposeScope()) call();
        }
        for (int i = 0; i < 50; i++) call();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }
}
