using BlipSharp.Configuration;

namespace BlipSharp.Bench;

/// <summary>
/// Analytic multiply-add counts (2 FLOPs each) of the matrix products; LayerNorm, softmax, GELU, biases and
/// residual adds are left out (under 1% of the vision encoder).
/// </summary>
internal static class Flops
{
    /// <summary>The vision encoder on <paramref name="batch"/> images: patch convolution plus every block.</summary>
    public static double VisionEncoder(BlipVisionConfig c, int batch)
    {
        double patches = (double)c.GridSize * c.GridSize;
        double t = patches + 1, d = c.HiddenSize;
        double patchConv = 2 * patches * d * (c.NumChannels * c.PatchSize * c.PatchSize);
        double qkv = 2 * t * d * 3 * d;
        double attention = 2 * (2 * t * t * d);            // q kᵀ and (probs) v over all heads
        double projection = 2 * t * d * d;
        double mlp = 2 * (2 * t * d * c.IntermediateSize);
        return batch * (patchConv + c.NumHiddenLayers * (qkv + attention + projection + mlp));
    }

    /// <summary>
    /// The text encoder on <paramref name="batch"/> texts of <paramref name="length"/> tokens; with
    /// <paramref name="imageTokens"/> > 0 each layer also cross-attends to that many image states.
    /// </summary>
    public static double TextEncoder(BlipTextConfig c, int batch, int length, int imageTokens)
    {
        double t = length, h = c.HiddenSize, s = imageTokens, e = c.EncoderHiddenSize;
        double self = 2 * t * h * 3 * h + 2 * (2 * t * t * h) + 2 * t * h * h;
        double cross = imageTokens == 0 ? 0 : 2 * t * h * h + 2 * s * e * 2 * h + 2 * (2 * t * s * h) + 2 * t * h * h;
        double ffn = 2 * (2 * t * h * c.IntermediateSize);
        return batch * c.NumHiddenLayers * (self + cross + ffn);
    }

    /// <summary>A (m, k) by (k, n) product.</summary>
    public static double Gemm(double m, double k, double n) => 2 * m * k * n;
}
