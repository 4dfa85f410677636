using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace BlipSharp.Tests.TestSupport;

/// <summary>
/// Writes PNG files byte by byte, so tests can craft exactly the case they need (16-bit, palette with tRNS,
/// transparent pixels over colours, a gAMA chunk, a header that declares a huge image, truncation).
/// </summary>
public static class PngBuilder
{
    public static readonly byte[] Signature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>PNG color types.</summary>
    public const byte Gray = 0, Rgb = 2, Palette = 3, GrayAlpha = 4, Rgba = 6;

    /// <summary>
    /// A complete PNG. <paramref name="rows"/> holds the raw scanlines without filter bytes (each row
    /// ceil(width * channels * bitDepth / 8) bytes, 16-bit samples big-endian); <paramref name="extraChunks"/>
    /// go between IHDR and IDAT.
    /// </summary>
    public static byte[] Build(int width, int height, byte bitDepth, byte colorType, byte[] rows, params (string Type, byte[] Data)[] extraChunks)
    {
        int channels = colorType switch { Gray => 1, Rgb => 3, Palette => 1, GrayAlpha => 2, Rgba => 4, _ => throw new ArgumentException("color type") };
        int rowBytes = (width * channels * bitDepth + 7) / 8;
        if (rows.Length != rowBytes * height) throw new ArgumentException($"expected {rowBytes * height} bytes of rows, got {rows.Length}");
        var filtered = new byte[(rowBytes + 1) * height];
        for (int y = 0; y < height; y++) Array.Copy(rows, y * rowBytes, filtered, y * (rowBytes + 1) + 1, rowBytes);

        using var png = new MemoryStream();
        png.Write(Signature);
        png.Write(Chunk("IHDR", Ihdr(width, height, bitDepth, colorType)));
        foreach (var (type, data) in extraChunks) png.Write(Chunk(type, data));
        png.Write(Chunk("IDAT", Deflate(filtered)));
        png.Write(Chunk("IEND", []));
        return png.ToArray();
    }

    public static byte[] Ihdr(int width, int height, byte bitDepth, byte colorType)
    {
        var ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, (uint)width);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), (uint)height);
        ihdr[8] = bitDepth;
        ihdr[9] = colorType;
        return ihdr; // compression, filter and interlace methods 0
    }

    public static byte[] Deflate(byte[] data)
    {
        using var ms = new MemoryStream();
        using (var z = new ZLibStream(ms, CompressionLevel.Optimal, leaveOpen: true)) z.Write(data);
        return ms.ToArray();
    }

    /// <summary>length + type + data + CRC32(type + data).</summary>
    public static byte[] Chunk(string type, ReadOnlySpan<byte> data)
    {
        var chunk = new byte[12 + data.Length];
        BinaryPrimitives.WriteUInt32BigEndian(chunk, (uint)data.Length);
        Encoding.ASCII.GetBytes(type, chunk.AsSpan(4, 4));
        data.CopyTo(chunk.AsSpan(8));
        BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(8 + data.Length), Crc32(chunk.AsSpan(4, 4 + data.Length)));
        return chunk;
    }

    private static readonly uint[] CrcTable = MakeCrcTable();

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

    /// <summary>The CRC-32 (ISO-HDLC, the one PNG and zlib use).</summary>
    public static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFFu;
        foreach (byte b in data) c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }
}
