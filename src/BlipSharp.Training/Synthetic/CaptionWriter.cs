using System.Globalization;

namespace BlipSharp.Training.Synthetic;

/// <summary>
/// Writes texts for scenes: true captions from varied templates ("a large red circle on the left of a blue
/// background"), and the web-style noise of the pretraining split (file names, spam).
/// </summary>
public static class CaptionWriter
{
    private const int SingleTemplates = 7;
    private const int PairTemplates = 5;

    private static readonly string[] Products = ["watches", "shoes", "sunglasses", "phones", "handbags", "vitamins", "sneakers", "perfume"];

    /// <summary>A true caption of the scene with a template drawn from <paramref name="random"/>.</summary>
    /// <param name="scene">The scene.</param>
    /// <param name="random">The random source.</param>
    /// <param name="alwaysNameSize">Name every object's size (otherwise each is named with probability 3/4).</param>
    public static string Caption(Scene scene, Random random, bool alwaysNameSize = false)
    {
        ArgumentNullException.ThrowIfNull(scene);
        ArgumentNullException.ThrowIfNull(random);
        int templates = scene.Objects.Count == 1 ? SingleTemplates : PairTemplates;
        return Caption(scene, random, random.Next(templates), alwaysNameSize);
    }

    /// <summary>Up to <paramref name="count"/> different true captions of the scene.</summary>
    /// <param name="scene">The scene.</param>
    /// <param name="random">The random source.</param>
    /// <param name="count">How many.</param>
    public static IReadOnlyList<string> Captions(Scene scene, Random random, int count)
    {
        var captions = new List<string>(count);
        for (int attempt = 0; captions.Count < count && attempt < count * 20; attempt++)
        {
            string c = Caption(scene, random);
            if (!captions.Contains(c)) captions.Add(c);
        }
        return captions;
    }

    /// <summary>A camera or download file name ("IMG_2931.jpg", "DSC01234.JPG", ...).</summary>
    /// <param name="random">The random source.</param>
    public static string FileName(Random random) => random.Next(6) switch
    {
        0 => $"IMG_{random.Next(10000):D4}.jpg",
        1 => $"DSC{random.Next(100000):D5}.JPG",
        2 => $"image ({random.Next(1, 40)}).png",
        3 => string.Create(CultureInfo.InvariantCulture, $"photo_{2012 + random.Next(12)}-{random.Next(1, 13):D2}-{random.Next(1, 29):D2}_{random.Next(24):D2}-{random.Next(60):D2}-{random.Next(60):D2}.jpg"),
        4 => $"P{random.Next(1000000, 9999999)}.JPG",
        _ => $"{random.Next():x8}.jpeg",
    };

    /// <summary>Advertising spam ("buy cheap watches online now").</summary>
    /// <param name="random">The random source.</param>
    public static string Spam(Random random)
    {
        string p = Products[random.Next(Products.Length)];
        return random.Next(6) switch
        {
            0 => $"buy cheap {p} online now",
            1 => $"click here for free {p}",
            2 => $"best {p} deals {10 * random.Next(2, 8)}% off today only",
            3 => $"limited offer!!! {p} at the lowest price",
            4 => $"visit our shop for discount {p} and free shipping",
            _ => $"wholesale {p} cheap cheap cheap www.best-{p}-{random.Next(100, 999)}.com",
        };
    }

    private static string Caption(Scene scene, Random random, int template, bool alwaysNameSize)
    {
        var objects = scene.Objects.ToList();
        if (objects.Count == 2 && random.Next(2) == 1) objects.Reverse();
        var things = objects.Select(o => Article(ObjectPhrase(o, random, alwaysNameSize)) + " " + Pick(random, Palette.PlacementPhrases(o.Placement))).ToArray();
        string bg = BackgroundPhrase(scene.Background, random);
        if (objects.Count == 1)
        {
            return template switch
            {
                0 => $"{things[0]} of {Article(bg)}",
                1 => $"{things[0]} on {Article(bg)}",
                2 => $"there is {things[0]}",
                3 => things[0],
                4 => $"{Article(bg)} with {things[0]}",
                5 => $"an image of {things[0]}",
                _ => $"{things[0]}, {bg}",
            };
        }
        return template switch
        {
            0 => $"{things[0]} and {things[1]}",
            1 => $"{things[0]} and {things[1]} on {Article(bg)}",
            2 => $"two shapes: {things[0]} and {things[1]}",
            3 => $"{Article(bg)} with {things[0]} and {things[1]}",
            _ => $"there is {things[0]} and {things[1]}",
        };
    }

    private static string ObjectPhrase(SceneObject o, Random random, bool alwaysNameSize)
    {
        bool size = alwaysNameSize || random.Next(4) != 0;
        string phrase = Palette.Word(o.Color) + " " + Palette.Word(o.Shape);
        return size ? Pick(random, Palette.SizeWords(o.Size)) + " " + phrase : phrase;
    }

    private static string BackgroundPhrase(Background bg, Random random)
    {
        string c = Palette.Word(bg.Color);
        return bg.Kind switch
        {
            BackgroundKind.Plain => $"{c} background",
            BackgroundKind.Gradient => random.Next(2) == 0
                ? $"{c} and {Palette.Word(bg.Color2 ?? bg.Color)} gradient background"
                : $"{c} to {Palette.Word(bg.Color2 ?? bg.Color)} gradient background",
            _ => random.Next(2) == 0 ? $"noisy {c} background" : $"textured {c} background",
        };
    }

    private static string Article(string phrase) => ("aeiou".Contains(phrase[0]) ? "an " : "a ") + phrase;

    private static T Pick<T>(Random random, IReadOnlyList<T> items) => items[random.Next(items.Count)];
}
