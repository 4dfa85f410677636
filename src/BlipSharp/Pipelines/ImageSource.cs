using BlipSharp.Processing;

namespace BlipSharp.Pipelines;

/// <summary>
/// An image given to a pipeline: a file path, a stream, encoded bytes or an already decoded <see cref="RgbImage"/>.
/// Strings, byte arrays and <see cref="RgbImage"/>s convert implicitly, so <c>captioner.Caption("photo.jpg")</c> works.
/// </summary>
public sealed class ImageSource
{
    private readonly Func<BlipImageProcessor, RgbImage> _decode;

    private ImageSource(string name, Func<BlipImageProcessor, RgbImage> decode)
    {
        Name = name;
        _decode = decode;
    }

    /// <summary>The file path, or a description of the source ("stream", "bytes", "image"), as used in errors and results.</summary>
    public string Name { get; }

    /// <summary>An image file (any format SkiaSharp decodes: JPEG, PNG, WebP, GIF, BMP, ...).</summary>
    public static ImageSource FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return new ImageSource(path, p => p.Decode(path));
    }

    /// <summary>An encoded image read from <paramref name="stream"/> when the pipeline needs it.</summary>
    public static ImageSource FromStream(Stream stream, string name = "stream")
    {
        ArgumentNullException.ThrowIfNull(stream);
        return new ImageSource(name, p => ImageDecoder.Decode(stream, p.Options.Decoder, name));
    }

    /// <summary>An encoded image in memory.</summary>
    public static ImageSource FromBytes(ReadOnlyMemory<byte> encoded, string name = "bytes") =>
        new(name, p => ImageDecoder.Decode(encoded, p.Options.Decoder, name));

    /// <summary>An already decoded image.</summary>
    public static ImageSource FromImage(RgbImage image, string name = "image")
    {
        ArgumentNullException.ThrowIfNull(image);
        return new ImageSource(name, _ => image);
    }

    /// <summary>A file path.</summary>
    public static implicit operator ImageSource(string path) => FromFile(path);

    /// <summary>Encoded bytes.</summary>
    public static implicit operator ImageSource(byte[] encoded) => FromBytes(encoded);

    /// <summary>A decoded image.</summary>
    public static implicit operator ImageSource(RgbImage image) => FromImage(image);

    /// <summary>Decodes the image with the processor's decoder options; throws <see cref="ImageDecodeException"/> naming the source.</summary>
    public RgbImage Decode(BlipImageProcessor processor)
    {
        ArgumentNullException.ThrowIfNull(processor);
        return _decode(processor);
    }

    /// <inheritdoc/>
    public override string ToString() => Name;
}
