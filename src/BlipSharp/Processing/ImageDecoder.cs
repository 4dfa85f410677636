using SkiaSharp;

namespace BlipSharp.Processing;

/// <summary>
/// Decodes PNG, JPEG, WebP, GIF (first frame), BMP and the other formats Skia reads into an
/// <see cref="RgbImage"/>, matching PIL's <c>Image.open(f).convert("RGB")</c>:
/// <list type="bullet">
/// <item>grayscale becomes R = G = B = L; palette images are expanded;</item>
/// <item>alpha is <em>dropped</em>, not composited: pixels are decoded unpremultiplied, so a fully transparent
/// pixel keeps the colour stored under it;</item>
/// <item>no colour management: embedded ICC profiles and gamma chunks are ignored, as PIL does;</item>
/// <item>16-bit channels keep their high byte (PIL does this for RGB/RGBA/LA; for 16-bit grayscale PIL clips
/// the value to 255 instead, which we do not reproduce);</item>
/// <item>the EXIF orientation is applied unless <see cref="ImageDecoderOptions.ApplyExifOrientation"/> is false.</item>
/// </list>
/// Every failure (missing, empty, unrecognised, truncated or corrupt input, or a declared size over
/// <see cref="ImageDecoderOptions.MaxPixels"/>) is an <see cref="ImageDecodeException"/> naming the source.
/// Truncated data is refused (PIL's default, <c>LOAD_TRUNCATED_IMAGES = False</c>), never padded.
/// </summary>
/// <remarks>
/// Known differences from PIL, all outside the BLIP fixtures: a GIF pixel whose palette index is the
/// transparent one comes out black (Skia leaves it transparent), where PIL shows that palette entry's colour;
/// 16-bit grayscale keeps its high byte where PIL clips to 255; JPEG pixels come from Skia's libjpeg-turbo,
/// which can differ from PIL's build by a level where their IDCT or chroma upsampling differ; CMYK JPEGs
/// are converted by Skia rather than by PIL's naive inversion. PIL only warns between one and two times
/// its pixel limit; this decoder refuses anything over <see cref="ImageDecoderOptions.MaxPixels"/>.
/// </remarks>
public static class ImageDecoder
{
    /// <summary>Decodes the image file at <paramref name="path"/>.</summary>
    /// <param name="path">Path of an image file.</param>
    /// <param name="options">Decoding options; <see cref="ImageDecoderOptions.Default"/> when null.</param>
    public static RgbImage Decode(string path, ImageDecoderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        byte[] data;
        try
        {
            if (!File.Exists(path))
                throw new ImageDecodeException(path, Directory.Exists(path) ? "the path is a directory, not a file" : "the file does not exist");
            data = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new ImageDecodeException(path, $"the file cannot be read: {e.Message}", e);
        }
        return Decode(data, options, path);
    }

    /// <summary>Decodes an image read from <paramref name="stream"/> (read to its end; not disposed).</summary>
    /// <param name="stream">A readable stream positioned at the start of the encoded image.</param>
    /// <param name="options">Decoding options; <see cref="ImageDecoderOptions.Default"/> when null.</param>
    /// <param name="sourceName">How error messages name the input.</param>
    public static RgbImage Decode(Stream stream, ImageDecoderOptions? options = null, string sourceName = "stream")
    {
        ArgumentNullException.ThrowIfNull(stream);
        byte[] data;
        try
        {
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            data = copy.ToArray();
        }
        catch (Exception e) when (e is IOException or NotSupportedException or ObjectDisposedException)
        {
            throw new ImageDecodeException(sourceName, $"the stream cannot be read: {e.Message}", e);
        }
        return Decode(data, options, sourceName);
    }

    /// <summary>Decodes an encoded image held in memory (a <c>byte[]</c> converts implicitly).</summary>
    /// <param name="encoded">The encoded file content.</param>
    /// <param name="options">Decoding options; <see cref="ImageDecoderOptions.Default"/> when null.</param>
    /// <param name="sourceName">How error messages name the input.</param>
    public static RgbImage Decode(ReadOnlyMemory<byte> encoded, ImageDecoderOptions? options = null, string sourceName = "memory")
    {
        options ??= ImageDecoderOptions.Default;
        if (options.MaxPixels < 1 || options.MaxPixels > Array.MaxLength / 4)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxPixels, $"MaxPixels must be between 1 and {Array.MaxLength / 4}");
        if (encoded.Length == 0) throw new ImageDecodeException(sourceName, "the input is empty (0 bytes)");
        try
        {
            return DecodeCore(encoded.Span, options, sourceName);
        }
        catch (ImageDecodeException)
        {
            throw;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new ImageDecodeException(sourceName, $"the decoder failed: {e.Message}", e);
        }
    }

    private static unsafe RgbImage DecodeCore(ReadOnlySpan<byte> encoded, ImageDecoderOptions options, string source)
    {
        using var data = SKData.CreateCopy(encoded)
            ?? throw new ImageDecodeException(source, "the encoded bytes could not be handed to the decoder");
        using var codec = SKCodec.Create(data)
            ?? throw new ImageDecodeException(source, $"not a recognised image format (starts with {Hex(encoded)}; PNG, JPEG, WebP, GIF, BMP, ICO and WBMP are supported)");

        var info = codec.Info;
        int width = info.Width, height = info.Height;
        if (width < 1 || height < 1)
            throw new ImageDecodeException(source, $"the header declares an empty image ({width}x{height})");
        long pixels = (long)width * height;
        if (pixels > options.MaxPixels)
            throw new ImageDecodeException(source,
                $"the header declares {width}x{height} = {pixels:N0} pixels, over the limit of {options.MaxPixels:N0} " +
                "(a decompression-bomb guard; raise ImageDecoderOptions.MaxPixels to accept it)");

        // 8-bit RGBA, unpremultiplied, and no colour space: Skia then neither premultiplies nor colour-converts.
        var dstInfo = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = GC.AllocateUninitializedArray<byte>(checked((int)(pixels * 4)));
        SKCodecResult result;
        fixed (byte* p = rgba)
        {
            result = codec.GetPixels(dstInfo, (IntPtr)p, width * 4, new SKCodecOptions(0));
        }
        if (result != SKCodecResult.Success)
            throw new ImageDecodeException(source, result switch
            {
                SKCodecResult.IncompleteInput => $"the {codec.EncodedFormat} data is truncated (only part of the {width}x{height} image could be decoded)",
                SKCodecResult.ErrorInInput => $"the {codec.EncodedFormat} data is corrupt",
                SKCodecResult.InvalidInput => $"the {codec.EncodedFormat} data is invalid",
                _ => $"the {codec.EncodedFormat} decoder reported {result}",
            });

        var rgb = GC.AllocateUninitializedArray<byte>(checked((int)(pixels * 3)));
        for (long i = 0, o = 0; o < rgb.Length; i += 4, o += 3)
        {
            rgb[o] = rgba[i];
            rgb[o + 1] = rgba[i + 1];
            rgb[o + 2] = rgba[i + 2];
        }

        var image = RgbImage.Wrap(width, height, rgb);
        return options.ApplyExifOrientation ? Orient(image, codec.EncodedOrigin) : image;
    }

    /// <summary>
    /// Applies an EXIF orientation as PIL's <c>ImageOps.exif_transpose</c> does: 2 mirror, 3 rotate 180,
    /// 4 flip, 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
    /// </summary>
    internal static RgbImage Orient(RgbImage image, SKEncodedOrigin origin)
    {
        int w = image.Width, h = image.Height;
        // Output pixel (x, y) shows source pixel start + x * stepX + y * stepY (in pixels).
        (int start, int stepX, int stepY, bool swap) = origin switch
        {
            SKEncodedOrigin.TopRight => (w - 1, -1, w, false),                 // sx = w-1-x, sy = y
            SKEncodedOrigin.BottomRight => ((h - 1) * w + w - 1, -1, -w, false), // sx = w-1-x, sy = h-1-y
            SKEncodedOrigin.BottomLeft => ((h - 1) * w, 1, -w, false),         // sx = x,     sy = h-1-y
            SKEncodedOrigin.LeftTop => (0, w, 1, true),                        // sx = y,     sy = x
            SKEncodedOrigin.RightTop => ((h - 1) * w, -w, 1, true),            // sx = y,     sy = h-1-x
            SKEncodedOrigin.RightBottom => ((h - 1) * w + w - 1, -w, -1, true), // sx = w-1-y, sy = h-1-x
            SKEncodedOrigin.LeftBottom => (w - 1, w, -1, true),                // sx = w-1-y, sy = x
            _ => (0, 0, 0, false),
        };
        if (stepX == 0) return image;
        int outW = swap ? h : w, outH = swap ? w : h;
        var src = image.Pixels;
        var dst = GC.AllocateUninitializedArray<byte>(src.Length);
        int d = 0;
        for (int y = 0; y < outH; y++)
        {
            int s = start + y * stepY;
            for (int x = 0; x < outW; x++, s += stepX, d += 3)
            {
                int o = s * 3;
                dst[d] = src[o];
                dst[d + 1] = src[o + 1];
                dst[d + 2] = src[o + 2];
            }
        }
        return RgbImage.Wrap(outW, outH, dst);
    }

    private static string Hex(ReadOnlySpan<byte> data) =>
        Convert.ToHexString(data[..Math.Min(8, data.Length)]) + (data.Length > 8 ? "..." : "");
}
