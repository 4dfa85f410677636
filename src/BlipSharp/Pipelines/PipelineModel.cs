using BlipSharp.Checkpoints;
using BlipSharp.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Pipelines;

/// <summary>What the pipelines share: the processor, the device, batching of images into pixel tensors.</summary>
internal static class PipelineModel
{
    /// <summary>The device of a module's first parameter (CPU for a module without parameters).</summary>
    public static Device DeviceOf(nn.Module module)
    {
        foreach (var p in module.parameters()) return p.device;
        return CPU;
    }

    /// <summary>Decodes and preprocesses <paramref name="images"/> into (B, 3, S, S) float32 pixels on <paramref name="device"/>.</summary>
    public static Tensor Pixels(BlipProcessor processor, IReadOnlyList<ImageSource> images, Device device)
    {
        var decoded = images.Select(i => i.Decode(processor.ImageProcessor)).ToList();
        return Pixels(processor, decoded, device);
    }

    /// <summary>Preprocesses decoded images into (B, 3, S, S) float32 pixels on <paramref name="device"/>.</summary>
    public static Tensor Pixels(BlipProcessor processor, IReadOnlyList<RgbImage> images, Device device)
    {
        var pixels = processor.ImageProcessor.Preprocess(images);
        if (pixels.device == device) return pixels;
        using (pixels) return pixels.to(device);
    }

    /// <summary>Chunks of at most <paramref name="size"/> consecutive indices.</summary>
    public static IEnumerable<(int Start, int Count)> Batches(int total, int size)
    {
        if (size < 1) throw new ArgumentOutOfRangeException(nameof(size), size, "batch size must be at least 1.");
        for (int start = 0; start < total; start += size) yield return (start, Math.Min(size, total - start));
    }

    /// <summary>A row of a (rows, cols) float tensor as an array.</summary>
    public static float[][] Rows(Tensor matrix)
    {
        using var cpu = matrix.to(ScalarType.Float32, CPU).contiguous();
        var flat = cpu.data<float>().ToArray();
        int rows = (int)cpu.shape[0], cols = (int)cpu.shape[1];
        return Enumerable.Range(0, rows).Select(r => flat.AsSpan(r * cols, cols).ToArray()).ToArray();
    }

    /// <summary>A sequence row without the trailing padding that batching added (kept: the end token).</summary>
    public static long[] TrimPadding(IReadOnlyList<long> row, int promptLength, long eos, long pad)
    {
        int end = promptLength;
        while (end < row.Count && row[end] != eos && row[end] != pad) end++;
        if (end < row.Count && row[end] == eos) end++;
        return row.Take(end).ToArray();
    }

    /// <summary>
    /// The model folder for a local path or a Hugging Face hub id: an id is downloaded once (config, weights,
    /// tokenizer and preprocessor files) into the standard cache, or read from it offline.
    /// </summary>
    public static string Resolve(string pathOrRepoId, BlipLoadOptions? options)
    {
        ArgumentException.ThrowIfNullOrEmpty(pathOrRepoId);
        return Checkpoints.Hub.HubModel.ResolveForLoading(pathOrRepoId, Checkpoints.Hub.HubFileSet.All, options?.Hub);
    }
}
