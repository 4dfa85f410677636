using BlipSharp.Processing;
using BlipSharp.Tests.Pretraining;
using BlipSharp.Training.Data;
using BlipSharp.Training.Evaluation.Retrieval;
using BlipSharp.Training.Pretraining;
using BlipSharp.Training.Retrieval;
using BlipSharp.Training.Synthetic;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Retrieval;

/// <summary>
/// Zero-shot video-text retrieval (BLIP's eval_retrieval_video.py): frame sampling against numpy's values, frame
/// folders and lists, the MSRVTT annotation reader and its errors, the evaluator against a reference built here from
/// the model's stages, and the median ranks.
/// </summary>
[Trait("Category", "Retrieval")]
public sealed class VideoRetrievalTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-video-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // ---------------------------------------------------------------- frame sampling

    /// <summary>Values printed by numpy 1.24 for <c>np.arange(0, vlen, vlen / num_frm, dtype=int)</c>.</summary>
    [Theory]
    [InlineData(10, 4, new[] { 0, 2, 4, 6 })]                                // .astype(int) would give 0, 2, 5, 7
    [InlineData(8, 8, new[] { 0, 1, 2, 3, 4, 5, 6, 7 })]
    [InlineData(10, 3, new[] { 0, 3, 6 })]
    [InlineData(100, 8, new[] { 0, 12, 24, 36, 48, 60, 72, 84 })]            // .astype(int): 0, 12, 25, 37, 50, 62, 75, 87
    [InlineData(12, 5, new[] { 0, 2, 4, 6, 8 })]
    [InlineData(7, 4, new[] { 0, 1, 2, 3 })]
    [InlineData(2, 4, new[] { 0, 0, 0, 0 })]                                 // fewer frames than num_frm: frame 0 repeated
    [InlineData(3, 8, new[] { 0, 0, 0, 0, 0, 0, 0, 0 })]
    [InlineData(1, 8, new[] { 0, 0, 0, 0, 0, 0, 0, 0 })]
    [InlineData(1, 1, new[] { 0 })]
    [InlineData(17, 7, new[] { 0, 2, 4, 6, 8, 10, 12, 14 })]                 // num_frm + 1 frames
    [InlineData(15, 13, new[] { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13 })]
    public void UniformSamplingGivesNumpysArangeWithAnIntegerDtype(int frameCount, int numFrames, int[] expected) =>
        Assert.Equal(expected, VideoFrameSampling.Uniform(frameCount, numFrames));

    [Fact]
    public void SamplingRefusesEmptyVideosAndZeroFrames()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => VideoFrameSampling.Uniform(0, 8));
        Assert.Throws<ArgumentOutOfRangeException>(() => VideoFrameSampling.Uniform(8, 0));
    }

    // ---------------------------------------------------------------- frame sources

    [Fact]
    public void AFrameFolderIsItsImagesInOrdinalOrderAndAFrameListItsLines()
    {
        string folder = Path.Combine(_dir, "clip");
        var written = new List<string>();
        foreach (string name in new[] { "f2.png", "f10.PNG", "f1.jpg", "a.webp" }) written.Add(WriteFrame(folder, name, seed: written.Count));
        File.WriteAllText(Path.Combine(folder, "notes.txt"), "not a frame");
        Directory.CreateDirectory(Path.Combine(folder, "sub.png"));
        var video = VideoSource.Open(folder);
        Assert.Equal(VideoSourceKind.FrameFolder, video.Kind);
        Assert.Equal("clip", video.Name);
        Assert.Equal(new[] { "a.webp", "f1.jpg", "f10.PNG", "f2.png" }, video.FramePaths().Select(Path.GetFileName));

        string other = WriteFrame(Path.Combine(_dir, "elsewhere"), "x.png", seed: 9);
        string list = Path.Combine(folder, "list.frames");
        File.WriteAllText(list, $"# frames of a clip\n\n  f2.png  \n../elsewhere/x.png\n#f1.jpg\n{other}\n\r\n");
        var listed = VideoSource.Open(list);
        Assert.Equal(VideoSourceKind.FrameList, listed.Kind);
        Assert.Equal("list", listed.Name);
        Assert.Equal(new[] { written[0], other, other }, listed.FramePaths());
    }

    [Fact]
    public void LoadFramesIsTheEvalTransformOfTheSampledFrames()
    {
        string folder = Path.Combine(_dir, "ten");
        var frames = Enumerable.Range(0, 10).Select(i => WriteFrame(folder, $"{i:D2}.png", seed: i, width: 40, height: 24)).ToList();
        var transform = new BlipEvalTransform(32);
        using var loaded = VideoSource.FromFolder(folder).LoadFrames(4, transform); // frames 0, 2, 4, 6
        Assert.Equal(new long[] { 4, 3, 32, 32 }, loaded.shape);
        for (int f = 0; f < 4; f++)
        {
            using var expected = transform.ToTensor(ImageDecoder.Decode(frames[2 * f]), new Random(0));
            Assert.True(expected.equal(loaded[f]).all().ToBoolean(), $"frame {f} is not frame {2 * f} transformed");
        }
        using var two = VideoSource.FromFolder(folder).LoadFrames(20, transform);   // step 0.5: frame 0 twenty times
        Assert.Equal(20, two.shape[0]);
        using var first = transform.ToTensor(ImageDecoder.Decode(frames[0]), new Random(0));
        for (int f = 0; f < 20; f++) Assert.True(first.equal(two[f]).all().ToBoolean());
    }

    [Fact]
    public void BrokenFrameSourcesNameThePathAndLine()
    {
        string empty = Path.Combine(_dir, "empty");
        Directory.CreateDirectory(empty);
        Assert.Contains(empty, Assert.Throws<InvalidDataException>(() => VideoSource.FromFolder(empty).FramePaths()).Message);
        string list = Path.Combine(_dir, "v.txt");
        File.WriteAllText(list, "# header\nmissing.png\n");
        var e = Assert.Throws<InvalidDataException>(() => VideoSource.FromFrameList(list).FramePaths());
        Assert.Contains($"{list}, line 2: frame 'missing.png' does not exist", e.Message);
        File.WriteAllText(list, "# only a comment\n\n");
        Assert.Contains("names no frame", Assert.Throws<InvalidDataException>(() => VideoSource.FromFrameList(list).FramePaths()).Message);
        Assert.Throws<FileNotFoundException>(() => VideoSource.Open(Path.Combine(_dir, "nothing")));
    }

    // ---------------------------------------------------------------- annotations

    [Fact]
    public void TheMsrvttReaderResolvesFoldersAndListsAndGroupsCaptionsByClip()
    {
        string root = Path.Combine(_dir, "videos");
        WriteFrame(Path.Combine(root, "video7"), "0.png", seed: 1);
        string frame = WriteFrame(Path.Combine(root, "frames"), "0.png", seed: 2);
        File.WriteAllText(Path.Combine(root, "video8.txt"), "frames/0.png\n");
        File.WriteAllText(Path.Combine(root, "video9.frames"), "frames/0.png\n");
        string ann = Path.Combine(_dir, "msrvtt_test.jsonl");
        File.WriteAllText(ann,
            "{\"clip_name\": \"video8\", \"caption\": \"A Man (is) cooking.\", \"sen_id\": 3}\n" +
            "\n" +
            "{\"clip_name\": \"video7\", \"caption\": [\"a dog  runs\", \"the dog runs!\"]}\n" +
            "{\"caption\": \"a red car\", \"clip_name\": \"video9\"}\n" +
            "{\"clip_name\": \"video8\", \"caption\": \"" + string.Join(' ', Enumerable.Range(0, 45).Select(i => $"w{i}")) + "\"}\n");
        var set = MsrvttAnnotations.Load(ann, root);
        Assert.Equal(new[] { "video8", "video7", "video9" }, set.Videos.Select(v => v.Name));
        Assert.Equal(new[] { VideoSourceKind.FrameList, VideoSourceKind.FrameFolder, VideoSourceKind.FrameList }, set.Videos.Select(v => v.Kind));
        Assert.Equal(Path.Combine(root, "video9.frames"), set.Videos[2].Path);
        Assert.Equal(new[] { frame }, set.Videos[0].FramePaths());
        Assert.Equal("a man is cooking", set.Texts[0]);
        Assert.Equal(new[] { "a dog runs", "the dog runs", "a red car" }, set.Texts.Skip(1).Take(3));
        Assert.Equal(string.Join(' ', Enumerable.Range(0, 40).Select(i => $"w{i}")), set.Texts[4]); // pre_caption(caption, 40)
        Assert.Equal(new[] { 0, 1, 1, 2, 0 }, set.TextToVideo);
        Assert.Equal(new[] { new[] { 0, 4 }, new[] { 1, 2 }, new[] { 3 } }, set.VideoToTexts.Select(t => t.ToArray()));
    }

    [Theory]
    [InlineData("{\"caption\": \"a cat\"}", "line 2: field 'clip_name' is missing")]
    [InlineData("{\"clip_name\": 7, \"caption\": \"a cat\"}", "line 2: field 'clip_name' must be a non-empty string, got Number 7")]
    [InlineData("{\"clip_name\": \"\", \"caption\": \"a cat\"}", "line 2: field 'clip_name' must be a non-empty string")]
    [InlineData("{\"clip_name\": \"video1\"}", "line 2: field 'caption' is missing")]
    [InlineData("{\"clip_name\": \"video1\", \"caption\": 3}", "line 2: field 'caption' must be a string or a list of strings")]
    [InlineData("{\"clip_name\": \"video1\", \"caption\": [\"ok\", null]}", "line 2: field 'caption' must be a string or a list of strings, but item 1")]
    [InlineData("[1, 2]", "line 2: expected a JSON object")]
    [InlineData("{\"clip_name\": \"video1\", \"caption\": ", "line 2: invalid JSON")]
    [InlineData("{\"clip_name\": \"video2\", \"caption\": \"a cat\"}", "line 2: field 'clip_name' 'video2': no frames for the video")]
    [InlineData("{\"clip_name\": \"video3\", \"caption\": \"a cat\"}", "line 2: field 'clip_name' 'video3': the video is ambiguous")]
    [InlineData("{\"clip_name\": \"video4\", \"caption\": \"a cat\"}", "line 2: field 'clip_name' 'video4': ")]
    [InlineData("{\"clip_name\": \"video5\", \"caption\": \"a cat\"}", "line 2: field 'clip_name' 'video5': ")]
    public void MalformedAnnotationsNameTheFileTheLineAndTheField(string secondLine, string expected)
    {
        string root = Path.Combine(_dir, "videos");
        WriteFrame(Path.Combine(root, "video1"), "0.png", seed: 1);
        WriteFrame(Path.Combine(root, "video3"), "0.png", seed: 1);
        File.WriteAllText(Path.Combine(root, "video3.txt"), "video3/0.png\n");
        File.WriteAllText(Path.Combine(root, "video2.mp4"), "");
        Directory.CreateDirectory(Path.Combine(root, "video4"));                       // no frame
        File.WriteAllText(Path.Combine(root, "video5.txt"), "gone.png\n");            // a missing frame
        string ann = Path.Combine(_dir, "ann.jsonl");
        File.WriteAllText(ann, "{\"clip_name\": \"video1\", \"caption\": \"a dog\"}\n" + secondLine + "\n");
        var e = Assert.Throws<DataFormatException>(() => MsrvttAnnotations.Load(ann, root));
        Assert.StartsWith($"{ann}: {expected}", e.Message);
        if (secondLine.Contains("video2")) Assert.Contains("video2.mp4 exists, but video files are not decoded", e.Message);
        if (secondLine.Contains("video4")) Assert.Contains("holds no image", e.Message);
        if (secondLine.Contains("video5")) Assert.Contains("video5.txt, line 1: frame 'gone.png' does not exist", e.Message);
    }

    [Fact]
    public void AnAnnotationFileWithoutRecordsOrMissingIsAnError()
    {
        string ann = Path.Combine(_dir, "ann.jsonl");
        File.WriteAllText(ann, "\n\n");
        Assert.Contains($"{ann}: file: holds no record", Assert.Throws<DataFormatException>(() => MsrvttAnnotations.Load(ann, _dir)).Message);
        Assert.Contains("does not exist", Assert.Throws<DataFormatException>(() => MsrvttAnnotations.Load(Path.Combine(_dir, "none.jsonl"), _dir)).Message);
    }

    // ---------------------------------------------------------------- evaluator

    private static readonly string[] Vocab =
    [
        "[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]", "a", "man", "is", "cooking", "dog", "runs", "red", "car", "the", "blue", "cat", "sits",
        "on", "mat", "ball", "green", "tree", "bird", "flies",
    ];

    private static readonly string[] Texts = ["a man is cooking", "the dog runs", "a red car", "a blue cat sits on the mat", "a bird flies"];

    /// <summary>Videos of 17, 7 and 3 frames (a folder, a frame list, a folder) and an annotation file pairing them with <see cref="Texts"/>.</summary>
    private VideoRetrievalDataset WriteDataset()
    {
        string root = Path.Combine(_dir, "videos");
        for (int i = 0; i < 17; i++) WriteFrame(Path.Combine(root, "v0"), $"{i:D3}.png", seed: 100 + i, width: 36, height: 30);
        var lines = Enumerable.Range(0, 7).Select(i => Path.GetFileName(WriteFrame(Path.Combine(root, "v1-frames"), $"{i}.png", seed: 200 + i, width: 32, height: 32)));
        File.WriteAllLines(Path.Combine(root, "v1.txt"), lines.Select(l => "v1-frames/" + l));
        for (int i = 0; i < 3; i++) WriteFrame(Path.Combine(root, "v2"), $"{i}.png", seed: 300 + i, width: 20, height: 40);
        string ann = Path.Combine(_dir, "ann.jsonl");
        string[] clips = ["v0", "v1", "v1", "v2", "v0"];
        File.WriteAllLines(ann, clips.Select((c, j) => $"{{\"clip_name\": \"{c}\", \"caption\": \"{Texts[j]}\"}}"));
        return MsrvttAnnotations.Load(ann, root);
    }

    private static BlipPretrainingModel Float64Model()
    {
        manual_seed(5);
        return new BlipPretrainingModel(TinyPretraining.Config(), dtype: ScalarType.Float64);
    }

    private sealed class Recorder : IProgress<RetrievalProgress>
    {
        public List<RetrievalProgress> Reports { get; } = [];

        public void Report(RetrievalProgress value) => Reports.Add(value);
    }

    /// <summary>
    /// The reference, one video and one pair at a time from the model's stages: each sampled frame through the ViT,
    /// the video feature normalize(mean_f vision_proj(cls_f)), its ITM states the frames' states concatenated,
    /// every (video, text) pair's ITM match logit unbatched; then BLIP's top-k and score = ITM + similarity.
    /// </summary>
    private static (double[,] V2T, double[,] T2V, double[,] Sims) Reference(BlipPretrainingModel model, VideoRetrievalDataset set,
        BlipTokenizer tokenizer, int numFrames, int k, int maxLength)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        model.eval();
        var transform = new BlipEvalTransform(32);
        var features = new List<Tensor>();
        var states = new List<Tensor>();
        foreach (var video in set.Videos)
        {
            var all = video.FramePaths();
            var frames = VideoFrameSampling.Uniform(all.Count, numFrames)
                .Select(i => transform.ToTensor(ImageDecoder.Decode(all[i]), new Random(0)).to_type(ScalarType.Float64)).ToList();
            var perFrame = frames.Select(f => model.EncodeImage(f.unsqueeze(0))).ToList();                      // F x (1, 1+P, D)
            var projected = cat(perFrame.Select(s => model.vision_proj.forward(s.select(1, 0))).ToList(), 0);  // (F, E)
            var mean = projected.sum([0L]) / projected.shape[0];                                                   // (E)
            features.Add(mean / mean.norm());
            states.Add(cat(perFrame, 1));                                                                        // (1, F*(1+P), D)
        }
        using var tokens = tokenizer.EncodeToTensors(set.Texts, new TokenizerEncodeOptions { Padding = PaddingStrategy.MaxLength, Truncation = true, MaxLength = maxLength });
        var textStates = model.EncodeText(tokens.InputIds, tokens.AttentionMask);
        var textFeatures = model.TextFeatures(textStates);                                                       // (T, E)
        var encIds = tokens.InputIds.clone();
        encIds[TensorIndex.Colon, 0] = model.Config.EncTokenId;
        int nv = set.Videos.Count, nt = set.Texts.Count;
        var sims = new double[nv, nt];
        var itm = new double[nv, nt];
        for (int v = 0; v < nv; v++)
        {
            for (int t = 0; t < nt; t++)
            {
                sims[v, t] = features[v].dot(textFeatures[t]).ToDouble();
                var mm = model.EncodeMultimodal(encIds.narrow(0, t, 1), tokens.AttentionMask.narrow(0, t, 1), states[v]);
                itm[v, t] = model.MatchingLogits(mm)[0, 1].ToDouble();
            }
        }
        var v2t = new double[nv, nt];
        var t2v = new double[nt, nv];
        for (int v = 0; v < nv; v++)
        {
            var top = Enumerable.Range(0, nt).OrderByDescending(t => sims[v, t]).Take(Math.Min(k, nt)).ToHashSet();
            for (int t = 0; t < nt; t++) v2t[v, t] = top.Contains(t) ? itm[v, t] + sims[v, t] : -100;
        }
        for (int t = 0; t < nt; t++)
        {
            var top = Enumerable.Range(0, nv).OrderByDescending(v => sims[v, t]).Take(Math.Min(k, nv)).ToHashSet();
            for (int v = 0; v < nv; v++) t2v[t, v] = top.Contains(v) ? itm[v, t] + sims[v, t] : -100;
        }
        return (v2t, t2v, sims);
    }

    /// <param name="numFrames">3: every video gives 3 frames (BLIP's layout, no padding); 7: the 17-frame video gives 8
    /// and the others 7, so a batch mixes frame counts and is padded.</param>
    [Theory]
    [InlineData(3)]
    [InlineData(7)]
    public void ScoresAndMetricsEqualAReferenceBuiltFromTheModelsStages(int numFrames)
    {
        var set = WriteDataset();
        var tokenizer = BlipTokenizer.Create(Vocab);
        using var model = Float64Model();
        model.train();
        var options = new VideoRetrievalEvaluatorOptions { NumFrames = numFrames, KTest = 2, VideoBatchSize = 2, TextBatchSize = 3, ItmBatchSize = 3, MaxTextLength = 12 };
        var recorder = new Recorder();
        using var evaluation = new VideoRetrievalEvaluator(model, options).Evaluate(set, tokenizer, recorder);
        Assert.True(model.training, "the evaluator did not restore the training mode");
        var (v2t, t2v, sims) = Reference(model, set, tokenizer, numFrames, k: 2, maxLength: 12);

        using var dense = evaluation.Scores.DenseImageToText();
        using var denseT = evaluation.Scores.DenseTextToImage();
        // ITM logits pass through float32 in the evaluator (as in RetrievalEvaluator), similarities do not.
        AssertMatrix(v2t, dense, 1e-6, "video-to-text");
        AssertMatrix(t2v, denseT, 1e-6, "text-to-video");
        using var featureSims = evaluation.Scores.ImageFeatures.matmul(evaluation.Scores.TextFeatures.t());
        AssertMatrix(sims, featureSims, 1e-12, "similarities");

        var expected = VideoRetrievalRecall.Compute(v2t, t2v, set.TextToVideo, set.VideoToTexts);
        var m = evaluation.Metrics;
        Assert.Equal(expected.VideoRanks, m.VideoRanks);
        Assert.Equal(expected.TextRanks, m.TextRanks);
        Assert.Equal(expected.ToDictionary(), m.ToDictionary());
        // Ranks by hand from the reference: a text's position of its video, a video's best position among its texts.
        var textRanks = Enumerable.Range(0, 5).Select(t => Position(t2v, t, set.TextToVideo[t])).ToArray();
        Assert.Equal(textRanks, m.TextRanks);
        Assert.Equal(Enumerable.Range(0, 3).Select(v => set.VideoToTexts[v].Min(t => Position(v2t, v, t))).ToArray(), m.VideoRanks);
        Assert.Equal(100.0 * textRanks.Count(r => r < 1) / 5, m.VidR1);
        Assert.Equal(textRanks.Select(r => r + 1.0).Order().ElementAt(2), m.VidMdR);

        // Progress: texts in batches of 3, videos in batches of 2, both passes.
        Assert.Equal(new[]
        {
            new RetrievalProgress(RetrievalStage.TextFeatures, 3, 5), new RetrievalProgress(RetrievalStage.TextFeatures, 5, 5),
            new RetrievalProgress(RetrievalStage.ItemFeatures, 2, 3), new RetrievalProgress(RetrievalStage.ItemFeatures, 3, 3),
            new RetrievalProgress(RetrievalStage.Matching, 2, 3), new RetrievalProgress(RetrievalStage.Matching, 3, 3),
        }, recorder.Reports);
    }

    [Fact]
    public void AnEvaluationLeavesNoTensorBehind()
    {
        var set = WriteDataset();
        var tokenizer = BlipTokenizer.Create(Vocab);
        using var model = Float64Model();
        var evaluator = new VideoRetrievalEvaluator(model, new() { NumFrames = 7, KTest = 2, VideoBatchSize = 2, ItmBatchSize = 3, MaxTextLength = 12 });
        evaluator.Evaluate(set, tokenizer).Dispose();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 3; i++) evaluator.Evaluate(set, tokenizer).Dispose();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Fact]
    public void VideoStatesAreTheFramesStatesInOrderAndFeaturesTheNormalisedMeanProjection()
    {
        using var model = Float64Model();
        model.eval();
        var evaluator = new VideoRetrievalEvaluator(model);
        using var scope = NewDisposeScope();
        var generator = new Generator(3);
        var a = randn([3, 3, 32, 32], generator: generator);
        var b = randn([3, 3, 32, 32], generator: generator);
        var c = randn([2, 3, 32, 32], generator: generator);
        var (states, mask, features) = evaluator.EncodeVideos([a, b]);
        Assert.Null(mask);
        Assert.Equal(new long[] { 2, 15, 16 }, states.shape);                          // 3 frames x (1 + 4 patches), width 16
        using (no_grad())
        {
            for (int f = 0; f < 3; f++)
            {
                var alone = model.EncodeImage(b.narrow(0, f, 1).to_type(ScalarType.Float64));               // (1, 5, 16)
                Assert.True(alone[0].allclose(states[1].narrow(0, 5 * f, 5), rtol: 0, atol: 1e-12), $"frame {f} of video 1");
            }
            var projected = model.vision_proj.forward(model.EncodeImage(a.to_type(ScalarType.Float64)).select(1, 0)); // (3, E)
            var mean = projected.mean([0]);
            Assert.True((mean / mean.norm()).allclose(features[0], rtol: 0, atol: 1e-12));
            // Per-frame normalisation before the mean (not BLIP's order) gives a different feature.
            var perFrame = nn.functional.normalize(projected, dim: -1).mean([0]);
            Assert.False((perFrame / perFrame.norm()).allclose(features[0], rtol: 0, atol: 1e-6));

            // Mixed frame counts: padded states, a mask, the same per-video values.
            var (padded, padMask, mixed) = evaluator.EncodeVideos([c, a]);
            Assert.Equal(new long[] { 2, 15, 16 }, padded.shape);
            Assert.Equal(Enumerable.Repeat(1L, 10).Concat(Enumerable.Repeat(0L, 5)).ToArray(), padMask![0].data<long>().ToArray());
            Assert.Equal(Enumerable.Repeat(1L, 15).ToArray(), padMask[1].data<long>().ToArray());
            Assert.True(padded[0].narrow(0, 10, 5).eq(0).all().ToBoolean());
            Assert.True(padded[1].allclose(states[0], rtol: 0, atol: 1e-12));
            Assert.True(mixed[1].allclose(features[0], rtol: 0, atol: 1e-12));
        }
    }

    // ---------------------------------------------------------------- median ranks

    [Fact]
    public void MedianRanksAreNumpysMedianOfOneBasedRanks()
    {
        // 3 videos, 4 texts (video 1 has texts 1 and 2). Rows rank their candidates by descending score.
        double[,] t2v =
        {
            { 0.9, 0.1, 0.2 },   // text 0 -> video 0: position 0
            { 0.8, 0.3, 0.9 },   // text 1 -> video 1: position 2
            { 0.5, 0.7, 0.1 },   // text 2 -> video 1: position 0
            { 0.4, 0.6, 0.5 },   // text 3 -> video 2: position 1
        };
        double[,] v2t =
        {
            { 0.1, 0.2, 0.3, 0.4 },   // video 0, text 0: position 3
            { 0.9, 0.5, 0.2, 0.1 },   // video 1, texts 1 (position 1) and 2 (position 2): 1
            { 0.9, 0.8, 0.7, 0.6 },   // video 2, text 3: position 3
        };
        var m = VideoRetrievalRecall.Compute(v2t, t2v, [0, 1, 1, 2], [[0], [1, 2], [3]]);
        Assert.Equal(new[] { 0, 2, 0, 1 }, m.TextRanks);
        Assert.Equal(new[] { 3, 1, 3 }, m.VideoRanks);
        Assert.Equal(1.5, m.VidMdR);                                                   // median of 1, 3, 1, 2
        Assert.Equal(4.0, m.TxtMdR);                                                   // median of 4, 2, 4
        Assert.Equal(50.0, m.VidR1);
        Assert.Equal(100.0, m.VidR5);
        Assert.Equal(0.0, m.TxtR1);
        Assert.Equal(100.0, m.TxtR5);
        Assert.Equal((0.0 + 100 + 100) / 3, m.TxtRMean, 12);
        Assert.Equal(((50.0 + 100 + 100) / 3 + (0.0 + 100 + 100) / 3) / 2, m.RMean, 12);
        Assert.Equal(1.5, m.ToDictionary()["vid_mdR"]);
        Assert.Equal(7.0, VideoRetrievalRecall.MedianRank([9, 0, 6, 2, 7]));          // 10, 1, 7, 3, 8 -> 7
        Assert.Throws<ArgumentException>(() => VideoRetrievalRecall.MedianRank([]));
    }

    // ---------------------------------------------------------------- helpers

    private static int Position(double[,] scores, int row, int target)
    {
        int position = 0;
        for (int c = 0; c < scores.GetLength(1); c++)
            if (scores[row, c] > scores[row, target] || (scores[row, c] == scores[row, target] && c > target)) position++;
        return position;
    }

    private static void AssertMatrix(double[,] expected, Tensor actual, double atol, string what)
    {
        Assert.Equal(new long[] { expected.GetLength(0), expected.GetLength(1) }, actual.shape);
        for (int r = 0; r < expected.GetLength(0); r++)
            for (int c = 0; c < expected.GetLength(1); c++)
            {
                double ours = actual[r, c].ToDouble();
                Assert.True(Math.Abs(ours - expected[r, c]) <= atol, $"{what}[{r}, {c}] = {ours:G17}, reference {expected[r, c]:G17}");
            }
    }

    /// <summary>Writes a PNG of seeded random pixels (webp/jpg names get PNG bytes: the decoder sniffs the format).</summary>
    private static string WriteFrame(string folder, string name, int seed, int width = 8, int height = 8)
    {
        Directory.CreateDirectory(folder);
        var random = new Random(seed);
        var pixels = new byte[width * height * 3];
        random.NextBytes(pixels);
        string path = Path.Combine(folder, name);
        File.WriteAllBytes(path, PngEncoder.Encode(RgbImage.Create(width, height, pixels)));
        return path;
    }
}
