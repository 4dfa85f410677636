using BlipSharp.Processing;
using Microsoft.Win32.SafeHandles;

namespace BlipSharp.Training.Data;

/// <summary>
/// Where the encoded bytes of one image live: a file, or a member of a tar shard read in place (no unpacking).
/// Reading is thread-safe: every call opens its own handle.
/// </summary>
public abstract class ImageSource
{
    private protected ImageSource()
    {
    }

    /// <summary>How messages name the image: its path, or <c>shard.tar:member</c>.</summary>
    public abstract string Name { get; }

    /// <summary>Reads the encoded image.</summary>
    public abstract byte[] ReadAllBytes();

    /// <summary>Reads and decodes the image; any failure is an <see cref="ImageDecodeException"/> naming <see cref="Name"/>.</summary>
    /// <param name="options">Decoder options; the default when null.</param>
    public virtual RgbImage Decode(ImageDecoderOptions? options = null)
    {
        byte[] bytes;
        try
        {
            bytes = ReadAllBytes();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ImageDecodeException(Name, $"cannot be read: {e.Message}", e);
        }
        return ImageDecoder.Decode(bytes, options, Name);
    }

    /// <summary>An image file.</summary>
    /// <param name="path">Its path.</param>
    public static ImageSource FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return new FileSource(path);
    }

    /// <summary>A byte range of a file, such as a member of an uncompressed tar shard.</summary>
    /// <param name="path">The containing file.</param>
    /// <param name="member">The member's name, for messages.</param>
    /// <param name="offset">Where the bytes start.</param>
    /// <param name="length">How many bytes.</param>
    public static ImageSource FromFileRange(string path, string member, long offset, long length)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Array.MaxLength);
        return new RangeSource(path, member, offset, length);
    }

    /// <summary>Encoded bytes already in memory.</summary>
    /// <param name="name">How messages name the image.</param>
    /// <param name="encoded">The encoded file content (not copied).</param>
    public static ImageSource FromMemory(string name, ReadOnlyMemory<byte> encoded) => new MemorySource(name, encoded);

    private sealed class FileSource(string path) : ImageSource
    {
        public override string Name => path;

        public override byte[] ReadAllBytes() => File.ReadAllBytes(path);

        public override RgbImage Decode(ImageDecoderOptions? options = null) => ImageDecoder.Decode(path, options);
    }

    private sealed class RangeSource(string path, string member, long offset, long length) : ImageSource
    {
        public override string Name => $"{path}:{member}";

        public override byte[] ReadAllBytes()
        {
            using SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            var data = new byte[length];
            int total = 0;
            while (total < data.Length)
            {
                int n = RandomAccess.Read(handle, data.AsSpan(total), offset + total);
                if (n == 0) throw new IOException($"{path} ends before the {length} bytes of '{member}' at offset {offset} (the file shrank?)");
                total += n;
            }
            return data;
        }
    }

    private sealed class MemorySource(string name, ReadOnlyMemory<byte> encoded) : ImageSource
    {
        public override string Name => name;

        public override byte[] ReadAllBytes() => encoded.ToArray();
    }
}
