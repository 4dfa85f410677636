using BlipSharp.Configuration;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Vision;

/// <summary>
/// Patch embedding (a stride-p convolution), a learned class token and learned absolute position
/// embeddings, as transformers' <c>BlipVisionEmbeddings</c>.
/// </summary>
public sealed class BlipVisionEmbeddings : Module<Tensor, Tensor>
{
    private readonly BlipVisionConfig _config;

#pragma warning disable IDE1006 // field names are the checkpoint keys
    /// <summary>The class token, (1, 1, D).</summary>
    public Parameter class_embedding;
    /// <summary>Non-overlapping patch projection, Conv2d(C, D, p, stride p).</summary>
    public Conv2d patch_embedding;
    /// <summary>Position embeddings for the class token and every patch, (1, 1+N, D).</summary>
    public Parameter position_embedding;
#pragma warning restore IDE1006

    /// <summary>Creates the embeddings for <paramref name="config"/>.</summary>
    public BlipVisionEmbeddings(BlipVisionConfig config) : base(nameof(BlipVisionEmbeddings))
    {
        _config = config;
        class_embedding = Parameter(zeros(1, 1, config.HiddenSize));
        patch_embedding = Conv2d(config.NumChannels, config.HiddenSize, config.PatchSize, stride: config.PatchSize);
        position_embedding = Parameter(zeros(1, config.NumPositions, config.HiddenSize));
        RegisterComponents();
    }

    /// <summary>Embeds pixels (B, C, H, W) into (B, 1+N, D). H and W must equal the configured size.</summary>
    public override Tensor forward(Tensor pixelValues) => Forward(pixelValues, interpolatePositionEncoding: false);

    /// <summary>
    /// Embeds pixels (B, C, H, W) into (B, 1+N, D). With <paramref name="interpolatePositionEncoding"/>, images
    /// of another size are accepted and the patch position embeddings are resized bicubically to the new grid.
    /// </summary>
    public Tensor Forward(Tensor pixelValues, bool interpolatePositionEncoding)
    {
        long batch = pixelValues.shape[0];
        long height = pixelValues.shape[2], width = pixelValues.shape[3];
        if (!interpolatePositionEncoding && (height != _config.ImageSize || width != _config.ImageSize))
            throw new ArgumentException(
                $"pixel_values are {height}x{width} but the vision model expects {_config.ImageSize}x{_config.ImageSize}; resize the image or enable position-embedding interpolation.");
        using var input = pixelValues.to_type(patch_embedding.weight!.dtype);
        using var patches = patch_embedding.forward(input);                      // (B, D, H/p, W/p)
        using var flat = patches.flatten(2);                                     // (B, D, N)
        using var patchEmbeds = flat.transpose(1, 2);                            // (B, N, D)
        using var expanded = class_embedding.expand(batch, 1, -1);               // (B, 1, D)
        using var classEmbeds = expanded.to_type(patchEmbeds.dtype);
        using var embeddings = cat([classEmbeds, patchEmbeds], 1);               // (B, 1+N, D)
        using var positions = interpolatePositionEncoding
            ? PositionEmbeddings.Interpolate(position_embedding, height / _config.PatchSize, width / _config.PatchSize)
            : position_embedding[.., ..(int)embeddings.shape[1], ..];           // (1, 1+N, D)
        using var typed = positions.to_type(embeddings.dtype);
        return embeddings + typed;
    }
}
