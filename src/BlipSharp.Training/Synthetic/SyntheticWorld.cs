using System.Text;
using System.Formats.Tar;
using System.Globalization;
using System.Text.Json;
using BlipSharp.Training.Data;

namespace BlipSharp.Training.Synthetic;

/// <summary>The splits of the synthetic world; each has its own images.</summary>
public enum SyntheticSplit
{
    /// <summary>Noisy web-style pretraining pairs.</summary>
    Pretrain,

    /// <summary>Clean "human-annotated" pairs.</summary>
    Human,

    /// <summary>Clean validation images with several captions.</summary>
    Val,

    /// <summary>Clean test images with several captions.</summary>
    Test,

    /// <summary>Images with questions and answers.</summary>
    Vqa,

    /// <summary>Single-object images labelled with their shape: the world's ImageNet, to pretrain the ViT on (task <c>classify</c>).</summary>
    Classify,

    /// <summary>Image pairs with true and false statements about them (NLVR2 style).</summary>
    Nlvr,

    /// <summary>Short clips (frame folders) of a scene whose objects drift, with one caption each (MSRVTT style).</summary>
    Video,
}

/// <summary>What <see cref="SyntheticWorld.Generate"/> wrote.</summary>
/// <param name="Directory">The output folder; image paths in the files are relative to it.</param>
/// <param name="Files">Every file written that is not an image, relative to <paramref name="Directory"/>.</param>
/// <param name="Images">Images written per split.</param>
/// <param name="PretrainNoisy">Noisy pretraining records.</param>
/// <param name="NoiseCounts">Pretraining records per noise kind (<see cref="NoiseKind.None"/> for clean ones).</param>
/// <param name="VqaTrainQuestions">Questions in <c>vqa_train.json</c>.</param>
/// <param name="VqaTestQuestions">Questions in <c>vqa_test.json</c>.</param>
/// <param name="NlvrTrainItems">Statements in <c>nlvr_train.json</c>.</param>
/// <param name="NlvrTestItems">Statements in <c>nlvr_test.json</c>.</param>
/// <param name="VideoClips">Clips in <c>video_test.jsonl</c> (frame folders under <c>videos/</c>).</param>
public sealed record SyntheticWorldSummary(
    string Directory,
    IReadOnlyList<string> Files,
    IReadOnlyDictionary<SyntheticSplit, int> Images,
    int PretrainNoisy,
    IReadOnlyDictionary<NoiseKind, int> NoiseCounts,
    int VqaTrainQuestions,
    int VqaTestQuestions,
    int NlvrTrainItems = 0,
    int NlvrTestItems = 0,
    int VideoClips = 0);

/// <summary>
/// A deterministic generator of a small image-text world for pretraining experiments: PNG images of coloured shapes
/// on plain, gradient or noisy backgrounds, with true captions, a noisy web-style pretraining split whose records
/// say whether and how their text is wrong (so CapFilt can be scored), a clean "human-annotated" split, clean
/// validation and test splits with several captions per image (COCO-Karpathy style) and VQA questions (BLIP's VQA
/// format). Everything is a function of the seed: every scene, text and noise draw comes from a stream derived
/// from (seed, split, index), so the files are byte-identical across runs and thread counts.
/// </summary>
/// <remarks>
/// Files (image paths inside are relative to the output folder, BLIP's <c>image_root</c>):
/// <list type="bullet">
/// <item><c>pretrain.json</c>: <c>{image, caption, image_id, noisy, noise_kind, noise_detail?, scene}</c> per image;</item>
/// <item><c>human_train.json</c>: <c>{image, caption, image_id}</c>, <see cref="SyntheticWorldOptions.HumanCaptionsPerImage"/> records per image;</item>
/// <item><c>val.json</c>, <c>test.json</c>: <c>{image, caption: [...], image_id, scene}</c> per image;</item>
/// <item><c>vqa_train.json</c>, <c>vqa_test.json</c>: <c>{question_id, question, answer: [...], image, dataset: "vqa", question_type}</c>;
/// <c>answer_list.json</c>: every possible answer;</item>
/// <item><c>test_gt.json</c> (and <c>val_gt.json</c>): the test (validation) captions in COCO caption format,
/// <c>{images: [{id}], annotations: [{image_id, id, caption}]}</c>, as BLIP's <c>coco_karpathy_test_gt.json</c>, for
/// <c>blip score captions</c>;</item>
/// <item><c>vqa_test_questions.json</c>, <c>vqa_test_annotations.json</c>: the VQA test questions in the official VQA
/// format (ten annotator answers, all the true one), for <c>blip score vqa</c>;</item>
/// <item><c>nlvr_train.json</c>, <c>nlvr_test.json</c>: <c>{images: [left, right], sentence, label: "True"|"False"}</c>
/// (BLIP's NLVR2 format), one true and one false statement per image pair;</item>
/// <item><c>shards/pretrain-NNNNNN.tar</c> when asked: <c>KEY.png</c> + <c>KEY.json</c> (the record without <c>image</c>);</item>
/// <item><c>tokenizer/</c>: a WordPiece vocabulary of the world's words (<see cref="SyntheticVocabulary"/>), for tiny models;</item>
/// <item><c>manifest.json</c>: the options and counts.</item>
/// </list>
/// </remarks>
public static class SyntheticWorld
{
    /// <summary>The pretraining annotation file.</summary>
    public const string PretrainFile = "pretrain.json";

    /// <summary>The human-annotated (COCO-Karpathy train style) annotation file.</summary>
    public const string HumanFile = "human_train.json";

    /// <summary>The validation annotation file.</summary>
    public const string ValFile = "val.json";

    /// <summary>The test annotation file.</summary>
    public const string TestFile = "test.json";

    /// <summary>The VQA training questions.</summary>
    public const string VqaTrainFile = "vqa_train.json";

    /// <summary>The VQA test questions.</summary>
    public const string VqaTestFile = "vqa_test.json";

    /// <summary>All possible VQA answers.</summary>
    public const string AnswerListFile = "answer_list.json";

    /// <summary>Options and counts.</summary>
    public const string ManifestFile = "manifest.json";

    /// <summary>The test captions in COCO caption format.</summary>
    public const string TestGroundTruthFile = "test_gt.json";

    /// <summary>The validation captions in COCO caption format.</summary>
    public const string ValGroundTruthFile = "val_gt.json";

    /// <summary>The VQA test questions in the official VQA format.</summary>
    public const string VqaTestQuestionsFile = "vqa_test_questions.json";

    /// <summary>The VQA test annotations in the official VQA format.</summary>
    public const string VqaTestAnnotationsFile = "vqa_test_annotations.json";

    /// <summary>NLVR2-style training statements.</summary>
    public const string NlvrTrainFile = "nlvr_train.json";

    /// <summary>NLVR2-style test statements.</summary>
    public const string NlvrTestFile = "nlvr_test.json";

    /// <summary>The video-text retrieval test file (BLIP's MSRVTT jsonl: <c>clip_name</c>, <c>caption</c>); clips are frame folders <c>videos/clip_name/</c>.</summary>
    public const string VideoTestFile = "video_test.jsonl";

    /// <summary>The folder of the video clips (one frame folder per clip).</summary>
    public const string VideosDirectory = "videos";

    /// <summary>The classification split: BLIP annotation records whose caption is the object's shape ("circle").</summary>
    public const string ClassifyFile = "classify.json";

    private static readonly JsonWriterOptions WriterOptions = new() { Indented = false };

    /// <summary>The JSON name of a noise kind (<c>"none"</c>, <c>"wrong_attribute"</c>, <c>"unrelated"</c>, <c>"filename"</c>, <c>"spam"</c>).</summary>
    /// <param name="kind">The kind.</param>
    public static string NoiseKindName(NoiseKind kind) => kind switch
    {
        NoiseKind.None => "none",
        NoiseKind.WrongAttribute => "wrong_attribute",
        NoiseKind.Unrelated => "unrelated",
        NoiseKind.FileName => "filename",
        _ => "spam",
    };

    /// <summary>The scene of image <paramref name="index"/> of a split, as <see cref="Generate"/> draws it.</summary>
    /// <param name="options">The world's options (seed, image size, two-object probability).</param>
    /// <param name="split">The split.</param>
    /// <param name="index">The image's index in the split.</param>
    public static Scene SceneFor(SyntheticWorldOptions options, SyntheticSplit split, int index)
    {
        ArgumentNullException.ThrowIfNull(options);
        return SceneSampler.Sample(SeededRandom.Create(options.Seed, (int)split, index, 0), options.ImageSize,
            split == SyntheticSplit.Classify ? 0 : options.TwoObjectProbability);
    }

    /// <summary>The relative path of an image ("images/test/000012.png").</summary>
    /// <param name="split">The split.</param>
    /// <param name="index">The image's index.</param>
    public static string ImagePath(SyntheticSplit split, int index) =>
        $"images/{split.ToString().ToLowerInvariant()}/{index.ToString("D6", CultureInfo.InvariantCulture)}.png";

    /// <summary>Writes the world into <paramref name="outputDirectory"/> (created if needed; files of the same names are replaced).</summary>
    /// <param name="outputDirectory">The folder.</param>
    /// <param name="options">Sizes, seed and noise; defaults when null.</param>
    public static SyntheticWorldSummary Generate(string outputDirectory, SyntheticWorldOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(outputDirectory);
        options ??= new SyntheticWorldOptions();
        Validate(options);
        Directory.CreateDirectory(outputDirectory);
        var files = new List<string>();
        var images = new Dictionary<SyntheticSplit, int>();

        var counts = new (SyntheticSplit Split, int Count)[]
        {
            (SyntheticSplit.Pretrain, options.PretrainImages), (SyntheticSplit.Human, options.HumanImages),
            (SyntheticSplit.Val, options.ValImages), (SyntheticSplit.Test, options.TestImages), (SyntheticSplit.Vqa, options.VqaImages),
            (SyntheticSplit.Classify, options.ClassifyImages), (SyntheticSplit.Nlvr, options.NlvrPairs * 2),
        };
        var scenes = new Dictionary<SyntheticSplit, Scene[]>();
        foreach (var (split, count) in counts)
        {
            var s = new Scene[count];
            Parallel.For(0, count, i => s[i] = SceneFor(options, split, i));
            scenes[split] = s;
            images[split] = count;
            WriteImages(outputDirectory, split, s);
        }

        // Pretraining: true or noisy text per image.
        var pretrain = scenes[SyntheticSplit.Pretrain];
        var noise = new Dictionary<NoiseKind, int>();
        foreach (var k in Enum.GetValues<NoiseKind>()) noise[k] = 0;
        var pretrainRecords = new PretrainRecord[pretrain.Length];
        Parallel.For(0, pretrain.Length, i => pretrainRecords[i] = MakePretrainRecord(options, pretrain, i));
        foreach (var r in pretrainRecords) noise[r.Kind]++;
        WriteJson(outputDirectory, PretrainFile, files, w =>
        {
            w.WriteStartArray();
            for (int i = 0; i < pretrainRecords.Length; i++)
            {
                w.WriteStartObject();
                w.WriteString("image", ImagePath(SyntheticSplit.Pretrain, i));
                WritePretrainFields(w, pretrainRecords[i], pretrain[i], i);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });

        // Human-annotated: clean, COCO-Karpathy train style (one record per caption).
        var human = scenes[SyntheticSplit.Human];
        WriteJson(outputDirectory, HumanFile, files, w =>
        {
            w.WriteStartArray();
            for (int i = 0; i < human.Length; i++)
            {
                var captions = CaptionWriter.Captions(human[i], SeededRandom.Create(options.Seed, (int)SyntheticSplit.Human, i, 1), options.HumanCaptionsPerImage);
                foreach (string caption in captions)
                {
                    w.WriteStartObject();
                    w.WriteString("image", ImagePath(SyntheticSplit.Human, i));
                    w.WriteString("caption", caption);
                    w.WriteString("image_id", ImageId(SyntheticSplit.Human, i));
                    w.WriteEndObject();
                }
            }
            w.WriteEndArray();
        });

        foreach (var (split, file) in new[] { (SyntheticSplit.Val, ValFile), (SyntheticSplit.Test, TestFile) })
        {
            var s = scenes[split];
            if (split == SyntheticSplit.Val && s.Length == 0) continue;
            WriteJson(outputDirectory, file, files, w =>
            {
                w.WriteStartArray();
                for (int i = 0; i < s.Length; i++)
                {
                    w.WriteStartObject();
                    w.WriteString("image", ImagePath(split, i));
                    w.WriteStartArray("caption");
                    foreach (string c in CaptionWriter.Captions(s[i], SeededRandom.Create(options.Seed, (int)split, i, 1), options.EvalCaptionsPerImage))
                        w.WriteStringValue(c);
                    w.WriteEndArray();
                    w.WriteString("image_id", ImageId(split, i));
                    WriteScene(w, s[i]);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            });
        }

        foreach (var (split, file) in new[] { (SyntheticSplit.Val, ValGroundTruthFile), (SyntheticSplit.Test, TestGroundTruthFile) })
        {
            var s = scenes[split];
            if (s.Length == 0) continue;
            WriteJson(outputDirectory, file, files, w =>
            {
                w.WriteStartObject();
                w.WriteStartArray("images");
                for (int i = 0; i < s.Length; i++)
                {
                    w.WriteStartObject();
                    w.WriteString("id", ImageId(split, i));
                    w.WriteString("file_name", ImagePath(split, i));
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteStartArray("annotations");
                int id = 0;
                for (int i = 0; i < s.Length; i++)
                {
                    foreach (string c in CaptionWriter.Captions(s[i], SeededRandom.Create(options.Seed, (int)split, i, 1), options.EvalCaptionsPerImage))
                    {
                        w.WriteStartObject();
                        w.WriteString("image_id", ImageId(split, i));
                        w.WriteNumber("id", id++);
                        w.WriteString("caption", c);
                        w.WriteEndObject();
                    }
                }
                w.WriteEndArray();
                w.WriteEndObject();
            });
        }

        var classify = scenes[SyntheticSplit.Classify];
        if (classify.Length > 0)
        {
            WriteJson(outputDirectory, ClassifyFile, files, w =>
            {
                w.WriteStartArray();
                for (int i = 0; i < classify.Length; i++)
                {
                    w.WriteStartObject();
                    w.WriteString("image", ImagePath(SyntheticSplit.Classify, i));
                    w.WriteString("caption", Palette.Word(classify[i].Objects[0].Shape));
                    w.WriteString("image_id", ImageId(SyntheticSplit.Classify, i));
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            });
        }

        var (trainQuestions, testQuestions) = WriteVqa(outputDirectory, options, scenes[SyntheticSplit.Vqa], files);
        var (nlvrTrain, nlvrTest) = WriteNlvr(outputDirectory, options, scenes[SyntheticSplit.Nlvr], files);
        int videoClips = WriteVideos(outputDirectory, options, files);
        if (options.WriteShards) WriteShards(outputDirectory, options, pretrain, pretrainRecords, files);
        var vocabulary = SyntheticVocabulary.Build(WorldTexts(outputDirectory, files));
        foreach (string f in SyntheticVocabulary.Write(Path.Combine(outputDirectory, SyntheticVocabulary.DirectoryName), vocabulary))
            files.Add(SyntheticVocabulary.DirectoryName + "/" + f);

        WriteJson(outputDirectory, ManifestFile, files, w =>
        {
            w.WriteStartObject();
            w.WriteNumber("format_version", 1);
            w.WriteNumber("seed", options.Seed);
            w.WriteNumber("image_size", options.ImageSize);
            w.WriteNumber("two_object_probability", options.TwoObjectProbability);
            w.WriteNumber("noise_fraction", options.NoiseFraction);
            w.WriteStartObject("images");
            foreach (var (split, count) in counts) w.WriteNumber(split.ToString().ToLowerInvariant(), count);
            w.WriteEndObject();
            w.WriteStartObject("pretrain_noise");
            foreach (var (kind, count) in noise) w.WriteNumber(NoiseKindName(kind), count);
            w.WriteEndObject();
            w.WriteNumber("vqa_train_questions", trainQuestions);
            w.WriteNumber("vqa_test_questions", testQuestions);
            w.WriteNumber("nlvr_train_items", nlvrTrain);
            w.WriteNumber("nlvr_test_items", nlvrTest);
            w.WriteNumber("video_clips", videoClips);
            w.WriteStartArray("files");
            foreach (string f in files) w.WriteStringValue(f);
            w.WriteEndArray();
            w.WriteEndObject();
        });

        return new SyntheticWorldSummary(Path.GetFullPath(outputDirectory), files, images, pretrainRecords.Count(r => r.Kind != NoiseKind.None),
            noise, trainQuestions, testQuestions, nlvrTrain, nlvrTest, videoClips);
    }

    private static void Validate(SyntheticWorldOptions o)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(o.ImageSize, 16, nameof(o.ImageSize));
        foreach (var (name, v) in new[] { (nameof(o.PretrainImages), o.PretrainImages), (nameof(o.HumanImages), o.HumanImages), (nameof(o.ValImages), o.ValImages), (nameof(o.TestImages), o.TestImages), (nameof(o.VqaImages), o.VqaImages), (nameof(o.ClassifyImages), o.ClassifyImages), (nameof(o.NlvrPairs), o.NlvrPairs), (nameof(o.VideoClips), o.VideoClips) })
            ArgumentOutOfRangeException.ThrowIfNegative(v, name);
        ArgumentOutOfRangeException.ThrowIfLessThan(o.HumanCaptionsPerImage, 1, nameof(o.HumanCaptionsPerImage));
        ArgumentOutOfRangeException.ThrowIfLessThan(o.EvalCaptionsPerImage, 1, nameof(o.EvalCaptionsPerImage));
        ArgumentOutOfRangeException.ThrowIfLessThan(o.QuestionsPerImage, 1, nameof(o.QuestionsPerImage));
        ArgumentOutOfRangeException.ThrowIfLessThan(o.AnswerCopies, 1, nameof(o.AnswerCopies));
        ArgumentOutOfRangeException.ThrowIfLessThan(o.ShardSize, 1, nameof(o.ShardSize));
        ArgumentOutOfRangeException.ThrowIfLessThan(o.VideoFrames, 1, nameof(o.VideoFrames));
        if (!(o.NoiseFraction >= 0 && o.NoiseFraction <= 1)) throw new ArgumentOutOfRangeException(nameof(o.NoiseFraction), o.NoiseFraction, "must be within 0..1");
        if (!(o.TwoObjectProbability >= 0 && o.TwoObjectProbability <= 1)) throw new ArgumentOutOfRangeException(nameof(o.TwoObjectProbability), o.TwoObjectProbability, "must be within 0..1");
        if (!(o.NlvrTestFraction >= 0 && o.NlvrTestFraction <= 1)) throw new ArgumentOutOfRangeException(nameof(o.NlvrTestFraction), o.NlvrTestFraction, "must be within 0..1");
        if (!(o.VqaTestFraction >= 0 && o.VqaTestFraction <= 1)) throw new ArgumentOutOfRangeException(nameof(o.VqaTestFraction), o.VqaTestFraction, "must be within 0..1");
        var m = o.NoiseMix ?? throw new ArgumentNullException(nameof(o.NoiseMix));
        double[] weights = [m.WrongAttribute, m.Unrelated, m.FileName, m.Spam];
        if (weights.Any(w => !(w >= 0) || double.IsInfinity(w)) || (o.NoiseFraction > 0 && weights.Sum() <= 0))
            throw new ArgumentException("noise weights must be finite, non-negative and not all zero", nameof(o.NoiseMix));
    }

    private static string ImageId(SyntheticSplit split, int index) =>
        split.ToString().ToLowerInvariant() + "_" + index.ToString("D6", CultureInfo.InvariantCulture);

    private static void WriteImages(string root, SyntheticSplit split, Scene[] scenes)
    {
        if (scenes.Length == 0) return;
        Directory.CreateDirectory(Path.Combine(root, "images", split.ToString().ToLowerInvariant()));
        Parallel.For(0, scenes.Length, i =>
            File.WriteAllBytes(Path.Combine(root, ImagePath(split, i)), PngEncoder.Encode(SceneRenderer.Render(scenes[i]))));
    }

    private sealed record PretrainRecord(string Caption, NoiseKind Kind, string? Detail);

    private static PretrainRecord MakePretrainRecord(SyntheticWorldOptions options, Scene[] scenes, int index)
    {
        var random = SeededRandom.Create(options.Seed, (int)SyntheticSplit.Pretrain, index, 1);
        var scene = scenes[index];
        if (random.NextDouble() >= options.NoiseFraction) return new PretrainRecord(CaptionWriter.Caption(scene, random), NoiseKind.None, null);
        var m = options.NoiseMix;
        double u = random.NextDouble() * (m.WrongAttribute + m.Unrelated + m.FileName + m.Spam);
        var kind = u < m.WrongAttribute ? NoiseKind.WrongAttribute
            : u < m.WrongAttribute + m.Unrelated ? NoiseKind.Unrelated
            : u < m.WrongAttribute + m.Unrelated + m.FileName ? NoiseKind.FileName
            : NoiseKind.Spam;
        if (kind == NoiseKind.Unrelated && scenes.Length < 2) kind = NoiseKind.WrongAttribute;
        switch (kind)
        {
            case NoiseKind.WrongAttribute:
            {
                var (wrong, detail, sizeChanged) = Perturb(scene, random);
                return new PretrainRecord(CaptionWriter.Caption(wrong, random, alwaysNameSize: sizeChanged), kind, detail);
            }
            case NoiseKind.Unrelated:
            {
                int other = index;
                for (int attempt = 0; attempt < 20; attempt++)
                {
                    other = random.Next(scenes.Length - 1);
                    if (other >= index) other++;
                    if (!SameContent(scenes[other], scene)) break;
                }
                return new PretrainRecord(CaptionWriter.Caption(scenes[other], random), kind, ImageId(SyntheticSplit.Pretrain, other));
            }
            case NoiseKind.FileName:
                return new PretrainRecord(CaptionWriter.FileName(random), kind, null);
            default:
                return new PretrainRecord(CaptionWriter.Spam(random), kind, null);
        }
    }

    private static bool SameContent(Scene a, Scene b) =>
        a.Objects.Select(o => (o.Shape, o.Color)).Order().SequenceEqual(b.Objects.Select(o => (o.Shape, o.Color)).Order());

    /// <summary>Changes one attribute of one object so that any caption naming it is false.</summary>
    private static (Scene Scene, string Detail, bool SizeChanged) Perturb(Scene scene, Random random)
    {
        int k = random.Next(scene.Objects.Count);
        var o = scene.Objects[k];
        var other = scene.Objects.Count == 2 ? scene.Objects[1 - k] : null;
        SceneObject changed;
        string detail;
        bool sizeChanged = false;
        switch (random.Next(4))
        {
            case 0:
            {
                var choices = Palette.ObjectColors.Where(c => c != o.Color && c != other?.Color).ToArray();
                var c = choices[random.Next(choices.Length)];
                changed = o with { Color = c };
                detail = $"color {Palette.Word(o.Color)} -> {Palette.Word(c)}";
                break;
            }
            case 1:
            {
                var choices = Enum.GetValues<ShapeKind>().Where(s => s != o.Shape && s != other?.Shape).ToArray();
                var s = choices[random.Next(choices.Length)];
                changed = o with { Shape = s };
                detail = $"shape {Palette.Word(o.Shape)} -> {Palette.Word(s)}";
                break;
            }
            case 2:
            {
                var s = o.Size == SizeClass.Small ? SizeClass.Large : SizeClass.Small;
                changed = o with { Size = s };
                detail = $"size {o.Size.ToString().ToLowerInvariant()} -> {s.ToString().ToLowerInvariant()}";
                sizeChanged = true;
                break;
            }
            default:
            {
                var choices = Enum.GetValues<Placement>().Where(p => p != o.Placement && p != other?.Placement).ToArray();
                var p = choices[random.Next(choices.Length)];
                changed = o with { Placement = p };
                detail = $"position {Palette.Word(o.Placement)} -> {Palette.Word(p)}";
                break;
            }
        }
        var objects = scene.Objects.ToArray();
        objects[k] = changed;
        return (scene with { Objects = objects }, detail, sizeChanged);
    }

    private static void WritePretrainFields(Utf8JsonWriter w, PretrainRecord r, Scene scene, int index)
    {
        w.WriteString("caption", r.Caption);
        w.WriteString("image_id", ImageId(SyntheticSplit.Pretrain, index));
        w.WriteBoolean("noisy", r.Kind != NoiseKind.None);
        w.WriteString("noise_kind", NoiseKindName(r.Kind));
        if (r.Detail != null) w.WriteString("noise_detail", r.Detail);
        WriteScene(w, scene);
    }

    private static void WriteScene(Utf8JsonWriter w, Scene scene)
    {
        w.WriteStartObject("scene");
        w.WriteStartObject("background");
        w.WriteString("kind", scene.Background.Kind.ToString().ToLowerInvariant());
        w.WriteString("color", Palette.Word(scene.Background.Color));
        if (scene.Background.Color2 is { } c2) w.WriteString("color2", Palette.Word(c2));
        if (scene.Background.Kind == BackgroundKind.Gradient) w.WriteBoolean("vertical", scene.Background.Vertical);
        w.WriteEndObject();
        w.WriteStartArray("objects");
        foreach (var o in scene.Objects)
        {
            w.WriteStartObject();
            w.WriteString("shape", Palette.Word(o.Shape));
            w.WriteString("color", Palette.Word(o.Color));
            w.WriteString("size", o.Size.ToString().ToLowerInvariant());
            w.WriteString("position", Palette.Word(o.Placement));
            w.WriteNumber("x", o.X);
            w.WriteNumber("y", o.Y);
            w.WriteNumber("radius", o.Radius);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static (int Train, int Test) WriteVqa(string root, SyntheticWorldOptions options, Scene[] scenes, List<string> files)
    {
        int testStart = scenes.Length - (int)Math.Round(scenes.Length * options.VqaTestFraction, MidpointRounding.AwayFromZero);
        int questionId = 0;
        var perImage = new List<(string Question, string Answer, string Type)>[scenes.Length];
        for (int i = 0; i < scenes.Length; i++)
            perImage[i] = VqaQuestions.For(scenes[i], SeededRandom.Create(options.Seed, (int)SyntheticSplit.Vqa, i, 1), options.QuestionsPerImage);
        int train = 0, test = 0;
        foreach (var (file, from, to) in new[] { (VqaTrainFile, 0, testStart), (VqaTestFile, testStart, scenes.Length) })
        {
            WriteJson(root, file, files, w =>
            {
                w.WriteStartArray();
                for (int i = from; i < to; i++)
                {
                    foreach (var (question, answer, type) in perImage[i])
                    {
                        w.WriteStartObject();
                        w.WriteNumber("question_id", questionId++);
                        w.WriteString("question", question);
                        w.WriteStartArray("answer");
                        for (int c = 0; c < options.AnswerCopies; c++) w.WriteStringValue(answer);
                        w.WriteEndArray();
                        w.WriteString("image", ImagePath(SyntheticSplit.Vqa, i));
                        w.WriteString("dataset", "vqa");
                        w.WriteString("question_type", type);
                        w.WriteEndObject();
                        if (file == VqaTrainFile) train++;
                        else test++;
                    }
                }
                w.WriteEndArray();
            });
        }
        WriteJson(root, AnswerListFile, files, w =>
        {
            w.WriteStartArray();
            foreach (string a in VqaQuestions.AllAnswers()) w.WriteStringValue(a);
            w.WriteEndArray();
        });
        WriteOfficialVqaTest(root, testStart, scenes.Length, perImage, questionIdOfFirstTest: train, files);
        return (train, test);
    }

    /// <summary>
    /// The VQA test questions in the official format (GT-Vision-Lab/VQA): a questions file and an annotations file
    /// whose ten annotator answers are all the true answer, so a right answer scores 1 and a wrong one 0.
    /// </summary>
    private static void WriteOfficialVqaTest(string root, int from, int to, List<(string Question, string Answer, string Type)>[] perImage,
        int questionIdOfFirstTest, List<string> files)
    {
        const int annotators = 10;
        WriteJson(root, VqaTestQuestionsFile, files, w =>
        {
            int questionId = questionIdOfFirstTest;
            w.WriteStartObject();
            w.WriteString("data_type", "synthetic");
            w.WriteString("data_subtype", "test");
            w.WriteStartArray("questions");
            for (int i = from; i < to; i++)
            {
                foreach (var (question, _, _) in perImage[i])
                {
                    w.WriteStartObject();
                    w.WriteNumber("question_id", questionId++);
                    w.WriteNumber("image_id", i);
                    w.WriteString("question", question);
                    w.WriteEndObject();
                }
            }
            w.WriteEndArray();
            w.WriteEndObject();
        });
        WriteJson(root, VqaTestAnnotationsFile, files, w =>
        {
            int questionId = questionIdOfFirstTest;
            w.WriteStartObject();
            w.WriteString("data_type", "synthetic");
            w.WriteString("data_subtype", "test");
            w.WriteStartArray("annotations");
            for (int i = from; i < to; i++)
            {
                foreach (var (_, answer, type) in perImage[i])
                {
                    w.WriteStartObject();
                    w.WriteNumber("question_id", questionId++);
                    w.WriteNumber("image_id", i);
                    w.WriteString("question_type", type);
                    w.WriteString("answer_type", type == "count" ? "number" : "other");
                    w.WriteString("multiple_choice_answer", answer);
                    w.WriteStartArray("answers");
                    for (int a = 1; a <= annotators; a++)
                    {
                        w.WriteStartObject();
                        w.WriteString("answer", answer);
                        w.WriteString("answer_confidence", "yes");
                        w.WriteNumber("answer_id", a);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
            }
            w.WriteEndArray();
            w.WriteEndObject();
        });
    }

    /// <summary>
    /// The video split: clip i is a scene whose objects drift horizontally by up to a twentieth of the image over
    /// <see cref="SyntheticWorldOptions.VideoFrames"/> frames (each frame its own pixel noise), written as the frame
    /// folder <c>videos/clip_NNNN/frame_NN.png</c>, with one true caption per clip in <see cref="VideoTestFile"/>.
    /// </summary>
    private static int WriteVideos(string root, SyntheticWorldOptions options, List<string> files)
    {
        int clips = options.VideoClips;
        if (clips == 0) return 0;
        var captions = new string[clips];
        Parallel.For(0, clips, i =>
        {
            var scene = SceneFor(options, SyntheticSplit.Video, i);
            captions[i] = CaptionWriter.Caption(scene, SeededRandom.Create(options.Seed, (int)SyntheticSplit.Video, i, 1));
            string folder = Path.Combine(root, VideosDirectory, ClipName(i));
            Directory.CreateDirectory(folder);
            double span = scene.Size / 20.0;
            for (int t = 0; t < options.VideoFrames; t++)
            {
                double shift = options.VideoFrames == 1 ? 0 : span * (2.0 * t / (options.VideoFrames - 1) - 1); // -span .. +span
                var frame = scene with
                {
                    Objects = scene.Objects.Select(o => o with { X = Math.Round(o.X + shift, 2) }).ToArray(),
                    NoiseSeed = unchecked(scene.NoiseSeed + 7919 * (t + 1)),
                };
                File.WriteAllBytes(Path.Combine(folder, $"frame_{t.ToString("D2", CultureInfo.InvariantCulture)}.png"), PngEncoder.Encode(SceneRenderer.Render(frame)));
            }
        });
        var lines = new StringBuilder();
        for (int i = 0; i < clips; i++)
            lines.Append(JsonSerializer.Serialize(new Dictionary<string, string> { ["clip_name"] = ClipName(i), ["caption"] = captions[i] })).Append('\n');
        File.WriteAllText(Path.Combine(root, VideoTestFile), lines.ToString());
        files.Add(VideoTestFile);
        return clips;
    }

    /// <summary>The name of video clip <paramref name="index"/> (<c>clip_0007</c>).</summary>
    /// <param name="index">The clip's index.</param>
    public static string ClipName(int index) => "clip_" + index.ToString("D4", CultureInfo.InvariantCulture);

    /// <summary>NLVR2-style files: image pair p is images 2p and 2p+1; one true and one false statement per pair, in random order.</summary>
    private static (int Train, int Test) WriteNlvr(string root, SyntheticWorldOptions options, Scene[] scenes, List<string> files)
    {
        int pairs = scenes.Length / 2;
        if (pairs == 0) return (0, 0);
        int testStart = pairs - (int)Math.Round(pairs * options.NlvrTestFraction, MidpointRounding.AwayFromZero);
        var items = new (string Sentence, bool Label)[pairs][];
        for (int p = 0; p < pairs; p++)
        {
            var random = SeededRandom.Create(options.Seed, (int)SyntheticSplit.Nlvr, p, 1);
            bool trueFirst = random.Next(2) == 0;
            var first = (NlvrStatements.For(scenes[2 * p], scenes[2 * p + 1], trueFirst, random), trueFirst);
            var second = (NlvrStatements.For(scenes[2 * p], scenes[2 * p + 1], !trueFirst, random), !trueFirst);
            items[p] = [first, second];
        }
        foreach (var (file, from, to) in new[] { (NlvrTrainFile, 0, testStart), (NlvrTestFile, testStart, pairs) })
        {
            WriteJson(root, file, files, w =>
            {
                w.WriteStartArray();
                for (int p = from; p < to; p++)
                {
                    foreach (var (sentence, label) in items[p])
                    {
                        w.WriteStartObject();
                        w.WriteStartArray("images");
                        w.WriteStringValue(ImagePath(SyntheticSplit.Nlvr, 2 * p));
                        w.WriteStringValue(ImagePath(SyntheticSplit.Nlvr, 2 * p + 1));
                        w.WriteEndArray();
                        w.WriteString("sentence", sentence);
                        w.WriteString("label", NlvrStatements.Label(label));
                        w.WriteEndObject();
                    }
                }
                w.WriteEndArray();
            });
        }
        return (2 * testStart, 2 * (pairs - testStart));
    }

    private static void WriteShards(string root, SyntheticWorldOptions options, Scene[] scenes, PretrainRecord[] records, List<string> files)
    {
        Directory.CreateDirectory(Path.Combine(root, "shards"));
        for (int shard = 0; shard * options.ShardSize < scenes.Length; shard++)
        {
            string name = $"shards/pretrain-{shard.ToString("D6", CultureInfo.InvariantCulture)}.tar";
            using (var stream = File.Create(Path.Combine(root, name)))
            using (var tar = new TarWriter(stream, TarEntryFormat.Ustar, leaveOpen: false))
            {
                int end = Math.Min(scenes.Length, (shard + 1) * options.ShardSize);
                for (int i = shard * options.ShardSize; i < end; i++)
                {
                    string key = i.ToString("D6", CultureInfo.InvariantCulture);
                    AddMember(tar, key + ".png", File.ReadAllBytes(Path.Combine(root, ImagePath(SyntheticSplit.Pretrain, i))));
                    using var json = new MemoryStream();
                    using (var w = new Utf8JsonWriter(json, WriterOptions))
                    {
                        w.WriteStartObject();
                        WritePretrainFields(w, records[i], scenes[i], i);
                        w.WriteEndObject();
                    }
                    AddMember(tar, key + ".json", json.ToArray());
                }
            }
            files.Add(name);
        }
    }

    private static void AddMember(TarWriter tar, string name, byte[] data)
    {
        var entry = new UstarTarEntry(TarEntryType.RegularFile, name)
        {
            ModificationTime = DateTimeOffset.UnixEpoch,
            Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
            DataStream = new MemoryStream(data, writable: false),
        };
        tar.WriteEntry(entry);
    }

    /// <summary>Every caption, question and answer of the written JSON files (what the world's tokenizer must cover).</summary>
    private static IEnumerable<string> WorldTexts(string root, IReadOnlyCollection<string> written)
    {
        foreach (string file in new[] { PretrainFile, HumanFile, ValFile, TestFile, VqaTrainFile, VqaTestFile, NlvrTrainFile, NlvrTestFile })
        {
            if (!written.Contains(file)) continue; // splits of no images are not written
            using var document = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(root, file)));
            foreach (var record in document.RootElement.EnumerateArray())
                foreach (string key in new[] { "caption", "question", "answer", "sentence" })
                {
                    if (!record.TryGetProperty(key, out var value)) continue;
                    if (value.ValueKind == JsonValueKind.String) yield return value.GetString()!;
                    else foreach (var item in value.EnumerateArray()) yield return item.GetString()!;
                }
        }
        foreach (string answer in VqaQuestions.AllAnswers()) yield return answer;
    }

    private static void WriteJson(string root, string name, List<string> files, Action<Utf8JsonWriter> write)
    {
        using (var stream = File.Create(Path.Combine(root, name)))
        using (var w = new Utf8JsonWriter(stream, WriterOptions))
            write(w);
        files.Add(name);
    }
}
