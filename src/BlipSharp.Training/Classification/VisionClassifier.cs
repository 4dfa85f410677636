using BlipSharp.Configuration;
using BlipSharp.Modeling.Vision;
using BlipSharp.Training.Pretraining;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlipSharp.Training.Classification;

/// <summary>
/// A ViT with a linear classifier on its final [CLS] state: the DeiT/timm image classifier that BLIP's vision encoder
/// is pretrained as (ImageNet) before BLIP pretraining starts. <see cref="vision_model"/> has exactly the layout of
/// <see cref="BlipPretrainingModel.vision_model"/>, so a trained classifier's weights (keys <c>vision_model.*</c>)
/// initialise BLIP pretraining through <c>model.vision_init</c>; the head (<c>head.*</c>) is left out, as BLIP leaves
/// out DeiT's.
/// </summary>
public sealed class VisionClassifier : nn.Module<Tensor, Tensor>
{
    /// <summary>The ViT.</summary>
    public BlipVisionModel vision_model;

    /// <summary>The classifier: (hidden) -> (classes).</summary>
    public Linear head;

    /// <summary>Creates a classifier with BLIP's ViT initialisation (truncated normal 0.02) for the ViT and the head.</summary>
    /// <param name="config">The ViT's shape.</param>
    /// <param name="classes">Number of classes (at least 2).</param>
    /// <param name="positionInit">How the position embeddings start (<see cref="BlipWeightInit.TruncNormalPositions"/> or <see cref="BlipWeightInit.SinCosPositions"/>).</param>
    public VisionClassifier(BlipVisionConfig config, int classes, string positionInit = BlipWeightInit.TruncNormalPositions) : base(nameof(VisionClassifier))
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfLessThan(classes, 2);
        config.Validate();
        vision_model = new BlipVisionModel(config);
        head = nn.Linear(config.HiddenSize, classes);
        RegisterComponents();
        BlipWeightInit.VisionTransformer(vision_model, positionInit);
        using var _ = no_grad();
        BlipWeightInit.TruncatedNormal(head.weight!, BlipWeightInit.VisionStd);
        head.bias!.zero_();
    }

    /// <summary>Number of classes.</summary>
    public long Classes => head.weight!.shape[0];

    /// <summary>Class logits (B, classes) of normalised images (B, 3, S, S).</summary>
    public override Tensor forward(Tensor pixelValues)
    {
        using var scope = NewDisposeScope();
        var cls = vision_model.Encode(pixelValues)[.., 0];   // (B, hidden), after the final LayerNorm
        return head.forward(cls).MoveToOuterDisposeScope();
    }
}
