using System.Text.Json;
using BlipSharp.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Processing;

/// <summary>
/// Hugging Face's <c>BlipImageProcessor</c>: turns images into the <c>pixel_values</c> tensor a BLIP vision
/// model takes, bit-exactly as transformers 4.40 with PIL 9.4 does:
/// <c>convert("RGB")</c> -> PIL <c>resize((W, H), resample)</c> on uint8 (aspect ratio ignored) ->
/// <c>float32(uint8 * rescale_factor)</c> with the product in float64 -> <c>(x - mean) / std</c> in float32 -> CHW.
/// An instance is immutable and safe to share between threads.
/// </summary>
/// <remarks>
/// The path, stream and byte overloads decode with <see cref="ImageDecoder"/>, which applies the EXIF
/// orientation by default (Hugging Face does not); set <see cref="ImageDecoderOptions.ApplyExifOrientation"/>
/// to false in <see cref="BlipImageProcessorOptions.Decoder"/> to feed images as stored.
/// </remarks>
public sealed class BlipImageProcessor
{
    /// <summary>The file <see cref="FromPretrained"/> reads.</summary>
    public const string ConfigFileName = "preprocessor_config.json";

    private readonly float[] _scaled; // uint8 value -> rescaled float32
    private readonly float[] _mean;
    private readonly float[] _std;

    private BlipImageProcessor(BlipImageProcessorOptions options)
    {
        Options = options;
        _scaled = new float[256];
        for (int v = 0; v < 256; v++) _scaled[v] = options.DoRescale ? (float)(v * options.RescaleFactor) : v;
        _mean = options.ImageMean.Select(m => (float)m).ToArray();
        _std = options.ImageStd.Select(s => (float)s).ToArray();
    }

    /// <summary>The settings in use.</summary>
    public BlipImageProcessorOptions Options { get; }

    /// <summary>Creates a processor; <paramref name="options"/> null gives Hugging Face's defaults (384 x 384).</summary>
    /// <param name="options">Processor settings.</param>
    public static BlipImageProcessor Create(BlipImageProcessorOptions? options = null)
    {
        options ??= new BlipImageProcessorOptions();
        ArgumentNullException.ThrowIfNull(options.Decoder, nameof(options.Decoder));
        if (options.DoResize && (options.Width < 1 || options.Height < 1))
            throw new ArgumentException($"the resize target must be at least 1x1, got {options.Width}x{options.Height}", nameof(options));
        if (!Enum.IsDefined(options.Resample))
            throw new ArgumentException($"unknown resample filter {(int)options.Resample}", nameof(options));
        if (options.ImageMean is not { Count: 3 } || options.ImageStd is not { Count: 3 })
            throw new ArgumentException("image_mean and image_std need three values (R, G, B)", nameof(options));
        if (options.ImageStd.Any(s => (float)s == 0f || !double.IsFinite(s)))
            throw new ArgumentException($"image_std must be finite and non-zero, got [{string.Join(", ", options.ImageStd)}]", nameof(options));
        return new BlipImageProcessor(options);
    }

    /// <summary>
    /// Reads <c>preprocessor_config.json</c> from a Hugging Face model folder. Fields that are absent take the
    /// Hugging Face defaults; unknown fields (such as <c>_valid_processor_keys</c>) are ignored. A Hub repo id instead
    /// of a folder is downloaded into the huggingface_hub cache (<see cref="Checkpoints.Hub.HubModel"/>).
    /// </summary>
    /// <param name="pathOrRepoId">A folder holding <c>preprocessor_config.json</c>, or a Hub repo id.</param>
    /// <param name="decoder">How the path, stream and byte overloads decode images; default when null.</param>
    /// <param name="hub">Hub settings for a repo id; null reads the environment as huggingface_hub does.</param>
    public static BlipImageProcessor FromPretrained(string pathOrRepoId, ImageDecoderOptions? decoder = null, Checkpoints.Hub.HubOptions? hub = null)
    {
        ArgumentNullException.ThrowIfNull(pathOrRepoId);
        string directory = Checkpoints.Hub.HubModel.ResolveForLoading(pathOrRepoId, Checkpoints.Hub.HubFileSet.ImageProcessor, hub);
        string path = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(path)) throw new FileNotFoundException($"no {ConfigFileName} in {directory}", path);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException($"{path}: not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            var options = ParseConfig(doc.RootElement, path) with { Decoder = decoder ?? ImageDecoderOptions.Default };
            try
            {
                return Create(options);
            }
            catch (ArgumentException e)
            {
                throw new CheckpointFormatException($"{path}: {e.Message}", e);
            }
        }
    }

    /// <summary>Resizes one image as the processor does (PIL's resize with <see cref="BlipImageProcessorOptions.Resample"/>), or returns it unchanged when <c>do_resize</c> is false.</summary>
    /// <param name="image">The image.</param>
    public RgbImage Resize(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        return Options.DoResize ? image.Resize(Options.Width, Options.Height, Options.Resample) : image;
    }

    /// <summary>Resizes one image to <paramref name="width"/> x <paramref name="height"/> with the processor's filter, exactly as PIL's <c>Image.resize</c>.</summary>
    /// <param name="image">The image.</param>
    /// <param name="width">Target width.</param>
    /// <param name="height">Target height.</param>
    public RgbImage Resize(RgbImage image, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(image);
        return image.Resize(width, height, Options.Resample);
    }

    /// <summary>Preprocesses one image into <c>pixel_values</c>, a float32 CPU tensor (1, 3, H, W).</summary>
    /// <param name="image">The image.</param>
    public Tensor Preprocess(RgbImage image) => Preprocess([image]);

    /// <summary>Preprocesses a batch into <c>pixel_values</c>, a float32 CPU tensor (B, 3, H, W).</summary>
    /// <param name="images">At least one image; with <c>do_resize</c> false they must all have the same size.</param>
    public Tensor Preprocess(IEnumerable<RgbImage> images)
    {
        ArgumentNullException.ThrowIfNull(images);
        var list = images.ToList();
        if (list.Count == 0) throw new ArgumentException("no images to preprocess", nameof(images));
        var resized = list.Select(img => Resize(img ?? throw new ArgumentException("an image is null", nameof(images)))).ToList();
        int w = resized[0].Width, h = resized[0].Height;
        if (resized.Any(r => r.Width != w || r.Height != h))
            throw new ArgumentException(
                $"images of different sizes cannot be batched without do_resize: {string.Join(", ", resized.Select(r => $"{r.Width}x{r.Height}").Distinct())}",
                nameof(images));
        long plane = (long)w * h;
        var values = new float[checked(list.Count * 3 * plane)];
        for (int b = 0; b < resized.Count; b++) Normalize(resized[b], values.AsSpan(checked((int)(b * 3 * plane)), (int)(3 * plane)));
        return torch.tensor(values, new long[] { list.Count, 3, h, w }); // (B, 3, H, W)
    }

    /// <summary>Decodes and preprocesses one image file into a float32 tensor (1, 3, H, W).</summary>
    /// <param name="path">Image file path.</param>
    public Tensor Preprocess(string path) => Preprocess([Decode(path)]);

    /// <summary>Decodes and preprocesses image files into a float32 tensor (B, 3, H, W).</summary>
    /// <param name="paths">Image file paths.</param>
    public Tensor Preprocess(IEnumerable<string> paths)
    {
        ArgumentNullException.ThrowIfNull(paths);
        return Preprocess(paths.Select(Decode).ToList());
    }

    /// <summary>Decodes and preprocesses an image read from a stream into a float32 tensor (1, 3, H, W).</summary>
    /// <param name="stream">A stream holding one encoded image.</param>
    public Tensor Preprocess(Stream stream) => Preprocess([Decode(stream)]);

    /// <summary>Decodes and preprocesses an encoded image in memory into a float32 tensor (1, 3, H, W).</summary>
    /// <param name="encoded">The encoded file content.</param>
    public Tensor Preprocess(ReadOnlyMemory<byte> encoded) => Preprocess([Decode(encoded)]);

    /// <summary>Decodes an image file with the processor's <see cref="BlipImageProcessorOptions.Decoder"/> options.</summary>
    /// <param name="path">Image file path.</param>
    public RgbImage Decode(string path) => ImageDecoder.Decode(path, Options.Decoder);

    /// <summary>Decodes an image from a stream with the processor's decoder options.</summary>
    /// <param name="stream">A stream holding one encoded image.</param>
    public RgbImage Decode(Stream stream) => ImageDecoder.Decode(stream, Options.Decoder);

    /// <summary>Decodes an encoded image in memory with the processor's decoder options.</summary>
    /// <param name="encoded">The encoded file content.</param>
    public RgbImage Decode(ReadOnlyMemory<byte> encoded) => ImageDecoder.Decode(encoded, Options.Decoder);

    /// <summary>Rescales and normalises one HWC uint8 image into CHW float32 (3 planes of H*W).</summary>
    private void Normalize(RgbImage image, Span<float> chw)
    {
        var src = image.Pixels;
        int plane = image.Width * image.Height;
        for (int c = 0; c < 3; c++)
        {
            var dst = chw.Slice(c * plane, plane);
            float mean = _mean[c], std = _std[c];
            bool normalize = Options.DoNormalize;
            for (int i = 0, s = c; i < plane; i++, s += 3)
            {
                float x = _scaled[src[s]];
                dst[i] = normalize ? (x - mean) / std : x;
            }
        }
    }

    private static BlipImageProcessorOptions ParseConfig(JsonElement root, string path)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new CheckpointFormatException($"{path}: expected a JSON object");
        var o = new BlipImageProcessorOptions();
        foreach (var p in root.EnumerateObject())
        {
            var v = p.Value;
            if (v.ValueKind == JsonValueKind.Null) continue;
            try
            {
                o = p.Name switch
                {
                    "do_resize" => o with { DoResize = v.GetBoolean() },
                    "size" => ParseSize(o, v, path),
                    "resample" => o with { Resample = (ResampleFilter)v.GetInt32() },
                    "do_rescale" => o with { DoRescale = v.GetBoolean() },
                    "rescale_factor" => o with { RescaleFactor = v.GetDouble() },
                    "do_normalize" => o with { DoNormalize = v.GetBoolean() },
                    "image_mean" => o with { ImageMean = ParseTriple(v) },
                    "image_std" => o with { ImageStd = ParseTriple(v) },
                    "do_convert_rgb" => o with { DoConvertRgb = v.GetBoolean() },
                    _ => o,
                };
            }
            catch (Exception e) when (e is InvalidOperationException or FormatException)
            {
                throw new CheckpointFormatException($"{path}: field '{p.Name}' has an unexpected value {v.GetRawText()}", e);
            }
        }
        return o;
    }

    private static BlipImageProcessorOptions ParseSize(BlipImageProcessorOptions o, JsonElement v, string path)
    {
        if (v.ValueKind == JsonValueKind.Number)
        {
            int s = v.GetInt32();
            return o with { Height = s, Width = s };
        }
        if (v.ValueKind == JsonValueKind.Object && v.TryGetProperty("height", out var h) && v.TryGetProperty("width", out var w))
            return o with { Height = h.GetInt32(), Width = w.GetInt32() };
        throw new CheckpointFormatException($"{path}: 'size' must be an integer or {{\"height\", \"width\"}} for BlipImageProcessor, got {v.GetRawText()}");
    }

    private static IReadOnlyList<double> ParseTriple(JsonElement v)
    {
        if (v.ValueKind == JsonValueKind.Number) return [v.GetDouble(), v.GetDouble(), v.GetDouble()];
        return v.EnumerateArray().Select(e => e.GetDouble()).ToArray();
    }
}
