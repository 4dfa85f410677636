namespace BlipSharp.Training.Synthetic;

/// <summary>Draws random scenes: one or two objects of different shapes and colours that do not overlap, on a background of other colours.</summary>
public static class SceneSampler
{
    /// <summary>Largest centre offset, as a fraction of the side (keeps every shape's solid core over its nominal centre pixel).</summary>
    public const double Jitter = 0.01;

    private const double RadiusJitter = 0.05;
    private const double Margin = 0.03;

    /// <summary>Draws a scene.</summary>
    /// <param name="random">The random source.</param>
    /// <param name="size">Image side in pixels (at least 16).</param>
    /// <param name="twoObjectProbability">Chance of a second object.</param>
    public static Scene Sample(Random random, int size, double twoObjectProbability)
    {
        ArgumentNullException.ThrowIfNull(random);
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 16);
        var shapes = Enum.GetValues<ShapeKind>();
        var sizes = Enum.GetValues<SizeClass>();
        var placements = Enum.GetValues<Placement>();
        bool two = random.NextDouble() < twoObjectProbability;
        var first = (Shape: Pick(random, shapes), Color: Pick(random, Palette.ObjectColors), Size: Pick(random, sizes), Placement: Pick(random, placements));
        var chosen = new List<(ShapeKind Shape, ColorName Color, SizeClass Size, Placement Placement)> { first };
        if (two)
        {
            for (int attempt = 0; attempt < 50; attempt++)
            {
                var second = (Shape: Pick(random, shapes), Color: Pick(random, Palette.ObjectColors), Size: Pick(random, sizes), Placement: Pick(random, placements));
                if (second.Shape == first.Shape || second.Color == first.Color || second.Placement == first.Placement) continue;
                var (ax, ay) = Palette.NominalCenter(first.Placement);
                var (bx, by) = Palette.NominalCenter(second.Placement);
                double distance = Math.Sqrt((ax - bx) * (ax - bx) + (ay - by) * (ay - by));
                double needed = (Palette.RadiusFraction(first.Size) + Palette.RadiusFraction(second.Size)) * (1 + RadiusJitter) + Margin + 2 * Jitter * Math.Sqrt(2);
                if (distance < needed) continue;
                chosen.Add(second);
                break;
            }
        }
        var objects = new List<SceneObject>(chosen.Count);
        foreach (var c in chosen)
        {
            var (nx, ny) = Palette.NominalCenter(c.Placement);
            double x = (nx + (random.NextDouble() * 2 - 1) * Jitter) * size;
            double y = (ny + (random.NextDouble() * 2 - 1) * Jitter) * size;
            double r = Palette.RadiusFraction(c.Size) * (1 + (random.NextDouble() * 2 - 1) * RadiusJitter) * size;
            objects.Add(new SceneObject(c.Shape, c.Color, c.Size, c.Placement, Math.Round(x, 2), Math.Round(y, 2), Math.Round(r, 2)));
        }
        var free = Palette.AllColors.Where(c => objects.All(o => o.Color != c)).ToArray();
        double kind = random.NextDouble();
        var color = Pick(random, free);
        Background background = kind < 0.4
            ? new Background(BackgroundKind.Plain, color)
            : kind < 0.7
                ? new Background(BackgroundKind.Gradient, color, Pick(random, free.Where(c => c != color).ToArray()), random.NextDouble() < 0.5)
                : new Background(BackgroundKind.Noise, color);
        return new Scene(size, background, objects, random.Next());
    }

    private static T Pick<T>(Random random, IReadOnlyList<T> items) => items[random.Next(items.Count)];
}
