namespace BlipSharp.Training.Synthetic;

/// <summary>The shapes of the synthetic world.</summary>
public enum ShapeKind
{
    /// <summary>A disc.</summary>
    Circle,

    /// <summary>An axis-aligned square.</summary>
    Square,

    /// <summary>An upward-pointing equilateral triangle.</summary>
    Triangle,

    /// <summary>A five-pointed star.</summary>
    Star,

    /// <summary>A square standing on a corner.</summary>
    Diamond,

    /// <summary>A regular hexagon.</summary>
    Hexagon,

    /// <summary>A plus sign.</summary>
    Cross,
}

/// <summary>The named colours of the synthetic world (<see cref="Palette"/> gives their RGB values).</summary>
public enum ColorName
{
    /// <summary>Red.</summary>
    Red,

    /// <summary>Green.</summary>
    Green,

    /// <summary>Blue.</summary>
    Blue,

    /// <summary>Yellow.</summary>
    Yellow,

    /// <summary>Purple.</summary>
    Purple,

    /// <summary>Orange.</summary>
    Orange,

    /// <summary>Pink.</summary>
    Pink,

    /// <summary>Brown.</summary>
    Brown,

    /// <summary>White (backgrounds only).</summary>
    White,

    /// <summary>Gray (backgrounds only).</summary>
    Gray,

    /// <summary>Black (backgrounds only).</summary>
    Black,
}

/// <summary>Object size classes.</summary>
public enum SizeClass
{
    /// <summary>Circumradius about 12% of the image side.</summary>
    Small,

    /// <summary>Circumradius about 21% of the image side.</summary>
    Large,
}

/// <summary>Where an object sits: a nominal centre at a quarter of the image from the named side, or the middle.</summary>
public enum Placement
{
    /// <summary>Centre at (0.25, 0.5) of the image.</summary>
    Left,

    /// <summary>Centre at (0.75, 0.5).</summary>
    Right,

    /// <summary>Centre at (0.5, 0.25).</summary>
    Top,

    /// <summary>Centre at (0.5, 0.75).</summary>
    Bottom,

    /// <summary>Centre at (0.5, 0.5).</summary>
    Center,
}

/// <summary>Background styles.</summary>
public enum BackgroundKind
{
    /// <summary>One flat colour.</summary>
    Plain,

    /// <summary>A linear blend between two colours.</summary>
    Gradient,

    /// <summary>A colour with per-pixel uniform noise.</summary>
    Noise,
}

/// <summary>One drawn object.</summary>
/// <param name="Shape">Its shape.</param>
/// <param name="Color">Its fill colour.</param>
/// <param name="Size">Its size class.</param>
/// <param name="Placement">Its named position.</param>
/// <param name="X">Centre column in pixels (the nominal centre plus a jitter of at most 1% of the side).</param>
/// <param name="Y">Centre row in pixels.</param>
/// <param name="Radius">Circumradius in pixels.</param>
public sealed record SceneObject(ShapeKind Shape, ColorName Color, SizeClass Size, Placement Placement, double X, double Y, double Radius);

/// <summary>The background of a scene.</summary>
/// <param name="Kind">Plain, gradient or noise.</param>
/// <param name="Color">The (first) colour.</param>
/// <param name="Color2">The second colour of a gradient, else null.</param>
/// <param name="Vertical">A gradient runs top to bottom (else left to right).</param>
public sealed record Background(BackgroundKind Kind, ColorName Color, ColorName? Color2 = null, bool Vertical = false);

/// <summary>A synthetic image: a background and one or two non-overlapping objects of different shapes and colours.</summary>
/// <param name="Size">Image side in pixels.</param>
/// <param name="Background">The background.</param>
/// <param name="Objects">One or two objects.</param>
/// <param name="NoiseSeed">Seeds the noise texture of a noise background.</param>
public sealed record Scene(int Size, Background Background, IReadOnlyList<SceneObject> Objects, int NoiseSeed);
