using BlipSharp.Modeling.Vision;
using BlipSharp.Tests.TestSupport;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Parity;

/// <summary>
/// The vision encoder's speed paths reproduce transformers. Float32 runs the fused attention kernel by default,
/// so the explicit one (the bfloat16 default, which splits the heads into groups) is checked here explicitly;
/// the fixture configs make it use several groups (17 tokens, I = 64: groups of 2 heads; mixed-width: 1 head).
/// bfloat16 also pads the tokens to a multiple of 8 (17 -> 24), which must not change the real tokens' states.
/// </summary>
[Trait("Category", "Parity")]
public sealed class VisionAttentionKernelTests
{
    public static IEnumerable<object[]> Cases() =>
        from m in Fixtures.HfModelNames()
        from k in new[] { AttentionKernel.Fused, AttentionKernel.Explicit }
        select new object[] { m[0], k };

    [Theory]
    [MemberData(nameof(Cases))]
    public void VisionEncoderMatchesWithKernel(string model, AttentionKernel kernel)
    {
        string dir = Fixtures.HfModelDir(model);
        using var cases = new FixtureCases(dir);
        using var m = FixtureModels.Load(dir, FixtureModels.Architecture(cases));
        var vision = VisionOf(m);
        vision.SetAttentionKernel(kernel);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var output = vision.Forward(cases.Tensor("pixel_values"), outputHiddenStates: true);
        FixtureModels.Check(cases, "vision.last_hidden_state", output.LastHiddenState);
        FixtureModels.Check(cases, "vision.hidden_states", output.HiddenStates!);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TokenPaddingLeavesBfloat16StatesUnchanged(string model, AttentionKernel kernel)
    {
        string dir = Fixtures.HfModelDir(model);
        using var cases = new FixtureCases(dir);
        using var m = FixtureModels.Load(dir, FixtureModels.Architecture(cases));
        var vision = VisionOf(m);
        vision.to(ScalarType.BFloat16);
        vision.SetAttentionKernel(kernel);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var pixels = cases.Tensor("pixel_values");
        vision.encoder.PadTokens = true;
        var padded = vision.Forward(pixels, outputHiddenStates: true);
        vision.encoder.PadTokens = false;
        var plain = vision.Forward(pixels, outputHiddenStates: true);
        Assert.Equal(plain.HiddenStates!.shape, padded.HiddenStates!.shape);
        // Padding changes only which GEMM blocking runs, so at most the last bit of a bfloat16 (2^-8 relative)
        // may differ; attending to a padding token moves states by several percent.
        foreach (var (a, b) in new[] { (plain.HiddenStates, padded.HiddenStates), (plain.LastHiddenState, padded.LastHiddenState) })
        {
            var af = a.to_type(ScalarType.Float32);
            var bf = b.to_type(ScalarType.Float32);
            double deviation = (af - bf).abs().max().item<float>();
            double scale = af.abs().max().item<float>();
            Assert.True(deviation <= scale / 128, $"{model}: padded bfloat16 states deviate by {deviation} (scale {scale})");
        }
    }

    private static BlipVisionModel VisionOf(nn.Module model) =>
        (BlipVisionModel)model.named_children().Single(c => c.name == "vision_model").module;
}
