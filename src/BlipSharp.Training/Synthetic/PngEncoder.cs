using System.Buffers.Binary;
using System.IO.Compression;
using BlipSharp.Processing;

namespace BlipSharp.Training.Synthetic;

/// <summary>
/// A minimal PNG writer for 8-bit RGB images (one IDAT, Sub filter on every row, zlib at the fastest level).
/// The same pixels give the same bytes on the same runtime.
/// </summary>
public static class PngEncoder
{
    private static readonly uint[] CrcTable = MakeCrcTable();

    /// <summary>Encodes the image as PNG.</summary>
    /// <param name="image">The image.</param>
    public static byte[] Encode(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        int w = image.Width, h = image.Height, stride = w * 3;
        var src = image.Pixels;
        var filtered = new byte[(stride + 1) * h];
        for (int y = 0; y < h; y++)
        {
            int o = y * (stride + 1);
            filtered[o] = 1; // Sub
            var row = src.Slice(y * stride, stride);
            for (int i = 0; i < stride; i++) filtered[o + 1 + i] = (byte)(row[i] - (i >= 3 ? row[i - 3] : 0));
        }
        byte[] compressed;
        using (var ms = new MemoryStream())
        {
            using (var z = new ZLibStream(ms, CompressionLevel.Fastest, leaveOpen: true)) z.Write(filtered);
            compressed = ms.ToArray();
        }
        using var png = new MemoryStream(compressed.Length + 64);
        png.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, (uint)w);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), (uint)h);
        ihdr[8] = 8; // bit depth
        ihdr[9] = 2; // colour type RGB
        WriteChunk(png, "IHDR"u8, ihdr);
        WriteChunk(png, "IDAT"u8, compressed);
        WriteChunk(png, "IEND"u8, []);
        return png.ToArray();
    }

    private static void WriteChunk(Stream s, ReadOnlySpan<byte> type, ReadOnlySpan<byte> data)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(word, (uint)data.Length);
        s.Write(word);
        s.Write(type);
        s.Write(data);
        uint crc = Crc(0xFFFFFFFFu, type);
        crc = Crc(crc, data) ^ 0xFFFFFFFFu;
        BinaryPrimitives.WriteUInt32BigEndian(word, crc);
        s.Write(word);
    }

    private static uint Crc(uint c, ReadOnlySpan<byte> data)
    {
        foreach (byte b in data) c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        return c;
    }

    private static uint[] MakeCrcTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[n] = c;
        }
        return table;
    }
}
