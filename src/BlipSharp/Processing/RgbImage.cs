using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Processing;

/// <summary>
/// A decoded image: an immutable, row-major, interleaved 8-bit RGB buffer (height x width x 3, "HWC"),
/// the in-memory equivalent of a PIL image in mode <c>RGB</c>.
/// </summary>
public sealed class RgbImage
{
    private readonly byte[] _pixels;

    private RgbImage(int width, int height, byte[] pixels)
    {
        Width = width;
        Height = height;
        _pixels = pixels;
    }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>The pixels, <c>Height * Width * 3</c> bytes: row by row, each pixel R, G, B.</summary>
    public ReadOnlySpan<byte> Pixels => _pixels;

    /// <summary>The pixels as memory (same layout as <see cref="Pixels"/>).</summary>
    public ReadOnlyMemory<byte> PixelMemory => _pixels;

    /// <summary>Creates an image from a copy of <paramref name="hwc"/> (<c>height * width * 3</c> bytes, row-major RGB).</summary>
    /// <param name="width">Width in pixels, at least 1.</param>
    /// <param name="height">Height in pixels, at least 1.</param>
    /// <param name="hwc">Interleaved RGB bytes, row by row.</param>
    public static RgbImage Create(int width, int height, ReadOnlySpan<byte> hwc)
    {
        long expected = CheckedSize(width, height);
        if (hwc.Length != expected)
            throw new ArgumentException($"an RGB image of {width}x{height} needs {expected} bytes, got {hwc.Length}", nameof(hwc));
        return new RgbImage(width, height, hwc.ToArray());
    }

    /// <summary>Creates an image from a grayscale buffer, expanding each value L to R = G = B = L (PIL's <c>convert("RGB")</c> from mode L).</summary>
    /// <param name="width">Width in pixels, at least 1.</param>
    /// <param name="height">Height in pixels, at least 1.</param>
    /// <param name="luminance"><c>height * width</c> bytes, row by row.</param>
    public static RgbImage FromGray(int width, int height, ReadOnlySpan<byte> luminance)
    {
        long expected = CheckedSize(width, height) / 3;
        if (luminance.Length != expected)
            throw new ArgumentException($"a grayscale image of {width}x{height} needs {expected} bytes, got {luminance.Length}", nameof(luminance));
        var rgb = GC.AllocateUninitializedArray<byte>(luminance.Length * 3);
        for (int i = 0, o = 0; i < luminance.Length; i++, o += 3)
        {
            byte v = luminance[i];
            rgb[o] = v;
            rgb[o + 1] = v;
            rgb[o + 2] = v;
        }
        return new RgbImage(width, height, rgb);
    }

    /// <summary>Wraps a buffer this assembly has just filled; the caller gives up the array.</summary>
    internal static RgbImage Wrap(int width, int height, byte[] hwc)
    {
        if (hwc.LongLength != CheckedSize(width, height))
            throw new ArgumentException($"an RGB image of {width}x{height} needs {CheckedSize(width, height)} bytes, got {hwc.LongLength}", nameof(hwc));
        return new RgbImage(width, height, hwc);
    }

    /// <summary>The pixel at column <paramref name="x"/>, row <paramref name="y"/>.</summary>
    public (byte R, byte G, byte B) this[int x, int y]
    {
        get
        {
            if ((uint)x >= (uint)Width || (uint)y >= (uint)Height)
                throw new ArgumentOutOfRangeException(x < 0 || x >= Width ? nameof(x) : nameof(y), $"pixel ({x}, {y}) is outside the {Width}x{Height} image");
            int o = (y * Width + x) * 3;
            return (_pixels[o], _pixels[o + 1], _pixels[o + 2]);
        }
    }

    /// <summary>
    /// Resizes to <paramref name="width"/> x <paramref name="height"/> (aspect ratio not kept) exactly as PIL 9.4's
    /// <c>Image.resize((width, height), filter)</c> does on a mode-RGB image, bit for bit.
    /// </summary>
    /// <param name="width">Target width, at least 1.</param>
    /// <param name="height">Target height, at least 1.</param>
    /// <param name="filter">Resampling filter (PIL's numbering).</param>
    public RgbImage Resize(int width, int height, ResampleFilter filter = ResampleFilter.Bicubic) =>
        PilResample.Resize(this, width, height, filter);

    /// <summary>The pixels as a new CPU uint8 tensor of shape (Height, Width, 3).</summary>
    public Tensor ToTensor()
    {
        var t = torch.empty(new long[] { Height, Width, 3 }, ScalarType.Byte);
        _pixels.AsSpan().CopyTo(t.bytes);
        return t;
    }

    /// <summary>Creates an image from a uint8 tensor of shape (H, W, 3), as the fixtures store resized images.</summary>
    /// <param name="hwc">A uint8 tensor (H, W, 3) on any device.</param>
    public static RgbImage FromTensor(Tensor hwc)
    {
        if (hwc.dtype != ScalarType.Byte || hwc.dim() != 3 || hwc.shape[2] != 3)
            throw new ArgumentException($"expected a uint8 tensor (H, W, 3), got {hwc.dtype} [{string.Join(", ", hwc.shape)}]", nameof(hwc));
        using var c = hwc.cpu().contiguous();
        return Create(checked((int)c.shape[1]), checked((int)c.shape[0]), c.bytes);
    }

    private static long CheckedSize(int width, int height)
    {
        if (width < 1) throw new ArgumentOutOfRangeException(nameof(width), width, "width must be at least 1");
        if (height < 1) throw new ArgumentOutOfRangeException(nameof(height), height, "height must be at least 1");
        long size = (long)width * height * 3;
        if (size > Array.MaxLength) throw new ArgumentException($"an RGB image of {width}x{height} does not fit in one array");
        return size;
    }
}
