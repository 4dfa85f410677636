using BlipSharp.Checkpoints;
using BlipSharp.Modeling;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.TestSupport;

/// <summary>Loads the task model a fixture folder was written from, and compares tensors with the fixture.</summary>
public static class FixtureModels
{
    public static string Architecture(FixtureCases cases) => cases.Json.GetProperty("architecture").GetString()!;

    public static nn.Module Load(string dir, string architecture) => architecture switch
    {
        nameof(BlipForConditionalGeneration) => BlipCheckpoint.LoadForConditionalGeneration(dir),
        nameof(BlipForImageTextRetrieval) => BlipCheckpoint.LoadForImageTextRetrieval(dir),
        nameof(BlipForQuestionAnswering) => BlipCheckpoint.LoadForQuestionAnswering(dir),
        nameof(BlipModel) => BlipCheckpoint.LoadModel(dir),
        _ => throw new InvalidOperationException($"{dir}: unknown architecture '{architecture}' in cases.json"),
    };

    /// <summary>Asserts <paramref name="actual"/> matches fixture tensor <paramref name="name"/> within its noise-derived tolerance.</summary>
    public static void Check(FixtureCases cases, string name, Tensor actual)
    {
        var expected = cases.Tensor(name);
        if (expected.shape.Length == 1 && expected.shape[0] == 1 && actual.shape.Length == 0) actual = actual.reshape(1);
        TensorAssert.Close(expected, actual, cases.Tolerance(name), $"{Path.GetFileName(cases.Dir)}: {name}");
    }

    public static Tensor Long(FixtureCases cases, string name) => cases.Tensor(name).to_type(ScalarType.Int64);
}
