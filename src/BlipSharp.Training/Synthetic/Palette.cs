namespace BlipSharp.Training.Synthetic;

/// <summary>RGB values and words for the synthetic world's colours, shapes, sizes and positions.</summary>
public static class Palette
{
    /// <summary>Colours objects can have (every <see cref="ColorName"/> except white, gray and black).</summary>
    public static IReadOnlyList<ColorName> ObjectColors { get; } =
        [ColorName.Red, ColorName.Green, ColorName.Blue, ColorName.Yellow, ColorName.Purple, ColorName.Orange, ColorName.Pink, ColorName.Brown];

    /// <summary>All colours (backgrounds can have any colour no object of the scene has).</summary>
    public static IReadOnlyList<ColorName> AllColors { get; } = Enum.GetValues<ColorName>();

    /// <summary>The RGB value of a colour.</summary>
    /// <param name="color">The colour.</param>
    public static (byte R, byte G, byte B) Rgb(ColorName color) => color switch
    {
        ColorName.Red => (220, 40, 40),
        ColorName.Green => (40, 170, 60),
        ColorName.Blue => (40, 80, 220),
        ColorName.Yellow => (240, 220, 40),
        ColorName.Purple => (140, 60, 190),
        ColorName.Orange => (245, 140, 30),
        ColorName.Pink => (245, 130, 190),
        ColorName.Brown => (130, 80, 40),
        ColorName.White => (245, 245, 245),
        ColorName.Gray => (128, 128, 128),
        ColorName.Black => (25, 25, 25),
        _ => throw new ArgumentOutOfRangeException(nameof(color), color, null),
    };

    /// <summary>The palette colour nearest to an RGB value (squared Euclidean distance).</summary>
    /// <param name="r">Red.</param>
    /// <param name="g">Green.</param>
    /// <param name="b">Blue.</param>
    public static ColorName Nearest(byte r, byte g, byte b)
    {
        var best = ColorName.Red;
        int bestDistance = int.MaxValue;
        foreach (var c in AllColors)
        {
            var (cr, cg, cb) = Rgb(c);
            int d = (r - cr) * (r - cr) + (g - cg) * (g - cg) + (b - cb) * (b - cb);
            if (d < bestDistance)
            {
                bestDistance = d;
                best = c;
            }
        }
        return best;
    }

    /// <summary>The word for a colour ("red").</summary>
    /// <param name="color">The colour.</param>
    public static string Word(ColorName color) => color.ToString().ToLowerInvariant();

    /// <summary>The word for a shape ("circle").</summary>
    /// <param name="shape">The shape.</param>
    public static string Word(ShapeKind shape) => shape.ToString().ToLowerInvariant();

    /// <summary>The answer word for a placement ("left", "center").</summary>
    /// <param name="placement">The placement.</param>
    public static string Word(Placement placement) => placement.ToString().ToLowerInvariant();

    /// <summary>The nominal centre of a placement as fractions of the image side.</summary>
    /// <param name="placement">The placement.</param>
    public static (double X, double Y) NominalCenter(Placement placement) => placement switch
    {
        Placement.Left => (0.25, 0.5),
        Placement.Right => (0.75, 0.5),
        Placement.Top => (0.5, 0.25),
        Placement.Bottom => (0.5, 0.75),
        _ => (0.5, 0.5),
    };

    /// <summary>Circumradius of a size class as a fraction of the image side.</summary>
    /// <param name="size">The size class.</param>
    public static double RadiusFraction(SizeClass size) => size == SizeClass.Small ? 0.12 : 0.21;

    /// <summary>Words that name a size class in captions.</summary>
    /// <param name="size">The size class.</param>
    public static IReadOnlyList<string> SizeWords(SizeClass size) => size == SizeClass.Small ? ["small", "little", "tiny"] : ["large", "big"];

    /// <summary>Phrases that place an object in captions ("on the left", "in the middle").</summary>
    /// <param name="placement">The placement.</param>
    public static IReadOnlyList<string> PlacementPhrases(Placement placement) => placement switch
    {
        Placement.Left => ["on the left", "on the left side"],
        Placement.Right => ["on the right", "on the right side"],
        Placement.Top => ["at the top", "near the top"],
        Placement.Bottom => ["at the bottom", "near the bottom"],
        _ => ["in the center", "in the middle"],
    };
}
