using BlipSharp.Checkpoints;
using BlipSharp.Processing;
using BlipSharp.Tests.TestSupport;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Processing;

public sealed class ImageProcessorTests(ITestOutputHelper output) : IDisposable
{
    /// <summary>The spec tolerates one level on a resized pixel; lossless inputs must match PIL exactly.</summary>
    private const int MaxLevelDiff = 1;

    /// <summary>pixel_values: the same float32 formula as NumPy, so only a resize difference could move them.</summary>
    private const double PixelValuesAtol = 1e-6;

    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-proc-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Compares a resized image with the fixture's uint8 HWC tensor, reporting how many values differ.</summary>
    private void AssertResizedMatches(Tensor expectedHwc, RgbImage actual, bool lossless, string what)
    {
        Assert.Equal(new long[] { actual.Height, actual.Width, 3 }, expectedHwc.shape);
        var expected = expectedHwc.cpu().contiguous().bytes.ToArray();
        var got = actual.Pixels;
        int differing = 0, maxDiff = 0, firstAt = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            int d = Math.Abs(expected[i] - got[i]);
            if (d == 0) continue;
            differing++;
            if (firstAt < 0) firstAt = i;
            maxDiff = Math.Max(maxDiff, d);
        }
        output.WriteLine($"{what}: {differing} of {expected.Length} uint8 values differ from PIL (max {maxDiff})");
        string where = firstAt < 0 ? "" : $"; first at pixel ({firstAt / 3 % actual.Width}, {firstAt / 3 / actual.Width}) channel {firstAt % 3}: expected {expected[firstAt]}, got {got[firstAt]}";
        Assert.True(maxDiff <= MaxLevelDiff, $"{what}: {differing} values differ, max {maxDiff} levels{where}");
        if (lossless) Assert.True(differing == 0, $"{what}: {differing} values differ from PIL on a lossless input{where}");
    }

    private static IEnumerable<(int Index, string Path)> FixtureImages(FixtureCases cases, string root) =>
        cases.Json.GetProperty("images").EnumerateArray()
            .Select((e, i) => (i, Path.Combine(root, e.GetProperty("file").GetString()!)));

    private static bool IsLossless(string path) =>
        Path.GetExtension(path).ToLowerInvariant() is ".png" or ".bmp" or ".gif";

    [Theory]
    [Trait("Category", "Parity")]
    [MemberData(nameof(Fixtures.HfModelNames), MemberType = typeof(Fixtures))]
    public void ResizeAndPixelValuesMatchHuggingFacePerImage(string model)
    {
        string dir = Fixtures.HfModelDir(model);
        using var cases = new FixtureCases(dir);
        var processor = BlipImageProcessor.FromPretrained(dir);
        int checkedImages = 0;
        foreach (var (i, path) in FixtureImages(cases, Fixtures.HfBlipDir))
        {
            if (!cases.Has($"image{i}.resized_uint8_hwc")) continue;
            var image = processor.Decode(path);
            var resized = processor.Resize(image);
            AssertResizedMatches(cases.Tensor($"image{i}.resized_uint8_hwc"), resized, IsLossless(path), $"{model} image{i} {Path.GetFileName(path)}");

            using var pixels = processor.Preprocess(image);
            Assert.Equal(ScalarType.Float32, pixels.dtype);
            string name = $"image{i}.pixel_values";
            TensorAssert.Close(cases.Tensor(name), pixels, Math.Min(PixelValuesAtol, cases.Tolerance(name)), $"{model} {name}");
            output.WriteLine($"{model} {name}: max |diff| {(cases.Tensor(name) - pixels).abs().max().ToDouble():E2}");
            checkedImages++;
        }
        Assert.True(checkedImages > 0, $"{dir}: no image{{i}}.resized_uint8_hwc tensors");
    }

    [Theory]
    [Trait("Category", "Parity")]
    [MemberData(nameof(Fixtures.HfModelNames), MemberType = typeof(Fixtures))]
    public void BatchPixelValuesMatchHuggingFace(string model)
    {
        string dir = Fixtures.HfModelDir(model);
        using var cases = new FixtureCases(dir);
        var processor = BlipImageProcessor.FromPretrained(dir);
        var expected = cases.Tensor("pixel_values");
        int batch = (int)expected.shape[0];
        var paths = FixtureImages(cases, Fixtures.HfBlipDir).Take(batch).Select(p => p.Path).ToList();
        Assert.Equal(batch, paths.Count);

        using var fromPaths = processor.Preprocess(paths);
        Assert.Equal(new long[] { batch, 3, processor.Options.Height, processor.Options.Width }, fromPaths.shape);
        TensorAssert.Close(expected, fromPaths, Math.Min(PixelValuesAtol, cases.Tolerance("pixel_values")), $"{model} pixel_values");

        // The same through decoded images, streams and bytes.
        using var fromImages = processor.Preprocess(paths.Select(processor.Decode));
        TensorAssert.Close(fromPaths, fromImages, 0, $"{model} pixel_values from RgbImage");
        using var stream = File.OpenRead(paths[0]);
        using var fromStream = processor.Preprocess(stream);
        using var fromBytes = processor.Preprocess(File.ReadAllBytes(paths[0]));
        TensorAssert.Close(fromPaths[0..1], fromStream, 0, $"{model} pixel_values from stream");
        TensorAssert.Close(fromPaths[0..1], fromBytes, 0, $"{model} pixel_values from bytes");
    }

    [Fact]
    [Trait("Category", "Parity")]
    public void ResizeMatchesPilOnTheOriginalBlipImages()
    {
        // blip-original feeds BLIP's own transform (PIL bicubic resize too); its four images include an upscaled
        // 50x80 solid and a 120x90 gradient with different x and y scales.
        using var cases = new FixtureCases(Path.Combine(Fixtures.BlipOriginalDir, "pretrain"));
        int checkedImages = 0;
        foreach (var (i, path) in FixtureImages(cases, Fixtures.BlipOriginalDir))
        {
            if (!cases.Has($"image{i}.resized_uint8_hwc")) continue;
            var expected = cases.Tensor($"image{i}.resized_uint8_hwc");
            var processor = BlipImageProcessor.Create(new BlipImageProcessorOptions { Height = (int)expected.shape[0], Width = (int)expected.shape[1] });
            var image = processor.Decode(path);
            AssertResizedMatches(expected, processor.Resize(image), IsLossless(path), $"blip-original image{i} {Path.GetFileName(path)}");
            using var pixels = processor.Preprocess(image);
            TensorAssert.Close(cases.Tensor($"image{i}.pixel_values"), pixels, PixelValuesAtol, $"blip-original image{i}.pixel_values");
            checkedImages++;
        }
        Assert.True(checkedImages > 0);
    }

    [Fact]
    public void FromPretrainedReadsEveryField()
    {
        // Every fixture folder: the size it was written with.
        foreach (string dir in Fixtures.HfModelDirs())
        {
            using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, BlipImageProcessor.ConfigFileName)));
            var size = json.RootElement.GetProperty("size");
            var fixture = BlipImageProcessor.FromPretrained(dir).Options;
            Assert.Equal((size.GetProperty("width").GetInt32(), size.GetProperty("height").GetInt32()), (fixture.Width, fixture.Height));
        }

        // A file exactly as transformers 4.40 writes it, stray _valid_processor_keys included.
        File.WriteAllText(Path.Combine(_dir, BlipImageProcessor.ConfigFileName), """
            {"_valid_processor_keys": ["images", "do_resize", "size"], "do_convert_rgb": true, "do_normalize": true,
             "do_rescale": true, "do_resize": true, "image_mean": [0.48145466, 0.4578275, 0.40821073],
             "image_processor_type": "BlipImageProcessor", "image_std": [0.26862954, 0.26130258, 0.27577711],
             "processor_class": "BlipProcessor", "resample": 3, "rescale_factor": 0.00392156862745098,
             "size": {"height": 48, "width": 48}}
            """);
        var o = BlipImageProcessor.FromPretrained(_dir).Options;
        Assert.Equal((48, 48), (o.Width, o.Height));
        Assert.Equal(ResampleFilter.Bicubic, o.Resample);
        Assert.True(o.DoResize && o.DoRescale && o.DoNormalize && o.DoConvertRgb);
        Assert.Equal(0.00392156862745098, o.RescaleFactor);
        Assert.Equal(new[] { 0.48145466, 0.4578275, 0.40821073 }, o.ImageMean);
        Assert.Equal(new[] { 0.26862954, 0.26130258, 0.27577711 }, o.ImageStd);

        File.WriteAllText(Path.Combine(_dir, BlipImageProcessor.ConfigFileName),
            """{"size": 32, "resample": 2, "do_normalize": false, "image_mean": 0.5, "unknown": {"x": [1]}}""");
        var p = BlipImageProcessor.FromPretrained(_dir).Options;
        Assert.Equal((32, 32, ResampleFilter.Bilinear, false), (p.Width, p.Height, p.Resample, p.DoNormalize));
        Assert.Equal(new[] { 0.5, 0.5, 0.5 }, p.ImageMean);
        Assert.Equal(BlipImageProcessorOptions.OpenAIClipStd, p.ImageStd);

        File.WriteAllText(Path.Combine(_dir, BlipImageProcessor.ConfigFileName), """{"size": {"shortest_edge": 224}}""");
        var e = Assert.Throws<CheckpointFormatException>(() => BlipImageProcessor.FromPretrained(_dir));
        Assert.Contains("size", e.Message);
        Assert.Throws<FileNotFoundException>(() => BlipImageProcessor.FromPretrained(Path.Combine(_dir, "nope")));
    }

    [Fact]
    public void DefaultsAreHuggingFaces()
    {
        var o = BlipImageProcessor.Create().Options;
        Assert.Equal((384, 384, ResampleFilter.Bicubic), (o.Width, o.Height, o.Resample));
        Assert.Equal(1.0 / 255.0, o.RescaleFactor);
        Assert.True(o.Decoder.ApplyExifOrientation);
        Assert.Equal(89_478_485, o.Decoder.MaxPixels);
    }

    [Fact]
    public void RescaleAndNormalizeFollowNumPysFloatOrder()
    {
        // One pixel, no resize: value v -> float32(v * (1/255) in float64), then (x - float32(mean)) / float32(std).
        var image = RgbImage.Create(1, 1, [0, 128, 255]);
        var processor = BlipImageProcessor.Create(new BlipImageProcessorOptions { DoResize = false });
        using var t = processor.Preprocess(image);
        Assert.Equal(new long[] { 1, 3, 1, 1 }, t.shape);
        var got = t.data<float>().ToArray();
        byte[] v = [0, 128, 255];
        for (int c = 0; c < 3; c++)
        {
            float x = (float)(v[c] * (1.0 / 255.0));
            float expected = (x - (float)BlipImageProcessorOptions.OpenAIClipMean[c]) / (float)BlipImageProcessorOptions.OpenAIClipStd[c];
            Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(got[c]));
        }

        var rescaleOnly = BlipImageProcessor.Create(new BlipImageProcessorOptions { DoResize = false, DoNormalize = false });
        using var r = rescaleOnly.Preprocess(image);
        Assert.Equal(new[] { 0f, (float)(128 * (1.0 / 255.0)), 1f }, r.data<float>().ToArray());
    }

    [Fact]
    public void BatchingDifferentSizesWithoutResizeIsAClearError()
    {
        var processor = BlipImageProcessor.Create(new BlipImageProcessorOptions { DoResize = false });
        var e = Assert.Throws<ArgumentException>(() => processor.Preprocess([RgbImage.Create(1, 1, [1, 2, 3]), RgbImage.Create(2, 1, new byte[6])]));
        Assert.Contains("1x1", e.Message);
        Assert.Contains("2x1", e.Message);
    }

    [Fact]
    public void ProcessorDecodeErrorsAreImageDecodeExceptions()
    {
        var processor = BlipImageProcessor.Create();
        string path = Path.Combine(_dir, "zero.png");
        File.WriteAllBytes(path, []);
        var e = Assert.Throws<ImageDecodeException>(() => processor.Preprocess(path));
        Assert.Contains(path, e.Message);
    }

    // ---- The resampler on its own --------------------------------------------------------------------

    [Fact]
    public void ResizeToTheSameSizeIsACopy()
    {
        var image = RgbImage.Create(2, 2, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        foreach (ResampleFilter f in Enum.GetValues<ResampleFilter>())
            Assert.True(image.Resize(2, 2, f).Pixels.SequenceEqual(image.Pixels), f.ToString());
    }

    [Fact]
    public void ConstantImagesStayConstantUnderEveryFilter()
    {
        // Normalised weights sum to 1 in fixed point up to rounding; PIL keeps flat colours flat.
        var px = new byte[37 * 23 * 3];
        for (int i = 0; i < px.Length; i += 3) (px[i], px[i + 1], px[i + 2]) = ((byte)230, (byte)120, (byte)20);
        var image = RgbImage.Create(37, 23, px);
        foreach (ResampleFilter f in Enum.GetValues<ResampleFilter>())
            foreach (var (w, h) in new[] { (64, 64), (5, 7), (37, 50), (80, 23) })
            {
                var r = image.Resize(w, h, f);
                Assert.Equal((w, h), (r.Width, r.Height));
                for (int i = 0; i < r.Pixels.Length; i += 3)
                    Assert.True(r.Pixels[i] == 230 && r.Pixels[i + 1] == 120 && r.Pixels[i + 2] == 20, $"{f} {w}x{h}: pixel {i / 3} = {r.Pixels[i]},{r.Pixels[i + 1]},{r.Pixels[i + 2]}");
            }
    }

    [Fact]
    public void NearestPicksPixelCentres()
    {
        // 4 -> 2 picks source columns 1 and 3 (centres 1.0 and 3.0); 2 -> 4 repeats each column twice.
        var row = RgbImage.Create(4, 1, [0, 0, 0, 10, 10, 10, 20, 20, 20, 30, 30, 30]);
        Assert.Equal(new byte[] { 10, 10, 10, 30, 30, 30 }, row.Resize(2, 1, ResampleFilter.Nearest).Pixels.ToArray());
        var two = RgbImage.Create(2, 1, [5, 5, 5, 9, 9, 9]);
        Assert.Equal(new byte[] { 5, 5, 5, 5, 5, 5, 9, 9, 9, 9, 9, 9 }, two.Resize(4, 1, ResampleFilter.Nearest).Pixels.ToArray());
    }

    [Fact]
    public void BilinearDownscaleByTwoAveragesLikePil()
    {
        // Bilinear at scale 2 has support 2 and evaluates the triangle at (x - centre + 0.5) / 2, then normalises.
        var row = RgbImage.Create(4, 1, [0, 0, 0, 100, 100, 100, 200, 200, 200, 40, 40, 40]);
        var r = row.Resize(2, 1, ResampleFilter.Bilinear);
        // centre 1.0: taps x=0 (d=0.5 -> w=1-0.25=0.75), x=1 (d=0.5 -> 0.75), x=2 (d=1.5 -> 0.25); sum 1.75.
        double out0 = (0 * 0.75 + 100 * 0.75 + 200 * 0.25) / 1.75;
        // centre 3.0: taps x=1 (d=1.5 -> 0.25), x=2 (0.75), x=3 (0.75); window clipped at 4; sum 1.75.
        double out1 = (100 * 0.25 + 200 * 0.75 + 40 * 0.75) / 1.75;
        Assert.Equal((byte)Math.Round(out0), r.Pixels[0]);
        Assert.Equal((byte)Math.Round(out1), r.Pixels[3]);
    }
}
