using BlipSharp.Processing;
using BlipSharp.Training.Data;
using BlipSharp.Training.Evaluation.Retrieval;
using BlipSharp.Training.Pretraining;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Retrieval;

/// <summary>Options of <see cref="VideoRetrievalEvaluator"/>; the defaults are BLIP's MSRVTT settings (<c>configs/retrieval_msrvtt.yaml</c>).</summary>
public sealed record VideoRetrievalEvaluatorOptions
{
    /// <summary>Frames sampled per video (BLIP's <c>num_frm_test</c>: 8), see <see cref="VideoFrameSampling.Uniform"/>.</summary>
    public int NumFrames { get; init; } = 8;

    /// <summary>Candidates reranked with ITM per query (BLIP's <c>k_test</c>: 128); capped at the number of candidates.</summary>
    public int KTest { get; init; } = 128;

    /// <summary>
    /// Videos per ViT forward (each contributes <see cref="NumFrames"/> images). BLIP's loader batch is 64 videos
    /// (512 images); the default keeps one batch at 64 images. Each video batch is loaded and encoded twice.
    /// </summary>
    public int VideoBatchSize { get; init; } = 8;

    /// <summary>Texts per unimodal text-encoder forward (BLIP: 256).</summary>
    public int TextBatchSize { get; init; } = 256;

    /// <summary>
    /// (text, video) pairs per ITM forward. BLIP runs k_test (128) pairs at once; a pair cross-attends to
    /// NumFrames x (1+P) states (8 x 577 at 384 px, 14 MB fp32 for ViT-B), so the default is 32.
    /// </summary>
    public int ItmBatchSize { get; init; } = 32;

    /// <summary>Token length texts are padded and truncated to (BLIP: <c>max_length=35</c>).</summary>
    public int MaxTextLength { get; init; } = 35;

    /// <summary>Throws <see cref="ArgumentException"/> naming the field when a value is not positive.</summary>
    public void Validate()
    {
        if (NumFrames <= 0) throw new ArgumentException($"the number of frames must be positive, got {NumFrames}.");
        if (VideoBatchSize <= 0) throw new ArgumentException($"video batch size must be positive, got {VideoBatchSize}.");
        ToImageOptions().Validate();
    }

    internal RetrievalEvaluatorOptions ToImageOptions() => new()
    {
        KTest = KTest, ImageBatchSize = VideoBatchSize, TextBatchSize = TextBatchSize, ItmBatchSize = ItmBatchSize, MaxTextLength = MaxTextLength,
    };
}

/// <summary>
/// salesforce/BLIP's zero-shot video-text retrieval (<c>eval_retrieval_video.evaluation</c>) on a
/// <see cref="BlipPretrainingModel"/>: each of a video's F frames goes through the ViT; the video's ITC feature is
/// <c>normalize(mean over frames of vision_proj(frame [CLS]))</c> (the projections are averaged <em>before</em> the one
/// normalisation; frames are not normalised one by one); the ITM states of a video are its frames' states
/// concatenated along the sequence, <c>(F * (1+P), D)</c>, attended with an all-ones mask. Then as for images
/// (<see cref="RetrievalEvaluator"/>, which runs the two passes): ITC similarities without temperature, top-k per
/// query, each candidate scored <c>itm_head(...)[:, 1] + similarity</c>, -100 elsewhere in the dense matrices.
/// </summary>
/// <remarks>
/// <para>Frames. Each video's frames are picked with <see cref="VideoFrameSampling.Uniform"/> and go through
/// <see cref="BlipEvalTransform"/> at the model's image size (bicubic resize to S x S, CLIP normalisation). BLIP has
/// decord resize while decoding (ffmpeg's scaler) and then applies the same normalisation, so pixel values differ
/// from BLIP's by the resampler unless the frames are already S x S.</para>
/// <para>Memory. BLIP keeps every video's states (1,000 MSRVTT videos x 8 x 577 x 768 fp32 = 14 GB at 384 px).
/// Here pass 1 keeps only the (N, E) features, and pass 2 reloads and re-encodes one video batch at a time
/// (<see cref="VideoRetrievalEvaluatorOptions.VideoBatchSize"/> x F images) and scores the pairs that involve it in
/// ITM batches of <see cref="VideoRetrievalEvaluatorOptions.ItmBatchSize"/>; see <see cref="RetrievalEvaluator"/>.</para>
/// <para>Frame counts. BLIP's sampling gives F = NumFrames frames except for some (vlen, num_frm) pairs, where it gives
/// one more (see <see cref="VideoFrameSampling.Uniform"/>; never at 8 frames). BLIP's data loader could not batch
/// such a video with others; here a batch whose videos differ in F has its states padded to the longest, and the
/// padding is masked out of the cross-attention (the mask stays all ones, as BLIP's, when F agrees).</para>
/// </remarks>
public sealed class VideoRetrievalEvaluator
{
    private readonly RetrievalEvaluator _core;

    /// <summary>Creates the evaluator.</summary>
    public VideoRetrievalEvaluator(BlipPretrainingModel model, VideoRetrievalEvaluatorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        Options = options ?? new VideoRetrievalEvaluatorOptions();
        Options.Validate();
        _core = new RetrievalEvaluator(model, Options.ToImageOptions());
    }

    /// <summary>The model evaluated (set to eval mode during an evaluation, then restored).</summary>
    public BlipPretrainingModel Model => _core.Model;

    /// <summary>The options.</summary>
    public VideoRetrievalEvaluatorOptions Options { get; }

    /// <summary>
    /// Evaluates a dataset (<see cref="MsrvttAnnotations.Load"/>) and computes BLIP's <c>itm_eval</c> for video.
    /// The returned scores belong to the caller.
    /// </summary>
    /// <param name="dataset">Videos, cleaned texts and their maps.</param>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="progress">Told after every text, video and ITM batch (optional).</param>
    public VideoRetrievalEvaluation Evaluate(VideoRetrievalDataset dataset, BlipTokenizer tokenizer, IProgress<RetrievalProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        var scores = Evaluate(dataset.Videos, dataset.Texts, tokenizer, progress);
        try
        {
            return new VideoRetrievalEvaluation(scores, VideoRetrievalRecall.Compute(scores, dataset.TextToVideo, dataset.VideoToTexts));
        }
        catch
        {
            scores.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Scores every video against every text: videos are read from disk (frames sampled, decoded and transformed),
    /// texts are tokenised as given (clean them first, e.g. with <see cref="TextCleaning.PreCaption"/>).
    /// <see cref="RetrievalResult.ImageToText"/> is video-to-text, <see cref="RetrievalResult.TextToImage"/>
    /// text-to-video, <see cref="RetrievalResult.ImageFeatures"/> the video features.
    /// </summary>
    /// <param name="videos">The videos.</param>
    /// <param name="texts">The texts.</param>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="progress">Told after every text, video and ITM batch (optional).</param>
    public RetrievalResult Evaluate(IReadOnlyList<VideoSource> videos, IReadOnlyList<string> texts, BlipTokenizer tokenizer, IProgress<RetrievalProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(videos);
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (texts.Count == 0) throw new ArgumentException("at least one text is needed.", nameof(texts));
        var transform = new BlipEvalTransform(Model.Config.VisionConfig.ImageSize);
        using var tokens = _core.Tokenize(tokenizer, texts);
        return Evaluate(videos.Count, v => videos[v].LoadFrames(Options.NumFrames, transform), tokens.InputIds, tokens.AttentionMask, progress);
    }

    /// <summary>
    /// Scores every video against every text. <paramref name="frames"/>(v) returns video v's transformed frames
    /// (F, 3, S, S) (any device and floating dtype: they are moved to the model's); it is called twice per video,
    /// must return the same pixels both times, and its tensors are disposed by the evaluator.
    /// </summary>
    /// <param name="videoCount">Number of videos.</param>
    /// <param name="frames">The frame source.</param>
    /// <param name="inputIds">(N_txt, T) int64 token ids, [CLS] first.</param>
    /// <param name="attentionMask">(N_txt, T) attention mask.</param>
    /// <param name="progress">Told after every text, video and ITM batch (optional).</param>
    public RetrievalResult Evaluate(int videoCount, Func<int, Tensor> frames, Tensor inputIds, Tensor attentionMask, IProgress<RetrievalProgress>? progress = null)
    {
        if (videoCount <= 0) throw new ArgumentOutOfRangeException(nameof(videoCount), videoCount, "at least one video is needed.");
        ArgumentNullException.ThrowIfNull(frames);
        return _core.EvaluateItems(videoCount, (start, count) =>
        {
            var batch = new Tensor[count];
            for (int i = 0; i < count; i++)
            {
                var f = frames(start + i);
                if (f.dim() != 4 || f.shape[0] < 1 || f.shape[1] != 3)
                    throw new InvalidOperationException($"the frame source returned [{string.Join(", ", f.shape)}] for video {start + i}; expected (F, 3, S, S).");
                batch[i] = f;
            }
            var (states, mask, features) = EncodeVideos(batch);
            return new EncodedItems(states, mask, features);
        }, inputIds, attentionMask, progress);
    }

    /// <summary>
    /// Encodes a batch of videos with one ViT forward over all their frames: the ITM states (B, L, D) with L the
    /// longest F x (1+P), their mask (B, L) (null when every video has the same F: then no state is padding), and
    /// the ITC features (B, E) <c>normalize(mean_f vision_proj(states_f[:, 0]))</c>.
    /// </summary>
    /// <param name="videos">Each video's frames (F_b, 3, S, S).</param>
    public (Tensor States, Tensor? StatesMask, Tensor Features) EncodeVideos(IReadOnlyList<Tensor> videos)
    {
        ArgumentNullException.ThrowIfNull(videos);
        if (videos.Count == 0) throw new ArgumentException("at least one video is needed.", nameof(videos));
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var model = Model;
        var device = model.temp.device;
        var dtype = model.temp.dtype;
        int b = videos.Count;
        long[] counts = videos.Select(v => v.shape[0]).ToArray();
        var pixels = cat(videos.Select(v => v.to(dtype, device)).ToList(), 0);          // (ΣF, 3, S, S)
        var frameStates = model.EncodeImage(pixels);                                    // (ΣF, 1+P, D)
        var projected = model.vision_proj.forward(frameStates.select(1, 0));            // (ΣF, E)
        long tokens = frameStates.shape[1], width = frameStates.shape[2];
        Tensor states, features;
        Tensor? mask = null;
        if (counts.All(c => c == counts[0]))
        {
            long f = counts[0];
            features = nn.functional.normalize(projected.view(b, f, -1).mean([1]), dim: -1); // (B, E)
            states = frameStates.view(b, f * tokens, width);                              // (B, F*(1+P), D): frames in order
        }
        else
        {
            long longest = counts.Max() * tokens;
            states = zeros([b, longest, width], dtype: frameStates.dtype, device: device);   // (B, L, D)
            mask = zeros([b, longest], dtype: ScalarType.Int64, device: device);          // (B, L)
            var means = new Tensor[b];
            long offset = 0;
            for (int v = 0; v < b; v++)
            {
                long length = counts[v] * tokens;
                states[v, TensorIndex.Slice(0, length)].copy_(frameStates.narrow(0, offset, counts[v]).reshape(length, width)); // (F_v*(1+P), D)
                mask[v, TensorIndex.Slice(0, length)].fill_(1);
                means[v] = projected.narrow(0, offset, counts[v]).mean([0]);              // (E)
                offset += counts[v];
            }
            features = nn.functional.normalize(stack(means, 0), dim: -1);                 // (B, E)
        }
        mask?.MoveToOuterDisposeScope();
        return (states.MoveToOuterDisposeScope(), mask, features.MoveToOuterDisposeScope());
    }
}

/// <summary>The result of <see cref="VideoRetrievalEvaluator.Evaluate(VideoRetrievalDataset, BlipTokenizer, IProgress{RetrievalProgress})"/>.</summary>
/// <param name="Scores">Candidates and scores of both directions (video-to-text in <see cref="RetrievalResult.ImageToText"/>).</param>
/// <param name="Metrics">BLIP's <c>itm_eval</c> for video.</param>
public sealed record VideoRetrievalEvaluation(RetrievalResult Scores, VideoRetrievalMetrics Metrics) : IDisposable
{
    /// <summary>Disposes the scores' tensors.</summary>
    public void Dispose() => Scores.Dispose();
}
