using BlipSharp.Processing;

namespace BlipSharp.Training.Data;

/// <summary>A crop rectangle: top-left corner and size in pixels.</summary>
/// <param name="Left">First column.</param>
/// <param name="Top">First row.</param>
/// <param name="Width">Columns.</param>
/// <param name="Height">Rows.</param>
public readonly record struct CropBox(int Left, int Top, int Width, int Height);

/// <summary>
/// torchvision's <c>RandomResizedCrop(size, scale, ratio, BICUBIC)</c> on an image: up to 10 tries to draw an area
/// fraction uniformly from <see cref="MinScale"/>..<see cref="MaxScale"/> and an aspect ratio log-uniformly from
/// <see cref="MinRatio"/>..<see cref="MaxRatio"/>, <c>w = round(sqrt(area * ratio))</c>, <c>h = round(sqrt(area / ratio))</c>
/// (Python's round, half to even), accepted when it fits, at a uniform position; otherwise a centre crop clamped
/// to the ratio range. The crop is resized to <see cref="Size"/> x <see cref="Size"/> with PIL's bicubic filter
/// (bit-exact with PIL). BLIP uses scale (0.5, 1.0) and the default ratio (3/4, 4/3).
/// </summary>
public sealed class RandomResizedCrop
{
    /// <summary>Creates the transform.</summary>
    /// <param name="size">Output side in pixels.</param>
    /// <param name="minScale">Smallest area fraction (BLIP: 0.5).</param>
    /// <param name="maxScale">Largest area fraction (1.0).</param>
    /// <param name="minRatio">Smallest width/height (3/4).</param>
    /// <param name="maxRatio">Largest width/height (4/3).</param>
    /// <param name="filter">Resampling filter (bicubic).</param>
    public RandomResizedCrop(int size, double minScale = 0.5, double maxScale = 1.0, double minRatio = 3.0 / 4.0, double maxRatio = 4.0 / 3.0,
        ResampleFilter filter = ResampleFilter.Bicubic)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        if (!(minScale > 0 && minScale <= maxScale && maxScale <= 1))
            throw new ArgumentOutOfRangeException(nameof(minScale), $"need 0 < minScale <= maxScale <= 1, got ({minScale}, {maxScale})");
        if (!(minRatio > 0 && minRatio <= maxRatio && double.IsFinite(maxRatio)))
            throw new ArgumentOutOfRangeException(nameof(minRatio), $"need 0 < minRatio <= maxRatio, got ({minRatio}, {maxRatio})");
        Size = size;
        MinScale = minScale;
        MaxScale = maxScale;
        MinRatio = minRatio;
        MaxRatio = maxRatio;
        Filter = filter;
    }

    /// <summary>Output side in pixels.</summary>
    public int Size { get; }

    /// <summary>Smallest area fraction.</summary>
    public double MinScale { get; }

    /// <summary>Largest area fraction.</summary>
    public double MaxScale { get; }

    /// <summary>Smallest aspect ratio (width / height).</summary>
    public double MinRatio { get; }

    /// <summary>Largest aspect ratio.</summary>
    public double MaxRatio { get; }

    /// <summary>Resampling filter.</summary>
    public ResampleFilter Filter { get; }

    /// <summary>torchvision's <c>RandomResizedCrop.get_params</c>: the crop for an image of the given size.</summary>
    /// <param name="width">Image width.</param>
    /// <param name="height">Image height.</param>
    /// <param name="random">The random source.</param>
    public CropBox SampleBox(int width, int height, Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        double area = (double)width * height;
        double logMin = Math.Log(MinRatio), logMax = Math.Log(MaxRatio);
        for (int attempt = 0; attempt < 10; attempt++)
        {
            double targetArea = area * (MinScale + (MaxScale - MinScale) * random.NextDouble());
            double ratio = Math.Exp(logMin + (logMax - logMin) * random.NextDouble());
            int w = (int)Math.Round(Math.Sqrt(targetArea * ratio), MidpointRounding.ToEven);
            int h = (int)Math.Round(Math.Sqrt(targetArea / ratio), MidpointRounding.ToEven);
            if (w > 0 && w <= width && h > 0 && h <= height)
            {
                int top = random.Next(0, height - h + 1);
                int left = random.Next(0, width - w + 1);
                return new CropBox(left, top, w, h);
            }
        }
        // Fallback: a centre crop with the ratio clamped to the allowed range.
        double inRatio = (double)width / height;
        int cw, ch;
        if (inRatio < MinRatio)
        {
            cw = width;
            ch = (int)Math.Round(cw / MinRatio, MidpointRounding.ToEven);
        }
        else if (inRatio > MaxRatio)
        {
            ch = height;
            cw = (int)Math.Round(ch * MaxRatio, MidpointRounding.ToEven);
        }
        else
        {
            cw = width;
            ch = height;
        }
        return new CropBox((width - cw) / 2, (height - ch) / 2, cw, ch);
    }

    /// <summary>Crops a random box and resizes it to <see cref="Size"/> x <see cref="Size"/>.</summary>
    /// <param name="image">The image.</param>
    /// <param name="random">The random source.</param>
    public RgbImage Apply(RgbImage image, Random random)
    {
        ArgumentNullException.ThrowIfNull(image);
        var box = SampleBox(image.Width, image.Height, random);
        return Apply(image, box);
    }

    /// <summary>Crops <paramref name="box"/> and resizes it to <see cref="Size"/> x <see cref="Size"/>.</summary>
    /// <param name="image">The image.</param>
    /// <param name="box">A box inside the image.</param>
    public RgbImage Apply(RgbImage image, CropBox box)
    {
        ArgumentNullException.ThrowIfNull(image);
        var crop = AugmentOps.Crop(image, box.Left, box.Top, box.Width, box.Height);
        return PilResample.Resize(crop, Size, Size, Filter);
    }
}
