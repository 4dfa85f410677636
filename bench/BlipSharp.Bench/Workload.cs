using BlipSharp.Configuration;
using BlipSharp.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Bench;

/// <summary>
/// One retrieval model (vision encoder, text encoder, ITM and ITC heads) in one dtype with random weights, and
/// the inputs every measurement uses. Models of every dtype are built from the same seed, so they hold the same
/// weights up to rounding. bfloat16 is the float32 model converted, exactly what <c>BlipLoadOptions.DType</c>
/// does after loading a checkpoint.
/// </summary>
internal sealed class Workload : IDisposable
{
    public ScalarType DType { get; }
    public string Name => DType == ScalarType.Float32 ? "fp32" : "bf16";
    public BlipForImageTextRetrieval Model { get; }
    public Tensor Pixels { get; }
    /// <summary>(1, T) token ids and mask for one ITM text.</summary>
    public Tensor ItmIds { get; }
    public Tensor ItmMask { get; }
    /// <summary>(B, 1+N, D) image states from this model, the input of ITM-from-embeds.</summary>
    public Tensor ImageEmbeds { get; }
    /// <summary>(textBatch, T) token ids and mask for text embeddings.</summary>
    public Tensor TextIds { get; }
    public Tensor TextMask { get; }
    /// <summary>The captioning model (same config and seed), built only when the generation section runs.</summary>
    public BlipForConditionalGeneration? Captioner { get; }

    public Workload(BlipConfig config, ScalarType dtype, BenchOptions options, bool withCaptioner = false)
    {
        DType = dtype;
        manual_seed(options.Seed);
        Model = new BlipForImageTextRetrieval(config);
        if (dtype != ScalarType.Float32) Model.to(dtype);
        Model.eval();

        var generator = new Generator((ulong)options.Seed + 1);
        var vision = config.VisionConfig;
        Pixels = randn([options.Batch, vision.NumChannels, vision.ImageSize, vision.ImageSize], generator: generator);
        int vocab = config.TextConfig.VocabSize;
        ItmIds = Tokens(1, options.TextLength, vocab, generator);
        ItmMask = ones(1, options.TextLength, dtype: ScalarType.Int64);
        TextIds = Tokens(options.TextBatch, options.TextLength, vocab, generator);
        TextMask = ones(options.TextBatch, options.TextLength, dtype: ScalarType.Int64);
        using (inference_mode())
        using (var first = Pixels[..1])
            ImageEmbeds = Model.EncodeImage(first);
        if (withCaptioner)
        {
            manual_seed(options.Seed);
            Captioner = new BlipForConditionalGeneration(config);
            if (dtype != ScalarType.Float32) Captioner.to(dtype);
            Captioner.eval();
        }
    }

    /// <summary>
    /// A caption of exactly 20 new tokens from pixels (image 0): the end token is forbidden until then, so random
    /// weights cannot stop early. <paramref name="beams"/> 1 is greedy decoding.
    /// </summary>
    public void Caption(int beams)
    {
        using var first = Pixels[..1];
        using var result = Captioner!.Generate(first, options: new Generation.GenerationOptions
        {
            NumBeams = beams,
            MaxNewTokens = 20,
            MinLength = 21,
        });
        if (result.Sequences[0].Length != 21) throw new InvalidOperationException($"expected 21 tokens, got {result.Sequences[0].Length}");
    }

    /// <summary>Beam-3 captions of 20 new tokens for <paramref name="images"/> images at once (image 0 repeated).</summary>
    public void CaptionBatch(int images)
    {
        using var first = Pixels[..1];
        using var batch = first.expand(images, -1, -1, -1).contiguous();
        using var result = Captioner!.Generate(batch, options: new Generation.GenerationOptions { NumBeams = 3, MaxNewTokens = 20, MinLength = 21 });
    }

    /// <summary>The captioning model's vision encoder on <paramref name="images"/> images at once.</summary>
    public void CaptionVisionBatch(int images)
    {
        using var first = Pixels[..1];
        using var batch = first.expand(images, -1, -1, -1).contiguous();
        Captioner!.EncodeImage(batch);
    }

    /// <summary>The vision encoder of the captioning model (the yardstick for the caption/vision ratio).</summary>
    public void CaptionVision()
    {
        using var first = Pixels[..1];
        Captioner!.EncodeImage(first);
    }

    /// <summary>The vision encoder: pixels -> image states.</summary>
    public void Vision() => Model.EncodeImage(Pixels);

    /// <summary>ITM head over the image-grounded text encoder, one image x one text, image states given.</summary>
    public void ItmFromEmbeds() => Model.ImageTextMatchingFromEmbeds(ImageEmbeds, ItmIds, ItmMask);

    /// <summary>ITM from pixels: vision encoder, then the image-grounded text encoder and the head.</summary>
    public void ItmEndToEnd()
    {
        using var first = Pixels[..1];
        Model.ImageTextMatching(first, ItmIds, ItmMask);
    }

    /// <summary>Unimodal text encoder + text_proj + L2 normalisation for a batch of texts.</summary>
    public void TextEmbeddings()
    {
        using var states = Model.EncodeText(TextIds, TextMask);
        Model.TextFeatures(states);
    }

    // Word-piece ids from the ordinary vocabulary; the first token plays [CLS] / [ENC].
    private static Tensor Tokens(int batch, int length, int vocab, Generator generator)
    {
        var ids = randint(1000, Math.Max(1001, vocab - 2), [batch, length], dtype: ScalarType.Int64, generator: generator);
        ids[.., 0] = 101;
        ids[.., ^1] = 102;
        return ids;
    }

    public void Dispose()
    {
        Model.Dispose();
        Captioner?.Dispose();
        foreach (var t in new[] { Pixels, ItmIds, ItmMask, ImageEmbeds, TextIds, TextMask }) t.Dispose();
    }
}
