using BlipSharp.Processing;

namespace BlipSharp.Training.Synthetic;

/// <summary>
/// Draws a <see cref="Scene"/> into an RGB image: the background, then each object filled with its colour,
/// anti-aliased by 4x4 supersampling only on pixels whose centre and corners disagree about being inside.
/// Deterministic and allocation-light (thousands of 64x64 images per second per core).
/// </summary>
public static class SceneRenderer
{
    /// <summary>Renders the scene.</summary>
    /// <param name="scene">The scene.</param>
    public static RgbImage Render(Scene scene)
    {
        ArgumentNullException.ThrowIfNull(scene);
        int n = scene.Size;
        var pixels = new byte[n * n * 3];
        DrawBackground(scene, pixels);
        foreach (var o in scene.Objects) DrawObject(o, n, pixels);
        return RgbImage.Wrap(n, n, pixels);
    }

    /// <summary>Whether the point (<paramref name="x"/>, <paramref name="y"/>) in pixel coordinates is inside the object.</summary>
    /// <param name="o">The object.</param>
    /// <param name="x">Column (pixel centres at +0.5).</param>
    /// <param name="y">Row.</param>
    public static bool Contains(SceneObject o, double x, double y) => Contains(o, Vertices(o), x, y);

    private static void DrawBackground(Scene scene, byte[] pixels)
    {
        int n = scene.Size;
        var bg = scene.Background;
        var (r, g, b) = Palette.Rgb(bg.Color);
        switch (bg.Kind)
        {
            case BackgroundKind.Plain:
                for (int i = 0; i < pixels.Length; i += 3)
                {
                    pixels[i] = r;
                    pixels[i + 1] = g;
                    pixels[i + 2] = b;
                }
                break;
            case BackgroundKind.Gradient:
                var (r2, g2, b2) = Palette.Rgb(bg.Color2 ?? bg.Color);
                for (int y = 0; y < n; y++)
                {
                    for (int x = 0; x < n; x++)
                    {
                        double t = (bg.Vertical ? y : x) / (double)Math.Max(1, n - 1);
                        int o = (y * n + x) * 3;
                        pixels[o] = Lerp(r, r2, t);
                        pixels[o + 1] = Lerp(g, g2, t);
                        pixels[o + 2] = Lerp(b, b2, t);
                    }
                }
                break;
            case BackgroundKind.Noise:
                // xorshift32 seeded per image: uniform noise of +-28 levels per channel.
                uint state = (uint)scene.NoiseSeed | 1u;
                for (int i = 0; i < pixels.Length; i += 3)
                {
                    pixels[i] = Jitter(r, ref state);
                    pixels[i + 1] = Jitter(g, ref state);
                    pixels[i + 2] = Jitter(b, ref state);
                }
                break;
        }
    }

    private static byte Jitter(byte v, ref uint state)
    {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        int d = (int)(state % 57) - 28;
        return (byte)Math.Clamp(v + d, 0, 255);
    }

    private static byte Lerp(byte a, byte b, double t) => (byte)Math.Round(a + (b - a) * t, MidpointRounding.AwayFromZero);

    private static void DrawObject(SceneObject o, int n, byte[] pixels)
    {
        var vertices = Vertices(o);
        var (cr, cg, cb) = Palette.Rgb(o.Color);
        int x0 = Math.Max(0, (int)Math.Floor(o.X - o.Radius) - 1), x1 = Math.Min(n - 1, (int)Math.Ceiling(o.X + o.Radius) + 1);
        int y0 = Math.Max(0, (int)Math.Floor(o.Y - o.Radius) - 1), y1 = Math.Min(n - 1, (int)Math.Ceiling(o.Y + o.Radius) + 1);
        for (int y = y0; y <= y1; y++)
        {
            for (int x = x0; x <= x1; x++)
            {
                bool c = Contains(o, vertices, x + 0.5, y + 0.5);
                bool all = c == Contains(o, vertices, x, y) && c == Contains(o, vertices, x + 1, y)
                    && c == Contains(o, vertices, x, y + 1) && c == Contains(o, vertices, x + 1, y + 1);
                int coverage; // of 16
                if (all)
                {
                    if (!c) continue;
                    coverage = 16;
                }
                else
                {
                    coverage = 0;
                    for (int sy = 0; sy < 4; sy++)
                        for (int sx = 0; sx < 4; sx++)
                            if (Contains(o, vertices, x + (sx + 0.5) / 4, y + (sy + 0.5) / 4)) coverage++;
                    if (coverage == 0) continue;
                }
                int p = (y * n + x) * 3;
                pixels[p] = Blend(pixels[p], cr, coverage);
                pixels[p + 1] = Blend(pixels[p + 1], cg, coverage);
                pixels[p + 2] = Blend(pixels[p + 2], cb, coverage);
            }
        }
    }

    private static byte Blend(byte under, byte over, int coverage) => (byte)((under * (16 - coverage) + over * coverage + 8) / 16);

    /// <summary>Polygon vertices (x, y pairs in pixels), or null for the circle and the cross, which are tested analytically.</summary>
    private static double[]? Vertices(SceneObject o)
    {
        switch (o.Shape)
        {
            case ShapeKind.Square: return Regular(o, 4, 45);
            case ShapeKind.Diamond: return Regular(o, 4, 0);
            case ShapeKind.Triangle: return Regular(o, 3, -90);
            case ShapeKind.Hexagon: return Regular(o, 6, 0);
            case ShapeKind.Star:
                var v = new double[20];
                for (int i = 0; i < 10; i++)
                {
                    double r = i % 2 == 0 ? o.Radius : o.Radius * 0.5;
                    double a = (-90 + 36 * i) * Math.PI / 180;
                    v[2 * i] = o.X + r * Math.Cos(a);
                    v[2 * i + 1] = o.Y + r * Math.Sin(a);
                }
                return v;
            default:
                return null;
        }
    }

    private static double[] Regular(SceneObject o, int count, double startDegrees)
    {
        var v = new double[2 * count];
        for (int i = 0; i < count; i++)
        {
            double a = (startDegrees + 360.0 * i / count) * Math.PI / 180;
            v[2 * i] = o.X + o.Radius * Math.Cos(a);
            v[2 * i + 1] = o.Y + o.Radius * Math.Sin(a);
        }
        return v;
    }

    private static bool Contains(SceneObject o, double[]? vertices, double x, double y)
    {
        double dx = x - o.X, dy = y - o.Y;
        switch (o.Shape)
        {
            case ShapeKind.Circle:
                return dx * dx + dy * dy <= o.Radius * o.Radius;
            case ShapeKind.Cross:
                double arm = o.Radius * 0.92, half = o.Radius * 0.34;
                double ax = Math.Abs(dx), ay = Math.Abs(dy);
                return (ax <= arm && ay <= half) || (ax <= half && ay <= arm);
        }
        // Even-odd rule.
        bool inside = false;
        var v = vertices!;
        int count = v.Length / 2;
        for (int i = 0, j = count - 1; i < count; j = i++)
        {
            double xi = v[2 * i], yi = v[2 * i + 1], xj = v[2 * j], yj = v[2 * j + 1];
            if ((yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside;
        }
        return inside;
    }
}
