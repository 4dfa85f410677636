using BlipSharp.Modeling.Text;
using BlipSharp.Modeling.Vision;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Training.Pretraining;

/// <summary>
/// BLIP's pretraining model (salesforce/BLIP <c>BLIP_Pretrain</c>) built from the inference modules: a ViT, a
/// text encoder and (unless <see cref="BlipPretrainingConfig.TextDecoder"/> is off, which gives salesforce/BLIP's
/// <c>BLIP_Retrieval</c>, see <see cref="BlipPretrainingConfig.ForRetrieval"/>) a text decoder that shares every parameter with the encoder except its self-attention layers
/// (the same <see cref="TorchSharp.Modules.Parameter"/> objects, so one optimizer update moves both); the ITC projections, the ITM
/// head and the learnable temperature; EMA (momentum) copies of the ViT, the text encoder and both projections,
/// which never receive gradients; and the feature queues (plus an optional id queue) as buffers, so they are
/// saved and restored with the weights. Field names are the state_dict keys (Hugging Face names for the
/// transformers; <see cref="Checkpoints.OriginalBlipKeyMap"/> maps salesforce's names onto them).
/// </summary>
/// <remarks>
/// The forward pass is split into named stages (<see cref="EncodeImage"/>, <see cref="EncodeText"/>,
/// <see cref="ImageFeatures"/>, <see cref="TextFeatures"/>, <see cref="EncodeMomentum"/>,
/// <see cref="EncodeMultimodal"/>, <see cref="MatchingLogits"/>, <see cref="Decode"/>) plus the state updates
/// <see cref="ClampTemperature"/>, <see cref="MomentumUpdate"/> and <see cref="DequeueAndEnqueue"/>;
/// <see cref="PretrainingTask"/> composes them with the losses in BLIP's order. Create the model with the device
/// and dtype it trains at: once tied it refuses <c>to(...)</c> conversions (TorchSharp converts module by module
/// and would dispose the shared tensors).
/// </remarks>
public sealed class BlipPretrainingModel : Module
{
    /// <summary>The (normalised) configuration this model was built from.</summary>
    public BlipPretrainingConfig Config { get; }

#pragma warning disable IDE1006 // field names are the state_dict keys
    /// <summary>The ViT image encoder.</summary>
    public BlipVisionModel vision_model;
    /// <summary>The text encoder: unimodal (ITC) without image states, image-grounded (ITM) with them.</summary>
    public BlipTextModel text_encoder;
    /// <summary>
    /// The image-grounded decoder (LM); shares all but its self-attention with <see cref="text_encoder"/>. Null when
    /// <see cref="BlipPretrainingConfig.TextDecoder"/> is off (retrieval).
    /// </summary>
    public BlipTextLMHeadModel? text_decoder;
    /// <summary>Image [CLS] state to the ITC space (Dv -> E).</summary>
    public Linear vision_proj;
    /// <summary>Text [CLS] state to the ITC space (H -> E).</summary>
    public Linear text_proj;
    /// <summary>Image-grounded [ENC] state to [no match, match] (H -> 2).</summary>
    public Linear itm_head;
    /// <summary>The learnable ITC temperature, a scalar.</summary>
    public Parameter temp;
    /// <summary>Momentum copy of <see cref="vision_model"/> (no gradients).</summary>
    public BlipVisionModel vision_model_m;
    /// <summary>Momentum copy of <see cref="vision_proj"/>.</summary>
    public Linear vision_proj_m;
    /// <summary>Momentum copy of <see cref="text_encoder"/> (its cross-attention is averaged too, though unused).</summary>
    public BlipTextModel text_encoder_m;
    /// <summary>Momentum copy of <see cref="text_proj"/>.</summary>
    public Linear text_proj_m;
    /// <summary>(E, Q) momentum image features, one column per entry.</summary>
    public Tensor image_queue;
    /// <summary>(E, Q) momentum text features.</summary>
    public Tensor text_queue;
    /// <summary>(1) int64: the column the next batch is written to.</summary>
    public Tensor queue_ptr;
    /// <summary>(1, Q) int64 image ids of the queued entries (-100 = empty); only with <see cref="BlipPretrainingConfig.IdQueue"/>.</summary>
    public Tensor? idx_queue;
#pragma warning restore IDE1006

    private readonly (Module Online, Module Momentum)[] _momentumPairs;
    private Dictionary<string, string>? _sharedNames;
    private bool _tied;

    /// <summary>
    /// Creates a randomly initialised model as BLIP's reference code draws it (<see cref="BlipWeightInit"/>: the ViT as
    /// salesforce/BLIP's <c>vit.py</c>, the text encoder and decoder as BERT's <c>init_weights</c>; the projections and
    /// the ITM head keep PyTorch's default, as in BLIP); momentum encoders copied from the online ones, queues random
    /// unit columns. Loading a checkpoint overwrites every weight.
    /// </summary>
    /// <param name="config">The configuration (normalised here).</param>
    /// <param name="device">Where to create the parameters and buffers (CPU when null).</param>
    /// <param name="dtype">Floating-point dtype of the parameters and feature queues (float32 when null).</param>
    public BlipPretrainingModel(BlipPretrainingConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(BlipPretrainingModel))
    {
        Config = config.Normalized();
        Config.Validate();
        device ??= CPU;
        int e = Config.EmbedDim, q = Config.QueueSize;
        vision_model = new BlipVisionModel(Config.VisionConfig);
        text_encoder = new BlipTextModel(Config.TextConfig, addPoolingLayer: false);
        text_decoder = Config.TextDecoder ? new BlipTextLMHeadModel(Config.TextConfig) : null;
        BlipWeightInit.VisionTransformer(vision_model, Config.VisionPositionInit);
        BlipWeightInit.Bert(text_encoder, Config.TextConfig.InitializerRange);
        if (text_decoder is not null)
            BlipWeightInit.Bert(text_decoder, Config.TextConfig.InitializerRange); // all but self-attention is then tied to the encoder's
        vision_proj = Linear(Config.VisionWidth, e);
        text_proj = Linear(Config.TextWidth, e);
        itm_head = Linear(Config.TextWidth, 2);
        temp = Parameter(full(Array.Empty<long>(), Config.InitialTemperature, dtype: ScalarType.Float32));
        vision_model_m = new BlipVisionModel(Config.VisionConfig); // the same drop path rate: BLIP's create_vit gives both encoders 0 (ViT-B) or 0.1 (ViT-L)
        vision_proj_m = Linear(Config.VisionWidth, e);
        text_encoder_m = new BlipTextModel(Config.TextConfig, addPoolingLayer: false);
        text_proj_m = Linear(Config.TextWidth, e);
        using (no_grad())
        {
            using var imageRandom = randn(e, q);
            using var textRandom = randn(e, q);
            image_queue = nn.functional.normalize(imageRandom, dim: 0);               // (E, Q) unit columns
            text_queue = nn.functional.normalize(textRandom, dim: 0);
        }
        queue_ptr = zeros(1, dtype: ScalarType.Int64);
        idx_queue = Config.IdQueue ? full(1, q, -100L, dtype: ScalarType.Int64) : null;
        RegisterComponents();

        _momentumPairs = [(vision_model, vision_model_m), (vision_proj, vision_proj_m), (text_encoder, text_encoder_m), (text_proj, text_proj_m)];
        // Convert while nothing is shared yet: TorchSharp converts module by module and would dispose a shared tensor.
        if (dtype is { } type && type != ScalarType.Float32) this.to(type);
        if (device.type != DeviceType.CPU) this.to(device);
        TieWeights();
        CopyParamsToMomentum();
    }

    /// <summary>
    /// TorchSharp's <c>to(dtype)</c> converts each module's parameters separately and disposes the originals, which
    /// breaks (and invalidates) tensors shared between the encoder and the decoder; so once tied, the model refuses a
    /// conversion that would change anything. Create it with the dtype and device it trains at instead.
    /// </summary>
    protected override Module _to(ScalarType dtype, bool non_blocking)
    {
        if (!_tied) return base._to(dtype, non_blocking);
        if (temp.dtype == dtype) return this;
        throw ConversionError($"dtype {dtype}");
    }

    /// <inheritdoc cref="_to(ScalarType, bool)"/>
    protected override Module _to(DeviceType deviceType, int deviceIndex, bool non_blocking)
    {
        if (!_tied) return base._to(deviceType, deviceIndex, non_blocking);
        if (temp.device_type == deviceType && (deviceIndex < 0 || temp.device_index == deviceIndex)) return this;
        throw ConversionError($"device {deviceType}:{deviceIndex}");
    }

    /// <inheritdoc cref="_to(ScalarType, bool)"/>
    protected override Module _to(Device device, ScalarType dtype, bool non_blocking)
    {
        if (!_tied) return base._to(device, dtype, non_blocking);
        if (temp.dtype == dtype && temp.device_type == device.type && (device.index < 0 || temp.device_index == device.index)) return this;
        throw ConversionError($"device {device} and dtype {dtype}");
    }

    private static InvalidOperationException ConversionError(string target) => new(
        $"cannot convert a BlipPretrainingModel to {target} after construction: its decoder shares Parameter objects with the encoder, " +
        "which TorchSharp's module-by-module conversion would dispose. Create the model with that device and dtype (constructor arguments).");

    /// <summary>The text decoder; throws when the model was built without one (<see cref="BlipPretrainingConfig.TextDecoder"/> off).</summary>
    public BlipTextLMHeadModel TextDecoder => text_decoder ?? throw new InvalidOperationException(
        "this model has no text decoder (text_decoder: false, as BLIP_Retrieval): it cannot decode or caption.");

    /// <summary>The online and momentum module of each EMA pair: (ViT, ViT_m), (vision_proj, _m), (text encoder, _m), (text_proj, _m).</summary>
    public IReadOnlyList<(Module Online, Module Momentum)> MomentumPairs => _momentumPairs;

    /// <summary>
    /// The decoder keys that are the same tensor as an encoder key (decoder key -> encoder key): the decoder's
    /// embeddings, cross-attention, intermediate and output blocks of every layer; and the LM head's projection,
    /// which is the word-embedding matrix. Both names are in the state_dict, as in BLIP's.
    /// </summary>
    public IReadOnlyDictionary<string, string> SharedParameterNames => _sharedNames ??= ComputeSharedNames();

    /// <summary>
    /// Makes the decoder use the encoder's Parameter objects for everything except self-attention (BLIP's
    /// <c>tie_encoder_decoder_weights(..., skip_key='/attention')</c>), and the LM head's projection use the word
    /// embeddings. Idempotent; the constructor calls it. Without a decoder there is nothing to tie.
    /// </summary>
    public void TieWeights()
    {
        if (text_decoder is null) return;
        var encoderModules = text_encoder.named_modules().ToDictionary(m => m.name, m => m.module);
        foreach (var (name, decoderModule) in text_decoder.bert.named_modules())
        {
            if (IsSelfAttentionPath(name)) continue;
            if (!encoderModules.TryGetValue(name, out var encoderModule))
                throw new InvalidOperationException($"text_decoder.bert.{name} has no counterpart in text_encoder.");
            switch (decoderModule)
            {
                case TorchSharp.Modules.Linear or TorchSharp.Modules.LayerNorm or TorchSharp.Modules.Embedding:
                    ShareParameters(encoderModule, decoderModule, $"text_decoder.bert.{name}");
                    break;
            }
        }
        var wordEmbedding = text_decoder.bert.embeddings.word_embeddings.get_parameter("weight")
            ?? throw new InvalidOperationException("word embeddings have no weight.");
        var head = text_decoder.cls.predictions.decoder;
        if (!ReferenceEquals(head.get_parameter("weight"), wordEmbedding)) head.weight = wordEmbedding;
        _sharedNames = null;
        _tied = true;
    }

    private static bool IsSelfAttentionPath(string name) =>
        name.Split('.').Any(segment => segment == "attention");

    private static void ShareParameters(Module source, Module target, string what)
    {
        foreach (string parameterName in new[] { "weight", "bias" })
        {
            var shared = source.get_parameter(parameterName);
            var own = target.get_parameter(parameterName);
            if (shared is null && own is null) continue;
            if (shared is null || own is null || !shared.shape.SequenceEqual(own.shape))
                throw new InvalidOperationException($"{what}.{parameterName} cannot be tied: shapes differ between encoder and decoder.");
            if (ReferenceEquals(shared, own)) continue;
            switch (target)
            {
                case Linear linear when parameterName == "weight": linear.weight = shared; break;
                case Linear linear: linear.bias = shared; break;
                case LayerNorm norm when parameterName == "weight": norm.weight = shared; break;
                case LayerNorm norm: norm.bias = shared; break;
                case Embedding embedding when parameterName == "weight": embedding.weight = shared; break;
                default: throw new InvalidOperationException($"{what}.{parameterName}: cannot tie a {target.GetType().Name}.");
            }
        }
    }

    private Dictionary<string, string> ComputeSharedNames()
    {
        var byObject = new Dictionary<Parameter, string>(ReferenceEqualityComparer.Instance);
        var shared = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, p) in NamedParametersWithAliases())
        {
            if (byObject.TryGetValue(p, out string? first)) shared[name] = first;
            else byObject[p] = name;
        }
        return shared;
    }

    /// <summary>Every parameter under every name it has (a shared tensor appears once per name), in registration order.</summary>
    public IEnumerable<(string Name, Parameter Parameter)> NamedParametersWithAliases()
    {
        foreach (var (name, p) in named_parameters(recurse: false))
            yield return (name, p);
        foreach (var (prefix, module) in named_modules())
        {
            if (prefix.Length == 0) continue; // the model itself, done above
            foreach (var (name, p) in module.named_parameters(recurse: false))
                yield return ($"{prefix}.{name}", p);
        }
    }

    /// <summary>
    /// The parameters an optimizer updates: those that require gradients, each tensor once under its first name
    /// (the encoder's for shared ones). Momentum parameters are excluded.
    /// </summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> TrainableParameters()
    {
        var seen = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        var result = new List<(string, Parameter)>();
        foreach (var (name, p) in NamedParametersWithAliases())
        {
            if (!p.requires_grad || !seen.Add(p)) continue;
            result.Add((name, p));
        }
        return result;
    }

    /// <summary>Copies every online parameter into its momentum copy and freezes the copies (BLIP's <c>copy_params</c>).</summary>
    public void CopyParamsToMomentum()
    {
        using var _ = no_grad();
        foreach (var (online, momentum) in _momentumPairs)
        {
            foreach (var (p, pm) in PairParameters(online, momentum))
            {
                pm.copy_(p);
                pm.requires_grad = false;
            }
        }
    }

    /// <summary>
    /// The EMA step of every momentum parameter: <c>p_m = p_m * m + p * (1 - m)</c> with the online weights as they
    /// are now (BLIP's <c>_momentum_update</c>, run inside each forward before the momentum features).
    /// </summary>
    public void MomentumUpdate()
    {
        using var _ = no_grad();
        double m = Config.Momentum;
        foreach (var (online, momentum) in _momentumPairs)
        {
            foreach (var (p, pm) in PairParameters(online, momentum))
                pm.mul_(m).add_(p, alpha: 1.0 - m);
        }
    }

    private static IEnumerable<(Parameter Online, Parameter Momentum)> PairParameters(Module online, Module momentum)
    {
        var a = online.named_parameters().ToList();
        var b = momentum.named_parameters().ToList();
        if (a.Count != b.Count)
            throw new InvalidOperationException($"momentum pair {online.GetName()}: {a.Count} online parameters but {b.Count} momentum parameters.");
        for (int i = 0; i < a.Count; i++)
        {
            if (a[i].name != b[i].name || !a[i].parameter.shape.SequenceEqual(b[i].parameter.shape))
                throw new InvalidOperationException($"momentum pair {online.GetName()}: '{a[i].name}' does not match '{b[i].name}'.");
            yield return (a[i].parameter, b[i].parameter);
        }
    }

    /// <summary>Clamps <see cref="temp"/> in place to [temperature_min, temperature_max] (BLIP does it first in every forward).</summary>
    public void ClampTemperature()
    {
        using var _ = no_grad();
        temp.clamp_(Config.TemperatureMin, Config.TemperatureMax);
    }

    /// <summary>Pixels (B, C, S, S) -> image states (B, 1+N, Dv) after the ViT's final LayerNorm.</summary>
    public Tensor EncodeImage(Tensor pixelValues) => vision_model.Encode(pixelValues);

    /// <summary>Unimodal text states (B, T, H): bidirectional self-attention, no cross-attention ([CLS] first).</summary>
    public Tensor EncodeText(Tensor inputIds, Tensor? attentionMask)
    {
        using var output = text_encoder.Forward(inputIds, attentionMask);
        return output.LastHiddenState.alias();
    }

    /// <summary>Image-grounded text states (B, T, H): row b cross-attends to <paramref name="imageEmbeds"/>[b] ([ENC] first).</summary>
    public Tensor EncodeMultimodal(Tensor inputIds, Tensor? attentionMask, Tensor imageEmbeds)
    {
        using var output = text_encoder.Forward(inputIds, attentionMask, imageEmbeds);
        return output.LastHiddenState.alias();
    }

    /// <summary>L2-normalised ITC image features (B, E) from image states: <c>normalize(vision_proj(x[:, 0]))</c>.</summary>
    public Tensor ImageFeatures(Tensor imageEmbeds) => ProjectFirstToken(vision_proj, imageEmbeds);

    /// <summary>L2-normalised ITC text features (B, E) from unimodal text states.</summary>
    public Tensor TextFeatures(Tensor textStates) => ProjectFirstToken(text_proj, textStates);

    /// <summary>
    /// The momentum features of a batch, without gradients: normalised projections of the momentum ViT's image
    /// [CLS] and the momentum text encoder's unimodal [CLS]. Call after <see cref="MomentumUpdate"/>, as BLIP does.
    /// </summary>
    public MomentumFeatures EncodeMomentum(Tensor pixelValues, Tensor inputIds, Tensor? attentionMask)
    {
        using var _ = no_grad();
        using var imageEmbeds = vision_model_m.Encode(pixelValues);                 // (B, 1+N, Dv)
        using var textOutput = text_encoder_m.Forward(inputIds, attentionMask);     // (B, T, H)
        return new MomentumFeatures(ProjectFirstToken(vision_proj_m, imageEmbeds), ProjectFirstToken(text_proj_m, textOutput.LastHiddenState));
    }

    /// <summary>ITM logits (B, 2) [no match, match] from image-grounded states: <c>itm_head(x[:, 0])</c>.</summary>
    public Tensor MatchingLogits(Tensor multimodalStates)
    {
        using var first = multimodalStates.select(1, 0);                              // (B, H)
        return itm_head.forward(first);
    }

    /// <summary>Decoder logits (B, T, V): causal self-attention over <paramref name="decoderInputIds"/> ([DEC] first), cross-attention to the image.</summary>
    /// <exception cref="InvalidOperationException">The model has no decoder (<see cref="BlipPretrainingConfig.TextDecoder"/> off).</exception>
    public Tensor Decode(Tensor decoderInputIds, Tensor? attentionMask, Tensor imageEmbeds)
    {
        var output = TextDecoder.Forward(decoderInputIds, attentionMask, imageEmbeds);
        output.LastHiddenState.Dispose();
        return output.Logits;
    }

    /// <summary>
    /// Writes the batch's momentum features (and ids) into the queues at <see cref="queue_ptr"/> and advances it by
    /// B modulo Q (BLIP's <c>_dequeue_and_enqueue</c> on one process). Q must be a multiple of B.
    /// </summary>
    /// <param name="imageFeaturesM">(B, E) momentum image features.</param>
    /// <param name="textFeaturesM">(B, E) momentum text features.</param>
    /// <param name="imageIds">(B) image ids; required with an id queue, ignored without.</param>
    public void DequeueAndEnqueue(Tensor imageFeaturesM, Tensor textFeaturesM, Tensor? imageIds = null)
    {
        using var _ = no_grad();
        long b = imageFeaturesM.shape[0], q = Config.QueueSize;
        if (q % b != 0)
            throw new ArgumentException($"queue_size ({q}) must be a multiple of the batch size ({b}), as in BLIP.");
        if (idx_queue is not null && imageIds is null)
            throw new ArgumentNullException(nameof(imageIds), "this model keeps an id queue: pass the batch's image ids.");
        long ptr = queue_ptr[0].ToInt64();
        using (var imageSlot = image_queue.narrow(1, ptr, b))                          // (E, B) view
        using (var imageT = imageFeaturesM.t())                                       // (E, B)
            imageSlot.copy_(imageT);
        using (var textSlot = text_queue.narrow(1, ptr, b))                           // (E, B) view
        using (var textT = textFeaturesM.t())                                         // (E, B)
            textSlot.copy_(textT);
        if (idx_queue is not null)
        {
            using var idSlot = idx_queue.narrow(1, ptr, b);                            // (1, B) view
            using var ids = imageIds!.view(1, -1);                                    // (1, B)
            idSlot.copy_(ids);
        }
        queue_ptr.fill_((ptr + b) % q);
    }

    private static Tensor ProjectFirstToken(Linear projection, Tensor states)
    {
        using var first = states.select(1, 0);                                        // (B, D)
        using var projected = projection.forward(first);                              // (B, E)
        return nn.functional.normalize(projected, dim: -1);
    }
}

/// <summary>Momentum features of a batch.</summary>
/// <param name="ImageFeatures">(B, E) normalised momentum image features.</param>
/// <param name="TextFeatures">(B, E) normalised momentum text features.</param>
public sealed record MomentumFeatures(Tensor ImageFeatures, Tensor TextFeatures) : IDisposable
{
    /// <summary>Disposes both tensors.</summary>
    public void Dispose()
    {
        ImageFeatures.Dispose();
        TextFeatures.Dispose();
    }
}
