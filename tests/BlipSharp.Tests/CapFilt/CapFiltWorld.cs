using System.Formats.Tar;
using System.Text.Json;
using BlipSharp.Modeling;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Synthetic;
using TorchSharp;

namespace BlipSharp.Tests.CapFilt;

/// <summary>
/// The data of the CapFilt tests, written once per test class: a small synthetic world (60 noisy web pairs as
/// <c>pretrain.json</c> and as three WebDataset shards of 20, 3 human-annotated images with 2 captions each), a JSON-lines
/// file of hand-made bad records, and a shard cut short in the data of its sixth sample. The models are the tiny Hugging
/// Face fixtures (a captioner and an ITM filter with random weights: they keep about half of all texts).
/// </summary>
public sealed class CapFiltWorld : IDisposable
{
    /// <summary>Records of <see cref="BadFile"/> (the blank line is none): valid, bad JSON, no caption, a corrupt image, a missing image.</summary>
    public const int BadRecords = 5;

    /// <summary>Web pairs of the synthetic world.</summary>
    public const int WebPairs = 60;

    /// <summary>Samples of <see cref="BrokenShard"/> that can be read before the damage (one of them has no caption).</summary>
    public const int BrokenShardReadable = 5;

    private readonly Lazy<string> _reference;

    public CapFiltWorld()
    {
        Root = Directory.CreateTempSubdirectory("blipsharp-capfilt-").FullName;
        WorldDir = Path.Combine(Root, "world");
        SyntheticWorld.Generate(WorldDir, new SyntheticWorldOptions
        {
            Seed = 5, ImageSize = 32, PretrainImages = WebPairs, HumanImages = 3, HumanCaptionsPerImage = 2, ValImages = 0, TestImages = 0,
            VqaImages = 0, ClassifyImages = 0, NlvrPairs = 0, VideoClips = 0, WriteShards = true, ShardSize = 20,
        });
        PretrainFile = Path.Combine(WorldDir, SyntheticWorld.PretrainFile);
        HumanFile = Path.Combine(WorldDir, SyntheticWorld.HumanFile);
        Shards = Enumerable.Range(0, 3).Select(i => Path.Combine(WorldDir, "shards", $"pretrain-{i:D6}.tar")).ToArray();

        // Bad records, image paths relative to the file's folder (Root).
        File.WriteAllBytes(Path.Combine(Root, "corrupt.png"), [0x89, (byte)'P', (byte)'N', (byte)'G', 1, 2, 3, 4, 5, 6, 7]);
        BadFile = Path.Combine(Root, "bad.jsonl");
        File.WriteAllText(BadFile, string.Join("\n",
            """{"image": "world/images/pretrain/000007.png", "caption": "a hand written web text", "image_id": "bad_ok", "noisy": false}""",
            """{"image": "world/images/pretrain/000008.png", "caption": "the line ends here""",
            "",
            """{"image": "world/images/pretrain/000009.png", "image_id": "no_caption"}""",
            """{"image": "corrupt.png", "caption": "bytes that are not an image"}""",
            """{"image": "missing.png", "caption": "an image nobody kept"}""") + "\n");

        BrokenShard = Path.Combine(Root, "broken.tar");
        WriteBrokenShard(Shards[1], BrokenShard);
        _reference = new Lazy<string>(() =>
        {
            string output = NewOutput("reference");
            var (code, _, error) = Blip(AnnotationRun(output));
            if (code != 0) throw new InvalidOperationException($"the reference CapFilt run failed ({code}): {error}");
            return output;
        });
    }

    public string Root { get; }

    public string WorldDir { get; }

    public string PretrainFile { get; }

    public string HumanFile { get; }

    /// <summary>The world's three shards of 20 samples.</summary>
    public string[] Shards { get; }

    public string BadFile { get; }

    /// <summary>
    /// Samples 20..23 of the world with a sample <c>nocaption</c> (image only) after the second, then sample 24 cut in the
    /// middle of its image: 5 samples read, then the damage.
    /// </summary>
    public string BrokenShard { get; }

    public static string Captioner => Fixtures.HfModelDir(nameof(BlipForConditionalGeneration));

    public static string Filter => Fixtures.HfModelDir(nameof(BlipForImageTextRetrieval));

    /// <summary>The world's image of pretraining record <paramref name="index"/>.</summary>
    public string WorldImage(int index) => Path.Combine(WorldDir, SyntheticWorld.ImagePath(SyntheticSplit.Pretrain, index));

    /// <summary>A new output folder path beside the others (not created), so relative image paths agree between runs.</summary>
    public string NewOutput(string name) => Path.Combine(Root, "runs", $"{name}-{Guid.NewGuid():N}");

    /// <summary>
    /// The annotation run every comparison is made against: the 60 web pairs and the 5 bad records, in chunks of 8, with
    /// the human pairs; captions of at most 16 tokens (half the time of BLIP's 30). An option of <paramref name="extra"/> (<c>--seed 12</c>) replaces the same option's default here.
    /// </summary>
    public string[] AnnotationRun(string output, params string[] extra)
    {
        string[] defaults = ["--chunk-size", "8", "--batch-size", "4", "--seed", "11", "--max-length", "16", "--min-length", "5", "--threads", "1", "--decode-threads", "2"];
        var args = new List<string> { "capfilt", "--captioner", Captioner, "--filter", Filter, "--input", PretrainFile, BadFile, "--human", HumanFile, "--out", output };
        for (int i = 0; i < defaults.Length; i += 2)
            if (!extra.Contains(defaults[i])) args.AddRange([defaults[i], defaults[i + 1]]);
        args.AddRange(extra);
        return [.. args];
    }

    /// <summary>The output folder of <see cref="AnnotationRun"/> (run once, on first use).</summary>
    public string Reference => _reference.Value;

    /// <summary>Runs <c>blip ARGS</c> in-process, then puts back torch's thread count (<c>--threads</c> changes it for the whole process).</summary>
    public static (int Code, string Output, string Error) Blip(params string[] args)
    {
        int threads = torch.get_num_threads();
        try
        {
            return CliRunner.Run(args);
        }
        finally
        {
            torch.set_num_threads(threads);
        }
    }

    /// <summary>Copies a folder (an output folder, to damage the copy).</summary>
    public string CopyOutput(string source, string name)
    {
        string target = NewOutput(name);
        foreach (string file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            string to = Path.Combine(target, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(to)!);
            File.Copy(file, to);
        }
        return target;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static void WriteBrokenShard(string source, string target)
    {
        var members = new List<(string Name, byte[] Data)>();
        using (var reader = new TarReader(File.OpenRead(source)))
        {
            while (reader.GetNextEntry() is { } entry)
            {
                using var data = new MemoryStream();
                entry.DataStream?.CopyTo(data);
                members.Add((entry.Name, data.ToArray()));
            }
        }
        var stream = new MemoryStream();
        long cut = 0;
        using (var tar = new TarWriter(stream, TarEntryFormat.Ustar, leaveOpen: true))
        {
            void Add(string name, byte[] data) => tar.WriteEntry(new UstarTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(data) });
            for (int i = 20; i <= 24; i++)
            {
                if (i == 22) Add("nocaption.png", members.Single(m => m.Name == "000021.png").Data);
                var png = members.Single(m => m.Name == $"{i:D6}.png");
                if (i == 24) cut = stream.Position + 512 + png.Data.Length / 2; // inside sample 24's image data
                Add(png.Name, png.Data);
                Add($"{i:D6}.json", members.Single(m => m.Name == $"{i:D6}.json").Data);
            }
        }
        File.WriteAllBytes(target, stream.ToArray().AsSpan(0, (int)cut).ToArray());
    }

    /// <summary>The lines of a JSON-lines file, parsed.</summary>
    public static List<JsonElement> ReadLines(string path) =>
        File.ReadAllLines(path).Where(l => l.Length > 0).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
}
