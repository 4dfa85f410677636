using BlipSharp.Configuration;
using BlipSharp.Training.Pretraining;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Pretraining;

/// <summary>A tiny random pretraining model and batches for shape, gradient-flow and state tests.</summary>
internal static class TinyPretraining
{
    public const int Vocab = 40;

    public static BlipPretrainingConfig Config(int queueSize = 8, bool idQueue = false) => new BlipPretrainingConfig
    {
        VisionConfig = BlipPretrainingConfig.VisionTransformer(imageSize: 32, patchSize: 16, width: 16, depth: 2, heads: 2, mlpRatio: 2.0, layerNormEps: 1e-6),
        TextConfig = new BlipTextConfig
        {
            VocabSize = Vocab, HiddenSize = 16, NumHiddenLayers = 2, NumAttentionHeads = 2, IntermediateSize = 24,
            MaxPositionEmbeddings = 32, BosTokenId = Vocab - 2, LabelSmoothing = 0.1,
        },
        EncTokenId = Vocab - 1,
        EmbedDim = 8,
        QueueSize = queueSize,
        IdQueue = idQueue,
    }.Normalized();

    public static BlipPretrainingModel Model(int queueSize = 8, bool idQueue = false, long seed = 7)
    {
        manual_seed(seed);
        return new BlipPretrainingModel(Config(queueSize, idQueue));
    }

    /// <summary>B images and captions: [CLS]=1 first, [SEP]=2 last, then [PAD]=0; row b has 3 + b tokens.</summary>
    public static PretrainingBatch Batch(int b = 4, int length = 8, long seed = 11, bool withIds = false)
    {
        var generator = new Generator((ulong)seed);
        var pixels = randn(new long[] { b, 3, 32, 32 }, generator: generator);
        var ids = zeros(b, length, dtype: ScalarType.Int64);
        var mask = zeros(b, length, dtype: ScalarType.Int64);
        for (int row = 0; row < b; row++)
        {
            int n = Math.Min(length, 3 + row);
            ids[row, 0] = 1;
            for (int t = 1; t < n - 1; t++) ids[row, t] = 3 + (row * 5 + t * 3) % (Vocab - 5);
            ids[row, n - 1] = 2;
            mask[row, TensorIndex.Slice(0, n)] = 1;
        }
        Tensor? imageIds = withIds ? arange(b, dtype: ScalarType.Int64) : null;
        return new PretrainingBatch(pixels, ids, mask, imageIds);
    }
}
