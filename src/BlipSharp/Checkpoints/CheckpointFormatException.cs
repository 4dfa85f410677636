namespace BlipSharp.Checkpoints;

/// <summary>
/// A checkpoint file (safetensors, torch.save archive or config) is malformed or does not fit the model.
/// The message names the file and, where there is one, the key and the shapes involved.
/// </summary>
public sealed class CheckpointFormatException : Exception
{
    /// <summary>Creates the exception with a message that names the problem.</summary>
    public CheckpointFormatException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the error that caused it.</summary>
    public CheckpointFormatException(string message, Exception inner) : base(message, inner) { }
}
