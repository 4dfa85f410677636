using System.Formats.Tar;
using System.Text;
using BlipSharp.Training.Data;
using Xunit;

namespace BlipSharp.Tests.Training;

public sealed class TarReaderTests
{
    /// <summary>A tar built by .NET's own writer in the given format, from (name, content) pairs.</summary>
    internal static byte[] BuildTar(TarEntryFormat format, params (string Name, byte[] Data)[] members)
    {
        using var ms = new MemoryStream();
        using (var writer = new TarWriter(ms, format, leaveOpen: true))
        {
            foreach (var (name, data) in members)
            {
                TarEntry entry = format switch
                {
                    TarEntryFormat.Ustar => new UstarTarEntry(TarEntryType.RegularFile, name),
                    TarEntryFormat.Pax => new PaxTarEntry(TarEntryType.RegularFile, name),
                    TarEntryFormat.Gnu => new GnuTarEntry(TarEntryType.RegularFile, name),
                    _ => new V7TarEntry(TarEntryType.V7RegularFile, name),
                };
                entry.DataStream = new MemoryStream(data);
                writer.WriteEntry(entry);
            }
        }
        return ms.ToArray();
    }

    private static byte[] Text(string s) => Encoding.UTF8.GetBytes(s);

    private static string LongName(string tail) => string.Join("/", Enumerable.Repeat("a-fairly-long-directory-name", 6)) + "/" + tail;

    [Theory]
    [InlineData(TarEntryFormat.Ustar)]
    [InlineData(TarEntryFormat.Gnu)]
    [InlineData(TarEntryFormat.Pax)]
    [InlineData(TarEntryFormat.V7)]
    public void ReadsMembersAndData(TarEntryFormat format)
    {
        var payload = Enumerable.Range(0, 1500).Select(i => (byte)(i * 7)).ToArray(); // spans three blocks
        var tar = BuildTar(format, ("000001.jpg", payload), ("000001.txt", Text("a cat")), ("empty.txt", []));
        using var reader = new TarStreamReader(new MemoryStream(tar), "t.tar");
        var all = reader.ReadAll().ToList();
        Assert.Equal(["000001.jpg", "000001.txt", "empty.txt"], all.Select(a => a.Entry.Name));
        Assert.Equal(payload, all[0].Data);
        Assert.Equal("a cat", Encoding.UTF8.GetString(all[1].Data));
        Assert.Empty(all[2].Data);
        Assert.All(all, a => Assert.Equal(TarEntryKind.File, a.Entry.Kind));
        Assert.Equal(1500, all[0].Entry.Size);
        Assert.Equal(0, all[0].Entry.DataOffset % 512);
        Assert.Equal(payload, tar.AsSpan((int)all[0].Entry.DataOffset, 1500).ToArray());
    }

    [Theory]
    [InlineData(TarEntryFormat.Gnu)] // 'L' long-name members
    [InlineData(TarEntryFormat.Pax)] // 'x' extended headers with a path record
    [InlineData(TarEntryFormat.Ustar)] // prefix + name
    public void ReadsLongNames(TarEntryFormat format)
    {
        string name = format == TarEntryFormat.Ustar
            ? string.Join("/", Enumerable.Repeat("dir-name-of-twenty-c", 6)) + "/sample-0001.json" // fits prefix (155) + name (100)
            : LongName("sample-0001.json");
        Assert.True(name.Length > 100);
        var tar = BuildTar(format, (name, Text("{}")), ("short.txt", Text("x")));
        using var reader = new TarStreamReader(new MemoryStream(tar), "long.tar");
        var all = reader.ReadAll().ToList();
        Assert.Equal([name, "short.txt"], all.Select(a => a.Entry.Name));
        Assert.Equal("{}", Encoding.UTF8.GetString(all[0].Data));
    }

    [Fact]
    public void SkipsDataOnNonSeekableStreams()
    {
        var tar = BuildTar(TarEntryFormat.Gnu, ("a.jpg", new byte[5000]), (LongName("b.txt"), Text("hello")));
        using var reader = new TarStreamReader(new ForwardOnlyStream(tar), "pipe");
        Assert.Equal("a.jpg", reader.ReadNext()!.Name); // data not read: skipped by reading
        var second = reader.ReadNext()!;
        Assert.Equal(LongName("b.txt"), second.Name);
        Assert.Equal("hello", Encoding.UTF8.GetString(reader.ReadData()));
        Assert.Null(reader.ReadNext());
    }

    [Fact]
    public void TruncatedDataIsAClearError()
    {
        var tar = BuildTar(TarEntryFormat.Ustar, ("000001.txt", Text("fine")), ("000002.jpg", new byte[3000]));
        var cut = tar.AsSpan(0, 512 + 512 + 512 + 1000).ToArray(); // header, data, header, a third of the data
        using var reader = new TarStreamReader(new MemoryStream(cut), "cut.tar");
        Assert.Equal("000001.txt", reader.ReadNext()!.Name);
        Assert.Equal("000002.jpg", reader.ReadNext()!.Name);
        var e = Assert.Throws<DataFormatException>(() => reader.ReadNext()); // skipping needs the missing data
        Assert.Contains("cut.tar", e.Message);
        Assert.Contains("truncated", e.Message);
        Assert.Contains("000002.jpg", e.Message);

        using var reader2 = new TarStreamReader(new ForwardOnlyStream(cut), "cut.tar");
        reader2.ReadNext();
        reader2.ReadNext();
        var e2 = Assert.Throws<DataFormatException>(() => reader2.ReadData());
        Assert.Contains("1000 of 3000 bytes", e2.Message);
    }

    [Fact]
    public void TruncatedHeaderAndBadChecksumAreErrors()
    {
        var tar = BuildTar(TarEntryFormat.Ustar, ("a.txt", Text("x")));
        using (var reader = new TarStreamReader(new MemoryStream(tar.AsSpan(0, 300).ToArray()), "half.tar"))
        {
            var e = Assert.Throws<DataFormatException>(() => reader.ReadNext());
            Assert.Contains("inside a header (300 of 512 bytes)", e.Message);
        }
        var corrupt = tar.ToArray();
        corrupt[10] ^= 0x55;
        using (var reader = new TarStreamReader(new MemoryStream(corrupt), "bad.tar"))
        {
            var e = Assert.Throws<DataFormatException>(() => reader.ReadNext());
            Assert.Contains("checksum", e.Message);
            Assert.Contains("byte offset 0", e.Message);
        }
        var notTar = Encoding.ASCII.GetBytes(new string('z', 1024));
        using (var reader = new TarStreamReader(new MemoryStream(notTar), "text.txt"))
            Assert.Throws<DataFormatException>(() => reader.ReadNext());
    }

    [Fact]
    public void EndOfStreamWithoutTrailerEndsTheArchive()
    {
        var tar = BuildTar(TarEntryFormat.Ustar, ("a.txt", Text("x")));
        var noTrailer = tar.AsSpan(0, 1024).ToArray(); // header + one data block, no zero blocks
        using var reader = new TarStreamReader(new MemoryStream(noTrailer), "t.tar");
        Assert.Single(reader.ReadAll());
    }

    [Theory]
    [InlineData("a/b/000123.jpg", "a/b/000123", "jpg")]
    [InlineData("000123.seg.png", "000123", "seg.png")]
    [InlineData("dir.v2/000123.txt", "dir.v2/000123", "txt")]
    [InlineData("noextension", null, null)]
    [InlineData("dir/.hidden", "dir/", "hidden")] // Python's regex backtracks to key "dir/" too
    public void SplitsKeysLikeWebDataset(string path, string? key, string? ext)
    {
        var (k, e) = WebDataset.SplitKey(path);
        Assert.Equal(key, k);
        Assert.Equal(ext, e);
    }

    [Fact]
    public void GroupsConsecutiveMembersIntoSamples()
    {
        var tar = BuildTar(TarEntryFormat.Gnu,
            ("__meta__", Text("ignored")),
            ("s/000001.jpg", [1]), ("s/000001.txt", Text("one")),
            ("s/000002.jpg", [2]), ("s/000002.json", Text("{\"caption\": \"two\"}")), ("s/000002.cls", Text("7")),
            (LongName("000003.PNG"), [3]));
        var samples = WebDataset.ReadSamples(new MemoryStream(tar), "g.tar").ToList();
        Assert.Equal(["s/000001", "s/000002", LongName("000003")], samples.Select(s => s.Key));
        Assert.Equal(["jpg", "txt"], samples[0].Fields.Keys.Order());
        Assert.Equal(["cls", "jpg", "json"], samples[1].Fields.Keys.Order());
        Assert.Equal(["png"], samples[2].Fields.Keys); // extensions are lower-cased
    }

    /// <summary>A read-only stream that cannot seek, like a pipe or a network response.</summary>
    private sealed class ForwardOnlyStream(byte[] data) : Stream
    {
        private readonly MemoryStream _inner = new(data);

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => _inner.Read(buffer, offset, Math.Min(count, 700));
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
