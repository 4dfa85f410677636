using static TorchSharp.torch;

namespace BlipSharp.Processing;

/// <summary>Model inputs produced by <see cref="BlipProcessor"/>; each part is null when its input was not given.</summary>
/// <param name="PixelValues">(B, 3, S, S) float32 normalised pixels.</param>
/// <param name="InputIds">(B, T) int64 token ids.</param>
/// <param name="AttentionMask">(B, T) int64, 1 for tokens and 0 for padding.</param>
public sealed record BlipInputs(Tensor? PixelValues, Tensor? InputIds, Tensor? AttentionMask) : IDisposable
{
    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        PixelValues?.Dispose();
        InputIds?.Dispose();
        AttentionMask?.Dispose();
    }
}

/// <summary>
/// The tokenizer and the image processor of one checkpoint together, as Hugging Face's <c>BlipProcessor</c>:
/// images become <c>pixel_values</c>, texts become <c>input_ids</c> and <c>attention_mask</c>.
/// </summary>
public sealed class BlipProcessor
{
    /// <summary>The text side.</summary>
    public BlipTokenizer Tokenizer { get; }

    /// <summary>The image side.</summary>
    public BlipImageProcessor ImageProcessor { get; }

    private BlipProcessor(BlipTokenizer tokenizer, BlipImageProcessor imageProcessor)
    {
        Tokenizer = tokenizer;
        ImageProcessor = imageProcessor;
    }

    /// <summary>Combines a tokenizer and an image processor.</summary>
    public static BlipProcessor Create(BlipTokenizer tokenizer, BlipImageProcessor imageProcessor)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(imageProcessor);
        return new BlipProcessor(tokenizer, imageProcessor);
    }

    /// <summary>
    /// Reads the tokenizer files and <c>preprocessor_config.json</c> of a checkpoint folder, or of a Hub repo id
    /// downloaded into the huggingface_hub cache (<see cref="Checkpoints.Hub.HubModel"/>).
    /// </summary>
    /// <param name="pathOrRepoId">A checkpoint folder, or a repo id such as <c>Salesforce/blip-image-captioning-base</c>.</param>
    /// <param name="hub">Hub settings for a repo id; null reads the environment as huggingface_hub does.</param>
    public static BlipProcessor FromPretrained(string pathOrRepoId, Checkpoints.Hub.HubOptions? hub = null)
    {
        string directory = Checkpoints.Hub.HubModel.ResolveForLoading(pathOrRepoId, Checkpoints.Hub.HubFileSet.Processor, hub);
        return new(BlipTokenizer.FromPretrained(directory), BlipImageProcessor.FromPretrained(directory));
    }

    /// <summary>
    /// Prepares images and/or texts. Texts are padded to the longest in the batch unless
    /// <paramref name="textOptions"/> says otherwise, as transformers' <c>processor(..., padding=True)</c>.
    /// </summary>
    public BlipInputs Process(IReadOnlyList<RgbImage>? images = null, IReadOnlyList<string>? texts = null, TokenizerEncodeOptions? textOptions = null)
    {
        if (images is null && texts is null) throw new ArgumentException("give images, texts or both.");
        Tensor? pixels = images is { Count: > 0 } ? ImageProcessor.Preprocess(images) : null;
        try
        {
            if (texts is null) return new BlipInputs(pixels, null, null);
            var encoded = Tokenizer.EncodeToTensors(texts, textOptions ?? new TokenizerEncodeOptions { Padding = PaddingStrategy.Longest });
            return new BlipInputs(pixels, encoded.InputIds, encoded.AttentionMask);
        }
        catch
        {
            pixels?.Dispose();
            throw;
        }
    }

    /// <summary>Decodes image files and prepares them with the texts.</summary>
    public BlipInputs Process(IReadOnlyList<string> imagePaths, IReadOnlyList<string>? texts, TokenizerEncodeOptions? textOptions = null) =>
        Process(imagePaths.Select(ImageProcessor.Decode).ToList(), texts, textOptions);
}
