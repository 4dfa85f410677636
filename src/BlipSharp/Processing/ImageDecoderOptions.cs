namespace BlipSharp.Processing;

/// <summary>Options for <see cref="ImageDecoder"/>.</summary>
public sealed record ImageDecoderOptions
{
    /// <summary>
    /// PIL's <c>Image.MAX_IMAGE_PIXELS</c>, <c>1024 * 1024 * 1024 / 4 / 3</c> = 89,478,485 pixels (about a
    /// 9459 x 9459 image, 256 MiB as RGB).
    /// </summary>
    public const long DefaultMaxPixels = 1024L * 1024 * 1024 / 4 / 3;

    /// <summary>
    /// The largest width x height an image may declare, checked against the header before any pixel
    /// memory is allocated (a decompression-bomb guard). At most <see cref="Array.MaxLength"/> / 4.
    /// </summary>
    public long MaxPixels { get; init; } = DefaultMaxPixels;

    /// <summary>
    /// Rotate/flip the image as its EXIF orientation tag says (PIL's <c>ImageOps.exif_transpose</c>). Default
    /// true. Hugging Face's BLIP processor does not do this, so a photo with an orientation tag is fed to the
    /// model as stored; set false to reproduce that exactly.
    /// </summary>
    public bool ApplyExifOrientation { get; init; } = true;

    /// <summary>The defaults: PIL's pixel limit, EXIF orientation applied.</summary>
    public static ImageDecoderOptions Default { get; } = new();
}
