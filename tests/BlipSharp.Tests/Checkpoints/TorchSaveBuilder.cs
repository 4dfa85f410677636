using System.Buffers.Binary;
using System.IO.Compression;
using System.Numerics;
using System.Text;

namespace BlipSharp.Tests.Checkpoints;

/// <summary>
/// Writes pickle opcodes by hand, the way torch.save (protocol 2) does, so tests can build small checkpoints
/// without Python. Each method appends one opcode (or a short fixed sequence) and returns the builder.
/// </summary>
internal sealed class PickleBuilder
{
    private readonly List<byte> _bytes = new();

    public byte[] ToArray() => _bytes.ToArray();

    public PickleBuilder Raw(params byte[] bytes) { _bytes.AddRange(bytes); return this; }

    public PickleBuilder Proto(int protocol) => Raw(0x80, (byte)protocol);
    public PickleBuilder Stop() => Raw((byte)'.');
    public PickleBuilder Mark() => Raw((byte)'(');
    public PickleBuilder None() => Raw((byte)'N');
    public PickleBuilder Bool(bool value) => Raw(value ? (byte)0x88 : (byte)0x89);
    public PickleBuilder EmptyDict() => Raw((byte)'}');
    public PickleBuilder EmptyList() => Raw((byte)']');
    public PickleBuilder EmptyTuple() => Raw((byte)')');
    public PickleBuilder Tuple() => Raw((byte)'t');
    public PickleBuilder Tuple1() => Raw(0x85);
    public PickleBuilder Tuple2() => Raw(0x86);
    public PickleBuilder Tuple3() => Raw(0x87);
    public PickleBuilder SetItem() => Raw((byte)'s');
    public PickleBuilder SetItems() => Raw((byte)'u');
    public PickleBuilder Append() => Raw((byte)'a');
    public PickleBuilder Appends() => Raw((byte)'e');
    public PickleBuilder Reduce() => Raw((byte)'R');
    public PickleBuilder NewObj() => Raw(0x81);
    public PickleBuilder Build() => Raw((byte)'b');
    public PickleBuilder BinPersId() => Raw((byte)'Q');
    public PickleBuilder Memoize() => Raw(0x94);
    public PickleBuilder StackGlobal() => Raw(0x93);

    public PickleBuilder Put(int index) => index < 256 ? Raw((byte)'q', (byte)index) : Raw((byte)'r').U32((uint)index);
    public PickleBuilder Get(int index) => index < 256 ? Raw((byte)'h', (byte)index) : Raw((byte)'j').U32((uint)index);

    public PickleBuilder Frame(long length)
    {
        Raw(0x95);
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(b, length);
        return Raw(b.ToArray());
    }

    /// <summary>An int as pickle writes it: BININT1, BININT2, BININT, else LONG1.</summary>
    public PickleBuilder Int(BigInteger value)
    {
        if (value >= 0 && value < 256) return Raw((byte)'K', (byte)value);
        if (value >= 0 && value < 65536) return Raw((byte)'M', (byte)(value & 0xff), (byte)(value >> 8));
        if (value >= int.MinValue && value <= int.MaxValue)
        {
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(b, (int)value);
            return Raw((byte)'J').Raw(b.ToArray());
        }
        byte[] le = value.ToByteArray(isUnsigned: false, isBigEndian: false);
        return Raw(0x8a, (byte)le.Length).Raw(le);
    }

    public PickleBuilder Float(double value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteDoubleBigEndian(b, value);
        return Raw((byte)'G').Raw(b.ToArray());
    }

    /// <summary>BINUNICODE (4-byte length).</summary>
    public PickleBuilder Str(string value)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(value);
        return Raw((byte)'X').U32((uint)utf8.Length).Raw(utf8);
    }

    /// <summary>SHORT_BINUNICODE (protocol 4).</summary>
    public PickleBuilder ShortStr(string value)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(value);
        return Raw(0x8c, (byte)utf8.Length).Raw(utf8);
    }

    public PickleBuilder ShortBytes(byte[] value) => Raw((byte)'C', (byte)value.Length).Raw(value);

    public PickleBuilder Global(string module, string name) => Raw((byte)'c').Raw(Encoding.UTF8.GetBytes($"{module}\n{name}\n"));

    /// <summary>A tuple of ints (MARK ... TUPLE, or EMPTY_TUPLE).</summary>
    public PickleBuilder IntTuple(params long[] values)
    {
        if (values.Length == 0) return EmptyTuple();
        Mark();
        foreach (long v in values) Int(v);
        return Tuple();
    }

    /// <summary><c>collections.OrderedDict()</c>, the empty form torch writes for backward hooks and state dicts.</summary>
    public PickleBuilder NewOrderedDict() => Global("collections", "OrderedDict").EmptyTuple().Reduce();

    /// <summary>
    /// One tensor exactly as torch.save writes it:
    /// <c>_rebuild_tensor_v2(persistent_load(('storage', torch.&lt;type&gt;, key, 'cpu', numel)), offset, size, stride, False, OrderedDict())</c>.
    /// </summary>
    public PickleBuilder Tensor(string storageType, string key, long numel, long offset, long[] size, long[] stride)
    {
        Global("torch._utils", "_rebuild_tensor_v2");
        Mark();
        Mark().Str("storage").Global("torch", storageType).Str(key).Str("cpu").Int(numel).Tuple().BinPersId();
        Int(offset).IntTuple(size).IntTuple(stride).Bool(false).NewOrderedDict();
        return Tuple().Reduce();
    }

    private PickleBuilder U32(uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        return Raw(b.ToArray());
    }
}

/// <summary>Writes the torch.save zip layout: <c>&lt;prefix&gt;/data.pkl</c>, <c>&lt;prefix&gt;/data/&lt;key&gt;</c>, <c>&lt;prefix&gt;/version</c>.</summary>
internal static class TorchSaveArchive
{
    public static void Write(string path, byte[] pickle, IReadOnlyDictionary<string, byte[]>? storages = null, string prefix = "archive")
    {
        using var zip = ZipFile.Open(path, ZipArchiveMode.Create);
        Add(zip, $"{prefix}/data.pkl", pickle);
        foreach (var (key, bytes) in storages ?? new Dictionary<string, byte[]>()) Add(zip, $"{prefix}/data/{key}", bytes);
        Add(zip, $"{prefix}/version", "3\n"u8.ToArray());
    }

    public static byte[] Bytes<T>(params T[] values) where T : unmanaged =>
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    private static void Add(ZipArchive zip, string name, byte[] bytes)
    {
        var entry = zip.CreateEntry(name, CompressionLevel.NoCompression);
        using var stream = entry.Open();
        stream.Write(bytes);
    }
}
