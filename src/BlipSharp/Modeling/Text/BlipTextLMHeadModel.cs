using BlipSharp.Configuration;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Text;

/// <summary>dense -> activation -> LayerNorm before the vocabulary projection; transformers' <c>BlipTextPredictionHeadTransform</c>.</summary>
public sealed class BlipTextPredictionHeadTransform : Module<Tensor, Tensor>
{
    private readonly string _activation;

#pragma warning disable IDE1006
    /// <summary>(H, H).</summary>
    public Linear dense;
    /// <summary>LayerNorm after the activation.</summary>
    [TorchSharp.Utils.ComponentName(Name = "LayerNorm")]
    public LayerNorm layer_norm;
#pragma warning restore IDE1006

    /// <summary>Creates the transform.</summary>
    public BlipTextPredictionHeadTransform(BlipTextConfig config) : base(nameof(BlipTextPredictionHeadTransform))
    {
        _activation = config.HiddenAct;
        dense = Linear(config.HiddenSize, config.HiddenSize);
        layer_norm = LayerNorm(config.HiddenSize, config.LayerNormEps);
        RegisterComponents();
    }

    /// <summary>(B, T, H) -> (B, T, H).</summary>
    public override Tensor forward(Tensor x)
    {
        using var d = DecodeLinear.Forward(dense, x);
        using var a = Configuration.Activations.Apply(_activation, d);
        return layer_norm.forward(a);
    }
}

/// <summary>
/// The vocabulary projection with its separate bias, as transformers' <c>BlipTextLMPredictionHead</c>.
/// transformers keeps <c>decoder.bias</c> as the same Parameter as <c>bias</c> and saves only <c>bias</c>; here
/// the decoder has no bias of its own and <c>bias</c> is added explicitly, so the state_dict keys equal the file's.
/// </summary>
public sealed class BlipTextLMPredictionHead : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    /// <summary>dense + activation + LayerNorm.</summary>
    public BlipTextPredictionHeadTransform transform;
    /// <summary>(V, H) projection, no bias (its values equal the word embeddings in real checkpoints).</summary>
    public Linear decoder;
    /// <summary>(V) output bias.</summary>
    public Parameter bias;
#pragma warning restore IDE1006

    /// <summary>Creates the head.</summary>
    public BlipTextLMPredictionHead(BlipTextConfig config) : base(nameof(BlipTextLMPredictionHead))
    {
        transform = new BlipTextPredictionHeadTransform(config);
        decoder = Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        bias = Parameter(zeros(config.VocabSize));
        RegisterComponents();
    }

    /// <summary>(B, T, H) -> logits (B, T, V).</summary>
    public override Tensor forward(Tensor x)
    {
        using var h = transform.forward(x);
        return DecodeLinear.Forward(h, decoder.weight!, bias);
    }
}

/// <summary>The masked/causal LM head wrapper, as transformers' <c>BlipTextOnlyMLMHead</c> (key segment <c>predictions</c>).</summary>
public sealed class BlipTextOnlyMLMHead : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    /// <summary>The prediction head.</summary>
    public BlipTextLMPredictionHead predictions;
#pragma warning restore IDE1006

    /// <summary>Creates the head.</summary>
    public BlipTextOnlyMLMHead(BlipTextConfig config) : base(nameof(BlipTextOnlyMLMHead))
    {
        predictions = new BlipTextLMPredictionHead(config);
        RegisterComponents();
    }

    /// <summary>(B, T, H) -> logits (B, T, V).</summary>
    public override Tensor forward(Tensor x) => predictions.forward(x);
}

/// <summary>
/// The image-grounded text decoder: a <see cref="BlipTextModel"/> run causally plus the LM head, as
/// transformers' <c>BlipTextLMHeadModel</c> (keys <c>bert.*</c> and <c>cls.*</c>).
/// </summary>
public sealed class BlipTextLMHeadModel : Module
{
    /// <summary>The configuration this model was built from.</summary>
    public BlipTextConfig Config { get; }

#pragma warning disable IDE1006
    /// <summary>The text transformer (no pooler).</summary>
    public BlipTextModel bert;
    /// <summary>The LM head.</summary>
    public BlipTextOnlyMLMHead cls;
#pragma warning restore IDE1006

    /// <summary>Creates the decoder.</summary>
    public BlipTextLMHeadModel(BlipTextConfig config) : base(nameof(BlipTextLMHeadModel))
    {
        Config = config;
        bert = new BlipTextModel(config, addPoolingLayer: false);
        cls = new BlipTextOnlyMLMHead(config);
        RegisterComponents();
    }

    /// <summary>
    /// Decodes <paramref name="inputIds"/> causally while cross-attending to <paramref name="encoderHiddenStates"/>.
    /// With <paramref name="labels"/>, also the next-token loss: cross-entropy of logits[:, :-1] against
    /// labels[:, 1:], ignoring -100.
    /// </summary>
    /// <param name="inputIds">(B, T) decoder input ids.</param>
    /// <param name="attentionMask">(B, T) padding mask, or null.</param>
    /// <param name="encoderHiddenStates">(B, S, E) image (or question) states.</param>
    /// <param name="encoderAttentionMask">(B, S) mask of those states, or null for all ones.</param>
    /// <param name="labels">(B, T) target ids, -100 where ignored, or null for no loss.</param>
    /// <param name="reduction">Mean over tokens, or one summed loss per sequence (<see cref="LossReduction.SumPerSequence"/>).</param>
    /// <param name="labelSmoothing">Overrides <c>text_config.label_smoothing</c>.</param>
    public CausalLMOutput Forward(Tensor inputIds, Tensor? attentionMask, Tensor? encoderHiddenStates, Tensor? encoderAttentionMask = null,
        Tensor? labels = null, LossReduction reduction = LossReduction.Mean, double? labelSmoothing = null)
    {
        var text = bert.Forward(inputIds, attentionMask, encoderHiddenStates, encoderAttentionMask, isDecoder: true);
        var logits = cls.forward(text.LastHiddenState); // (B, T, V)
        Tensor? loss = labels is null ? null : LanguageModelingLoss(logits, labels, reduction, labelSmoothing ?? Config.LabelSmoothing);
        return new CausalLMOutput(logits, loss, text.LastHiddenState);
    }

    /// <summary>
    /// Whether the LM head's projection is the same Parameter as the word embeddings (<see cref="TieWeights"/>).
    /// </summary>
    public bool WeightsTied =>
        ReferenceEquals(cls.predictions.decoder.get_parameter("weight"), bert.embeddings.word_embeddings.get_parameter("weight"));

    /// <summary>
    /// Makes the LM head's projection (<c>cls.predictions.decoder.weight</c>) the word-embedding Parameter
    /// (<c>bert.embeddings.word_embeddings.weight</c>), as transformers' <c>tie_weights</c> does
    /// (<c>output_embeddings.weight = input_embeddings.weight</c>): the head takes the embeddings' values, and in
    /// training the one tensor receives the sum of both gradients, as in the original BLIP, whose checkpoints hold one
    /// tensor under both names. Tie after loading weights (the word embeddings' values are kept); inference does not
    /// need it, training does. Idempotent. Both keys stay in the state_dict. Convert dtype and device before tying:
    /// TorchSharp converts module by module and would dispose the shared tensor.
    /// </summary>
    public void TieWeights()
    {
        var embedding = bert.embeddings.word_embeddings.get_parameter("weight")
            ?? throw new InvalidOperationException("the word embeddings have no weight.");
        var head = cls.predictions.decoder;
        if (ReferenceEquals(head.get_parameter("weight"), embedding)) return;
        if (!head.weight!.shape.SequenceEqual(embedding.shape))
            throw new InvalidOperationException(
                $"cannot tie the LM head [{string.Join(", ", head.weight.shape)}] to the word embeddings [{string.Join(", ", embedding.shape)}].");
        head.weight = embedding;
    }

    /// <summary>
    /// One step of incremental decoding: feeds <paramref name="inputIds"/> (N, T) through the cached decoder and
    /// returns the next-token logits at the last new position, (N, V). The cache grows by T.
    /// </summary>
    /// <param name="inputIds">(N, T) new tokens (the whole prompt at the first step, then one token per step).</param>
    /// <param name="attentionMask">(N, P+T) 1/0 mask over past and new tokens, or null for all ones.</param>
    /// <param name="cache">The key/value cache created for this decoder's text model.</param>
    public Tensor DecodeNext(Tensor inputIds, Tensor? attentionMask, Generation.KeyValueCache cache)
    {
        using var states = bert.ForwardIncremental(inputIds, attentionMask, cache); // (N, T, H)
        long t = states.shape[1];
        using var last = states.narrow(1, t - 1, 1);                                // (N, 1, H)
        using var logits = cls.forward(last);                                       // (N, 1, V)
        return logits.squeeze(1);                                                   // (N, V)
    }

    /// <summary>Next-token cross-entropy as transformers computes it: logits[:, :-1] against labels[:, 1:].</summary>
    public static Tensor LanguageModelingLoss(Tensor logits, Tensor labels, LossReduction reduction, double labelSmoothing)
    {
        using var scope = NewDisposeScope();
        long b = logits.shape[0], t = logits.shape[1], v = logits.shape[2];
        var shifted = logits[.., ..(int)(t - 1), ..].reshape(-1, v);     // (B*(T-1), V)
        var targets = labels[.., 1..].reshape(-1).to_type(ScalarType.Int64); // (B*(T-1))
        var r = reduction == LossReduction.Mean ? nn.Reduction.Mean : nn.Reduction.None;
        var loss = nn.functional.cross_entropy(shifted, targets, ignore_index: -100, reduction: r, label_smoothing: labelSmoothing);
        if (reduction == LossReduction.SumPerSequence) loss = loss.view(b, -1).sum(1); // (B)
        return loss.MoveToOuterDisposeScope();
    }
}

/// <summary>How the decoder's token losses are reduced.</summary>
public enum LossReduction
{
    /// <summary>Mean over every non-ignored token of the batch.</summary>
    Mean,
    /// <summary>One loss per sequence: the sum over its tokens (transformers' <c>reduction="none"</c>).</summary>
    SumPerSequence,
}
