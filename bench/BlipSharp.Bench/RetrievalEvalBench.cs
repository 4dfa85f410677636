using System.Diagnostics;
using System.Globalization;
using BlipSharp.Configuration;
using BlipSharp.Training.Pretraining;
using BlipSharp.Training.Retrieval;
using static TorchSharp.torch;

namespace BlipSharp.Bench;

/// <summary>
/// Peak memory and wall time of <see cref="RetrievalEvaluator"/> at COCO's test counts (5,000 images x 25,000 texts by
/// default) with the tiny model of <c>configs/pretrain-tiny.json</c> (ViT 64 wide x 4 blocks at 32 px, patch 4; text
/// 64 x 2; E 64), built as BLIP's retrieval model (no decoder). Pixels are random and made on the fly, seeded by the
/// batch's first image, so the evaluator's two passes see the same images and no image exists on disk; texts are
/// random token ids of random length. The point is the memory of the evaluator's layout (features and top-k
/// candidates only) against BLIP's dense one; the tiny model keeps the model and its activations out of the way.
/// </summary>
internal static class RetrievalEvalBench
{
    private const int ClsId = 2, SepId = 3, PadId = 0, FirstWordId = 7;

    /// <summary>The model of configs/pretrain-tiny.json, as BLIP_Retrieval builds it (no text decoder, an id queue).</summary>
    private static BlipPretrainingConfig TinyConfig() => new BlipPretrainingConfig
    {
        VisionConfig = new BlipVisionConfig
        {
            HiddenSize = 64, IntermediateSize = 256, NumHiddenLayers = 4, NumAttentionHeads = 4,
            ImageSize = 32, PatchSize = 4, HiddenAct = "gelu", LayerNormEps = 1e-6,
        },
        TextConfig = new BlipTextConfig
        {
            VocabSize = 256, HiddenSize = 64, IntermediateSize = 256, NumHiddenLayers = 2, NumAttentionHeads = 4,
            MaxPositionEmbeddings = 64, HiddenAct = "gelu", LayerNormEps = 1e-12, HiddenDropoutProb = 0.0,
            AttentionProbsDropoutProb = 0.0, InitializerRange = 0.07, PadTokenId = PadId, SepTokenId = SepId,
            LabelSmoothing = 0.1, BosTokenId = 5,
        },
        EmbedDim = 64, QueueSize = 256, Momentum = 0.995, InitialTemperature = 0.07, EncTokenId = 6,
    }.ForRetrieval().Normalized();

    /// <summary>Runs one evaluation per k (each after resetting the peak) and returns the markdown section.</summary>
    public static string Run(BenchOptions options)
    {
        int images = options.RetrievalImages, texts = options.RetrievalTexts, length = options.TextLength;
        var config = TinyConfig();
        if (length > config.TextConfig.MaxPositionEmbeddings)
            throw new ArgumentException($"--text-len {length} exceeds the tiny model's max_position_embeddings ({config.TextConfig.MaxPositionEmbeddings}).");
        var memory = new MarkdownTable("point", "VmRSS MiB", "VmHWM MiB (peak since previous row)");
        void Mark(string point)
        {
            memory.Add(point, Fmt.MiB(NativeRuntime.RssMiB), Fmt.MiB(NativeRuntime.PeakRssMiB));
            NativeRuntime.ResetPeak();
        }
        Mark("start (torch loaded)");

        manual_seed(options.Seed);
        using var model = new BlipPretrainingModel(config);
        var (ids, mask) = RandomTexts(texts, length, config.TextConfig.VocabSize, options.Seed);
        using var _ids = ids;
        using var _mask = mask;
        var v = config.VisionConfig;
        Tensor Pixels(int start, int count)
        {
            using var generator = new TorchSharp.torch.Generator((ulong)(options.Seed * 1_000_003L + start));
            return randn([count, v.NumChannels, v.ImageSize, v.ImageSize], generator: generator); // (count, 3, S, S)
        }
        Mark("tiny model built, token ids made");

        var table = new MarkdownTable("k", "ITM pairs", "RSS before MiB", "peak RSS MiB (VmHWM)", "peak - before MiB",
            "wall time", "pairs/s", "both dense score matrices, measured MiB");
        foreach (int k in options.RetrievalK)
        {
            var evaluator = new RetrievalEvaluator(model, new RetrievalEvaluatorOptions { KTest = k, ItmBatchSize = options.ItmBatch });
            GC.Collect();
            double before = NativeRuntime.RssMiB;
            NativeRuntime.ResetPeak();
            Console.Error.WriteLine($"retrieval-eval: {images} images x {texts} texts, k {k}...");
            var clock = Stopwatch.StartNew();
            double peak;
            using (var result = evaluator.Evaluate(images, Pixels, ids, mask))
            {
                clock.Stop();
                peak = NativeRuntime.PeakRssMiB;
                Mark($"after k {k} (result held)");
                // What BLIP returns: both (N_img, N_txt) and (N_txt, N_img) float32 score matrices, -100 off the top-k.
                double denseBefore = NativeRuntime.RssMiB;
                using var i2t = result.DenseImageToText();
                using var t2i = result.DenseTextToImage();
                double dense = Math.Max(0, NativeRuntime.PeakRssMiB - denseBefore);
                Mark($"after k {k}, dense matrices made");
                long pairs = (long)Math.Min(k, texts) * images + (long)Math.Min(k, images) * texts;
                table.Add(k.ToString(), N(pairs), Fmt.MiB(before), Fmt.MiB(peak), Fmt.MiB(peak - before),
                    Fmt.Sec(clock.Elapsed.TotalSeconds), Fmt.Num(pairs / clock.Elapsed.TotalSeconds, "F0"), Fmt.MiB(dense));
            }
            Mark($"after k {k}, result freed");
        }

        double mib = 1024 * 1024;
        double denseMatrix = (double)images * texts * 4 / mib;                                        // one float32 (N_img, N_txt) matrix
        long tokens = v.GridSize * v.GridSize + 1;
        double states = (double)images * tokens * v.HiddenSize * 4 / mib;                            // BLIP's image_feats
        double baseStates = images * 577.0 * 768 * 4 / mib;                                          // ViT-B/16 at 384 px
        return $"""
            ### Retrieval evaluation memory at COCO's counts ({N(images)} images x {N(texts)} texts, tiny model)

            - model: configs/pretrain-tiny.json's, as BLIP_Retrieval (ViT {v.HiddenSize}x{v.NumHiddenLayers} at {v.ImageSize} px, patch {v.PatchSize}, {tokens} tokens; text {config.TextConfig.HiddenSize}x{config.TextConfig.NumHiddenLayers}; E {config.EmbedDim}), random weights (seed {options.Seed})
            - inputs: random pixels made per batch (seeded by the batch's first image), random token ids of length 8-{length} padded to {length}
            - evaluator: image batch 64, text batch 256, ITM batch {options.ItmBatch}; float32; {TorchSharp.torch.get_num_threads()} torch threads
            - peak = VmHWM, reset (/proc/self/clear_refs) just before each evaluation; "before" includes torch, the model and the token ids

            {table}
            For comparison, BLIP's dense layout at these counts: `sims_matrix` plus `score_matrix_i2t` and `score_matrix_t2i`, each
            {N(images)} x {N(texts)} float32 = {Fmt.MiB(denseMatrix)} MiB ({Fmt.MiB(3 * denseMatrix)} MiB for the three, {Fmt.MiB(2 * denseMatrix)} MiB for the two
            score matrices alone), plus every image's states (`image_feats`, {N(images)} x {tokens} x {v.HiddenSize} float32 = {Fmt.MiB(states)} MiB for this model,
            {Fmt.MiB(baseStates)} MiB for ViT-B/16 at 384 px).

            {memory}
            """;
    }

    private static string N(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    /// <summary>(N, T) int64 ids ([CLS], words, [SEP], padding) and their (N, T) mask, lengths uniform in 8..T.</summary>
    private static (Tensor Ids, Tensor Mask) RandomTexts(int count, int length, int vocab, long seed)
    {
        var random = new Random((int)seed + 17);
        var ids = new long[(long)count * length];
        var mask = new long[(long)count * length];
        for (int i = 0; i < count; i++)
        {
            int used = random.Next(Math.Min(8, length), length + 1);
            long row = (long)i * length;
            ids[row] = ClsId;
            for (int t = 1; t < used - 1; t++) ids[row + t] = random.Next(FirstWordId, vocab);
            ids[row + used - 1] = SepId;
            for (int t = 0; t < used; t++) mask[row + t] = 1;
        }
        return (tensor(ids, [count, length], dtype: ScalarType.Int64), tensor(mask, [count, length], dtype: ScalarType.Int64));
    }
}
