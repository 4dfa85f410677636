namespace BlipSharp.Processing;

/// <summary>
/// Settings of <see cref="BlipImageProcessor"/>, the fields of a Hugging Face <c>preprocessor_config.json</c>
/// for <c>BlipImageProcessor</c>. The defaults are Hugging Face's (384 x 384, bicubic, 1/255, OpenAI CLIP mean/std).
/// </summary>
public sealed record BlipImageProcessorOptions
{
    /// <summary>OpenAI CLIP per-channel mean (RGB), BLIP's default <c>image_mean</c>.</summary>
    public static IReadOnlyList<double> OpenAIClipMean { get; } = [0.48145466, 0.4578275, 0.40821073];

    /// <summary>OpenAI CLIP per-channel standard deviation (RGB), BLIP's default <c>image_std</c>.</summary>
    public static IReadOnlyList<double> OpenAIClipStd { get; } = [0.26862954, 0.26130258, 0.27577711];

    /// <summary><c>do_resize</c>: resize every image to <see cref="Width"/> x <see cref="Height"/>, ignoring its aspect ratio.</summary>
    public bool DoResize { get; init; } = true;

    /// <summary><c>size.height</c>: target height in pixels.</summary>
    public int Height { get; init; } = 384;

    /// <summary><c>size.width</c>: target width in pixels.</summary>
    public int Width { get; init; } = 384;

    /// <summary><c>resample</c>: the PIL filter used by the resize.</summary>
    public ResampleFilter Resample { get; init; } = ResampleFilter.Bicubic;

    /// <summary><c>do_rescale</c>: multiply the uint8 values by <see cref="RescaleFactor"/>.</summary>
    public bool DoRescale { get; init; } = true;

    /// <summary><c>rescale_factor</c>: applied in float64, then rounded to float32, as NumPy does.</summary>
    public double RescaleFactor { get; init; } = 1.0 / 255.0;

    /// <summary><c>do_normalize</c>: compute <c>(x - mean) / std</c> per channel, in float32.</summary>
    public bool DoNormalize { get; init; } = true;

    /// <summary><c>image_mean</c>: three per-channel means (rounded to float32 before use).</summary>
    public IReadOnlyList<double> ImageMean { get; init; } = OpenAIClipMean;

    /// <summary><c>image_std</c>: three per-channel standard deviations (rounded to float32 before use).</summary>
    public IReadOnlyList<double> ImageStd { get; init; } = OpenAIClipStd;

    /// <summary>
    /// <c>do_convert_rgb</c>: recorded for round-tripping. Images reach the processor as <see cref="RgbImage"/>,
    /// which is always RGB (the decoder does PIL's <c>convert("RGB")</c>), so false changes nothing.
    /// </summary>
    public bool DoConvertRgb { get; init; } = true;

    /// <summary>How the path, stream and byte overloads of the processor decode images.</summary>
    public ImageDecoderOptions Decoder { get; init; } = ImageDecoderOptions.Default;
}
