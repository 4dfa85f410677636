using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Modeling.Vision;

/// <summary>
/// Resizing of learned ViT position embeddings to another patch grid (a different image size), the named
/// step both transformers (<c>interpolate_pos_encoding</c>) and the original BLIP (<c>interpolate_pos_embed</c>)
/// perform: the class-token embedding is kept, the patch grid is resized bicubically (align_corners false).
/// </summary>
public static class PositionEmbeddings
{
    /// <summary>
    /// Resizes <paramref name="positionEmbedding"/> (1, 1+N, D), N a square number, to (1, 1+H*W, D).
    /// Returns the input unchanged (a new handle) when the grid already matches.
    /// </summary>
    public static Tensor Interpolate(Tensor positionEmbedding, long gridHeight, long gridWidth)
    {
        long positions = positionEmbedding.shape[1] - 1;
        long dim = positionEmbedding.shape[2];
        long side = (long)Math.Round(Math.Sqrt(positions));
        if (side * side != positions)
            throw new ArgumentException($"position embedding has {positions} patch positions, not a square grid.");
        if (side == gridHeight && side == gridWidth) return positionEmbedding.alias();
        using var scope = NewDisposeScope();
        var classPos = positionEmbedding[.., ..1, ..];                                           // (1, 1, D)
        var grid = positionEmbedding[.., 1.., ..].reshape(1, side, side, dim).permute(0, 3, 1, 2); // (1, D, side, side)
        var resized = nn.functional.interpolate(grid.to_type(ScalarType.Float32), [gridHeight, gridWidth],
            mode: InterpolationMode.Bicubic, align_corners: false).to_type(positionEmbedding.dtype); // (1, D, H, W)
        var patchPos = resized.permute(0, 2, 3, 1).reshape(1, gridHeight * gridWidth, dim);       // (1, H*W, D)
        return cat([classPos, patchPos], 1).MoveToOuterDisposeScope();
    }
}
