using BlipSharp.Configuration;

namespace BlipSharp.Modeling;

/// <summary>A BLIP task model built from a <see cref="BlipConfig"/> (captioning, retrieval, VQA, contrastive).</summary>
public interface IBlipTaskModel
{
    /// <summary>The configuration the model was built from.</summary>
    BlipConfig Config { get; }
}
