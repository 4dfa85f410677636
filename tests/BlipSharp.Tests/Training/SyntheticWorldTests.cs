using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using BlipSharp.Processing;
using BlipSharp.Training.Data;
using BlipSharp.Training.Evaluation;
using BlipSharp.Training.Synthetic;
using Xunit;
using Xunit.Abstractions;

namespace BlipSharp.Tests.Training;

public sealed class SyntheticWorldTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-synth-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly SyntheticWorldOptions Small = new()
    {
        Seed = 17, PretrainImages = 1000, HumanImages = 60, ValImages = 20, TestImages = 60, VqaImages = 50, ClassifyImages = 40, NlvrPairs = 20, WriteShards = true, ShardSize = 400,
    };

    /// <summary>One object named in a caption: "large red circle ... on the left".</summary>
    private sealed record Mention(SizeClass? Size, ColorName Color, ShapeKind Shape, Placement? Placement);

    /// <summary>Reads the objects a caption names: a colour word directly followed by a shape word, an optional size word before, and the next position word after.</summary>
    private static List<Mention> Parse(string caption)
    {
        var words = caption.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(w => w.Trim(',', ':', '.')).ToArray();
        var mentions = new List<Mention>();
        for (int i = 0; i + 1 < words.Length; i++)
        {
            if (!Enum.TryParse<ColorName>(words[i], ignoreCase: true, out var color) || !Enum.TryParse<ShapeKind>(words[i + 1], ignoreCase: true, out var shape)) continue;
            SizeClass? size = null;
            if (i > 0)
            {
                if (Palette.SizeWords(SizeClass.Small).Contains(words[i - 1])) size = SizeClass.Small;
                else if (Palette.SizeWords(SizeClass.Large).Contains(words[i - 1])) size = SizeClass.Large;
            }
            Placement? placement = null;
            for (int j = i + 2; j < words.Length && placement == null; j++)
            {
                placement = words[j] switch
                {
                    "left" => Placement.Left,
                    "right" => Placement.Right,
                    "top" => Placement.Top,
                    "bottom" => Placement.Bottom,
                    "center" or "middle" => Placement.Center,
                    _ => null,
                };
                if (j + 1 < words.Length && Enum.TryParse<ShapeKind>(words[j + 1], true, out _) && placement == null) break;
            }
            mentions.Add(new Mention(size, color, shape, placement));
        }
        return mentions;
    }

    /// <summary>The colour found at the nominal centre of a placement in the drawn image.</summary>
    private static ColorName ColorAt(RgbImage image, Placement placement)
    {
        var (fx, fy) = Palette.NominalCenter(placement);
        var (r, g, b) = image[(int)(fx * image.Width), (int)(fy * image.Height)];
        return Palette.Nearest(r, g, b);
    }

    private static JsonElement ReadJson(string path) => JsonDocument.Parse(File.ReadAllBytes(path)).RootElement;

    private static List<(string Shape, string Color, string Size, string Position)> SceneObjects(JsonElement record) =>
        record.GetProperty("scene").GetProperty("objects").EnumerateArray()
            .Select(o => (o.GetProperty("shape").GetString()!, o.GetProperty("color").GetString()!, o.GetProperty("size").GetString()!, o.GetProperty("position").GetString()!))
            .ToList();

    private static bool Describes(Mention m, (string Shape, string Color, string Size, string Position) o) =>
        Palette.Word(m.Shape) == o.Shape && Palette.Word(m.Color) == o.Color && m.Placement is { } p && Palette.Word(p) == o.Position
        && (m.Size is not { } s || s.ToString().ToLowerInvariant() == o.Size);

    [Fact]
    public void TokenizerCoversEveryTextOfTheWorld()
    {
        SyntheticWorld.Generate(_dir, Small with { PretrainImages = 400, WriteShards = false });
        var tokenizer = BlipTokenizer.FromPretrained(Path.Combine(_dir, SyntheticVocabulary.DirectoryName));
        int lines = File.ReadAllLines(Path.Combine(_dir, SyntheticVocabulary.DirectoryName, "vocab.txt")).Length;
        Assert.Equal(lines, tokenizer.VocabSize); // [DEC] and [ENC] are in vocab.txt: nothing is appended
        Assert.InRange(lines, 100, 400);          // the world's words plus 72 character pieces, not BERT's 30,522
        Assert.Equal((0L, 1L, 2L, 3L), (tokenizer.PadTokenId, tokenizer.UnkTokenId, tokenizer.ClsTokenId, tokenizer.SepTokenId));
        Assert.Equal(SyntheticVocabulary.DecTokenId, tokenizer.BosTokenId);
        Assert.Equal(SyntheticVocabulary.EncTokenId, tokenizer.EncTokenId);

        var clean = new List<string>();
        var noisy = new List<string>();
        foreach (var r in JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, SyntheticWorld.PretrainFile))).RootElement.EnumerateArray())
            (r.GetProperty("noisy").GetBoolean() ? noisy : clean).Add(r.GetProperty("caption").GetString()!);
        foreach (var r in JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, SyntheticWorld.TestFile))).RootElement.EnumerateArray())
            clean.AddRange(r.GetProperty("caption").EnumerateArray().Select(c => c.GetString()!));
        foreach (var r in JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, SyntheticWorld.VqaTestFile))).RootElement.EnumerateArray())
            clean.Add(r.GetProperty("question").GetString()!);
        Assert.NotEmpty(noisy);
        foreach (string text in clean)
        {
            // True captions and questions are made of whole words of the vocabulary; decoding gives the text back.
            var tokens = tokenizer.Tokenize(text);
            Assert.DoesNotContain(tokens, t => t.StartsWith("##", StringComparison.Ordinal) || t == "[UNK]");
            Assert.Equal(Regex.Replace(text.ToLowerInvariant(), @"\s+([,.?:!])", "$1"), Regex.Replace(tokenizer.Decode(tokenizer.Encode(text), skipSpecialTokens: true), @"\s+([,.?:!])", "$1"));
        }
        foreach (string text in noisy)
            Assert.DoesNotContain("[UNK]", tokenizer.Tokenize(text)); // file names and spam fall back to character pieces
    }

    [Fact]
    public void TheClassifySplitLabelsEachSingleObjectImageWithItsShape()
    {
        var options = Small with { PretrainImages = 0, HumanImages = 0, ValImages = 0, TestImages = 0, VqaImages = 0, WriteShards = false };
        SyntheticWorld.Generate(_dir, options);
        var records = BlipAnnotations.Load(Path.Combine(_dir, SyntheticWorld.ClassifyFile), new AnnotationOptions { Strict = true });
        Assert.Equal(40, records.Count);
        for (int i = 0; i < records.Count; i++)
        {
            var scene = SyntheticWorld.SceneFor(options, SyntheticSplit.Classify, i);
            Assert.Single(scene.Objects);
            Assert.Equal(Palette.Word(scene.Objects[0].Shape), Assert.Single(records[i].Captions));
            Assert.EndsWith(SyntheticWorld.ImagePath(SyntheticSplit.Classify, i), records[i].Image.Name, StringComparison.Ordinal);
        }
        Assert.True(records.Select(r => r.Captions[0]).Distinct().Count() >= 5, "40 images should show most of the 7 shapes");
    }

    [Fact]
    public void VideoClipsAreFrameFoldersOfADriftingSceneWithATrueCaptionThatTheMsrvttReaderLoads()
    {
        var options = Small with { VideoClips = 6, VideoFrames = 5 };
        var summary = SyntheticWorld.Generate(_dir, options);
        Assert.Equal(6, summary.VideoClips);
        Assert.Contains(SyntheticWorld.VideoTestFile, summary.Files);
        var dataset = BlipSharp.Training.Retrieval.MsrvttAnnotations.Load(Path.Combine(_dir, SyntheticWorld.VideoTestFile), Path.Combine(_dir, SyntheticWorld.VideosDirectory));
        Assert.Equal(6, dataset.Videos.Count);
        Assert.Equal(Enumerable.Range(0, 6), dataset.TextToVideo);
        for (int i = 0; i < 6; i++)
        {
            var video = dataset.Videos[i];
            Assert.Equal(SyntheticWorld.ClipName(i), video.Name);
            var frames = video.FramePaths();
            Assert.Equal(5, frames.Count);
            var bytes = frames.Select(File.ReadAllBytes).ToList();
            Assert.Equal(5, bytes.Select(Convert.ToBase64String).Distinct().Count()); // every frame differs (objects drift, noise changes)
            var scene = SyntheticWorld.SceneFor(options, SyntheticSplit.Video, i);
            Assert.True(SyntheticEvaluation.IsCorrect(dataset.Texts[i], scene.Objects.Select(o => new NamedObject(Palette.Word(o.Color), Palette.Word(o.Shape))).ToList()),
                $"clip {i}: '{dataset.Texts[i]}' does not describe its scene");
        }
    }

    [Fact]
    public void SameSeedGivesByteIdenticalFiles()
    {
        var options = Small with { PretrainImages = 120, HumanImages = 10, ValImages = 5, TestImages = 10, VqaImages = 10, ClassifyImages = 12, ShardSize = 50, VideoClips = 3, VideoFrames = 4 };
        string a = Path.Combine(_dir, "a"), b = Path.Combine(_dir, "b"), c = Path.Combine(_dir, "c");
        SyntheticWorld.Generate(a, options);
        SyntheticWorld.Generate(b, options);
        SyntheticWorld.Generate(c, options with { Seed = options.Seed + 1 });
        var filesA = Directory.GetFiles(a, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(a, f)).Order(StringComparer.Ordinal).ToList();
        var filesB = Directory.GetFiles(b, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(b, f)).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(filesA, filesB);
        Assert.Equal(120 + 10 + 5 + 10 + 10 + 12 + 40 + 3 * 4 + 3 + 15 + 1 + 3, filesA.Count); // images (20 NLVR pairs), video frames, 3 shards, 15 JSON files, the video jsonl, 3 tokenizer files
        foreach (string f in filesA)
            Assert.True(File.ReadAllBytes(Path.Combine(a, f)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(b, f))), $"{f} differs between two runs with the same seed");
        Assert.False(File.ReadAllBytes(Path.Combine(a, SyntheticWorld.PretrainFile)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(c, SyntheticWorld.PretrainFile))));
    }

    [Fact]
    public void SplitsHaveTheRequestedSizesAndFormats()
    {
        var sw = Stopwatch.StartNew();
        var summary = SyntheticWorld.Generate(_dir, Small);
        output.WriteLine($"generated {summary.Images.Values.Sum()} images in {sw.ElapsedMilliseconds} ms");

        var pretrain = BlipAnnotations.Load(Path.Combine(_dir, SyntheticWorld.PretrainFile), new AnnotationOptions { Strict = true });
        Assert.Equal(1000, pretrain.Count);
        Assert.All(pretrain, e => Assert.True(File.Exists(e.Image.Name)));

        var human = CocoKarpathy.LoadTrain(Path.Combine(_dir, SyntheticWorld.HumanFile), options: new AnnotationOptions { Strict = true });
        Assert.Equal(60, human.ImageCount);
        Assert.InRange(human.Count, 60 * 2 - 3, 60 * 2); // two different captions per image (a tiny scene may offer fewer)

        var test = CocoKarpathy.LoadEval(Path.Combine(_dir, SyntheticWorld.TestFile), options: new AnnotationOptions { Strict = true });
        Assert.Equal(60, test.Count);
        Assert.All(test, e => Assert.InRange(e.Captions.Count, 3, 5));
        Assert.All(test, e => Assert.Equal(e.Captions.Count, e.Captions.Distinct().Count()));
        Assert.Equal(20, CocoKarpathy.LoadEval(Path.Combine(_dir, SyntheticWorld.ValFile)).Count);

        var vqaTrain = ReadJson(Path.Combine(_dir, SyntheticWorld.VqaTrainFile)).EnumerateArray().ToList();
        var vqaTest = ReadJson(Path.Combine(_dir, SyntheticWorld.VqaTestFile)).EnumerateArray().ToList();
        Assert.Equal(40 * 4, vqaTrain.Count);
        Assert.Equal(10 * 4, vqaTest.Count);
        Assert.Equal(summary.VqaTrainQuestions, vqaTrain.Count);
        var answers = ReadJson(Path.Combine(_dir, SyntheticWorld.AnswerListFile)).EnumerateArray().Select(a => a.GetString()).ToHashSet();
        var ids = new HashSet<int>();
        foreach (var q in vqaTrain.Concat(vqaTest))
        {
            Assert.True(ids.Add(q.GetProperty("question_id").GetInt32()));
            Assert.EndsWith("?", q.GetProperty("question").GetString());
            Assert.Equal("vqa", q.GetProperty("dataset").GetString());
            var answer = q.GetProperty("answer").EnumerateArray().Select(a => a.GetString()).ToList();
            Assert.Equal(3, answer.Count);
            Assert.Contains(answer[0], answers);
            Assert.True(File.Exists(Path.Combine(_dir, q.GetProperty("image").GetString()!)));
        }
        Assert.Equal(4, vqaTrain.Select(q => q.GetProperty("question_type").GetString()).Distinct().Count());

        var manifest = ReadJson(Path.Combine(_dir, SyntheticWorld.ManifestFile));
        Assert.Equal(1000, manifest.GetProperty("images").GetProperty("pretrain").GetInt32());
        Assert.Equal(summary.PretrainNoisy, 1000 - manifest.GetProperty("pretrain_noise").GetProperty("none").GetInt32());
    }

    [Fact]
    public void TrueCaptionsNameWhatIsDrawn()
    {
        SyntheticWorld.Generate(_dir, Small with { PretrainImages = 300, VqaImages = 0, WriteShards = false });
        int checkedMentions = 0;
        var test = ReadJson(Path.Combine(_dir, SyntheticWorld.TestFile)).EnumerateArray().ToList();
        foreach (var record in test)
        {
            var image = ImageDecoder.Decode(Path.Combine(_dir, record.GetProperty("image").GetString()!));
            var objects = SceneObjects(record);
            foreach (var caption in record.GetProperty("caption").EnumerateArray().Select(c => c.GetString()!))
            {
                var mentions = Parse(caption);
                Assert.True(mentions.Count == objects.Count, $"'{caption}' names {mentions.Count} objects, the scene has {objects.Count}");
                foreach (var m in mentions)
                {
                    Assert.True(m.Placement.HasValue, $"no position in '{caption}'");
                    Assert.True(ColorAt(image, m.Placement!.Value) == m.Color, $"'{caption}': the pixel at the {m.Placement} centre is not {m.Color}");
                    Assert.True(objects.Any(o => Describes(m, o)), $"'{caption}' does not describe the scene");
                    checkedMentions++;
                }
            }
        }
        // The human-annotated split has no scene field: the image itself is the check.
        foreach (var record in ReadJson(Path.Combine(_dir, SyntheticWorld.HumanFile)).EnumerateArray())
        {
            string caption = record.GetProperty("caption").GetString()!;
            var image = ImageDecoder.Decode(Path.Combine(_dir, record.GetProperty("image").GetString()!));
            foreach (var m in Parse(caption))
            {
                Assert.True(ColorAt(image, m.Placement!.Value) == m.Color, $"'{caption}': the pixel at the {m.Placement} centre is not {m.Color}");
                checkedMentions++;
            }
        }
        Assert.True(checkedMentions > 500);
    }

    [Fact]
    public void RenderedFilesAreTheScenesAndCentresHoldTheObjectColour()
    {
        var options = Small with { PretrainImages = 0, HumanImages = 0, ValImages = 0, TestImages = 40, VqaImages = 0, WriteShards = false };
        SyntheticWorld.Generate(_dir, options);
        for (int i = 0; i < 40; i++)
        {
            var scene = SyntheticWorld.SceneFor(options, SyntheticSplit.Test, i);
            var decoded = ImageDecoder.Decode(Path.Combine(_dir, SyntheticWorld.ImagePath(SyntheticSplit.Test, i)));
            Assert.Equal(SceneRenderer.Render(scene).Pixels.ToArray(), decoded.Pixels.ToArray()); // lossless PNG round trip
            foreach (var o in scene.Objects)
            {
                Assert.Equal(Palette.Rgb(o.Color), decoded[(int)o.X, (int)o.Y]); // solid fill at the true centre
                Assert.True(SceneRenderer.Contains(o, o.X, o.Y));
            }
            Assert.Equal(64, decoded.Width);
        }
    }

    [Fact]
    public void NoisyTextsHaveTheRequestedFractionAndAreMarked()
    {
        SyntheticWorld.Generate(_dir, Small with { HumanImages = 0, ValImages = 0, TestImages = 0, VqaImages = 0, WriteShards = false });
        var records = ReadJson(Path.Combine(_dir, SyntheticWorld.PretrainFile)).EnumerateArray().ToList();
        var kinds = records.GroupBy(r => r.GetProperty("noise_kind").GetString()!).ToDictionary(g => g.Key, g => g.Count());
        double noisy = records.Count(r => r.GetProperty("noisy").GetBoolean()) / (double)records.Count;
        output.WriteLine($"noisy {noisy:F3}; " + string.Join(", ", kinds.Select(k => $"{k.Key} {k.Value}")));
        Assert.InRange(noisy, 0.4 - 0.06, 0.4 + 0.06); // 1000 Bernoulli(0.4) draws: sd 0.015
        Assert.Equal(records.Count - kinds["none"], records.Count(r => r.GetProperty("noisy").GetBoolean()));
        foreach (string kind in new[] { "wrong_attribute", "unrelated", "filename", "spam" })
            Assert.InRange(kinds.GetValueOrDefault(kind), 60, 140); // a quarter of ~400 each

        var fileName = new Regex(@"^(IMG_\d{4}\.jpg|DSC\d{5}\.JPG|image \(\d+\)\.png|photo_[\d_-]+\.jpg|P\d{7}\.JPG|[0-9a-f]{8}\.jpeg)$");
        foreach (var r in records)
        {
            string caption = r.GetProperty("caption").GetString()!;
            var objects = SceneObjects(r);
            var mentions = Parse(caption);
            switch (r.GetProperty("noise_kind").GetString())
            {
                case "none":
                    Assert.True(mentions.Count == objects.Count && mentions.All(m => objects.Any(o => Describes(m, o))), $"clean '{caption}' does not describe its scene");
                    break;
                case "wrong_attribute":
                    Assert.True(mentions.Count == objects.Count, $"'{caption}'");
                    Assert.False(mentions.All(m => objects.Any(o => Describes(m, o))), $"'{caption}' is marked wrong but describes its scene ({r.GetProperty("noise_detail").GetString()})");
                    break;
                case "unrelated":
                    Assert.False(mentions.All(m => objects.Any(o => Describes(m, o))) && mentions.Count == objects.Count, $"unrelated '{caption}' describes its scene");
                    Assert.StartsWith("pretrain_", r.GetProperty("noise_detail").GetString());
                    break;
                case "filename":
                    Assert.Matches(fileName, caption);
                    break;
                case "spam":
                    Assert.Empty(mentions);
                    Assert.Matches("buy|click|deals|offer|shop|wholesale", caption);
                    break;
                default:
                    Assert.Fail($"unknown noise kind in {r}");
                    break;
            }
        }
    }

    [Fact]
    public void NlvrStatementsAreTrueExactlyWhenLabelledAndAddNoWordToTheVocabulary()
    {
        var options = Small with { PretrainImages = 300, HumanImages = 20, ValImages = 0, TestImages = 20, VqaImages = 20, ClassifyImages = 0, NlvrPairs = 80, WriteShards = false };
        var summary = SyntheticWorld.Generate(_dir, options);
        Assert.Equal((128, 32), (summary.NlvrTrainItems, summary.NlvrTestItems));
        var items = ReadJson(Path.Combine(_dir, SyntheticWorld.NlvrTrainFile)).EnumerateArray()
            .Concat(ReadJson(Path.Combine(_dir, SyntheticWorld.NlvrTestFile)).EnumerateArray()).ToList();
        Assert.Equal(160, items.Count);
        var one = new Regex("^there is a (\\w+) (\\w+) in the (left|right) image$");
        var both = new Regex("^there is a (\\w+) in the left image and a (\\w+) in the right image$");
        var colour = new Regex("^there is a (\\w+) object in the left image and in the right image$");
        var count = new Regex("^there are two objects in the (left|right) image$");
        var kinds = new HashSet<string>();
        int trues = 0;
        for (int k = 0; k < items.Count; k++)
        {
            var item = items[k];
            var paths = item.GetProperty("images").EnumerateArray().Select(e => e.GetString()!).ToArray();
            Assert.Equal([SyntheticWorld.ImagePath(SyntheticSplit.Nlvr, k / 2 * 2), SyntheticWorld.ImagePath(SyntheticSplit.Nlvr, k / 2 * 2 + 1)], paths);
            Assert.All(paths, p => Assert.True(File.Exists(Path.Combine(_dir, p)), p));
            var scenes = new[] { SyntheticWorld.SceneFor(options, SyntheticSplit.Nlvr, k / 2 * 2), SyntheticWorld.SceneFor(options, SyntheticSplit.Nlvr, k / 2 * 2 + 1) };
            string sentence = item.GetProperty("sentence").GetString()!;
            string label = item.GetProperty("label").GetString()!;
            Assert.Contains(label, new[] { "True", "False" });
            bool truth;
            Match m;
            if ((m = one.Match(sentence)).Success)
            {
                var scene = scenes[m.Groups[3].Value == "left" ? 0 : 1];
                truth = scene.Objects.Any(o => Palette.Word(o.Color) == m.Groups[1].Value && Palette.Word(o.Shape) == m.Groups[2].Value);
                kinds.Add("one");
            }
            else if ((m = both.Match(sentence)).Success)
            {
                truth = scenes[0].Objects.Any(o => Palette.Word(o.Shape) == m.Groups[1].Value) && scenes[1].Objects.Any(o => Palette.Word(o.Shape) == m.Groups[2].Value);
                kinds.Add("both");
            }
            else if ((m = colour.Match(sentence)).Success)
            {
                truth = scenes.All(s => s.Objects.Any(o => Palette.Word(o.Color) == m.Groups[1].Value));
                kinds.Add("colour");
            }
            else if ((m = count.Match(sentence)).Success)
            {
                truth = scenes[m.Groups[1].Value == "left" ? 0 : 1].Objects.Count == 2;
                kinds.Add("count");
            }
            else
            {
                throw new Xunit.Sdk.XunitException($"statement {k} has no known form: '{sentence}'");
            }
            Assert.True((label == "True") == truth, $"statement {k} '{sentence}' is labelled {label}");
            if (truth) trues++;
            if (k % 2 == 1) Assert.NotEqual(items[k - 1].GetProperty("label").GetString(), label); // one true and one false per pair
        }
        Assert.Equal(80, trues);
        Assert.Equal(4, kinds.Count);

        // The statements reuse the captions' words: the vocabulary is the one the world has without them.
        string other = Path.Combine(_dir, "no-nlvr");
        SyntheticWorld.Generate(other, options with { NlvrPairs = 0 });
        Assert.Equal(File.ReadAllText(Path.Combine(other, SyntheticVocabulary.DirectoryName, "vocab.txt")),
            File.ReadAllText(Path.Combine(_dir, SyntheticVocabulary.DirectoryName, "vocab.txt")));
        Assert.False(File.Exists(Path.Combine(other, SyntheticWorld.NlvrTrainFile)));
    }

    [Fact]
    public void TheTestSplitsAreAlsoWrittenInTheCocoCaptionAndOfficialVqaFormats()
    {
        var options = Small with { PretrainImages = 0, HumanImages = 0, ValImages = 10, TestImages = 12, VqaImages = 30, ClassifyImages = 0, NlvrPairs = 0, WriteShards = false };
        SyntheticWorld.Generate(_dir, options);
        var test = ReadJson(Path.Combine(_dir, SyntheticWorld.TestFile)).EnumerateArray().ToList();
        var gt = ReadJson(Path.Combine(_dir, SyntheticWorld.TestGroundTruthFile));
        Assert.Equal(test.Select(r => r.GetProperty("image_id").GetString()), gt.GetProperty("images").EnumerateArray().Select(i => i.GetProperty("id").GetString()));
        var annotations = gt.GetProperty("annotations").EnumerateArray().ToList();
        Assert.Equal(test.SelectMany(r => r.GetProperty("caption").EnumerateArray().Select(c => (r.GetProperty("image_id").GetString(), c.GetString()))),
            annotations.Select(a => (a.GetProperty("image_id").GetString(), a.GetProperty("caption").GetString())));
        Assert.Equal(Enumerable.Range(0, annotations.Count), annotations.Select(a => a.GetProperty("id").GetInt32()));
        Assert.Equal(10, ReadJson(Path.Combine(_dir, SyntheticWorld.ValGroundTruthFile)).GetProperty("images").GetArrayLength());

        var vqa = ReadJson(Path.Combine(_dir, SyntheticWorld.VqaTestFile)).EnumerateArray().ToList();
        var questions = ReadJson(Path.Combine(_dir, SyntheticWorld.VqaTestQuestionsFile)).GetProperty("questions").EnumerateArray().ToList();
        var answers = ReadJson(Path.Combine(_dir, SyntheticWorld.VqaTestAnnotationsFile)).GetProperty("annotations").EnumerateArray().ToList();
        Assert.NotEmpty(vqa);
        Assert.Equal(vqa.Select(q => (q.GetProperty("question_id").GetInt32(), q.GetProperty("question").GetString())),
            questions.Select(q => (q.GetProperty("question_id").GetInt32(), q.GetProperty("question").GetString())));
        for (int i = 0; i < vqa.Count; i++)
        {
            Assert.Equal(vqa[i].GetProperty("question_id").GetInt32(), answers[i].GetProperty("question_id").GetInt32());
            Assert.Equal(questions[i].GetProperty("image_id").GetInt32(), answers[i].GetProperty("image_id").GetInt32());
            var given = answers[i].GetProperty("answers").EnumerateArray().ToList();
            Assert.Equal(Enumerable.Range(1, 10), given.Select(a => a.GetProperty("answer_id").GetInt32()));
            Assert.All(given, a => Assert.Equal(vqa[i].GetProperty("answer")[0].GetString(), a.GetProperty("answer").GetString()));
            Assert.Equal(vqa[i].GetProperty("question_type").GetString(), answers[i].GetProperty("question_type").GetString());
        }
    }

    [Fact]
    public void VqaAnswersMatchTheImages()
    {
        var options = Small with { PretrainImages = 0, HumanImages = 0, ValImages = 0, TestImages = 0, VqaImages = 60, WriteShards = false };
        SyntheticWorld.Generate(_dir, options);
        var questions = ReadJson(Path.Combine(_dir, SyntheticWorld.VqaTrainFile)).EnumerateArray()
            .Concat(ReadJson(Path.Combine(_dir, SyntheticWorld.VqaTestFile)).EnumerateArray()).ToList();
        var colorOf = new Regex("^what color is the (\\w+)\\?$");
        int checkedColors = 0;
        foreach (var q in questions)
        {
            string path = q.GetProperty("image").GetString()!;
            int index = int.Parse(Path.GetFileNameWithoutExtension(path), System.Globalization.CultureInfo.InvariantCulture);
            var scene = SyntheticWorld.SceneFor(options, SyntheticSplit.Vqa, index);
            string question = q.GetProperty("question").GetString()!, answer = q.GetProperty("answer")[0].GetString()!;
            if (question.StartsWith("how many", StringComparison.Ordinal)) Assert.Equal(scene.Objects.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), answer);
            var m = colorOf.Match(question);
            if (m.Success && m.Groups[1].Value != "background")
            {
                var o = Assert.Single(scene.Objects, o => Palette.Word(o.Shape) == m.Groups[1].Value);
                var image = ImageDecoder.Decode(Path.Combine(_dir, path));
                var (r, g, b) = image[(int)o.X, (int)o.Y];
                Assert.Equal(answer, Palette.Word(Palette.Nearest(r, g, b)));
                checkedColors++;
            }
            if (question.StartsWith("where is the", StringComparison.Ordinal))
                Assert.Contains(scene.Objects, o => Palette.Word(o.Placement) == answer && question.Contains(Palette.Word(o.Shape)));
        }
        Assert.True(checkedColors > 10);
    }

    [Fact]
    public void ShardsHoldThePretrainingSplit()
    {
        SyntheticWorld.Generate(_dir, Small with { PretrainImages = 250, HumanImages = 0, ValImages = 0, TestImages = 0, VqaImages = 0, ShardSize = 100 });
        var shards = Directory.GetFiles(Path.Combine(_dir, "shards")).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(3, shards.Count);
        var fromShards = WebDataset.Load(shards, new WebDatasetOptions { Strict = true });
        var fromJson = BlipAnnotations.Load(Path.Combine(_dir, SyntheticWorld.PretrainFile));
        Assert.Equal(250, fromShards.Count);
        Assert.Equal(fromJson.Select(e => e.Captions[0]), fromShards.Select(e => e.Captions[0]));
        Assert.Equal(fromJson.Select(e => e.ImageId), fromShards.Select(e => e.ImageId));
        Assert.Equal(fromJson.Select(e => e.Extra["noisy"].GetBoolean()), fromShards.Select(e => e.Extra["noisy"].GetBoolean()));
        foreach (int i in new[] { 0, 99, 100, 249 })
            Assert.Equal(fromJson[i].Image.Decode().Pixels.ToArray(), fromShards[i].Image.Decode().Pixels.ToArray());
    }
}
