using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlipSharp.Modeling.Text;

/// <summary>
/// Linear layers for the few rows of a decoding step. With a handful of rows (N beams x 1 new token), MKL's
/// float32 <c>x @ Wᵀ</c> is far from the memory-bound speed the layer could reach: on 2 Zen 4 cores the
/// 768 -> 30524 LM head took 19.5 ms for 3 rows and 4.9 ms for 1, while <c>W @ xᵀ</c> took 7.5 ms for 3 rows
/// (bench/RESULTS.md). So up to <see cref="MaxRows"/> float32 CPU rows are computed as <c>(W @ xᵀ)ᵀ</c>; more
/// rows, other dtypes and other devices use <c>linear</c> unchanged. Results differ only by rounding.
/// </summary>
internal static class DecodeLinear
{
    /// <summary>Most rows computed as <c>(W @ xᵀ)ᵀ</c>.</summary>
    public const long MaxRows = 16;

    /// <summary><paramref name="layer"/> applied to <paramref name="x"/> (..., in) -> (..., out).</summary>
    public static Tensor Forward(Linear layer, Tensor x) => Forward(x, layer.weight!, layer.bias);

    /// <summary>x (..., in) @ weightᵀ (+ bias) -> (..., out).</summary>
    public static Tensor Forward(Tensor x, Tensor weight, Tensor? bias)
    {
        long inFeatures = x.shape[^1];
        long rows = inFeatures == 0 ? 0 : x.numel() / inFeatures;
        if (rows == 0 || rows > MaxRows || x.dtype != ScalarType.Float32 || x.device_type != DeviceType.CPU)
            return nn.functional.linear(x, weight, bias);
        using var flat = x.reshape(rows, inFeatures);                                    // (M, in)
        using var flatT = flat.t();                                                      // (in, M)
        using var column = bias?.unsqueeze(1);                                           // (out, 1)
        using var product = column is null ? weight.matmul(flatT) : addmm(column, weight, flatT, 1, 1); // (out, M)
        using var back = product.t();                                                    // (M, out)
        var shape = x.shape.ToArray();
        shape[^1] = weight.shape[0];
        return back.reshape(shape);                                                      // (..., out)
    }
}
