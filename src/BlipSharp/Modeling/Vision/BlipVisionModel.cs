using BlipSharp.Configuration;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Vision;

/// <summary>
/// The ViT image encoder, as transformers' <c>BlipVisionModel</c>: embeddings -> blocks -> post LayerNorm.
/// </summary>
public sealed class BlipVisionModel : Module<Tensor, Tensor>
{
    /// <summary>The configuration this model was built from.</summary>
    public BlipVisionConfig Config { get; }

#pragma warning disable IDE1006
    /// <summary>Patch, class and position embeddings.</summary>
    public BlipVisionEmbeddings embeddings;
    /// <summary>The blocks.</summary>
    public BlipEncoder encoder;
    /// <summary>Final LayerNorm.</summary>
    public LayerNorm post_layernorm;
#pragma warning restore IDE1006

    /// <summary>Creates the encoder for <paramref name="config"/>.</summary>
    public BlipVisionModel(BlipVisionConfig config) : base(nameof(BlipVisionModel))
    {
        config.Validate();
        Config = config;
        embeddings = new BlipVisionEmbeddings(config);
        encoder = new BlipEncoder(config);
        post_layernorm = LayerNorm(config.HiddenSize, config.LayerNormEps);
        RegisterComponents();
    }

    /// <summary>Sets how every block computes attention (default <see cref="AttentionKernel.Auto"/>).</summary>
    public void SetAttentionKernel(AttentionKernel kernel)
    {
        foreach (var layer in encoder.layers) layer.self_attn.Kernel = kernel;
    }

    /// <summary>
    /// Sets the stochastic depth of the blocks (<see cref="BlipEncoder.SetDropPathRate"/>), e.g. for fine-tuning a
    /// model loaded from a Hugging Face checkpoint, whose config has no <c>drop_path_rate</c>. <see cref="Config"/> is
    /// not changed.
    /// </summary>
    /// <param name="rate">The last block's rate, in [0, 1) (BLIP fine-tunes VQA and NLVR2 with 0.1).</param>
    public void SetDropPathRate(double rate) => encoder.SetDropPathRate(rate);

    /// <summary>Pixels (B, C, S, S) -> last hidden state (B, 1+N, D), post-LayerNormed.</summary>
    public override Tensor forward(Tensor pixelValues) => Encode(pixelValues);

    /// <summary>Pixels (B, C, H, W) -> the image states every task reads, (B, 1+N, D), post-LayerNormed.</summary>
    public Tensor Encode(Tensor pixelValues, bool interpolatePositionEncoding = false)
    {
        using var output = Forward(pixelValues, interpolatePositionEncoding: interpolatePositionEncoding);
        return output.LastHiddenState.alias();
    }

    /// <summary>Runs the encoder and returns its typed output.</summary>
    /// <param name="pixelValues">(B, C, H, W) normalised pixels.</param>
    /// <param name="outputHiddenStates">Also return the embeddings and every block's output (before the post LayerNorm).</param>
    /// <param name="interpolatePositionEncoding">Accept another image size by resizing the position embeddings.</param>
    public BlipVisionOutput Forward(Tensor pixelValues, bool outputHiddenStates = false, bool interpolatePositionEncoding = false)
    {
        using var emb = embeddings.Forward(pixelValues, interpolatePositionEncoding);
        var states = outputHiddenStates ? new List<Tensor>() : null;
        using var encoded = encoder.Forward(emb, states);
        var last = post_layernorm.forward(encoded);                     // (B, 1+N, D)
        using var cls = last[.., 0, ..];                                 // (B, D)
        var pooled = post_layernorm.forward(cls);                        // transformers applies post_layernorm a second time
        Tensor? stacked = null;
        if (states is not null)
        {
            stacked = stack(states, 0);                                  // (L+1, B, 1+N, D)
            foreach (var s in states) s.Dispose();
        }
        return new BlipVisionOutput(last, pooled, stacked);
    }
}
