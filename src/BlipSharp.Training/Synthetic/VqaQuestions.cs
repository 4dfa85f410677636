using System.Globalization;

namespace BlipSharp.Training.Synthetic;

/// <summary>Questions about a scene with their answers: what colour, what shape, where, how many.</summary>
public static class VqaQuestions
{
    /// <summary>Every answer a question can have, sorted: colours, shapes, positions and counts.</summary>
    public static IReadOnlyList<string> AllAnswers() =>
        Palette.AllColors.Select(Palette.Word)
            .Concat(Enum.GetValues<ShapeKind>().Select(Palette.Word))
            .Concat(Enum.GetValues<Placement>().Select(Palette.Word))
            .Concat(["1", "2"])
            .Distinct()
            .Order(StringComparer.Ordinal)
            .ToArray();

    /// <summary>Up to <paramref name="count"/> different questions about the scene, in a random order.</summary>
    /// <param name="scene">The scene.</param>
    /// <param name="random">The random source.</param>
    /// <param name="count">How many.</param>
    public static List<(string Question, string Answer, string Type)> For(Scene scene, Random random, int count)
    {
        ArgumentNullException.ThrowIfNull(scene);
        ArgumentNullException.ThrowIfNull(random);
        var candidates = new List<(string, string, string)>();
        foreach (var o in scene.Objects)
        {
            string shape = Palette.Word(o.Shape), color = Palette.Word(o.Color);
            candidates.Add(($"what color is the {shape}?", color, "color"));
            candidates.Add(($"what shape is {Palette.PlacementPhrases(o.Placement)[0]}?", shape, "shape"));
            candidates.Add(($"what shape is the {color} object?", shape, "shape"));
            candidates.Add(($"where is the {color} {shape}?", Palette.Word(o.Placement), "where"));
        }
        string n = scene.Objects.Count.ToString(CultureInfo.InvariantCulture);
        candidates.Add(("how many shapes are there?", n, "count"));
        candidates.Add(("how many objects are in the picture?", n, "count"));
        if (scene.Background.Kind == BackgroundKind.Plain)
            candidates.Add(("what color is the background?", Palette.Word(scene.Background.Color), "color"));
        for (int i = candidates.Count - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (candidates[i], candidates[j]) = (candidates[j], candidates[i]);
        }
        return candidates.Take(count).ToList();
    }
}
