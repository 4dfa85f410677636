using System.Buffers.Binary;
using System.Diagnostics;
using BlipSharp.Processing;
using BlipSharp.Tests.TestSupport;
using SkiaSharp;
using Xunit;

namespace BlipSharp.Tests.Processing;

public sealed class ImageDecoderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-img-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static void AssertPixels(RgbImage image, int width, int height, byte[] expectedHwc, string what)
    {
        Assert.Equal((width, height), (image.Width, image.Height));
        Assert.True(expectedHwc.AsSpan().SequenceEqual(image.Pixels),
            $"{what}: expected [{string.Join(",", expectedHwc)}] got [{string.Join(",", image.Pixels.ToArray())}]");
    }

    [Fact]
    public void Crc32MatchesTheCheckValue() =>
        Assert.Equal(0xCBF43926u, PngBuilder.Crc32("123456789"u8));

    [Fact]
    public void DecodesFixturePngsWithTheirRecordedSizes()
    {
        using var cases = new FixtureCases(Path.Combine(Fixtures.BlipOriginalDir, "pretrain"));
        foreach (var entry in cases.Json.GetProperty("images").EnumerateArray())
        {
            string path = Path.Combine(Fixtures.BlipOriginalDir, entry.GetProperty("file").GetString()!);
            var image = ImageDecoder.Decode(path);
            Assert.Equal(entry.GetProperty("width").GetInt32(), image.Width);
            Assert.Equal(entry.GetProperty("height").GetInt32(), image.Height);
            Assert.Equal(image.Width * image.Height * 3, image.Pixels.Length);
        }
        var solidPixels = new byte[50 * 80 * 3];
        for (int i = 0; i < solidPixels.Length; i += 3) (solidPixels[i], solidPixels[i + 1], solidPixels[i + 2]) = ((byte)230, (byte)120, (byte)20);
        var orange = ImageDecoder.Decode(PngBuilder.Build(50, 80, 8, PngBuilder.Rgb, solidPixels));
        Assert.Equal((50, 80), (orange.Width, orange.Height));
        for (int i = 0; i < orange.Pixels.Length; i += 3)
            Assert.Equal((230, 120, 20), (orange.Pixels[i], orange.Pixels[i + 1], orange.Pixels[i + 2]));
    }

    [Fact]
    public void PathStreamAndMemoryGiveTheSamePixels()
    {
        var image = Fixtures.HfImages()[0];
        string path = image.Path;
        var fromPath = ImageDecoder.Decode(path);
        using var stream = File.OpenRead(path);
        var fromStream = ImageDecoder.Decode(stream);
        var fromMemory = ImageDecoder.Decode(File.ReadAllBytes(path));
        Assert.True(fromPath.Pixels.SequenceEqual(fromStream.Pixels));
        Assert.True(fromPath.Pixels.SequenceEqual(fromMemory.Pixels));
        Assert.Equal((image.Width, image.Height), (fromPath.Width, fromPath.Height));
    }

    [Fact]
    public void GrayscaleIsExpandedToEqualChannels()
    {
        // Fixture images recorded as mode L (the public set has one, a crop of a photo).
        foreach (var fixture in Fixtures.HfImages().Where(i => i.Mode == "L"))
        {
            var gray = ImageDecoder.Decode(fixture.Path);
            Assert.Equal((fixture.Width, fixture.Height), (gray.Width, gray.Height));
            var p = gray.Pixels;
            for (int i = 0; i < p.Length; i += 3)
                Assert.True(p[i] == p[i + 1] && p[i] == p[i + 2], $"{fixture.Path}: pixel {i / 3} is not gray: {p[i]},{p[i + 1]},{p[i + 2]}");
        }

        // Crafted: 8-bit gray, exact values.
        var png = PngBuilder.Build(3, 1, 8, PngBuilder.Gray, [0, 128, 255]);
        AssertPixels(ImageDecoder.Decode(png), 3, 1, [0, 0, 0, 128, 128, 128, 255, 255, 255], "gray8");
    }

    [Fact]
    public void LowBitDepthGrayScalesLikePil()
    {
        // 2-bit: 0, 1, 2, 3 -> 0, 85, 170, 255 (PIL's L;2 unpacker); 1-bit: mode "1" -> 0 / 255.
        var png2 = PngBuilder.Build(4, 1, 2, PngBuilder.Gray, [0b00_01_10_11]);
        AssertPixels(ImageDecoder.Decode(png2), 4, 1, [0, 0, 0, 85, 85, 85, 170, 170, 170, 255, 255, 255], "gray2");
        var png1 = PngBuilder.Build(3, 1, 1, PngBuilder.Gray, [0b101_00000]);
        AssertPixels(ImageDecoder.Decode(png1), 3, 1, [255, 255, 255, 0, 0, 0, 255, 255, 255], "gray1");
    }

    [Fact]
    public void AlphaIsDroppedNotComposited_SkiaEncodedPng()
    {
        // Unpremultiplied colours under alpha 0, 128 and 255. PIL's convert("RGB") keeps the stored colour.
        var info = new SKImageInfo(3, 1, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        byte[] rgba = [200, 100, 50, 0, 10, 20, 30, 128, 255, 0, 7, 255];
        using var bitmap = new SKBitmap(info);
        System.Runtime.InteropServices.Marshal.Copy(rgba, 0, bitmap.GetPixels(), rgba.Length);
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        var image = ImageDecoder.Decode(data.ToArray());
        AssertPixels(image, 3, 1, [200, 100, 50, 10, 20, 30, 255, 0, 7], "RGBA via Skia encoder");
    }

    [Fact]
    public void AlphaIsDroppedNotComposited_CraftedPngs()
    {
        var rgba = PngBuilder.Build(2, 1, 8, PngBuilder.Rgba, [200, 100, 50, 0, 1, 2, 3, 1]);
        AssertPixels(ImageDecoder.Decode(rgba), 2, 1, [200, 100, 50, 1, 2, 3], "RGBA8");
        var grayAlpha = PngBuilder.Build(2, 1, 8, PngBuilder.GrayAlpha, [77, 0, 250, 10]);
        AssertPixels(ImageDecoder.Decode(grayAlpha), 2, 1, [77, 77, 77, 250, 250, 250], "LA8");
    }

    [Fact]
    public void PaletteIsExpandedAndItsTransparencyDropped()
    {
        byte[] plte = [10, 20, 30, 200, 100, 50, 0, 255, 0];
        byte[] trns = [0, 128]; // index 0 fully transparent, index 1 half
        var png = PngBuilder.Build(4, 1, 8, PngBuilder.Palette, [0, 1, 2, 1], ("PLTE", plte), ("tRNS", trns));
        AssertPixels(ImageDecoder.Decode(png), 4, 1, [10, 20, 30, 200, 100, 50, 0, 255, 0, 200, 100, 50], "palette+tRNS");
    }

    [Fact]
    public void SixteenBitKeepsTheHighByte()
    {
        // 0x12FF would round to 0x13 when scaled; PIL's RGB;16B unpacker keeps 0x12.
        byte[] row = [0x12, 0xFF, 0x80, 0x80, 0xFF, 0x01, 0x00, 0x7F, 0xAB, 0xCD, 0xFF, 0xFF];
        var rgb16 = PngBuilder.Build(2, 1, 16, PngBuilder.Rgb, row);
        AssertPixels(ImageDecoder.Decode(rgb16), 2, 1, [0x12, 0x80, 0xFF, 0x00, 0xAB, 0xFF], "RGB16");
        var rgba16 = PngBuilder.Build(1, 1, 16, PngBuilder.Rgba, [0x12, 0xFF, 0x80, 0x80, 0xFF, 0x01, 0x00, 0x00]);
        AssertPixels(ImageDecoder.Decode(rgba16), 1, 1, [0x12, 0x80, 0xFF], "RGBA16 with alpha 0");
        var gray16 = PngBuilder.Build(2, 1, 16, PngBuilder.Gray, [0x12, 0xFF, 0xFF, 0x00]);
        AssertPixels(ImageDecoder.Decode(gray16), 2, 1, [0x12, 0x12, 0x12, 0xFF, 0xFF, 0xFF], "gray16");
    }

    [Fact]
    public void GammaChunkIsIgnoredLikePil()
    {
        var gama = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(gama, 100000); // gamma 1.0: a colour-managed decoder would brighten
        var png = PngBuilder.Build(2, 1, 8, PngBuilder.Rgb, [10, 64, 128, 200, 230, 250], ("gAMA", gama));
        AssertPixels(ImageDecoder.Decode(png), 2, 1, [10, 64, 128, 200, 230, 250], "RGB with gAMA");
    }

    [Fact]
    public void DecodesLosslessWebp()
    {
        var info = new SKImageInfo(2, 2, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        byte[] rgba = [255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 17, 34, 51, 255];
        using var bitmap = new SKBitmap(info);
        System.Runtime.InteropServices.Marshal.Copy(rgba, 0, bitmap.GetPixels(), rgba.Length);
        using var pixmap = bitmap.PeekPixels()!;
        using var webp = pixmap.Encode(new SKWebpEncoderOptions(SKWebpEncoderCompression.Lossless, 100))!;
        Assert.Equal((byte)'W', webp.ToArray()[8]);
        AssertPixels(ImageDecoder.Decode(webp.ToArray()), 2, 2, [255, 0, 0, 0, 255, 0, 0, 0, 255, 17, 34, 51], "webp lossless");
    }

    [Fact]
    public void DecodesGifFirstFrame()
    {
        // 2x1 GIF89a, 4-colour global palette, LZW (min code size 2): clear, 1, 2, end.
        byte[] gif =
        [
            .."GIF89a"u8, 2, 0, 1, 0, 0x91, 0, 0,
            10, 20, 30, 200, 100, 50, 0, 255, 0, 1, 2, 3,
            0x2C, 0, 0, 0, 0, 2, 0, 1, 0, 0,
            2, 2, 0x8C, 0x0A, 0,
            0x3B,
        ];
        AssertPixels(ImageDecoder.Decode(gif), 2, 1, [200, 100, 50, 0, 255, 0], "gif");
    }

    [Fact]
    public void DecodesBmp()
    {
        // 2x2 24-bit bottom-up BMP; rows are BGR padded to 4 bytes.
        var bmp = new byte[54 + 16];
        "BM"u8.CopyTo(bmp);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(2), bmp.Length);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(10), 54);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(14), 40);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(18), 2);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(22), 2);
        BinaryPrimitives.WriteInt16LittleEndian(bmp.AsSpan(26), 1);
        BinaryPrimitives.WriteInt16LittleEndian(bmp.AsSpan(28), 24);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(34), 16);
        byte[] bottom = [3, 2, 1, 6, 5, 4, 0, 0]; // (1,2,3) (4,5,6)
        byte[] top = [30, 20, 10, 60, 50, 40, 0, 0]; // (10,20,30) (40,50,60)
        bottom.CopyTo(bmp, 54);
        top.CopyTo(bmp, 62);
        AssertPixels(ImageDecoder.Decode(bmp), 2, 2, [10, 20, 30, 40, 50, 60, 1, 2, 3, 4, 5, 6], "bmp");
    }

    // ---- EXIF orientation -------------------------------------------------------------------------------

    /// <summary>A 16x8 JPEG: left half red, right half blue, with an EXIF APP1 orientation tag inserted after SOI.</summary>
    private static byte[] JpegWithOrientation(ushort orientation)
    {
        var info = new SKImageInfo(16, 8, SKColorType.Rgba8888, SKAlphaType.Opaque);
        using var bitmap = new SKBitmap(info);
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 16; x++)
                bitmap.SetPixel(x, y, x < 8 ? new SKColor(255, 0, 0) : new SKColor(0, 0, 255));
        using var encoded = bitmap.Encode(SKEncodedImageFormat.Jpeg, 100);
        var jpeg = encoded.ToArray();
        Assert.Equal(0xFF, jpeg[0]);
        Assert.Equal(0xD8, jpeg[1]);

        // APP1: "Exif\0\0" + big-endian TIFF header + one IFD entry (0x0112 SHORT 1 = orientation).
        byte[] tiff =
        [
            (byte)'M', (byte)'M', 0, 42, 0, 0, 0, 8,
            0, 1,
            0x01, 0x12, 0, 3, 0, 0, 0, 1, (byte)(orientation >> 8), (byte)orientation, 0, 0,
            0, 0, 0, 0,
        ];
        byte[] payload = [.."Exif\0\0"u8, ..tiff];
        int length = payload.Length + 2;
        byte[] app1 = [0xFF, 0xE1, (byte)(length >> 8), (byte)length, ..payload];
        return [0xFF, 0xD8, ..app1, ..jpeg.AsSpan(2)];
    }

    /// <summary>Which quadrant colour (true = red) should appear at the four corners after orientation.</summary>
    private static (int W, int H, bool TopLeftRed, bool BottomRightRed, bool TopRightRed) Expected(ushort o) => o switch
    {
        1 => (16, 8, true, false, false),
        2 => (16, 8, false, true, true),   // mirrored: red on the right
        3 => (16, 8, false, true, true),   // rotated 180: red on the right
        4 => (16, 8, true, false, false),  // flipped vertically: unchanged halves
        5 => (8, 16, true, false, true),   // transposed: red on top
        6 => (8, 16, true, false, true),   // rotated 90 CW: left (red) goes to the top
        7 => (8, 16, false, true, false),  // transverse: red at the bottom
        8 => (8, 16, false, true, false),  // rotated 90 CCW: left (red) goes to the bottom
        _ => throw new ArgumentOutOfRangeException(nameof(o)),
    };

    private static bool IsRed((byte R, byte G, byte B) p) => p.R > 200 && p.B < 60;

    private static bool IsBlue((byte R, byte G, byte B) p) => p.B > 200 && p.R < 60;

    [Theory]
    [InlineData((ushort)1)]
    [InlineData((ushort)2)]
    [InlineData((ushort)3)]
    [InlineData((ushort)4)]
    [InlineData((ushort)5)]
    [InlineData((ushort)6)]
    [InlineData((ushort)7)]
    [InlineData((ushort)8)]
    public void ExifOrientationIsApplied(ushort orientation)
    {
        var jpeg = JpegWithOrientation(orientation);
        var (w, h, topLeftRed, bottomRightRed, topRightRed) = Expected(orientation);
        var image = ImageDecoder.Decode(jpeg);
        Assert.Equal((w, h), (image.Width, image.Height));
        Assert.True(topLeftRed ? IsRed(image[1, 1]) : IsBlue(image[1, 1]), $"orientation {orientation}: top-left {image[1, 1]}");
        Assert.True(bottomRightRed ? IsRed(image[w - 2, h - 2]) : IsBlue(image[w - 2, h - 2]), $"orientation {orientation}: bottom-right {image[w - 2, h - 2]}");
        Assert.True(topRightRed ? IsRed(image[w - 2, 1]) : IsBlue(image[w - 2, 1]), $"orientation {orientation}: top-right {image[w - 2, 1]}");

        var raw = ImageDecoder.Decode(jpeg, new ImageDecoderOptions { ApplyExifOrientation = false });
        Assert.Equal((16, 8), (raw.Width, raw.Height));
        Assert.True(IsRed(raw[1, 1]) && IsBlue(raw[14, 6]), $"stored layout: {raw[1, 1]} {raw[14, 6]}");
    }

    [Fact]
    public void OrientationTransformsMatchPilsExifTranspose()
    {
        // A 3x2 image with distinct pixels, each orientation checked against PIL's transpose definitions.
        byte[] px = new byte[18];
        for (int i = 0; i < 6; i++) px[3 * i] = (byte)(i + 1); // R = 1..6, row-major: row0 = 1 2 3, row1 = 4 5 6
        var image = RgbImage.Create(3, 2, px);
        int[][] expected =
        [
            [1, 2, 3, 4, 5, 6],       // 1 identity (3x2)
            [3, 2, 1, 6, 5, 4],       // 2 FLIP_LEFT_RIGHT (3x2)
            [6, 5, 4, 3, 2, 1],       // 3 ROTATE_180 (3x2)
            [4, 5, 6, 1, 2, 3],       // 4 FLIP_TOP_BOTTOM (3x2)
            [1, 4, 2, 5, 3, 6],       // 5 TRANSPOSE (2x3)
            [4, 1, 5, 2, 6, 3],       // 6 ROTATE_270 = 90 clockwise (2x3)
            [6, 3, 5, 2, 4, 1],       // 7 TRANSVERSE (2x3)
            [3, 6, 2, 5, 1, 4],       // 8 ROTATE_90 = 90 counter-clockwise (2x3)
        ];
        for (int o = 1; o <= 8; o++)
        {
            var r = ImageDecoder.Orient(image, (SKEncodedOrigin)o);
            Assert.Equal(o >= 5 ? (2, 3) : (3, 2), (r.Width, r.Height));
            var reds = Enumerable.Range(0, 6).Select(i => (int)r.Pixels[3 * i]).ToArray();
            Assert.True(expected[o - 1].SequenceEqual(reds), $"orientation {o}: got [{string.Join(",", reds)}]");
        }
    }

    // ---- Corrupt and hostile inputs ---------------------------------------------------------------------

    private ImageDecodeException AssertRefused(string name, byte[] bytes, params string[] reasonWords)
    {
        string path = Write(name, bytes);
        var e = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(path));
        Assert.Contains(path, e.Message);
        Assert.Equal(path, e.SourceName);
        foreach (string word in reasonWords) Assert.Contains(word, e.Message, StringComparison.OrdinalIgnoreCase);
        return e;
    }

    [Fact]
    public void EmptyFileIsRefused() => AssertRefused("empty.png", [], "empty");

    [Fact]
    public void RandomBytesAreRefused()
    {
        var bytes = new byte[4096];
        new Random(1234).NextBytes(bytes);
        AssertRefused("noise.jpg", bytes, "not a recognised image format");
        AssertRefused("text.png", "hello, this is not an image\n"u8.ToArray(), "not a recognised image format");
    }

    [Fact]
    public void TruncatedPngIsRefused()
    {
        var full = File.ReadAllBytes(Fixtures.HfImages().OrderByDescending(i => i.Width * i.Height).First().Path);
        AssertRefused("truncated.png", full[..(full.Length / 2)], "truncated");
        AssertRefused("header-only.png", full[..40], "");
    }

    [Fact]
    public void CorruptPixelDataIsRefused()
    {
        var png = PngBuilder.Build(4, 4, 8, PngBuilder.Rgb, new byte[48]);
        // Replace the IDAT payload with garbage of the same length (keeping a valid CRC so only zlib fails).
        int idat = png.AsSpan().IndexOf("IDAT"u8);
        int len = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(idat - 4));
        for (int i = 0; i < len; i++) png[idat + 4 + i] = 0xFF;
        BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(idat + 4 + len), PngBuilder.Crc32(png.AsSpan(idat, 4 + len)));
        AssertRefused("corrupt.png", png);
    }

    [Fact]
    public void MissingFileAndDirectoryAreRefused()
    {
        string missing = Path.Combine(_dir, "does-not-exist.png");
        var e = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(missing));
        Assert.Contains(missing, e.Message);
        Assert.Contains("does not exist", e.Message);
        var d = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(_dir));
        Assert.Contains("directory", d.Message);
    }

    [Fact]
    public void StreamAndMemoryErrorsNameTheSource()
    {
        var e = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(new MemoryStream([1, 2, 3]), sourceName: "upload #7"));
        Assert.Contains("upload #7", e.Message);
        var m = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(ReadOnlyMemory<byte>.Empty));
        Assert.Contains("memory", m.Message);
        Assert.Contains("empty", m.Message);
    }

    /// <summary>A valid PNG header declaring <paramref name="width"/> x <paramref name="height"/> with one tiny IDAT.</summary>
    private static byte[] BombPng(int width, int height) =>
    [
        ..PngBuilder.Signature,
        ..PngBuilder.Chunk("IHDR", PngBuilder.Ihdr(width, height, 8, PngBuilder.Rgb)),
        ..PngBuilder.Chunk("IDAT", PngBuilder.Deflate(new byte[64])),
        ..PngBuilder.Chunk("IEND", []),
    ];

    [Fact]
    public void HugeDeclaredDimensionsAreRefusedBeforeAllocating()
    {
        ImageDecoder.Decode(PngBuilder.Build(1, 1, 8, PngBuilder.Rgb, [1, 2, 3])); // load the native library first
        var bomb = BombPng(100_000, 100_000);
        long before = GC.GetTotalAllocatedBytes(precise: true);
        var watch = Stopwatch.StartNew();
        var e = AssertRefused("bomb.png", bomb, "100000x100000", "10,000,000,000 pixels", "limit", "MaxPixels");
        watch.Stop();
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        Assert.True(watch.ElapsedMilliseconds < 1000, $"refusal took {watch.ElapsedMilliseconds} ms");
        Assert.True(allocated < 16 << 20, $"refusal allocated {allocated} managed bytes");
        Assert.Contains("89,478,485", e.Message);

        // The limit is configurable, and just above it is refused while at the limit is allowed.
        var small = new ImageDecoderOptions { MaxPixels = 99 };
        var tenByTen = PngBuilder.Build(10, 10, 8, PngBuilder.Rgb, new byte[300]);
        Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(tenByTen, small));
        Assert.Equal(10, ImageDecoder.Decode(tenByTen, new ImageDecoderOptions { MaxPixels = 100 }).Width);
    }
}
