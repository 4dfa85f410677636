namespace BlipSharp.Processing;

/// <summary>
/// Resampling filters, numbered as PIL's <c>Image.Resampling</c> (the <c>resample</c> field of a Hugging Face
/// <c>preprocessor_config.json</c>).
/// </summary>
public enum ResampleFilter
{
    /// <summary>Nearest neighbour (PIL 0): pixel centres mapped back, no filtering.</summary>
    Nearest = 0,

    /// <summary>Lanczos, a = 3 (PIL 1, also called ANTIALIAS).</summary>
    Lanczos = 1,

    /// <summary>Triangle filter (PIL 2).</summary>
    Bilinear = 2,

    /// <summary>Cubic convolution with a = -0.5 (PIL 3); BLIP's default.</summary>
    Bicubic = 3,

    /// <summary>Box filter (PIL 4).</summary>
    Box = 4,

    /// <summary>Hamming-windowed sinc, support 1 (PIL 5).</summary>
    Hamming = 5,
}
