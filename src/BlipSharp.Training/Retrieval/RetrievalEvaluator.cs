using BlipSharp.Processing;
using BlipSharp.Training.Pretraining;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Retrieval;

/// <summary>Options of <see cref="RetrievalEvaluator"/>; the defaults are BLIP's COCO settings.</summary>
public sealed record RetrievalEvaluatorOptions
{
    /// <summary>Candidates reranked with ITM per query (BLIP: 256 for COCO, 128 for Flickr30K); capped at the number of candidates.</summary>
    public int KTest { get; init; } = 256;

    /// <summary>Images per ViT forward (BLIP's test loader batch; each image batch is encoded twice, see <see cref="RetrievalEvaluator"/>).</summary>
    public int ImageBatchSize { get; init; } = 64;

    /// <summary>Texts per unimodal text-encoder forward (BLIP: 256).</summary>
    public int TextBatchSize { get; init; } = 256;

    /// <summary>(text, image) pairs per image-grounded ITM forward (BLIP runs k_test pairs per query).</summary>
    public int ItmBatchSize { get; init; } = 256;

    /// <summary>Token length texts are padded and truncated to (BLIP: <c>padding='max_length', truncation=True, max_length=35</c>).</summary>
    public int MaxTextLength { get; init; } = 35;

    /// <summary>Throws <see cref="ArgumentException"/> naming the field when a value is not positive.</summary>
    public void Validate()
    {
        if (KTest <= 0) throw new ArgumentException($"k_test must be positive, got {KTest}.");
        if (ImageBatchSize <= 0) throw new ArgumentException($"image batch size must be positive, got {ImageBatchSize}.");
        if (TextBatchSize <= 0) throw new ArgumentException($"text batch size must be positive, got {TextBatchSize}.");
        if (ItmBatchSize <= 0) throw new ArgumentException($"ITM batch size must be positive, got {ItmBatchSize}.");
        if (MaxTextLength < 2) throw new ArgumentException($"max text length must be at least 2 ([CLS] and [SEP]), got {MaxTextLength}.");
    }
}

/// <summary>
/// salesforce/BLIP's retrieval evaluation (<c>train_retrieval.evaluation</c>) on a <see cref="BlipPretrainingModel"/>:
/// unimodal text features ([CLS] first) and image features; ITC similarities <c>image_feat @ text_feat.T</c> (no
/// temperature); for every image its top-k texts and for every text its top-k images by similarity; each of those
/// pairs scored by the ITM head's "match" logit of the image-grounded encoder ([ENC] first, cross-attention to that
/// image's states) plus its similarity. Every other pair scores -100 in BLIP's dense matrices
/// (<see cref="RetrievalResult.DenseImageToText"/>, <see cref="RetrievalResult.DenseTextToImage"/>).
/// </summary>
/// <remarks>
/// <para>Memory. BLIP keeps the image states of every image (<c>image_feats</c>) and the full similarity matrix.
/// For COCO's 5K test split at BLIP's 384 px with ViT-B that is 5,000 x 577 x 768 fp32 = 8.9 GB of states plus
/// 5,000 x 25,000 fp32 = 0.5 GB of similarities. This evaluator keeps neither: pass 1 computes the (N, E)
/// features only; the top-k candidates are taken chunk by chunk of query rows (<see cref="RetrievalEvaluatorOptions.ImageBatchSize"/>
/// images x all texts, or <see cref="RetrievalEvaluatorOptions.TextBatchSize"/> texts x all images); pass 2 encodes
/// each image batch again and scores every candidate pair that involves one of its images (both directions), in ITM
/// batches. What stays resident for 5,000 images x 25,000 texts, k 256, E 256: features 30.7 MB, token ids and masks
/// 2 x 25,000 x 35 int64 = 14 MB, candidates (index int64, similarity, ITM score, score fp32) 30,000 x 256 x 20 B =
/// 154 MB, the per-image candidate lists 61 MB; plus the working set of one batch: one image batch's states
/// (64 x 577 x 768 fp32 = 113 MB), one similarity chunk (256 x 5,000 or 64 x 25,000 fp32 = 6.4 MB), and one ITM
/// batch (256 pairs: image states 454 MB, text activations of a BERT-base pass a few hundred MB). Roughly 1.2 GB
/// besides the model, against more than 9.4 GB for BLIP's layout; the price is one more ViT pass over the images
/// (5,000 forwards against BLIP's 7.68 million ITM pairs). The dense matrices are built only on request (0.5 GB each).
/// Measured at COCO's counts with the fixtures' tiny model (ViT and BERT 32 wide, E 16, 64 px; random pixels and
/// ids; 5,000 images x 25,000 texts, k 4, ITM batch 1,024, 2 shared CPU cores): process RSS 254 MB before,
/// peak 853 MB, 74 s (120,000 ITM pairs). With the tiny model the pairs run at about 2,600 per second here, so
/// k 256 (7.68 million pairs) was not run; the k-dependent storage above is computed, not measured. The benchmark
/// (<c>bench/BlipSharp.Bench --sections retrieval-eval</c>, bench/RESULTS.md) measures it with configs/pretrain-tiny.json's
/// model (64 wide, 32 px), ITM batch 256, k 4: peak RSS 767 MiB, 575 MiB above the model and inputs, against 954 MiB for
/// the two dense score matrices alone.</para>
/// <para>The image source is called twice per image batch and must return the same pixels both times (BLIP's test
/// transform is deterministic). Tensors it creates during the call are disposed by the evaluator.</para>
/// </remarks>
public sealed class RetrievalEvaluator
{
    /// <summary>Creates the evaluator.</summary>
    public RetrievalEvaluator(BlipPretrainingModel model, RetrievalEvaluatorOptions? options = null)
    {
        Model = model;
        Options = options ?? new RetrievalEvaluatorOptions();
        Options.Validate();
    }

    /// <summary>The model evaluated (set to eval mode during <see cref="Evaluate"/>, then restored).</summary>
    public BlipPretrainingModel Model { get; }

    /// <summary>The options.</summary>
    public RetrievalEvaluatorOptions Options { get; }

    /// <summary>Tokenises texts as BLIP's evaluation does: <c>padding='max_length', truncation=True, max_length</c> (35), [CLS] first.</summary>
    public TokenizedTensors Tokenize(BlipTokenizer tokenizer, IReadOnlyList<string> texts) =>
        tokenizer.EncodeToTensors(texts, new TokenizerEncodeOptions { Padding = PaddingStrategy.MaxLength, Truncation = true, MaxLength = Options.MaxTextLength });

    /// <summary>Normalised unimodal text features (N, E) of token ids (N, T), in batches of <see cref="RetrievalEvaluatorOptions.TextBatchSize"/>.</summary>
    public Tensor TextFeatures(Tensor inputIds, Tensor attentionMask) => TextFeatures(inputIds, attentionMask, null);

    private Tensor TextFeatures(Tensor inputIds, Tensor attentionMask, IProgress<RetrievalProgress>? progress)
    {
        using var _ = no_grad();
        long n = inputIds.shape[0];
        var parts = new List<Tensor>();
        try
        {
            for (long start = 0; start < n; start += Options.TextBatchSize)
            {
                using var scope = NewDisposeScope();
                long count = Math.Min(Options.TextBatchSize, n - start);
                var states = Model.EncodeText(inputIds.narrow(0, start, count), attentionMask.narrow(0, start, count)); // (b, T, H)
                parts.Add(Model.TextFeatures(states).MoveToOuterDisposeScope());                                         // (b, E)
                progress?.Report(new RetrievalProgress(RetrievalStage.TextFeatures, (int)(start + count), (int)n));
            }
            return cat(parts, 0);                                                                                        // (N, E)
        }
        finally
        {
            foreach (var p in parts) p.Dispose();
        }
    }

    /// <summary>Image states (B, 1+N, Dv) and normalised image features (B, E) of one pixel batch.</summary>
    public (Tensor Embeds, Tensor Features) EncodeImages(Tensor pixelValues)
    {
        using var _ = no_grad();
        var embeds = Model.EncodeImage(pixelValues);                                    // (B, 1+N, Dv)
        return (embeds, Model.ImageFeatures(embeds));                                   // (B, E)
    }

    /// <summary>The ITM input ids: <paramref name="inputIds"/> with column 0 set to [ENC].</summary>
    public Tensor MatchingInputIds(Tensor inputIds) => PretrainingTask.ReplaceFirstToken(inputIds, Model.Config.EncTokenId);

    /// <summary>
    /// Runs the evaluation. <paramref name="pixelBatch"/>(start, count) returns the (count, 3, S, S) pixels of images
    /// start .. start+count-1; tensors created inside the call belong to the evaluator's dispose scope.
    /// </summary>
    /// <param name="imageCount">Number of images.</param>
    /// <param name="pixelBatch">The image source, called twice per image batch.</param>
    /// <param name="inputIds">(N_txt, T) int64 token ids, [CLS] first (see <see cref="Tokenize"/>).</param>
    /// <param name="attentionMask">(N_txt, T) attention mask.</param>
    /// <param name="progress">Told after every text, image and ITM batch (optional).</param>
    public RetrievalResult Evaluate(int imageCount, Func<int, int, Tensor> pixelBatch, Tensor inputIds, Tensor attentionMask,
        IProgress<RetrievalProgress>? progress = null)
    {
        if (imageCount <= 0) throw new ArgumentOutOfRangeException(nameof(imageCount), imageCount, "at least one image is needed.");
        ArgumentNullException.ThrowIfNull(pixelBatch);
        return EvaluateItems(imageCount, (start, count) =>
        {
            var (embeds, features) = EncodeImages(Pixels(pixelBatch, start, count));
            return new EncodedItems(embeds, null, features);
        }, inputIds, attentionMask, progress);
    }

    /// <summary>
    /// The evaluation over any kind of item (images, videos): <paramref name="encode"/>(start, count) gives the ITM
    /// states and ITC features of items start .. start+count-1 (count at most <see cref="RetrievalEvaluatorOptions.ImageBatchSize"/>);
    /// it is called twice per batch (features, then ITM) and must give the same values both times.
    /// </summary>
    internal RetrievalResult EvaluateItems(int itemCount, Func<int, int, EncodedItems> encode, Tensor inputIds, Tensor attentionMask,
        IProgress<RetrievalProgress>? progress)
    {
        int textCount = (int)inputIds.shape[0];
        if (textCount <= 0 || attentionMask.shape[0] != textCount)
            throw new ArgumentException($"{textCount} texts with {attentionMask.shape[0]} attention-mask rows.", nameof(attentionMask));
        bool wasTraining = Model.training;
        Model.eval();
        try
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var ids = inputIds.to_type(ScalarType.Int64);
            var mask = attentionMask.to_type(ScalarType.Int64);
            var textFeatures = TextFeatures(ids, mask, progress);                       // (N_txt, E)
            var itemFeatures = ItemFeaturesOf(itemCount, encode, progress);             // (N_img, E)
            int kI2T = Math.Min(Options.KTest, textCount), kT2I = Math.Min(Options.KTest, itemCount);
            var (i2tIdx, i2tSim) = TopK(itemFeatures, textFeatures, kI2T, Options.ImageBatchSize, transpose: false);
            var (t2iIdx, t2iSim) = TopK(itemFeatures, textFeatures, kT2I, Options.TextBatchSize, transpose: true);
            var encoderIds = MatchingInputIds(ids);
            var (i2tItm, t2iItm) = MatchScores(itemCount, encode, encoderIds, mask, i2tIdx, t2iIdx, progress);
            var result = new RetrievalResult(
                new RetrievalCandidates(i2tIdx, i2tSim, i2tItm, i2tItm + i2tSim, textCount),
                new RetrievalCandidates(t2iIdx, t2iSim, t2iItm, t2iItm + t2iSim, itemCount),
                itemFeatures, textFeatures);
            result.MoveToOuterDisposeScope();
            return result;
        }
        finally
        {
            Model.train(wasTraining);
        }
    }

    private Tensor ItemFeaturesOf(int itemCount, Func<int, int, EncodedItems> encode, IProgress<RetrievalProgress>? progress)
    {
        var parts = new List<Tensor>();
        try
        {
            for (int start = 0; start < itemCount; start += Options.ImageBatchSize)
            {
                using var scope = NewDisposeScope();
                int count = Math.Min(Options.ImageBatchSize, itemCount - start);
                parts.Add(encode(start, count).Features.MoveToOuterDisposeScope());
                progress?.Report(new RetrievalProgress(RetrievalStage.ItemFeatures, start + count, itemCount));
            }
            return cat(parts, 0);
        }
        finally
        {
            foreach (var p in parts) p.Dispose();
        }
    }

    private static Tensor Pixels(Func<int, int, Tensor> pixelBatch, int start, int count)
    {
        var pixels = pixelBatch(start, count);
        if (pixels.dim() != 4 || pixels.shape[0] != count)
            throw new InvalidOperationException($"the image source returned [{string.Join(", ", pixels.shape)}] for images {start}..{start + count - 1}; expected ({count}, 3, S, S).");
        return pixels;
    }

    /// <summary>
    /// Per query row the top-k candidates of <c>image_feat @ text_feat.T</c> (rows = images) or of its transpose
    /// (rows = texts), computed chunk by chunk of rows so the full matrix never exists.
    /// </summary>
    private static (Tensor Indices, Tensor Similarities) TopK(Tensor imageFeatures, Tensor textFeatures, int k, int chunk, bool transpose)
    {
        long rows = transpose ? textFeatures.shape[0] : imageFeatures.shape[0];
        var indices = new List<Tensor>();
        var sims = new List<Tensor>();
        try
        {
            for (long start = 0; start < rows; start += chunk)
            {
                using var scope = NewDisposeScope();
                long count = Math.Min(chunk, rows - start);
                var block = transpose
                    ? imageFeatures.matmul(textFeatures.narrow(0, start, count).t()).t()  // (c, N_img), as BLIP's sims_matrix.t()
                    : imageFeatures.narrow(0, start, count).matmul(textFeatures.t());     // (c, N_txt)
                var (values, idx) = block.topk(k, dim: 1);                              // (c, k)
                sims.Add(values.contiguous().MoveToOuterDisposeScope());
                indices.Add(idx.MoveToOuterDisposeScope());
            }
            return (cat(indices, 0), cat(sims, 0));
        }
        finally
        {
            foreach (var t in indices.Concat(sims)) t.Dispose();
        }
    }

    /// <summary>
    /// The ITM "match" logit of every candidate pair: per item batch, its states are computed once and every pair
    /// that involves one of its items (its own top-k texts, and the texts that have it among their top-k items)
    /// is scored in batches of <see cref="RetrievalEvaluatorOptions.ItmBatchSize"/>.
    /// </summary>
    private (Tensor ImageToText, Tensor TextToImage) MatchScores(int imageCount, Func<int, int, EncodedItems> encode, Tensor encoderIds, Tensor mask,
        Tensor i2tIdx, Tensor t2iIdx, IProgress<RetrievalProgress>? progress)
    {
        int kI2T = (int)i2tIdx.shape[1], kT2I = (int)t2iIdx.shape[1];
        long[] i2t = i2tIdx.cpu().data<long>().ToArray();                               // (N_img * k) text per slot
        long[] t2i = t2iIdx.cpu().data<long>().ToArray();                               // (N_txt * k) image per slot
        var i2tScores = new float[i2t.Length];
        var t2iScores = new float[t2i.Length];
        // Text-to-image slots grouped by image batch.
        int batches = (imageCount + Options.ImageBatchSize - 1) / Options.ImageBatchSize;
        var t2iByBatch = new List<int>[batches];
        for (int b = 0; b < batches; b++) t2iByBatch[b] = [];
        for (int slot = 0; slot < t2i.Length; slot++) t2iByBatch[(int)(t2i[slot] / Options.ImageBatchSize)].Add(slot);

        for (int b = 0; b < batches; b++)
        {
            using var scope = NewDisposeScope();
            int start = b * Options.ImageBatchSize, count = Math.Min(Options.ImageBatchSize, imageCount - start);
            var items = encode(start, count);
            var embeds = items.States;                                                  // (c, L, Dv)
            // Pairs of this batch: (local image, text, destination); i2t slots first, then t2i slots.
            var pairs = new List<(long Image, long Text, bool ImageToText, int Slot)>(count * kI2T + t2iByBatch[b].Count);
            for (int slot = start * kI2T; slot < (start + count) * kI2T; slot++) pairs.Add((slot / kI2T - start, i2t[slot], true, slot));
            foreach (int slot in t2iByBatch[b]) pairs.Add((t2i[slot] - start, slot / kT2I, false, slot));
            for (int p = 0; p < pairs.Count; p += Options.ItmBatchSize)
            {
                using var inner = NewDisposeScope();
                var chunk = pairs.GetRange(p, Math.Min(Options.ItmBatchSize, pairs.Count - p));
                var imageIndex = tensor(chunk.Select(c => c.Image).ToArray(), dtype: ScalarType.Int64, device: embeds.device);
                var textIndex = tensor(chunk.Select(c => c.Text).ToArray(), dtype: ScalarType.Int64, device: encoderIds.device);
                using var output = Model.text_encoder.Forward(encoderIds.index_select(0, textIndex), mask.index_select(0, textIndex),
                    embeds.index_select(0, imageIndex), items.StatesMask?.index_select(0, imageIndex)); // image-grounded, as EncodeMultimodal
                var states = output.LastHiddenState;                                    // (P, T, H)
                var logits = Model.MatchingLogits(states);                              // (P, 2)
                var match = logits.select(1, 1).to_type(ScalarType.Float32).cpu().data<float>().ToArray(); // (P)
                for (int i = 0; i < chunk.Count; i++)
                {
                    if (chunk[i].ImageToText) i2tScores[chunk[i].Slot] = match[i];
                    else t2iScores[chunk[i].Slot] = match[i];
                }
            }
            progress?.Report(new RetrievalProgress(RetrievalStage.Matching, start + count, imageCount));
        }
        var device = i2tIdx.device;
        var dtype = Model.temp.dtype;
        return (tensor(i2tScores, dtype: ScalarType.Float32).view(i2tIdx.shape).to(dtype, device),   // (N_img, k)
                tensor(t2iScores, dtype: ScalarType.Float32).view(t2iIdx.shape).to(dtype, device));  // (N_txt, k)
    }
}

/// <summary>A stage of a retrieval evaluation (see <see cref="RetrievalProgress"/>).</summary>
public enum RetrievalStage
{
    /// <summary>Unimodal text features; counts texts.</summary>
    TextFeatures,

    /// <summary>ITC features of the images or videos (first pass); counts images or videos.</summary>
    ItemFeatures,

    /// <summary>ITM scores of the candidate pairs, image or video batch by batch (second pass); counts images or videos.</summary>
    Matching,
}

/// <summary>How far a retrieval evaluation is: <paramref name="Done"/> of <paramref name="Total"/> in <paramref name="Stage"/>.</summary>
/// <param name="Stage">The stage.</param>
/// <param name="Done">Texts, images or videos finished in this stage.</param>
/// <param name="Total">Texts, images or videos of this stage.</param>
public readonly record struct RetrievalProgress(RetrievalStage Stage, int Done, int Total);

/// <summary>One batch of retrieval items (images or videos) encoded for the evaluation.</summary>
/// <param name="States">(B, L, D) the states ITM cross-attends to.</param>
/// <param name="StatesMask">(B, L) 1 for states, 0 for padding; null for all ones (BLIP's <c>encoder_att</c>).</param>
/// <param name="Features">(B, E) normalised ITC features.</param>
internal readonly record struct EncodedItems(Tensor States, Tensor? StatesMask, Tensor Features);

/// <summary>The top-k candidates of every query in one direction, with their scores.</summary>
/// <param name="Indices">(Q, k) int64 candidate indices (texts for image queries, images for text queries), by descending similarity.</param>
/// <param name="Similarities">(Q, k) ITC similarities (cosines, no temperature).</param>
/// <param name="MatchScores">(Q, k) ITM "match" logits of the pairs.</param>
/// <param name="Scores">(Q, k) final scores: ITM logit + similarity (BLIP's score matrix entries).</param>
/// <param name="CandidateCount">Number of candidates of every query (columns of the dense matrix).</param>
public sealed record RetrievalCandidates(Tensor Indices, Tensor Similarities, Tensor MatchScores, Tensor Scores, int CandidateCount) : IDisposable
{
    /// <summary>The dense (Q, CandidateCount) matrix BLIP returns: the final score at each top-k candidate, -100 everywhere else.</summary>
    public Tensor ToDense()
    {
        using var scope = NewDisposeScope();
        var dense = full(Indices.shape[0], CandidateCount, -100.0, dtype: Scores.dtype, device: Scores.device); // (Q, C)
        dense.scatter_(1, Indices, Scores);
        return dense.MoveToOuterDisposeScope();
    }

    internal IEnumerable<Tensor> Tensors() => [Indices, Similarities, MatchScores, Scores];

    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        foreach (var t in Tensors()) t.Dispose();
    }
}

/// <summary>
/// The result of <see cref="RetrievalEvaluator.Evaluate"/>: both directions' candidates and the ITC features. Hand
/// <see cref="DenseImageToText"/> and <see cref="DenseTextToImage"/> with the dataset's text-to-image and
/// image-to-texts mappings to a recall computation (BLIP's <c>itm_eval</c>).
/// </summary>
/// <param name="ImageToText">Per image its top-k texts.</param>
/// <param name="TextToImage">Per text its top-k images.</param>
/// <param name="ImageFeatures">(N_img, E) normalised image features.</param>
/// <param name="TextFeatures">(N_txt, E) normalised text features.</param>
public sealed record RetrievalResult(RetrievalCandidates ImageToText, RetrievalCandidates TextToImage, Tensor ImageFeatures, Tensor TextFeatures) : IDisposable
{
    /// <summary>BLIP's <c>score_matrix_i2t</c> (N_img, N_txt): ITM + ITC at each image's top-k texts, -100 elsewhere.</summary>
    public Tensor DenseImageToText() => ImageToText.ToDense();

    /// <summary>BLIP's <c>score_matrix_t2i</c> (N_txt, N_img): ITM + ITC at each text's top-k images, -100 elsewhere.</summary>
    public Tensor DenseTextToImage() => TextToImage.ToDense();

    private IEnumerable<Tensor> Tensors() => ImageToText.Tensors().Concat(TextToImage.Tensors()).Concat([ImageFeatures, TextFeatures]);

    internal void MoveToOuterDisposeScope()
    {
        foreach (var t in Tensors()) t.MoveToOuterDisposeScope();
    }

    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        foreach (var t in Tensors()) t.Dispose();
    }
}
