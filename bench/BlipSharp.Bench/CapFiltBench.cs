using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using BlipSharp.Configuration;
using BlipSharp.Generation;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using BlipSharp.Training.Captioning;
using BlipSharp.Training.CapFilt;
using BlipSharp.Training.Data;
using BlipSharp.Training.Synthetic;
using static TorchSharp.torch;

namespace BlipSharp.Bench;

/// <summary>
/// Throughput of <see cref="CapFiltRunner"/>, the engine of <c>blip capfilt</c>, at BLIP-base shapes: a captioner
/// (<see cref="BlipForConditionalGeneration"/>) and a filter (<see cref="BlipForImageTextRetrieval"/>) built from
/// <see cref="BlipConfig"/> defaults (ViT-B/16 at 384 px, BERT-base text, 30,524 tokens: the vocabulary of the hf-blip
/// fixture tokenizer, which both use) with random weights, over PNG images written to a temporary folder with a JSON
/// lines annotation file of one web text each. Three runs over the same images, each in a fresh output folder: BLIP's
/// sampling settings as they are (one caption per image, top-p 0.9, top-k 50, repetition penalty 1.1, 10..30 tokens
/// counting [DEC] and the prompt); the same with the length forced to <see cref="BenchOptions.CaptionLength"/> (min =
/// max), since random weights almost never sample [SEP] and so run to the maximum, which trained captioners do not;
/// and the filter alone (<c>--num-captions 0</c>: the web text is scored, nothing is generated). A probe on a few
/// images reports how many tokens the unforced sampling generates.
/// </summary>
internal static class CapFiltBench
{
    private static readonly string[] Words =
    [
        "a", "the", "photo", "of", "red", "blue", "old", "small", "house", "dog", "car", "beach", "city", "street", "at", "night",
        "with", "and", "view", "from", "mountain", "lake", "people", "walking", "on", "sunny", "day", "vintage", "poster", "sale",
    ];

    public static string Run(BenchOptions options)
    {
        var config = new BlipConfig { VisionConfig = new BlipVisionConfig { ImageSize = options.ImageSize } }.Normalized();
        var tokenizer = BlipTokenizer.FromPretrained(Path.Combine(FixtureDeviation.FixturesDir(), nameof(BlipForConditionalGeneration)));
        if (tokenizer.VocabSize != config.TextConfig.VocabSize)
            throw new InvalidOperationException($"the fixture tokenizer has {tokenizer.VocabSize} tokens, the BLIP-base config {config.TextConfig.VocabSize}");
        string work = Directory.CreateTempSubdirectory("blipsharp-bench-capfilt-").FullName;
        try
        {
            return Measure(options, config, tokenizer, work);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    private static string Measure(BenchOptions options, BlipConfig config, BlipTokenizer tokenizer, string work)
    {
        int images = options.CapFiltImages, size = config.VisionConfig.ImageSize;
        Console.Error.WriteLine($"capfilt: writing {images} PNGs of {size} px...");
        string annotation = WriteImages(work, "web", images, size, options.Seed);
        string warmup = WriteImages(work, "warmup", 2, size, options.Seed + 1);
        double pngBytes = Directory.GetFiles(Path.Combine(work, "web"), "*.png").Average(f => new FileInfo(f).Length);

        Console.Error.WriteLine("capfilt: building the BLIP-base captioner and filter...");
        manual_seed(options.Seed);
        using var captionModel = new BlipForConditionalGeneration(config);
        captionModel.eval();
        using var filterModel = new BlipForImageTextRetrieval(config);
        filterModel.eval();
        var processor = CapFiltModels.EvalProcessor(size);
        using var captioner = new CapFiltCaptioner(captionModel, tokenizer, processor, CapFiltModels.DefaultPrompt, "random BLIP-base captioner");
        using var filter = new CapFiltFilter(filterModel, tokenizer, processor, tokenizer.EncTokenId, "random BLIP-base filter");
        long parameters = captionModel.parameters().Sum(p => p.numel()) + filterModel.parameters().Sum(p => p.numel());

        var blip = new CapFiltOptions { BatchSize = options.CapFiltBatch, ChunkSize = options.CapFiltBatch, Seed = options.Seed };
        int length = options.CaptionLength;
        var runs = new (string Label, CapFiltOptions Options)[]
        {
            ("captioner + filter, BLIP's sampling (10..30 tokens)", blip),
            ($"captioner + filter, length forced to {length}", blip with { MinLength = length, MaxLength = length }),
            ("filter only (--num-captions 0)", blip with { NumCaptions = 0 }),
        };

        Console.Error.WriteLine("capfilt: warm-up run (2 images)...");
        new CapFiltRunner(captioner, filter, blip with { Inputs = [warmup], OutputDirectory = Path.Combine(work, "out-warmup"), BatchSize = 2, ChunkSize = 2 }).Run();

        var table = new MarkdownTable("run", "images", "texts scored", "wall time", "images/s", "s per image", "load average at start / end");
        var seconds = new double[runs.Length];
        for (int r = 0; r < runs.Length; r++)
        {
            var (label, settings) = runs[r];
            string output = Path.Combine(work, $"out-{r}");
            Console.Error.WriteLine($"capfilt: {label}...");
            string loadBefore = NativeRuntime.LoadAverage;
            var runner = new CapFiltRunner(captioner, filter, settings with { Inputs = [annotation], OutputDirectory = output });
            var clock = Stopwatch.StartNew();
            var result = runner.Run();
            clock.Stop();
            if (!result.Completed || result.Images != images)
                throw new InvalidOperationException($"capfilt run '{label}' did {result.Images} of {images} images (completed: {result.Completed})");
            seconds[r] = clock.Elapsed.TotalSeconds;
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"capfilt: {label}: {images} images in {seconds[r]:F1} s ({images / seconds[r]:F3} images/s)"));
            table.Add(label, images.ToString(CultureInfo.InvariantCulture), TextsScored(output).ToString(CultureInfo.InvariantCulture),
                Fmt.Sec(seconds[r]), Fmt.Num(images / seconds[r], "F3"), Fmt.Num(seconds[r] / images, "F2"), $"{loadBefore} / {NativeRuntime.LoadAverage}");
        }

        var probe = ProbeLengths(captioner, blip, annotation, Math.Min(options.CapFiltProbe, images));
        var (mean, min, max, probed) = (probe.Mean, probe.Min, probe.Max, probe.Count);
        double stepSeconds = (probe.GenerateSeconds - probe.VisionSeconds) / Math.Max(1, max);
        double captioningUnforced = (seconds[0] - seconds[2]) / images, captioningForced = (seconds[1] - seconds[2]) / images, filtering = seconds[2] / images;
        var v = config.VisionConfig;
        return $"""
            ### CapFilt throughput at BLIP-base shapes ({images} images, random weights)

            - models: captioner BlipForConditionalGeneration and filter BlipForImageTextRetrieval from BlipConfig defaults: ViT-B/{v.PatchSize} at {v.ImageSize} px ({v.GridSize * v.GridSize + 1} tokens), text {config.TextConfig.NumHiddenLayers} x {config.TextConfig.HiddenSize}, vocabulary {config.TextConfig.VocabSize} (the hf-blip fixture tokenizer's); {parameters / 1e6:F0}M parameters in the two; random weights (seed {options.Seed}); float32
            - data: {images} PNGs of {size} px (random gradients and noise, {pngBytes / 1024:F0} KiB each on average) listed in a JSON lines file with one web text each
            - CapFiltRunner with the CLI's defaults except: batch {options.CapFiltBatch} images, chunk {options.CapFiltBatch} records; {blip.DecodeThreads} image-decoding thread(s); {get_num_threads()} torch threads on {Environment.ProcessorCount} logical CPUs; one untimed 2-image warm-up run first
            - generated length with BLIP's settings (probe: {probed} images, same sampling settings): {mean:F1} tokens after the prompt on average (min {min}, max {max}); the sequence counts [DEC] + 3 prompt tokens + these, up to 30. Random weights rarely sample [SEP], so this is the upper bound; the forced run generates {length - 4} tokens after the prompt ({length} in all), about a BLIP caption's length
            - the probe's batch of {probed}, timed alone: the captioner's ViT {Fmt.Sec(probe.VisionSeconds)} ({Fmt.Sec(probe.VisionSeconds / Math.Max(1, probed))} per image); the whole sampling call {Fmt.Sec(probe.GenerateSeconds)}, so {Fmt.Sec(stepSeconds)} per decoding step for the batch beyond the ViT (prompt pass and cross-attention keys and values included)

            {table}
            Per image: filtering {Fmt.Num(filtering, "F2")} s (the filter-only run: image decode and preprocessing, the filter's ViT, the web text's ITC and ITM passes);
            captioning {Fmt.Num(captioningForced, "F2")} s at {length} tokens and {Fmt.Num(captioningUnforced, "F2")} s at BLIP's unforced settings (each full run minus the filter-only run: the captioner's preprocessing, ViT and
            sampling, and the second text's ITM pass).
            """;
    }

    /// <summary>Writes <paramref name="count"/> PNGs and a JSON lines annotation file with one web text each; returns the file.</summary>
    private static string WriteImages(string work, string name, int count, int size, long seed)
    {
        string folder = Path.Combine(work, name);
        Directory.CreateDirectory(folder);
        string annotation = Path.Combine(work, $"{name}.jsonl");
        using var writer = new StreamWriter(annotation);
        for (int i = 0; i < count; i++)
        {
            var random = new Random(unchecked((int)(seed * 7919 + i)));
            var pixels = new byte[size * size * 3];
            int r0 = random.Next(256), g0 = random.Next(256), b0 = random.Next(256);
            for (int y = 0; y < size; y++)
            {
                for (int x = 0; x < size; x++)
                {
                    int o = (y * size + x) * 3, noise = random.Next(-24, 25);
                    pixels[o] = (byte)Math.Clamp(r0 + x * 96 / size + noise, 0, 255);
                    pixels[o + 1] = (byte)Math.Clamp(g0 + y * 96 / size + noise, 0, 255);
                    pixels[o + 2] = (byte)Math.Clamp(b0 - (x + y) * 48 / size + noise, 0, 255);
                }
            }
            string file = $"{i:D6}.png";
            File.WriteAllBytes(Path.Combine(folder, file), PngEncoder.Encode(RgbImage.Create(size, size, pixels)));
            string text = string.Join(' ', Enumerable.Range(0, random.Next(6, 13)).Select(_ => Words[random.Next(Words.Length)]));
            writer.WriteLine(JsonSerializer.Serialize(new { image = $"{name}/{file}", caption = text, image_id = $"{name}-{i}" }));
        }
        return annotation;
    }

    /// <summary>Texts the run scored (web and synthetic), from its committed chunks.</summary>
    private static int TextsScored(string output) => Directory.GetFiles(Path.Combine(output, CapFiltRunner.ChunksDirectory), "chunk-*.jsonl")
        .SelectMany(File.ReadLines).Where(l => l.Length > 0).Sum(line =>
        {
            using var doc = JsonDocument.Parse(line);
            return doc.RootElement.GetProperty("web").GetArrayLength() + doc.RootElement.GetProperty("synthetic").GetArrayLength();
        });

    /// <summary>Generated tokens after the prompt with BLIP's sampling settings, on the first <paramref name="count"/> images.</summary>
    /// <summary>What the probe measured: generated tokens after the prompt, the captioner's ViT alone and the whole generation (ViT included), in seconds.</summary>
    private sealed record Probe(double Mean, int Min, int Max, int Count, double VisionSeconds, double GenerateSeconds);

    private static Probe ProbeLengths(CapFiltCaptioner captioner, CapFiltOptions blip, string annotation, int count)
    {
        if (count == 0) return new Probe(double.NaN, 0, 0, 0, double.NaN, double.NaN);
        Console.Error.WriteLine($"capfilt: generated-length probe ({count} images)...");
        string root = Path.GetDirectoryName(annotation)!;
        var images = File.ReadLines(annotation).Take(count)
            .Select(l => ImageSource.FromFile(Path.Combine(root, JsonDocument.Parse(l).RootElement.GetProperty("image").GetString()!)).Decode())
            .ToList();
        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        var pixels = captioner.ImageProcessor.Preprocess(images);
        var clock = Stopwatch.StartNew();
        captioner.Model.EncodeImage(pixels);
        double vision = clock.Elapsed.TotalSeconds;
        clock.Restart();
        using var generated = BlipCaptionGenerator.Generate(captioner.Model, captioner.Tokenizer, pixels, captioner.Prompt, new GenerationOptions
        {
            DoSample = true, TopP = blip.TopP, TopK = blip.TopK, Temperature = blip.Temperature, RepetitionPenalty = blip.RepetitionPenalty,
            MaxLength = blip.MaxLength, MinLength = blip.MinLength, Seed = blip.Seed,
        });
        double total = clock.Elapsed.TotalSeconds;
        var lengths = Enumerable.Range(0, generated.Sequences.Sequences.Count).Select(i => generated.Sequences.GeneratedTokens(i).Length).ToList();
        return new Probe(lengths.Average(), lengths.Min(), lengths.Max(), lengths.Count, vision, total);
    }
}
