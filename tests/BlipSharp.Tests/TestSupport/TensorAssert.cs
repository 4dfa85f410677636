using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.TestSupport;

public static class TensorAssert
{
    /// <summary>Asserts equal shapes and max |expected - actual| &lt;= atol, reporting where the worst element is.</summary>
    public static void Close(Tensor expected, Tensor actual, double atol, string what)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape),
            $"{what}: shape [{string.Join(", ", actual.shape)}], expected [{string.Join(", ", expected.shape)}]");
        using var scope = NewDisposeScope();
        var e = expected.detach().cpu().to_type(ScalarType.Float64);
        var a = actual.detach().cpu().to_type(ScalarType.Float64);
        Assert.False(a.isnan().any().ToBoolean(), $"{what}: result has NaN");
        var diff = (e - a).abs();
        double max = diff.max().ToDouble();
        if (max > atol)
        {
            long flat = diff.flatten().argmax().ToInt64();
            Assert.Fail($"{what}: max |diff| {max:E3} > tol {atol:E3} at flat index {flat} (expected {e.flatten()[flat].ToDouble():G9}, got {a.flatten()[flat].ToDouble():G9})");
        }
    }

    /// <summary>Asserts two integer tensors are identical.</summary>
    public static void Equal(Tensor expected, Tensor actual, string what)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape),
            $"{what}: shape [{string.Join(", ", actual.shape)}], expected [{string.Join(", ", expected.shape)}]");
        var e = expected.cpu().to_type(ScalarType.Int64).data<long>().ToArray();
        var a = actual.cpu().to_type(ScalarType.Int64).data<long>().ToArray();
        Assert.True(e.SequenceEqual(a), $"{what}: expected [{string.Join(", ", e)}]\n got [{string.Join(", ", a)}]");
    }
}
