using System.Globalization;

namespace BlipSharp.Training.Synthetic;

/// <summary>
/// NLVR2-style statements about a pair of scenes ("there is a red circle in the left image and a blue square in the
/// right image"), true or false by construction. Every word is one the world's captions already use, so adding the
/// NLVR split leaves the world's vocabulary (and every tiny recipe's token ids) unchanged.
/// </summary>
public static class NlvrStatements
{
    private static readonly string[] Sides = ["left", "right"];

    /// <summary>
    /// A statement about (<paramref name="left"/>, <paramref name="right"/>) whose truth is <paramref name="truth"/>;
    /// the template and the objects it names are drawn from <paramref name="random"/>.
    /// </summary>
    /// <param name="left">The scene of the first image.</param>
    /// <param name="right">The scene of the second image.</param>
    /// <param name="truth">Whether the statement must be true.</param>
    /// <param name="random">The random source.</param>
    public static string For(Scene left, Scene right, bool truth, Random random)
    {
        ArgumentNullException.ThrowIfNull(left);
        ArgumentNullException.ThrowIfNull(right);
        ArgumentNullException.ThrowIfNull(random);
        Scene[] scenes = [left, right];
        for (int attempt = 0; attempt < 64; attempt++)
        {
            var (text, isTrue) = random.Next(4) switch
            {
                0 => ObjectInOneImage(scenes, random),
                1 => ObjectsInBothImages(scenes, random),
                2 => ColourInBothImages(scenes, random),
                _ => TwoObjectsInOneImage(scenes, random),
            };
            if (isTrue == truth) return text;
        }
        // Both always exist: the left image's first object, and a colour-shape pair it does not have.
        var o = left.Objects[0];
        if (truth) return $"there is a {Palette.Word(o.Color)} {Palette.Word(o.Shape)} in the left image";
        var absent = Palette.ObjectColors.SelectMany(c => Enum.GetValues<ShapeKind>().Select(s => (Color: c, Shape: s)))
            .First(p => !Has(left, p.Color, p.Shape));
        return $"there is a {Palette.Word(absent.Color)} {Palette.Word(absent.Shape)} in the left image";
    }

    /// <summary>"there is a red circle in the left image": an object of one of the scenes, or a random one.</summary>
    private static (string, bool) ObjectInOneImage(Scene[] scenes, Random random)
    {
        int side = random.Next(2);
        var (color, shape) = DrawObject(scenes, random);
        return ($"there is a {Palette.Word(color)} {Palette.Word(shape)} in the {Sides[side]} image", Has(scenes[side], color, shape));
    }

    /// <summary>"there is a circle in the left image and a square in the right image".</summary>
    private static (string, bool) ObjectsInBothImages(Scene[] scenes, Random random)
    {
        var (_, first) = DrawObject(scenes, random);
        var (_, second) = DrawObject(scenes, random);
        bool isTrue = scenes[0].Objects.Any(o => o.Shape == first) && scenes[1].Objects.Any(o => o.Shape == second);
        return ($"there is a {Palette.Word(first)} in the left image and a {Palette.Word(second)} in the right image", isTrue);
    }

    /// <summary>"there is a red object in the left image and in the right image".</summary>
    private static (string, bool) ColourInBothImages(Scene[] scenes, Random random)
    {
        var (color, _) = DrawObject(scenes, random);
        bool isTrue = scenes.All(s => s.Objects.Any(o => o.Color == color));
        return ($"there is a {Palette.Word(color)} object in the left image and in the right image", isTrue);
    }

    /// <summary>"there are two objects in the right image".</summary>
    private static (string, bool) TwoObjectsInOneImage(Scene[] scenes, Random random)
    {
        int side = random.Next(2);
        return ($"there are two objects in the {Sides[side]} image", scenes[side].Objects.Count == 2);
    }

    /// <summary>Half the time an object of either scene (so true statements are common), else any colour and shape.</summary>
    private static (ColorName Color, ShapeKind Shape) DrawObject(Scene[] scenes, Random random)
    {
        if (random.Next(2) == 0)
        {
            var scene = scenes[random.Next(2)];
            var o = scene.Objects[random.Next(scene.Objects.Count)];
            return (o.Color, o.Shape);
        }
        var shapes = Enum.GetValues<ShapeKind>();
        return (Palette.ObjectColors[random.Next(Palette.ObjectColors.Count)], shapes[random.Next(shapes.Length)]);
    }

    private static bool Has(Scene scene, ColorName color, ShapeKind shape) => scene.Objects.Any(o => o.Color == color && o.Shape == shape);

    /// <summary>The label BLIP's NLVR files use for <paramref name="truth"/> (<c>"True"</c> / <c>"False"</c>).</summary>
    public static string Label(bool truth) => truth.ToString(CultureInfo.InvariantCulture);
}
