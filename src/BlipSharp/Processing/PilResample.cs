namespace BlipSharp.Processing;

/// <summary>
/// PIL 9.4's resize of an 8-bit image (<c>ImagingResample</c> in <c>libImaging/Resample.c</c> and, for
/// nearest, <c>ImagingScaleAffine</c> in <c>Geometry.c</c>), reproduced operation for operation so the
/// uint8 result is bit-identical:
/// <list type="bullet">
/// <item>Separable: a horizontal pass over only the source rows the vertical pass will read, clipped to uint8,
/// then a vertical pass. A pass is skipped when that dimension does not change.</item>
/// <item>Per output pixel, the filter is centred at <c>(i + 0.5) * scale</c> with support
/// <c>filter_support * max(scale, 1)</c>; the window bounds are rounded with <c>(int)(v + 0.5)</c> and clamped;
/// weights are evaluated in double at <c>(j - center + 0.5) / max(scale, 1)</c> and divided by their sum.</item>
/// <item>Weights become fixed point with 22 fractional bits (<c>PRECISION_BITS = 32 - 8 - 2</c>), rounding half
/// away from zero; accumulation in int32 starts at <c>1 &lt;&lt; 21</c>; the result is <c>acc &gt;&gt; 22</c> clamped to [0, 255].</item>
/// </list>
/// </summary>
internal static class PilResample
{
    private const int PrecisionBits = 32 - 8 - 2;

    public static RgbImage Resize(RgbImage image, int width, int height, ResampleFilter filter)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (width < 1) throw new ArgumentOutOfRangeException(nameof(width), width, "target width must be at least 1");
        if (height < 1) throw new ArgumentOutOfRangeException(nameof(height), height, "target height must be at least 1");

        // Image.resize returns a copy when the size does not change.
        if (width == image.Width && height == image.Height) return image;

        if (filter == ResampleFilter.Nearest) return Nearest(image, width, height);

        (Func<double, double> kernel, double support) = filter switch
        {
            ResampleFilter.Box => ((Func<double, double>)BoxFilter, 0.5),
            ResampleFilter.Bilinear => (BilinearFilter, 1.0),
            ResampleFilter.Hamming => (HammingFilter, 1.0),
            ResampleFilter.Bicubic => (BicubicFilter, 2.0),
            ResampleFilter.Lanczos => (LanczosFilter, 3.0),
            _ => throw new ArgumentOutOfRangeException(nameof(filter), filter, "unsupported resampling filter"),
        };

        int inW = image.Width, inH = image.Height;
        var vert = Coefficients.Compute(inH, height, kernel, support);
        ReadOnlySpan<byte> src = image.Pixels;
        int srcRowOffset = 0;
        int srcRows = inH;
        int curW = inW;
        byte[]? temp = null;

        if (width != inW)
        {
            // Horizontal pass only over the rows the vertical pass reads (all rows when height is unchanged).
            int firstRow = height != inH ? vert.Bounds[0] : 0;
            int lastRow = height != inH ? vert.Bounds[2 * height - 2] + vert.Bounds[2 * height - 1] : inH;
            var horiz = Coefficients.Compute(inW, width, kernel, support);
            temp = AllocateRgb(width, lastRow - firstRow);
            Horizontal(src, inW, firstRow, lastRow - firstRow, temp, width, horiz);
            src = temp;
            srcRowOffset = firstRow;
            srcRows = lastRow - firstRow;
            curW = width;
        }

        if (height == inH)
            return RgbImage.Wrap(curW, srcRows, temp ?? image.Pixels.ToArray());

        var output = AllocateRgb(curW, height);
        Vertical(src, curW, srcRowOffset, output, height, vert);
        return RgbImage.Wrap(curW, height, output);
    }

    private static void Horizontal(ReadOnlySpan<byte> src, int inW, int firstRow, int rows, Span<byte> dst, int outW, Coefficients c)
    {
        const int half = 1 << (PrecisionBits - 1);
        for (int yy = 0; yy < rows; yy++)
        {
            var srcRow = src.Slice((firstRow + yy) * inW * 3, inW * 3);
            var dstRow = dst.Slice(yy * outW * 3, outW * 3);
            for (int xx = 0; xx < outW; xx++)
            {
                int xmin = c.Bounds[2 * xx], count = c.Bounds[2 * xx + 1];
                var k = c.Fixed.AsSpan(xx * c.KSize, count);
                int s0 = half, s1 = half, s2 = half;
                int p = xmin * 3;
                for (int x = 0; x < k.Length; x++, p += 3)
                {
                    int w = k[x];
                    s0 += srcRow[p] * w;
                    s1 += srcRow[p + 1] * w;
                    s2 += srcRow[p + 2] * w;
                }
                dstRow[3 * xx] = Clip8(s0);
                dstRow[3 * xx + 1] = Clip8(s1);
                dstRow[3 * xx + 2] = Clip8(s2);
            }
        }
    }

    private static void Vertical(ReadOnlySpan<byte> src, int w, int rowOffset, Span<byte> dst, int outH, Coefficients c)
    {
        const int half = 1 << (PrecisionBits - 1);
        int stride = w * 3;
        for (int yy = 0; yy < outH; yy++)
        {
            int ymin = c.Bounds[2 * yy] - rowOffset, count = c.Bounds[2 * yy + 1];
            var k = c.Fixed.AsSpan(yy * c.KSize, count);
            var dstRow = dst.Slice(yy * stride, stride);
            for (int i = 0; i < stride; i++)
            {
                int s = half;
                int p = ymin * stride + i;
                for (int y = 0; y < k.Length; y++, p += stride) s += src[p] * k[y];
                dstRow[i] = Clip8(s);
            }
        }
    }

    private static byte[] AllocateRgb(int width, int height)
    {
        long size = (long)width * height * 3;
        if (size > Array.MaxLength) throw new ArgumentException($"an RGB image of {width}x{height} does not fit in one array");
        return GC.AllocateUninitializedArray<byte>((int)size);
    }

    private static byte Clip8(int acc)
    {
        int v = acc >> PrecisionBits;
        return v < 0 ? (byte)0 : v > 255 ? (byte)255 : (byte)v;
    }

    /// <summary>Per output index: first source index, number of taps, and fixed-point weights (<c>KSize</c> slots each).</summary>
    private sealed class Coefficients
    {
        public required int KSize { get; init; }
        public required int[] Bounds { get; init; }
        public required int[] Fixed { get; init; }

        public static Coefficients Compute(int inSize, int outSize, Func<double, double> kernel, double filterSupport)
        {
            // The box is (0, 0, inW, inH) as C floats; in1 - in0 is exact in float for any realistic size.
            float in0 = 0f, in1 = inSize;
            double scale = (double)(in1 - in0) / outSize;
            double filterScale = scale < 1.0 ? 1.0 : scale;
            double support = filterSupport * filterScale;
            int ksize = (int)Math.Ceiling(support) * 2 + 1;
            var bounds = new int[outSize * 2];
            var weights = new double[(long)outSize * ksize];
            var fixedWeights = new int[weights.Length];
            double ss = 1.0 / filterScale;
            for (int xx = 0; xx < outSize; xx++)
            {
                double center = in0 + (xx + 0.5) * scale;
                double ww = 0.0;
                int xmin = (int)(center - support + 0.5);
                if (xmin < 0) xmin = 0;
                int xmax = (int)(center + support + 0.5);
                if (xmax > inSize) xmax = inSize;
                xmax -= xmin;
                int baseIndex = xx * ksize;
                for (int x = 0; x < xmax; x++)
                {
                    double w = kernel((x + xmin - center + 0.5) * ss);
                    weights[baseIndex + x] = w;
                    ww += w;
                }
                for (int x = 0; x < xmax; x++)
                {
                    if (ww != 0.0) weights[baseIndex + x] /= ww;
                }
                bounds[2 * xx] = xmin;
                bounds[2 * xx + 1] = xmax;
            }
            for (int i = 0; i < weights.Length; i++)
            {
                double k = weights[i];
                fixedWeights[i] = k < 0
                    ? (int)(-0.5 + k * (1 << PrecisionBits))
                    : (int)(0.5 + k * (1 << PrecisionBits));
            }
            return new Coefficients { KSize = ksize, Bounds = bounds, Fixed = fixedWeights };
        }
    }

    private static double BoxFilter(double x) => x > -0.5 && x <= 0.5 ? 1.0 : 0.0;

    private static double BilinearFilter(double x)
    {
        if (x < 0.0) x = -x;
        return x < 1.0 ? 1.0 - x : 0.0;
    }

    private static double HammingFilter(double x)
    {
        if (x < 0.0) x = -x;
        if (x == 0.0) return 1.0;
        if (x >= 1.0) return 0.0;
        x *= Math.PI;
        // PIL writes the window constants as C floats.
        return Math.Sin(x) / x * (0.54f + 0.46f * Math.Cos(x));
    }

    private static double BicubicFilter(double x)
    {
        const double a = -0.5;
        if (x < 0.0) x = -x;
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }

    private static double Sinc(double x)
    {
        if (x == 0.0) return 1.0;
        x *= Math.PI;
        return Math.Sin(x) / x;
    }

    private static double LanczosFilter(double x) => -3.0 <= x && x < 3.0 ? Sinc(x) * Sinc(x / 3) : 0.0;

    /// <summary>PIL's nearest-neighbour resize: <c>ImagingScaleAffine</c> with the source positions accumulated in double.</summary>
    private static RgbImage Nearest(RgbImage image, int width, int height)
    {
        int inW = image.Width, inH = image.Height;
        double a0 = (double)(float)inW / width;
        double a4 = (double)(float)inH / height;
        var xin = new int[width];
        double xo = a0 * 0.5;
        for (int x = 0; x < width; x++)
        {
            int xi = xo < 0.0 ? -1 : (int)xo;
            xin[x] = Math.Clamp(xi, 0, inW - 1); // always in range for a full-image box
            xo += a0;
        }
        var src = image.Pixels;
        var output = AllocateRgb(width, height);
        double yo = a4 * 0.5;
        for (int y = 0; y < height; y++)
        {
            int yi = Math.Clamp(yo < 0.0 ? -1 : (int)yo, 0, inH - 1);
            int srcRow = yi * inW * 3, dstRow = y * width * 3;
            for (int x = 0; x < width; x++)
            {
                int s = srcRow + xin[x] * 3, d = dstRow + x * 3;
                output[d] = src[s];
                output[d + 1] = src[s + 1];
                output[d + 2] = src[s + 2];
            }
            yo += a4;
        }
        return RgbImage.Wrap(width, height, output);
    }
}
