using BlipSharp.Processing;

namespace BlipSharp.Training.Data;

/// <summary>How <see cref="AugmentOps.AutoContrast"/> computes its table.</summary>
public enum AutoContrastVariant
{
    /// <summary>
    /// Exactly BLIP's <c>autocontrast_func</c>, including its NumPy quirk: <c>offset = -low * scale</c> negates a
    /// uint8 scalar, which wraps to <c>256 - low</c>, so any channel whose minimum is above 0 comes out all 255.
    /// Channels that reach 0 are stretched correctly. This is what BLIP trained with.
    /// </summary>
    Reference,

    /// <summary>What the reference meant (PIL's <c>ImageOps.autocontrast</c> with no cutoff): each channel stretched from [min, max] to [0, 255].</summary>
    Pil,
}

/// <summary>
/// The image operations of BLIP's <c>transform/randaugment.py</c> (NumPy/OpenCV on an HWC uint8 array), on
/// <see cref="RgbImage"/>. Table-based operations are exact; the affine ones follow <c>cv2.warpAffine</c> with
/// bilinear interpolation on a 1/32-pixel grid and a constant border, which matches OpenCV to within a level.
/// Like the reference, colour weights written for BGR (0.114, 0.587, 0.299) are applied to the channels in
/// the order they come, which here is R, G, B.
/// </summary>
public static class AugmentOps
{
    /// <summary>The grey the reference fills uncovered pixels with (<c>replace_value = (128, 128, 128)</c>).</summary>
    public const byte ReferenceFill = 128;

    /// <summary><c>autocontrast_func(img)</c>: per channel, stretch [min, max] to [0, 255] (see <see cref="AutoContrastVariant"/>).</summary>
    /// <param name="image">The image.</param>
    /// <param name="variant">Reproduce the reference's uint8 wrap (default) or compute the intended stretch.</param>
    public static RgbImage AutoContrast(RgbImage image, AutoContrastVariant variant = AutoContrastVariant.Reference)
    {
        ArgumentNullException.ThrowIfNull(image);
        var src = image.Pixels;
        var tables = new byte[3][];
        for (int c = 0; c < 3; c++)
        {
            int low = 255, high = 0;
            for (int i = c; i < src.Length; i += 3)
            {
                int v = src[i];
                if (v < low) low = v;
                if (v > high) high = v;
            }
            var table = new byte[256];
            if (high <= low)
            {
                for (int i = 0; i < 256; i++) table[i] = (byte)i;
            }
            else
            {
                double scale = 255.0 / (high - low);
                // NumPy: -np.uint8(low) is (256 - low) % 256.
                double offset = variant == AutoContrastVariant.Reference ? ((256 - low) & 0xFF) * scale : -low * scale;
                for (int i = 0; i < 256; i++) table[i] = TruncateToByte(i * scale + offset);
            }
            tables[c] = table;
        }
        return MapChannels(image, tables);
    }

    /// <summary>
    /// <c>equalize_func(img)</c>, PIL's <c>ImageOps.equalize</c>: per channel, <c>step = (sum of the histogram without
    /// its last non-empty bin) // 255</c>; if 0 the channel is kept; else <c>lut[i] = (step // 2 + count below i) // step</c>.
    /// </summary>
    /// <param name="image">The image.</param>
    public static RgbImage Equalize(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        var src = image.Pixels;
        var tables = new byte[3][];
        for (int c = 0; c < 3; c++)
        {
            var hist = new long[256];
            for (int i = c; i < src.Length; i += 3) hist[src[i]]++;
            long total = 0, last = 0;
            for (int i = 0; i < 256; i++)
            {
                if (hist[i] == 0) continue;
                total += hist[i];
                last = hist[i];
            }
            long step = (total - last) / 255;
            var table = new byte[256];
            if (step == 0)
            {
                for (int i = 0; i < 256; i++) table[i] = (byte)i;
            }
            else
            {
                long n = step / 2;
                for (int i = 0; i < 256; i++)
                {
                    table[i] = (byte)Math.Min(255, n / step);
                    n += hist[i];
                }
            }
            tables[c] = table;
        }
        return MapChannels(image, tables);
    }

    /// <summary><c>brightness_func(img, factor)</c>: <c>float32(v) * factor</c>, clipped and truncated.</summary>
    /// <param name="image">The image.</param>
    /// <param name="factor">1 keeps the image.</param>
    public static RgbImage Brightness(RgbImage image, double factor)
    {
        ArgumentNullException.ThrowIfNull(image);
        float f = (float)factor;
        var table = new byte[256];
        for (int i = 0; i < 256; i++) table[i] = TruncateToByte((float)i * f);
        return MapChannels(image, [table, table, table]);
    }

    /// <summary>
    /// <c>contrast_func(img, factor)</c>: <c>(v - mean) * factor + mean</c> with <c>mean</c> the channel means
    /// weighted (0.114, 0.587, 0.299), clipped and truncated.
    /// </summary>
    /// <param name="image">The image.</param>
    /// <param name="factor">1 keeps the image.</param>
    public static RgbImage Contrast(RgbImage image, double factor)
    {
        ArgumentNullException.ThrowIfNull(image);
        var src = image.Pixels;
        var sums = new long[3];
        for (int i = 0; i < src.Length; i += 3)
        {
            sums[0] += src[i];
            sums[1] += src[i + 1];
            sums[2] += src[i + 2];
        }
        double pixels = image.Width * (double)image.Height;
        double mean = sums[0] / pixels * 0.114 + sums[1] / pixels * 0.587 + sums[2] / pixels * 0.299;
        var table = new byte[256];
        for (int i = 0; i < 256; i++) table[i] = TruncateToByte((i - mean) * factor + mean);
        return MapChannels(image, [table, table, table]);
    }

    /// <summary>
    /// <c>color_func(img, factor)</c>: <c>out = img @ M</c> in float32 with
    /// <c>M = [[.886, -.114, -.114], [-.587, .413, -.587], [-.299, -.299, .701]] * factor + [[.114], [.587], [.299]]</c>.
    /// </summary>
    /// <param name="image">The image.</param>
    /// <param name="factor">1 keeps the image; 0 gives grey.</param>
    public static RgbImage Color(RgbImage image, double factor)
    {
        ArgumentNullException.ThrowIfNull(image);
        float f = (float)factor;
        float[,] b = { { 0.886f, -0.114f, -0.114f }, { -0.587f, 0.413f, -0.587f }, { -0.299f, -0.299f, 0.701f } };
        float[] col = [0.114f, 0.587f, 0.299f];
        var m = new float[3, 3];
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) m[i, j] = b[i, j] * f + col[i];
        var src = image.Pixels;
        var dst = GC.AllocateUninitializedArray<byte>(src.Length);
        for (int p = 0; p < src.Length; p += 3)
        {
            float r = src[p], g = src[p + 1], bl = src[p + 2];
            for (int j = 0; j < 3; j++) dst[p + j] = TruncateToByte(r * m[0, j] + g * m[1, j] + bl * m[2, j]);
        }
        return RgbImage.Wrap(image.Width, image.Height, dst);
    }

    /// <summary>
    /// <c>sharpness_func(img, factor)</c>: blur with the 3x3 kernel [[1,1,1],[1,5,1],[1,1,1]]/13 (<c>cv2.filter2D</c>,
    /// rounded to uint8), then <c>blur + factor * (img - blur)</c> on the interior only; the one-pixel border is kept.
    /// Factor 0 returns the blurred image, 1 the image. Values outside [0, 255] are clipped (the reference's
    /// <c>astype(uint8)</c> would wrap them; at BLIP's magnitude the factor is 1 and nothing changes).
    /// </summary>
    /// <param name="image">The image.</param>
    /// <param name="factor">1 keeps the image.</param>
    public static RgbImage Sharpness(RgbImage image, double factor)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (factor == 1.0) return image;
        int w = image.Width, h = image.Height;
        var src = image.Pixels;
        var blur = new byte[src.Length];
        const float k = 1f / 13f, kc = 5f / 13f;
        for (int y = 0; y < h; y++)
        {
            int y0 = Reflect101(y - 1, h), y2 = Reflect101(y + 1, h);
            for (int x = 0; x < w; x++)
            {
                int x0 = Reflect101(x - 1, w), x2 = Reflect101(x + 1, w);
                for (int c = 0; c < 3; c++)
                {
                    float s = (src[(y0 * w + x0) * 3 + c] + src[(y0 * w + x) * 3 + c] + src[(y0 * w + x2) * 3 + c]
                        + src[(y * w + x0) * 3 + c] + src[(y * w + x2) * 3 + c]
                        + src[(y2 * w + x0) * 3 + c] + src[(y2 * w + x) * 3 + c] + src[(y2 * w + x2) * 3 + c]) * k
                        + src[(y * w + x) * 3 + c] * kc;
                    blur[(y * w + x) * 3 + c] = (byte)Math.Clamp((int)MathF.Round(s, MidpointRounding.ToEven), 0, 255);
                }
            }
        }
        if (factor == 0.0) return RgbImage.Wrap(w, h, blur);
        var dst = src.ToArray();
        float f = (float)factor;
        for (int y = 1; y < h - 1; y++)
        {
            for (int x = 1; x < w - 1; x++)
            {
                for (int c = 0; c < 3; c++)
                {
                    int o = (y * w + x) * 3 + c;
                    float d = blur[o];
                    dst[o] = TruncateToByte(d + f * (src[o] - d));
                }
            }
        }
        return RgbImage.Wrap(w, h, dst);
    }

    /// <summary><c>solarize_func(img, thresh)</c>: values at or above <paramref name="threshold"/> are inverted.</summary>
    /// <param name="image">The image.</param>
    /// <param name="threshold">256 keeps the image.</param>
    public static RgbImage Solarize(RgbImage image, int threshold)
    {
        ArgumentNullException.ThrowIfNull(image);
        var table = new byte[256];
        for (int i = 0; i < 256; i++) table[i] = (byte)(i < threshold ? i : 255 - i);
        return MapChannels(image, [table, table, table]);
    }

    /// <summary><c>posterize_func(img, bits)</c>: keeps the top <paramref name="bits"/> bits (<c>img &amp; uint8(255 &lt;&lt; (8 - bits))</c>).</summary>
    /// <param name="image">The image.</param>
    /// <param name="bits">0 to 8.</param>
    public static RgbImage Posterize(RgbImage image, int bits)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentOutOfRangeException.ThrowIfNegative(bits);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bits, 8);
        byte mask = (byte)((255 << (8 - bits)) & 0xFF);
        var table = new byte[256];
        for (int i = 0; i < 256; i++) table[i] = (byte)(i & mask);
        return MapChannels(image, [table, table, table]);
    }

    /// <summary>
    /// <c>rotate_func(img, degree, fill)</c>: <c>cv2.getRotationMatrix2D((W / 2, H / 2), degree, 1)</c> then
    /// <c>cv2.warpAffine</c>; positive degrees turn the picture counter-clockwise as displayed.
    /// </summary>
    /// <param name="image">The image.</param>
    /// <param name="degrees">Counter-clockwise angle.</param>
    /// <param name="fill">Grey level for uncovered pixels.</param>
    public static RgbImage Rotate(RgbImage image, double degrees, byte fill = ReferenceFill)
    {
        ArgumentNullException.ThrowIfNull(image);
        double cx = image.Width / 2.0, cy = image.Height / 2.0;
        double rad = degrees * Math.PI / 180.0;
        double a = Math.Cos(rad), b = Math.Sin(rad);
        return WarpAffine(image, a, b, (1 - a) * cx - b * cy, -b, a, b * cx + (1 - a) * cy, fill);
    }

    /// <summary><c>shear_x_func(img, factor)</c>: the forward map <c>x' = x + factor * y</c> (factor as float32, as the reference's matrix is).</summary>
    /// <param name="image">The image.</param>
    /// <param name="factor">Shear factor.</param>
    /// <param name="fill">Grey level for uncovered pixels.</param>
    public static RgbImage ShearX(RgbImage image, double factor, byte fill = ReferenceFill) =>
        WarpAffine(image ?? throw new ArgumentNullException(nameof(image)), 1, (float)factor, 0, 0, 1, 0, fill);

    /// <summary><c>shear_y_func(img, factor)</c>: the forward map <c>y' = factor * x + y</c>.</summary>
    /// <param name="image">The image.</param>
    /// <param name="factor">Shear factor.</param>
    /// <param name="fill">Grey level for uncovered pixels.</param>
    public static RgbImage ShearY(RgbImage image, double factor, byte fill = ReferenceFill) =>
        WarpAffine(image ?? throw new ArgumentNullException(nameof(image)), 1, 0, 0, (float)factor, 1, 0, fill);

    /// <summary><c>translate_x_func(img, offset)</c>: the forward map <c>x' = x - offset</c>; a positive offset moves the picture left.</summary>
    /// <param name="image">The image.</param>
    /// <param name="offset">Pixels.</param>
    /// <param name="fill">Grey level for uncovered pixels.</param>
    public static RgbImage TranslateX(RgbImage image, double offset, byte fill = ReferenceFill) =>
        WarpAffine(image ?? throw new ArgumentNullException(nameof(image)), 1, 0, -(float)offset, 0, 1, 0, fill);

    /// <summary><c>translate_y_func(img, offset)</c>: the forward map <c>y' = y - offset</c>; a positive offset moves the picture up.</summary>
    /// <param name="image">The image.</param>
    /// <param name="offset">Pixels.</param>
    /// <param name="fill">Grey level for uncovered pixels.</param>
    public static RgbImage TranslateY(RgbImage image, double offset, byte fill = ReferenceFill) =>
        WarpAffine(image ?? throw new ArgumentNullException(nameof(image)), 1, 0, 0, 0, 1, -(float)offset, fill);

    /// <summary>Mirrors the image left to right (torchvision's <c>hflip</c>).</summary>
    /// <param name="image">The image.</param>
    public static RgbImage FlipHorizontal(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        int w = image.Width, h = image.Height;
        var src = image.Pixels;
        var dst = GC.AllocateUninitializedArray<byte>(src.Length);
        for (int y = 0; y < h; y++)
        {
            int row = y * w * 3;
            for (int x = 0; x < w; x++)
            {
                int s = row + x * 3, d = row + (w - 1 - x) * 3;
                dst[d] = src[s];
                dst[d + 1] = src[s + 1];
                dst[d + 2] = src[s + 2];
            }
        }
        return RgbImage.Wrap(w, h, dst);
    }

    /// <summary>The <paramref name="width"/> x <paramref name="height"/> region whose top-left pixel is (<paramref name="left"/>, <paramref name="top"/>); it must lie inside the image.</summary>
    /// <param name="image">The image.</param>
    /// <param name="left">First column.</param>
    /// <param name="top">First row.</param>
    /// <param name="width">Columns.</param>
    /// <param name="height">Rows.</param>
    public static RgbImage Crop(RgbImage image, int left, int top, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (left < 0 || top < 0 || width < 1 || height < 1 || left + width > image.Width || top + height > image.Height)
            throw new ArgumentOutOfRangeException(nameof(width), $"crop ({left}, {top}, {width}x{height}) is not inside the {image.Width}x{image.Height} image");
        if (left == 0 && top == 0 && width == image.Width && height == image.Height) return image;
        var src = image.Pixels;
        var dst = GC.AllocateUninitializedArray<byte>(width * height * 3);
        for (int y = 0; y < height; y++)
            src.Slice(((top + y) * image.Width + left) * 3, width * 3).CopyTo(dst.AsSpan(y * width * 3));
        return RgbImage.Wrap(width, height, dst);
    }

    /// <summary>
    /// <c>cv2.warpAffine(img, M, (W, H), flags=INTER_LINEAR, borderValue=fill)</c> for the forward matrix
    /// <c>M = [[m00, m01, m02], [m10, m11, m12]]</c>: each output pixel samples the input at <c>M⁻¹ (x, y)</c>,
    /// rounded to 1/32 pixel, bilinearly with 15-bit weights; taps outside the image read <paramref name="fill"/>.
    /// </summary>
    internal static RgbImage WarpAffine(RgbImage image, double m00, double m01, double m02, double m10, double m11, double m12, byte fill)
    {
        double det = m00 * m11 - m01 * m10;
        if (det == 0) throw new ArgumentException("the affine matrix is singular");
        // Inverse of [A | t] is [A⁻¹ | -A⁻¹ t].
        double i00 = m11 / det, i01 = -m01 / det, i10 = -m10 / det, i11 = m00 / det;
        double i02 = -(i00 * m02 + i01 * m12), i12 = -(i10 * m02 + i11 * m12);
        int w = image.Width, h = image.Height;
        var src = image.Pixels;
        var dst = GC.AllocateUninitializedArray<byte>(src.Length);
        const int bits = 5, tab = 1 << bits;
        for (int y = 0; y < h; y++)
        {
            for (int x = 0; x < w; x++)
            {
                long sx = (long)Math.Round((i00 * x + i01 * y + i02) * tab, MidpointRounding.AwayFromZero);
                long sy = (long)Math.Round((i10 * x + i11 * y + i12) * tab, MidpointRounding.AwayFromZero);
                long ix = sx >> bits, iy = sy >> bits;
                int fx = (int)(sx & (tab - 1)), fy = (int)(sy & (tab - 1));
                int w11 = (int)Math.Round(fx * fy * (32768.0 / (tab * tab)));
                int w10 = (int)Math.Round((tab - fx) * fy * (32768.0 / (tab * tab)));
                int w01 = (int)Math.Round(fx * (tab - fy) * (32768.0 / (tab * tab)));
                int w00 = 32768 - w11 - w10 - w01;
                int o = (y * w + x) * 3;
                for (int c = 0; c < 3; c++)
                {
                    int p00 = Sample(src, w, h, ix, iy, c, fill), p01 = Sample(src, w, h, ix + 1, iy, c, fill);
                    int p10 = Sample(src, w, h, ix, iy + 1, c, fill), p11 = Sample(src, w, h, ix + 1, iy + 1, c, fill);
                    int acc = p00 * w00 + p01 * w01 + p10 * w10 + p11 * w11;
                    dst[o + c] = (byte)Math.Clamp((acc + (1 << 14)) >> 15, 0, 255);
                }
            }
        }
        return RgbImage.Wrap(w, h, dst);
    }

    private static int Sample(ReadOnlySpan<byte> src, int w, int h, long x, long y, int c, byte fill) =>
        (ulong)x < (ulong)w && (ulong)y < (ulong)h ? src[(int)((y * w + x) * 3 + c)] : fill;

    private static int Reflect101(int i, int n) => n == 1 ? 0 : i < 0 ? -i : i >= n ? 2 * n - 2 - i : i;

    /// <summary>NumPy's <c>clip(0, 255).astype(np.uint8)</c>: clip, then truncate toward zero.</summary>
    private static byte TruncateToByte(double v) => v <= 0 ? (byte)0 : v >= 255 ? (byte)255 : (byte)(int)v;

    private static RgbImage MapChannels(RgbImage image, byte[][] tables)
    {
        var src = image.Pixels;
        var dst = GC.AllocateUninitializedArray<byte>(src.Length);
        byte[] r = tables[0], g = tables[1], b = tables[2];
        for (int i = 0; i < src.Length; i += 3)
        {
            dst[i] = r[src[i]];
            dst[i + 1] = g[src[i + 1]];
            dst[i + 2] = b[src[i + 2]];
        }
        return RgbImage.Wrap(image.Width, image.Height, dst);
    }
}
