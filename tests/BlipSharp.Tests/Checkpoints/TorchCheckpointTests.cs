using System.Numerics;
using BlipSharp.Checkpoints;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Checkpoints;

/// <summary>torch.save archives written by hand (pickle opcodes + zip) to exercise the reader's corners.</summary>
public sealed class TorchCheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-pth-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, PickleBuilder pickle, Dictionary<string, byte[]>? storages = null)
    {
        string path = Path.Combine(_dir, name);
        TorchSaveArchive.Write(path, pickle.ToArray(), storages);
        return path;
    }

    /// <summary>A dict {name: tensor} where every tensor is a view of one float storage "0" holding 0..11.</summary>
    private string WriteViewsOfOneStorage()
    {
        var p = new PickleBuilder().Proto(2).Global("collections", "OrderedDict").EmptyTuple().Reduce().Mark();
        p.Str("full").Tensor("FloatStorage", "0", 12, 0, [3, 4], [4, 1]);
        p.Str("transposed").Tensor("FloatStorage", "0", 12, 0, [4, 3], [1, 4]);
        p.Str("rows_1_2").Tensor("FloatStorage", "0", 12, 4, [2, 4], [4, 1]);
        p.Str("column_2").Tensor("FloatStorage", "0", 12, 2, [3], [4]);
        p.Str("scalar_7").Tensor("FloatStorage", "0", 12, 7, [], []);
        p.SetItems().Stop();
        float[] values = Enumerable.Range(0, 12).Select(i => (float)i).ToArray();
        return Write("views.pth", p, new() { ["0"] = TorchSaveArchive.Bytes(values) });
    }

    private static float[] Values(Tensor t) => t.contiguous().to_type(ScalarType.Float32).data<float>().ToArray();

    [Fact]
    public void ViewsOfASharedStorageKeepSizeStrideAndOffset()
    {
        var sd = TorchCheckpoint.LoadStateDict(WriteViewsOfOneStorage());
        Assert.Equal(["full", "transposed", "rows_1_2", "column_2", "scalar_7"], sd.Keys);
        Assert.Equal(new long[] { 3, 4 }, sd["full"].shape);
        Assert.Equal(Enumerable.Range(0, 12).Select(i => (float)i), Values(sd["full"]));

        Assert.Equal(new long[] { 4, 3 }, sd["transposed"].shape);
        Assert.False(sd["transposed"].is_contiguous());
        Assert.Equal(Values(sd["full"].t()), Values(sd["transposed"]));
        Assert.Equal(new float[] { 0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11 }, Values(sd["transposed"]));

        Assert.Equal(new float[] { 4, 5, 6, 7, 8, 9, 10, 11 }, Values(sd["rows_1_2"]));
        Assert.Equal(new float[] { 2, 6, 10 }, Values(sd["column_2"]));
        Assert.Empty(sd["scalar_7"].shape);
        Assert.Equal(7f, sd["scalar_7"].ToSingle());

        // One storage, as torch.load gives it: writing through one view shows in the others.
        sd["full"][1, 2] = tensor(-1f);
        Assert.Equal(-1f, sd["transposed"][2, 1].ToSingle());
        Assert.Equal(-1f, sd["rows_1_2"][0, 2].ToSingle());
        Assert.Equal(-1f, sd["column_2"][1].ToSingle());
        foreach (var t in sd.Values) t.Dispose();
    }

    [Fact]
    public void ReadsEachStorageTypeFromItsRawBytes()
    {
        float[] halfValues = [1.5f, -2.0f, 65504f, 0.000061035156f];
        float[] bf16Values = [1.5f, -2.0f, 0.1015625f, 3.3895314e38f];
        long[] longs = [long.MinValue, -1, 0, long.MaxValue];
        var storages = new Dictionary<string, byte[]>
        {
            ["h"] = TorchSaveArchive.Bytes(halfValues.Select(v => BitConverter.HalfToUInt16Bits((Half)v)).ToArray()),
            ["b"] = TorchSaveArchive.Bytes(bf16Values.Select(v => (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16)).ToArray()),
            ["l"] = TorchSaveArchive.Bytes(longs),
            ["i"] = TorchSaveArchive.Bytes(new[] { int.MinValue, 5 }),
            ["d"] = TorchSaveArchive.Bytes(new[] { Math.PI, -1e300 }),
            ["u"] = new byte[] { 0, 255 },
            ["z"] = new byte[] { 1, 0, 1 },
        };
        var p = new PickleBuilder().Proto(2).EmptyDict().Mark();
        p.Str("f16").Tensor("HalfStorage", "h", 4, 0, [2, 2], [2, 1]);
        p.Str("bf16").Tensor("BFloat16Storage", "b", 4, 0, [4], [1]);
        p.Str("i64").Tensor("LongStorage", "l", 4, 0, [4], [1]);
        p.Str("i32").Tensor("IntStorage", "i", 2, 0, [2], [1]);
        p.Str("f64").Tensor("DoubleStorage", "d", 2, 0, [2], [1]);
        p.Str("u8").Tensor("ByteStorage", "u", 2, 0, [2], [1]);
        p.Str("bool").Tensor("BoolStorage", "z", 3, 0, [3], [1]);
        p.SetItems().Stop();
        var sd = TorchCheckpoint.LoadStateDict(Write("dtypes.pth", p, storages));

        Assert.Equal(ScalarType.Float16, sd["f16"].dtype);
        Assert.Equal(halfValues, Values(sd["f16"]));
        Assert.Equal(ScalarType.BFloat16, sd["bf16"].dtype);
        Assert.Equal(bf16Values, Values(sd["bf16"]));
        Assert.Equal(ScalarType.Int64, sd["i64"].dtype);
        Assert.Equal(longs, sd["i64"].data<long>().ToArray());
        Assert.Equal(new[] { int.MinValue, 5 }, sd["i32"].data<int>().ToArray());
        Assert.Equal(new[] { Math.PI, -1e300 }, sd["f64"].data<double>().ToArray());
        Assert.Equal(new byte[] { 0, 255 }, sd["u8"].data<byte>().ToArray());
        Assert.Equal(new[] { true, false, true }, sd["bool"].data<bool>().ToArray());

        // dtype converts floating-point tensors only.
        var asF32 = TorchCheckpoint.LoadStateDict(Path.Combine(_dir, "dtypes.pth"), dtype: ScalarType.Float32);
        Assert.Equal(ScalarType.Float32, asF32["bf16"].dtype);
        Assert.Equal(ScalarType.Float32, asF32["f64"].dtype);
        Assert.Equal(ScalarType.Int64, asF32["i64"].dtype);
        Assert.Equal(ScalarType.Bool, asF32["bool"].dtype);
        Assert.Equal(bf16Values, Values(asF32["bf16"]));
    }

    [Fact]
    public void ReadsTheObjectGraphTypes()
    {
        var p = new PickleBuilder().Proto(2).EmptyDict().Put(0).Mark();
        p.Str("small").Int(7);
        p.Str("medium").Int(40000);
        p.Str("negative").Int(-5);
        p.Str("big").Int(1L << 40);
        p.Str("huge").Int(BigInteger.Pow(2, 70));
        p.Str("float").Float(-0.125);
        p.Str("true").Bool(true);
        p.Str("none").None();
        p.Str("text").Str("héllo");
        p.Str("bytes").Global("_codecs", "encode").Str("ab\u00ff").Str("latin1").Tuple2().Reduce();
        p.Str("short_bytes").ShortBytes([1, 2, 3]);
        p.Str("list").EmptyList().Put(1).Mark().Int(1).Str("two").Appends();
        p.Str("same_list").Get(1);
        p.Str("tuple").Int(1).Float(2.5).None().Tuple3();
        p.Str("set").Global("__builtin__", "set").EmptyList().Int(3).Append().Tuple1().Reduce();
        p.Str("size").Global("torch", "Size").IntTuple(2, 3).Tuple1().Reduce();
        // An optimizer-like dict with int keys, as torch.optim writes state.
        p.Str("state").EmptyDict().Int(0).EmptyDict().Str("step").Int(10).SetItem().SetItem();
        // argparse.Namespace the way protocol 2 writes it: NEWOBJ then BUILD with its __dict__.
        p.Str("args").Global("argparse", "Namespace").EmptyTuple().NewObj().EmptyDict().Str("lr").Float(1e-4).SetItem().Build();
        // A state_dict OrderedDict carries _metadata as an attribute (BUILD), not as an item.
        p.Str("ordered").NewOrderedDict().Mark().Str("z").Int(1).Str("a").Int(2).SetItems()
            .EmptyDict().Str("_metadata").NewOrderedDict().SetItem().Build();
        p.SetItems().Stop();

        var root = Assert.IsType<Dictionary<string, object?>>(TorchCheckpoint.Load(Write("graph.pth", p)));
        Assert.Equal(7L, root["small"]);
        Assert.Equal(40000L, root["medium"]);
        Assert.Equal(-5L, root["negative"]);
        Assert.Equal(1L << 40, root["big"]);
        Assert.Equal(BigInteger.Pow(2, 70), root["huge"]);
        Assert.Equal(-0.125, root["float"]);
        Assert.Equal(true, root["true"]);
        Assert.Null(root["none"]);
        Assert.Equal("héllo", root["text"]);
        Assert.Equal(new byte[] { (byte)'a', (byte)'b', 0xff }, root["bytes"]);
        Assert.Equal(new byte[] { 1, 2, 3 }, root["short_bytes"]);
        var list = Assert.IsType<List<object?>>(root["list"]);
        Assert.Equal(new object?[] { 1L, "two" }, list);
        Assert.Same(list, root["same_list"]);
        Assert.Equal(new object?[] { 1L, 2.5, null }, root["tuple"]);
        Assert.Equal(new object?[] { 3L }, Assert.IsType<HashSet<object?>>(root["set"]));
        Assert.Equal(new object?[] { 2L, 3L }, root["size"]);
        var state = Assert.IsType<Dictionary<object, object?>>(root["state"]);
        Assert.Equal(10L, Assert.IsType<Dictionary<string, object?>>(state[0L])["step"]);
        var args = Assert.IsType<PickledObject>(root["args"]);
        Assert.Equal("argparse.Namespace", args.ClassName);
        Assert.Equal(1e-4, args.Attributes["lr"]);
        var ordered = Assert.IsType<Dictionary<string, object?>>(root["ordered"]);
        Assert.Equal(["z", "a"], ordered.Keys);
        Assert.Equal(
            ["small", "medium", "negative", "big", "huge", "float", "true", "none", "text", "bytes", "short_bytes", "list", "same_list",
             "tuple", "set", "size", "state", "args", "ordered"],
            root.Keys);
    }

    [Fact]
    public void ReadsProtocolFourFramesMemoizeAndStackGlobal()
    {
        var p = new PickleBuilder().Proto(4).Frame(0).EmptyDict().Memoize().Mark();
        p.ShortStr("w").Memoize();
        p.ShortStr("torch._utils").ShortStr("_rebuild_tensor_v2").StackGlobal().Memoize();
        p.Mark().Mark().ShortStr("storage").ShortStr("torch").ShortStr("FloatStorage").StackGlobal().ShortStr("0").ShortStr("cpu").Int(2).Tuple().BinPersId();
        p.Int(0).IntTuple(2).IntTuple(1).Bool(false).NewOrderedDict().Tuple().Reduce();
        p.ShortStr("same").Get(0);
        p.SetItems().Stop();
        var root = Assert.IsType<Dictionary<string, object?>>(
            TorchCheckpoint.Load(Write("p4.pth", p, new() { ["0"] = TorchSaveArchive.Bytes(3f, 4f) })));
        Assert.Equal(new float[] { 3, 4 }, Values(Assert.IsType<Tensor>(root["w"])));
        Assert.Same(root, root["same"]); // memo 0 is the dict itself
    }

    [Fact]
    public void FindsTheStateDictUnderAKnownKeyAndDisposesTheRest()
    {
        var p = new PickleBuilder().Proto(2).EmptyDict().Mark();
        p.Str("epoch").Int(3);
        p.Str("state_dict").NewOrderedDict().Mark().Str("w").Tensor("FloatStorage", "0", 2, 0, [2], [1]).SetItems();
        p.Str("optimizer").EmptyDict().Str("exp_avg").Tensor("FloatStorage", "1", 2, 0, [2], [1]).SetItem();
        p.SetItems().Stop();
        string path = Write("nested.pth", p, new() { ["0"] = TorchSaveArchive.Bytes(1f, 2f), ["1"] = TorchSaveArchive.Bytes(5f, 6f) });

        var sd = TorchCheckpoint.LoadStateDict(path);
        Assert.Equal(["w"], sd.Keys);
        Assert.Equal(new float[] { 1, 2 }, Values(sd["w"]));
        Assert.Equal(["w"], TorchCheckpoint.LoadStateDict(path, key: "state_dict").Keys);

        var e = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.LoadStateDict(path, key: "model"));
        Assert.Contains(path, e.Message);
        Assert.Contains("no key 'model'", e.Message);
        Assert.Contains("'epoch' (int), 'state_dict' (dict of 1 tensors), 'optimizer' (dict of 1 tensors)", e.Message);

        e = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.LoadStateDict(path, key: "epoch"));
        Assert.Contains("'epoch' holds a int, not a dict of tensors", e.Message);
    }

    [Fact]
    public void OneTensorObjectUnderTwoNamesGetsTwoHandles()
    {
        var p = new PickleBuilder().Proto(2).EmptyDict().Mark();
        p.Str("a").Tensor("FloatStorage", "0", 2, 0, [2], [1]).Put(9).Str("b").Get(9);
        p.SetItems().Stop();
        string path = Write("same-object.pth", p, new() { ["0"] = TorchSaveArchive.Bytes(1f, 2f) });
        var root = Assert.IsType<Dictionary<string, object?>>(TorchCheckpoint.Load(path));
        Assert.Same(root["a"], root["b"]);

        var sd = TorchCheckpoint.LoadStateDict(path);
        Assert.NotSame(sd["a"], sd["b"]);
        sd["a"].Dispose();
        Assert.Equal(new float[] { 1, 2 }, Values(sd["b"]));
    }

    [Fact]
    public void NoStateDictListsTheTopLevelKeys()
    {
        var p = new PickleBuilder().Proto(2).EmptyDict().Mark().Str("epoch").Int(3).Str("weights").EmptyList().SetItems().Stop();
        string path = Write("no-weights.pth", p);
        var e = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.LoadStateDict(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("'epoch' (int), 'weights' (list of 0)", e.Message);
    }

    [Theory]
    [InlineData("os", "system")]
    [InlineData("builtins", "eval")]
    [InlineData("torch.storage", "_load_from_bytes")]
    [InlineData("numpy.core.multiarray", "_reconstruct")]
    public void DisallowedGlobalIsRejectedNamingIt(string module, string name)
    {
        var p = new PickleBuilder().Proto(2).Global(module, name).Str("echo pwned").Tuple1().Reduce().Stop();
        string path = Write("evil.pth", p);
        var e = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Load(path));
        Assert.Contains($"global '{module}.{name}' is not allowed", e.Message);
        Assert.Contains(path, e.Message);
        Assert.Contains("offset 2", e.Message);
    }

    [Fact]
    public void TruncatedArchiveIsRejected()
    {
        string good = WriteViewsOfOneStorage();
        byte[] bytes = File.ReadAllBytes(good);
        foreach (int keep in new[] { bytes.Length - 10, bytes.Length / 2, 100 })
        {
            string bad = Path.Combine(_dir, $"truncated-{keep}.pth");
            File.WriteAllBytes(bad, bytes[..keep]);
            var e = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Load(bad));
            Assert.Contains(bad, e.Message);
            Assert.Contains("truncated", e.Message);
        }
    }

    [Fact]
    public void TruncatedPickleIsRejected()
    {
        var p = new PickleBuilder().Proto(2).EmptyDict().Str("key"); // no value, no STOP
        string path = Write("short-pickle.pth", p);
        Assert.Contains("without a STOP opcode (truncated)", Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Load(path)).Message);

        var cut = new PickleBuilder().Proto(2).Raw((byte)'X', 10, 0, 0, 0, (byte)'a'); // BINUNICODE of 10 bytes with 1 present
        path = Write("cut-string.pth", cut);
        var e = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Load(path));
        Assert.Contains("BINUNICODE) at offset 2 needs 10 bytes", e.Message);
    }

    [Fact]
    public void UnknownOpcodeIsReportedWithItsByteAndOffset()
    {
        var p = new PickleBuilder().Proto(2).EmptyDict().Raw(0xff).Stop();
        string path = Write("bad-op.pth", p);
        var e = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Load(path));
        Assert.Contains("opcode 0xff", e.Message);
        Assert.Contains("at offset 3", e.Message);
        Assert.Contains(path, e.Message);

        var inst = new PickleBuilder().Proto(2).Raw((byte)'i').Stop(); // INST: a real opcode we do not run
        e = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Load(Write("inst.pth", inst)));
        Assert.Contains("opcode 0x69 (INST) at offset 2", e.Message);
    }

    [Fact]
    public void MissingStorageEntryIsRejected()
    {
        var p = new PickleBuilder().Proto(2).EmptyDict().Str("w").Tensor("FloatStorage", "7", 2, 0, [2], [1]).SetItem().Stop();
        string path = Write("missing.pth", p, new() { ["0"] = TorchSaveArchive.Bytes(1f, 2f) });
        var e = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Load(path));
        Assert.Contains("archive/data/7", e.Message);
        Assert.Contains("missing storage", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void StorageTooSmallForSizeAndStrideIsRejected()
    {
        var p = new PickleBuilder().Proto(2).EmptyDict().Str("w").Tensor("FloatStorage", "0", 4, 1, [2, 2], [2, 1]).SetItem().Stop();
        string path = Write("small.pth", p, new() { ["0"] = TorchSaveArchive.Bytes(1f, 2f, 3f, 4f) });
        var e = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Load(path));
        Assert.Contains("storage '0' has 4 elements, too small for a tensor of size [2, 2], stride [2, 1] at offset 1 (needs 5)", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void StorageEntryShorterThanItsElementCountIsRejected()
    {
        var p = new PickleBuilder().Proto(2).EmptyDict().Str("w").Tensor("FloatStorage", "0", 4, 0, [4], [1]).SetItem().Stop();
        string path = Write("short-storage.pth", p, new() { ["0"] = TorchSaveArchive.Bytes(1f, 2f) });
        var e = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Load(path));
        Assert.Contains("holds 8 bytes but its storage is 4 x Float32 = 16 bytes (truncated)", e.Message);
    }

    [Fact]
    public void LegacyAndForeignFormatsAreRejected()
    {
        string legacy = Path.Combine(_dir, "legacy.pth");
        File.WriteAllBytes(legacy, [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, (byte)'.', 0x80, 0x02]);
        Assert.Contains("legacy torch.save format (torch < 1.6", Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Load(legacy)).Message);

        string text = Path.Combine(_dir, "text.pth");
        File.WriteAllText(text, "hello, not a checkpoint");
        Assert.Contains("not a torch.save archive", Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Load(text)).Message);

        string noPickle = Path.Combine(_dir, "script.pt");
        using (var zip = System.IO.Compression.ZipFile.Open(noPickle, System.IO.Compression.ZipArchiveMode.Create))
        {
            zip.CreateEntry("model/constants.pkl");
            zip.CreateEntry("model/code/__torch__.py");
        }
        Assert.Contains("TorchScript archive", Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Load(noPickle)).Message);
    }

    [Fact]
    public void ChunkedCopyFillsTheWholeStorage()
    {
        float[] values = Enumerable.Range(0, 10).Select(i => i * 1.5f).ToArray();
        using var stream = new MemoryStream(TorchSaveArchive.Bytes(values));
        using var target = empty(10, ScalarType.Float32);
        TorchArchiveReader.ReadInto(stream, target, 40, "test", chunkBytes: 12); // 3 floats per chunk
        Assert.Equal(values, target.data<float>().ToArray());
    }
}
