namespace BlipSharp.Processing;

/// <summary>
/// An image could not be decoded: the file is missing, empty, not an image, truncated or corrupt, or its
/// declared size exceeds the decompression-bomb limit. The message names the source (a file path or a
/// description such as <c>"stream"</c>) and the reason.
/// </summary>
public sealed class ImageDecodeException : Exception
{
    /// <summary>Creates the exception for <paramref name="source"/> with the given reason.</summary>
    /// <param name="source">The file path or a description of the input.</param>
    /// <param name="reason">Why decoding failed.</param>
    public ImageDecodeException(string source, string reason)
        : base($"cannot decode image '{source}': {reason}")
    {
        SourceName = source;
        Reason = reason;
    }

    /// <summary>Creates the exception for <paramref name="source"/> with the given reason and the error that caused it.</summary>
    /// <param name="source">The file path or a description of the input.</param>
    /// <param name="reason">Why decoding failed.</param>
    /// <param name="inner">The underlying error.</param>
    public ImageDecodeException(string source, string reason, Exception inner)
        : base($"cannot decode image '{source}': {reason}", inner)
    {
        SourceName = source;
        Reason = reason;
    }

    /// <summary>The file path or a description of the input that failed to decode.</summary>
    public string SourceName { get; }

    /// <summary>Why decoding failed, without the source name.</summary>
    public string Reason { get; }
}
