using static TorchSharp.torch;

namespace BlipSharp.Checkpoints;

/// <summary>Bridge to the torch.save reader (zip + pickle).</summary>
internal static class TorchCheckpointFormat
{
    public static Dictionary<string, Tensor> LoadStateDict(string path) =>
        throw new CheckpointFormatException($"{path}: reading torch.save files is not available in this build yet; convert it to model.safetensors.");
}
