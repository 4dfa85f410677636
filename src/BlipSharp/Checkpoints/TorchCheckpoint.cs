using System.IO.Compression;
using System.Numerics;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Checkpoints;

/// <summary>
/// Reads PyTorch <c>torch.save</c> files (<c>pytorch_model.bin</c>, salesforce BLIP <c>.pth</c>) without Python.
/// <para>
/// The format (torch 1.6 and later) is a zip archive with one top folder: <c>&lt;name&gt;/data.pkl</c> (a pickle of the
/// saved object), <c>&lt;name&gt;/data/&lt;key&gt;</c> (the raw bytes of each storage, little-endian) and
/// <c>&lt;name&gt;/version</c>. The pickle is read by a restricted unpickler that runs no code: it knows the few
/// globals torch writes for tensors and state dicts (<c>torch._utils._rebuild_tensor_v2</c>,
/// <c>torch._utils._rebuild_parameter</c>, <c>collections.OrderedDict</c>, the <c>torch.*Storage</c> types,
/// <c>torch.Size</c>, <c>builtins.set</c>, <c>_codecs.encode</c> for bytes, <c>argparse.Namespace</c>) and rejects
/// every other global, naming it.
/// </para>
/// <para>
/// Tensors are what <c>torch.load</c> gives: views of their storage with the saved size, stride and offset, so tensors
/// that shared a storage when saved (tied weights) share it again, and a saved non-contiguous view stays
/// non-contiguous (call <c>contiguous()</c> where that matters). <c>requires_grad</c> is not restored.
/// The legacy format of torch before 1.6 (a bare pickle stream, or a tar file) is rejected with a message saying so.
/// </para>
/// </summary>
public static class TorchCheckpoint
{
    /// <summary>
    /// The keys under which <see cref="LoadStateDict"/> looks for the weights when the top level is not itself a
    /// dict of tensors, in this order (salesforce BLIP uses <c>model</c>).
    /// </summary>
    public static IReadOnlyList<string> StateDictKeys { get; } = ["model", "state_dict", "model_state_dict", "module"];

    /// <summary>
    /// Reads the whole object graph of a <c>torch.save</c> file. Python values come out as: dict and OrderedDict with
    /// string keys -> <see cref="Dictionary{TKey, TValue}"/> of string to object? (enumerating in file order; dicts with
    /// other keys, e.g. an optimizer's integer parameter ids, -> Dictionary of object to object?), list ->
    /// <see cref="List{T}"/> of object?, tuple and <c>torch.Size</c> -> object?[], int -> long (a
    /// <see cref="BigInteger"/> beyond 64 bits), float -> double, bool, str -> string, bytes -> byte[], None -> null,
    /// set -> <see cref="HashSet{T}"/> of object?, tensor or parameter -> <see cref="Tensor"/> on the CPU, an
    /// allow-listed config object -> <see cref="PickledObject"/>. Objects referenced twice in the file are one object here.
    /// Attributes that torch attaches to a state_dict OrderedDict (<c>_metadata</c>: per-module version numbers) are
    /// not returned. The caller owns (and disposes) the returned tensors.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="CheckpointFormatException">The file is not a readable torch.save archive; the message names the file and the problem.</exception>
    public static object? Load(string path)
    {
        using var reader = new TorchArchiveReader(path);
        return reader.Read();
    }

    /// <summary>
    /// Reads the tensor dictionary (state dict) of a <c>torch.save</c> file: the top level if it is a dict of tensors,
    /// else the dict under <paramref name="key"/>, else the first of <see cref="StateDictKeys"/> that holds a dict of tensors.
    /// Entries keep the file's order. Tensors that share storage in the file (tied weights) share it here too.
    /// Every other tensor in the file (optimizer state, queues outside the dict) is disposed.
    /// </summary>
    /// <param name="path">The checkpoint file.</param>
    /// <param name="key">The top-level key that holds the weights (e.g. <c>"model"</c>, <c>"state_dict"</c>), or null to find it.</param>
    /// <param name="dtype">With a value, floating-point tensors are converted to it (integer and bool tensors keep their type).</param>
    /// <exception cref="CheckpointFormatException">The file is unreadable, or has no dict of tensors where one was looked for; the message lists the top-level keys.</exception>
    public static Dictionary<string, Tensor> LoadStateDict(string path, string? key = null, ScalarType? dtype = null)
    {
        var root = Load(path);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        bool success = false;
        try
        {
            var weights = FindStateDict(root, path, key);
            var used = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
            foreach (var (name, value) in weights)
            {
                var tensor = (Tensor)value!;
                if (dtype is { } target && tensor.is_floating_point() && tensor.dtype != target)
                    tensor = tensor.to_type(target);
                else if (!used.Add(tensor))
                    tensor = tensor.view(tensor.shape); // one pickled object under two names: give each name its own handle
                result.Add(name, tensor);
            }
            success = true;
            return result;
        }
        finally
        {
            var keep = success ? new HashSet<Tensor>(result.Values, ReferenceEqualityComparer.Instance) : [];
            foreach (var t in EnumerateTensors(root))
            {
                if (!keep.Contains(t)) t.Dispose();
            }
            if (!success)
            {
                foreach (var t in result.Values) t.Dispose();
            }
        }
    }

    private static Dictionary<string, object?> FindStateDict(object? root, string path, string? key)
    {
        if (key is not null)
        {
            if (root is not Dictionary<string, object?> top)
                throw new CheckpointFormatException($"{path}: the saved object is a {Describe(root)}, not a dict, so it has no key '{key}'.");
            if (!top.TryGetValue(key, out var value))
                throw new CheckpointFormatException($"{path}: no key '{key}' at the top level; top-level keys: {DescribeKeys(top)}.");
            return IsTensorDict(value)
                ? (Dictionary<string, object?>)value!
                : throw new CheckpointFormatException($"{path}: '{key}' holds a {Describe(value)}, not a dict of tensors; top-level keys: {DescribeKeys(top)}.");
        }
        if (IsTensorDict(root)) return (Dictionary<string, object?>)root!;
        if (root is Dictionary<string, object?> dict)
        {
            foreach (var candidate in StateDictKeys)
            {
                if (dict.TryGetValue(candidate, out var value) && IsTensorDict(value)) return (Dictionary<string, object?>)value!;
            }
            throw new CheckpointFormatException(
                $"{path}: no dict of tensors at the top level or under {string.Join(", ", StateDictKeys.Select(k => $"'{k}'"))}; top-level keys: {DescribeKeys(dict)}. Pass the key that holds the weights.");
        }
        throw new CheckpointFormatException($"{path}: the saved object is a {Describe(root)}, not a dict of tensors.");
    }

    private static bool IsTensorDict(object? o) => o is Dictionary<string, object?> d && d.Values.All(v => v is Tensor);

    private static string DescribeKeys(Dictionary<string, object?> dict) =>
        dict.Count == 0 ? "(none)" : string.Join(", ", dict.Select(kv => $"'{kv.Key}' ({Describe(kv.Value)})"));

    private static string Describe(object? o) => o switch
    {
        null => "None",
        Tensor t => $"tensor {t.dtype} [{string.Join(", ", t.shape)}]",
        Dictionary<string, object?> d when d.Count > 0 && d.Values.All(v => v is Tensor) => $"dict of {d.Count} tensors",
        Dictionary<string, object?> d => $"dict with {d.Count} entries",
        Dictionary<object, object?> d => $"dict with {d.Count} non-string keys",
        List<object?> l => $"list of {l.Count}",
        object?[] a => $"tuple of {a.Length}",
        string => "str",
        long or BigInteger => "int",
        double => "float",
        bool => "bool",
        byte[] b => $"bytes of {b.Length}",
        PickledObject p => p.ClassName,
        _ => o.GetType().Name,
    };

    /// <summary>Every tensor reachable in a loaded graph, each once.</summary>
    private static IEnumerable<Tensor> EnumerateTensors(object? root)
    {
        var seen = new HashSet<object>(ReferenceEqualityComparer.Instance);
        var pending = new Stack<object?>();
        pending.Push(root);
        while (pending.Count > 0)
        {
            var o = pending.Pop();
            if (o is null || o is string || o.GetType().IsValueType || !seen.Add(o)) continue;
            switch (o)
            {
                case Tensor t: yield return t; break;
                case Dictionary<string, object?> d: foreach (var v in d.Values) pending.Push(v); break;
                case Dictionary<object, object?> d: foreach (var (k, v) in d) { pending.Push(k); pending.Push(v); } break;
                case List<object?> l: foreach (var v in l) pending.Push(v); break;
                case object?[] a: foreach (var v in a) pending.Push(v); break;
                case HashSet<object?> s: foreach (var v in s) pending.Push(v); break;
                case PickledObject p: foreach (var v in p.Attributes.Values) pending.Push(v); break;
            }
        }
    }
}

/// <summary>
/// One read of a torch.save zip archive: finds <c>data.pkl</c>, unpickles it with the torch allow-list, loads each
/// storage once from <c>data/&lt;key&gt;</c> and rebuilds tensors as views of it.
/// </summary>
internal sealed class TorchArchiveReader : IDisposable
{
    /// <summary>Storage bytes are copied into tensor memory in pieces of at most this size (spans are int-indexed).</summary>
    internal const int DefaultChunkBytes = 1 << 30;

    private static readonly byte[] LegacyMagic = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

    /// <summary>The <c>torch.*Storage</c> classes torch writes in persistent ids, with their element type.</summary>
    internal static readonly IReadOnlyDictionary<string, ScalarType> StorageTypes = new Dictionary<string, ScalarType>(StringComparer.Ordinal)
    {
        ["FloatStorage"] = ScalarType.Float32,
        ["DoubleStorage"] = ScalarType.Float64,
        ["HalfStorage"] = ScalarType.Float16,
        ["BFloat16Storage"] = ScalarType.BFloat16,
        ["LongStorage"] = ScalarType.Int64,
        ["IntStorage"] = ScalarType.Int32,
        ["ShortStorage"] = ScalarType.Int16,
        ["CharStorage"] = ScalarType.Int8,
        ["ByteStorage"] = ScalarType.Byte,
        ["BoolStorage"] = ScalarType.Bool,
    };

    private static readonly string AllowedGlobals =
        "torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, torch._utils._rebuild_parameter_with_state, " +
        "collections.OrderedDict, torch.Size, " + string.Join(", ", StorageTypes.Keys.Select(k => "torch." + k)) +
        ", builtins.set, builtins.frozenset, builtins.bytes, _codecs.encode, argparse.Namespace";

    private sealed record Storage(string Key, ScalarType DType, long Numel, Tensor Data);

    private readonly string _path;
    private readonly FileStream _file;
    private readonly ZipArchive _zip;
    private readonly string _prefix;
    private readonly Dictionary<string, Storage> _storages = new(StringComparer.Ordinal);
    private readonly List<Tensor> _tensors = new();
    private readonly string _source;
    private Unpickler? _unpickler;

    /// <summary>The pickle and the offset of the opcode being executed, for messages.</summary>
    private string Here => _unpickler?.Where ?? _source;

    public TorchArchiveReader(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint file not found: {path}", path);
        _path = path;
        _file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        try
        {
            RejectNonZip();
            try
            {
                _zip = new ZipArchive(_file, ZipArchiveMode.Read, leaveOpen: true);
            }
            catch (InvalidDataException e)
            {
                throw new CheckpointFormatException($"{path}: not a readable zip archive (truncated or corrupted): {e.Message}", e);
            }
            _prefix = FindPrefix();
            _source = $"{path}: {_prefix}/data.pkl";
            CheckByteOrder();
        }
        catch
        {
            _zip?.Dispose();
            _file.Dispose();
            throw;
        }
    }

    /// <summary>Unpickles <c>data.pkl</c> and returns the converted object graph (see <see cref="TorchCheckpoint.Load"/>).</summary>
    public object? Read()
    {
        var exported = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        bool success = false;
        try
        {
            byte[] pickle = ReadEntry($"{_prefix}/data.pkl");
            _unpickler = new Unpickler(pickle, _source, ResolveGlobal, PersistentLoad);
            var raw = _unpickler.Load();
            var converter = new GraphConverter(_source);
            var result = converter.Convert(raw);
            foreach (var t in _tensors) exported.Add(t);
            foreach (var t in converter.ExportedStorages) exported.Add(t);
            success = true;
            return result;
        }
        finally
        {
            foreach (var s in _storages.Values)
            {
                if (!(success && exported.Contains(s.Data))) s.Data.Dispose();
            }
            if (!success)
            {
                foreach (var t in _tensors) t.Dispose();
            }
        }
    }

    public void Dispose()
    {
        _zip.Dispose();
        _file.Dispose();
    }

    private void RejectNonZip()
    {
        Span<byte> head = stackalloc byte[LegacyMagic.Length];
        int n = _file.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        head = head[..n];
        _file.Position = 0;
        if (n >= 4 && head[0] == (byte)'P' && head[1] == (byte)'K') return;
        if (head.SequenceEqual(LegacyMagic))
            throw new CheckpointFormatException(
                $"{_path}: this is the legacy torch.save format (torch < 1.6, a pickle stream), which is not supported; " +
                "re-save it with torch >= 1.6 (torch.save(torch.load(p), p2)) or convert it to safetensors.");
        if (_file.Length > 262)
        {
            Span<byte> ustar = stackalloc byte[5];
            _file.Position = 257;
            _file.ReadExactly(ustar);
            _file.Position = 0;
            if (ustar.SequenceEqual("ustar"u8))
                throw new CheckpointFormatException(
                    $"{_path}: this is a tar file (the oldest torch.save format), which is not supported; re-save it with torch >= 1.6 or convert it to safetensors.");
        }
        throw new CheckpointFormatException(
            $"{_path}: not a torch.save archive: a zip file starts with 'PK' but this starts with {Convert.ToHexString(head[..Math.Min(n, 4)])} ({_file.Length} bytes).");
    }

    private string FindPrefix()
    {
        var pickles = _zip.Entries
            .Select(e => e.FullName)
            .Where(n => n.EndsWith("/data.pkl", StringComparison.Ordinal) && n.IndexOf('/') == n.Length - "/data.pkl".Length)
            .ToList();
        if (pickles.Count == 1) return pickles[0][..^"/data.pkl".Length];
        if (pickles.Count > 1)
            throw new CheckpointFormatException($"{_path}: the archive has {pickles.Count} data.pkl entries ({string.Join(", ", pickles)}); a torch.save archive has one.");
        var names = _zip.Entries.Select(e => e.FullName).ToList();
        if (names.Any(n => n.EndsWith("/constants.pkl", StringComparison.Ordinal)))
            throw new CheckpointFormatException($"{_path}: this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint; it has no data.pkl.");
        throw new CheckpointFormatException(
            $"{_path}: the zip archive has no <name>/data.pkl entry, so it is not a torch.save checkpoint; entries: {string.Join(", ", names.Take(10))}{(names.Count > 10 ? ", ..." : "")}.");
    }

    private void CheckByteOrder()
    {
        var entry = _zip.GetEntry($"{_prefix}/byteorder");
        if (entry is null) return; // torch before 2.1 writes none: little-endian
        string order = Encoding.ASCII.GetString(ReadEntry(entry.FullName)).Trim();
        if (order != "little")
            throw new CheckpointFormatException($"{_path}: the storages are stored {order}-endian ({_prefix}/byteorder); only little-endian is supported.");
    }

    private byte[] ReadEntry(string name)
    {
        var entry = _zip.GetEntry(name) ?? throw new CheckpointFormatException($"{_path}: the archive has no entry '{name}'.");
        if (entry.Length > Array.MaxLength)
            throw new CheckpointFormatException($"{_path}: entry '{name}' is {entry.Length} bytes, too large to read into memory.");
        var bytes = new byte[entry.Length];
        try
        {
            using var stream = entry.Open();
            int read = stream.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false);
            if (read != bytes.Length)
                throw new CheckpointFormatException($"{_path}: entry '{name}' should hold {bytes.Length} bytes but only {read} could be read (truncated).");
        }
        catch (InvalidDataException e)
        {
            throw new CheckpointFormatException($"{_path}: entry '{name}' cannot be read (corrupted archive): {e.Message}", e);
        }
        return bytes;
    }

    private PickleGlobal ResolveGlobal(string module, string name, long offset)
    {
        // Protocol-2 pickles written by Python 2 name the builtins module differently.
        module = module switch { "__builtin__" => "builtins", "copy_reg" => "copyreg", _ => module };
        Func<object?[], object?>? invoke;
        switch (module, name)
        {
            case ("torch._utils", "_rebuild_tensor_v2"): invoke = RebuildTensor; break;
            case ("torch._utils", "_rebuild_parameter"): invoke = args => RebuildParameter(args, 3); break;
            case ("torch._utils", "_rebuild_parameter_with_state"): invoke = args => RebuildParameter(args, 4); break;
            case ("collections", "OrderedDict"): invoke = NewOrderedDict; break;
            case ("torch", "Size"): invoke = NewSize; break;
            case ("builtins", "set"):
            case ("builtins", "frozenset"): invoke = NewSet; break;
            case ("builtins", "bytes"): invoke = NewBytes; break;
            case ("_codecs", "encode"): invoke = EncodeBytes; break;
            case ("argparse", "Namespace"): invoke = args => NewNamespace(args); break;
            case ("torch", _) when StorageTypes.ContainsKey(name): invoke = null; break;
            default:
                throw new CheckpointFormatException(
                    $"{_source} at offset {offset}: global '{module}.{name}' is not allowed. Only the globals torch.save writes for tensors, " +
                    $"state dicts and simple configs are loaded, and no Python code is run. Allowed: {AllowedGlobals}.");
        }
        return new PickleGlobal(module, name, invoke);
    }

    private object? PersistentLoad(object? pid, long offset)
    {
        // ('storage', storage_type, key, location, numel)
        if (pid is not object?[] { Length: 5 } t || t[0] is not "storage")
            throw new CheckpointFormatException($"{_source} at offset {offset}: persistent id {Show(pid)} is not ('storage', type, key, location, numel).");
        if (t[1] is not PickleGlobal { Module: "torch" } type || !StorageTypes.TryGetValue(type.Name, out var dtype))
            throw new CheckpointFormatException($"{_source} at offset {offset}: persistent id {Show(pid)} has an unknown storage type.");
        if (t[2] is not string key || t[4] is not long numel || numel < 0)
            throw new CheckpointFormatException($"{_source} at offset {offset}: persistent id {Show(pid)} needs a string key and a non-negative element count.");
        if (_storages.TryGetValue(key, out var known))
        {
            if (known.DType != dtype || known.Numel != numel)
                throw new CheckpointFormatException(
                    $"{_source} at offset {offset}: storage '{key}' is referenced as {type.Name} of {numel} elements, but earlier as {known.DType} of {known.Numel}.");
            return known;
        }
        var storage = LoadStorage(key, dtype, numel);
        _storages.Add(key, storage);
        return storage;
    }

    private Storage LoadStorage(string key, ScalarType dtype, long numel)
    {
        string name = $"{_prefix}/data/{key}";
        var entry = _zip.GetEntry(name)
            ?? throw new CheckpointFormatException($"{_path}: storage '{key}' is referenced by data.pkl but the archive has no entry '{name}' (missing storage).");
        long expected = checked(numel * SafeTensors.ElementSize(dtype));
        if (entry.Length != expected)
            throw new CheckpointFormatException(
                $"{_path}: entry '{name}' holds {entry.Length} bytes but its storage is {numel} x {dtype} = {expected} bytes{(entry.Length < expected ? " (truncated)" : "")}.");
        var data = empty([numel], dtype);
        try
        {
            using var stream = entry.Open();
            ReadInto(stream, data, expected, $"{_path}: entry '{name}'", DefaultChunkBytes);
        }
        catch (InvalidDataException e)
        {
            data.Dispose();
            throw new CheckpointFormatException($"{_path}: entry '{name}' cannot be read (corrupted archive): {e.Message}", e);
        }
        catch
        {
            data.Dispose();
            throw;
        }
        return new Storage(key, dtype, numel, data);
    }

    /// <summary>Copies <paramref name="byteCount"/> bytes from a stream into a contiguous 1-D tensor, in chunks.</summary>
    internal static void ReadInto(Stream stream, Tensor target, long byteCount, string what, int chunkBytes)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("torch.save storages are little-endian; big-endian hosts are not supported.");
        long elementSize = SafeTensors.ElementSize(target.dtype);
        long chunkElements = Math.Max(1, chunkBytes / elementSize);
        long numel = byteCount / elementSize;
        for (long start = 0; start < numel; start += chunkElements)
        {
            long count = Math.Min(chunkElements, numel - start);
            using var part = target.narrow(0, start, count);
            var span = part.bytes;
            int read = stream.ReadAtLeast(span, span.Length, throwOnEndOfStream: false);
            if (read != span.Length)
                throw new CheckpointFormatException($"{what}: ends after {start * elementSize + read} of {byteCount} bytes (truncated).");
        }
    }

    private object? RebuildTensor(object?[] args)
    {
        // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        if (args.Length is not (6 or 7))
            throw new CheckpointFormatException($"{Here}: _rebuild_tensor_v2 with {args.Length} arguments (6 or 7 expected).");
        if (args[0] is not Storage storage)
            throw new CheckpointFormatException($"{Here}: _rebuild_tensor_v2 without a storage (got {PickleDict.PythonTypeName(args[0])}).");
        if (args[1] is not long offset || offset < 0)
            throw new CheckpointFormatException($"{Here}: tensor on storage '{storage.Key}' has storage_offset {Show(args[1])}, not a non-negative int.");
        long[] size = Ints(args[2], "size", storage.Key);
        long[] stride = Ints(args[3], "stride", storage.Key);
        if (size.Length != stride.Length)
            throw new CheckpointFormatException($"{Here}: tensor on storage '{storage.Key}' has size {Show(args[2])} but stride {Show(args[3])}.");
        if (args[5] is not (null or PickleDict { Items.Count: 0 }))
            throw new CheckpointFormatException($"{Here}: tensor on storage '{storage.Key}' has backward hooks, which are not supported.");
        if (args.Length == 7 && args[6] is not (null or PickleDict { Items.Count: 0 }))
            throw new CheckpointFormatException($"{Here}: tensor on storage '{storage.Key}' has tensor metadata {Show(args[6])}, which is not supported.");

        // Highest element index the view touches must lie in the storage.
        bool isEmpty = size.Any(s => s == 0);
        long last = offset;
        for (int i = 0; i < size.Length; i++)
        {
            if (size[i] < 0 || stride[i] < 0)
                throw new CheckpointFormatException($"{Here}: tensor on storage '{storage.Key}' has a negative size or stride: size {Show(args[2])}, stride {Show(args[3])}.");
            if (!isEmpty) last = checked(last + (size[i] - 1) * stride[i]);
        }
        if (!isEmpty && last >= storage.Numel || isEmpty && offset > storage.Numel)
            throw new CheckpointFormatException(
                $"{Here}: storage '{storage.Key}' has {storage.Numel} elements, too small for a tensor of size [{string.Join(", ", size)}], " +
                $"stride [{string.Join(", ", stride)}] at offset {offset} (needs {last + 1}).");
        var tensor = storage.Data.as_strided(size, stride, offset);
        _tensors.Add(tensor);
        return tensor;
    }

    private object? RebuildParameter(object?[] args, int count)
    {
        // _rebuild_parameter(data, requires_grad, backward_hooks); _with_state adds a state dict of attributes.
        if (args.Length != count || args[0] is not Tensor data)
            throw new CheckpointFormatException($"{Here}: a parameter is rebuilt from {Show(args)}, not (tensor, requires_grad, hooks{(count == 4 ? ", state" : "")}).");
        if (args[2] is not (null or PickleDict { Items.Count: 0 }))
            throw new CheckpointFormatException($"{Here}: a parameter has backward hooks, which are not supported.");
        return data;
    }

    private object? NewOrderedDict(object?[] args)
    {
        var dict = new PickleDict();
        if (args.Length == 0) return dict;
        if (args.Length == 1 && args[0] is List<object?> or object?[])
        {
            IEnumerable<object?> pairs = args[0] as List<object?> ?? (IEnumerable<object?>)args[0]!;
            foreach (var pair in pairs)
            {
                var kv = pair as object?[] ?? (pair as List<object?>)?.ToArray();
                if (kv is not { Length: 2 }) throw new CheckpointFormatException($"{Here}: OrderedDict built from {Show(pair)}, not a (key, value) pair.");
                dict.Set(kv[0], kv[1], () => Here);
            }
            return dict;
        }
        throw new CheckpointFormatException($"{Here}: OrderedDict{Show(args)} is not supported.");
    }

    private object? NewSize(object?[] args) =>
        args is [object?[] dims] && dims.All(d => d is long) ? dims : throw new CheckpointFormatException($"{Here}: torch.Size{Show(args)} is not a tuple of ints.");

    private object? NewSet(object?[] args) => args switch
    {
        [] => new HashSet<object?>(PickleKeyComparer.Instance),
        [List<object?> items] => new HashSet<object?>(items, PickleKeyComparer.Instance),
        [object?[] items] => new HashSet<object?>(items, PickleKeyComparer.Instance),
        _ => throw new CheckpointFormatException($"{Here}: set{Show(args)} is not supported."),
    };

    private object? NewBytes(object?[] args) =>
        args.Length == 0 ? Array.Empty<byte>() : throw new CheckpointFormatException($"{Here}: bytes{Show(args)} is not supported.");

    private object? EncodeBytes(object?[] args)
    {
        // How protocol 2 writes a bytes object: _codecs.encode(str, 'latin1').
        if (args is [string text, "latin1" or "latin-1"])
        {
            var bytes = new byte[text.Length];
            for (int i = 0; i < text.Length; i++)
            {
                if (text[i] > 0xff) throw new CheckpointFormatException($"{Here}: _codecs.encode of a character above U+00FF to latin1.");
                bytes[i] = (byte)text[i];
            }
            return bytes;
        }
        throw new CheckpointFormatException($"{Here}: _codecs.encode{Show(args)} is not supported (only (str, 'latin1'), which is how bytes are pickled).");
    }

    private object? NewNamespace(object?[] args) =>
        args.Length == 0 ? new PickledObject("argparse.Namespace") : throw new CheckpointFormatException($"{Here}: argparse.Namespace{Show(args)} with positional arguments.");

    private long[] Ints(object? o, string what, string key)
    {
        if (o is object?[] items && items.All(i => i is long)) return items.Select(i => (long)i!).ToArray();
        throw new CheckpointFormatException($"{Here}: tensor on storage '{key}' has {what} {Show(o)}, not a tuple of ints.");
    }

    private static string Show(object? o) => o switch
    {
        null => "None",
        string s => $"'{s}'",
        object?[] a => "(" + string.Join(", ", a.Select(Show)) + (a.Length == 1 ? ",)" : ")"),
        List<object?> l => "[" + string.Join(", ", l.Take(8).Select(Show)) + (l.Count > 8 ? ", ...]" : "]"),
        PickleGlobal g => g.FullName,
        Storage s => $"<storage '{s.Key}'>",
        PickleDict d => $"dict of {d.Items.Count}",
        bool b => b ? "True" : "False",
        _ => Convert.ToString(o, System.Globalization.CultureInfo.InvariantCulture) ?? o.GetType().Name,
    };

    /// <summary>Turns the unpickler's containers into the public types, keeping shared references shared.</summary>
    private sealed class GraphConverter(string source)
    {
        private readonly Dictionary<object, object?> _done = new(ReferenceEqualityComparer.Instance);

        /// <summary>Storage tensors that appear in the result as values of their own.</summary>
        public List<Tensor> ExportedStorages { get; } = new();

        public object? Convert(object? o)
        {
            if (o is null || o is string || o.GetType().IsValueType || o is byte[] or Tensor or BigInteger) return o;
            if (_done.TryGetValue(o, out var converted)) return converted;
            switch (o)
            {
                case PickleDict dict:
                    if (dict.Items.Keys.All(k => k is string))
                    {
                        var result = new Dictionary<string, object?>(dict.Items.Count, StringComparer.Ordinal);
                        _done[o] = result;
                        foreach (var (k, v) in dict.Items) result.Add((string)k, Convert(v));
                        return result;
                    }
                    else
                    {
                        var result = new Dictionary<object, object?>(dict.Items.Count, PickleKeyComparer.Instance);
                        _done[o] = result;
                        foreach (var (k, v) in dict.Items) result.Add(Convert(k)!, Convert(v));
                        return result;
                    }
                case List<object?> list:
                    _done[o] = list;
                    for (int i = 0; i < list.Count; i++) list[i] = Convert(list[i]);
                    return list;
                case object?[] tuple:
                    _done[o] = tuple;
                    for (int i = 0; i < tuple.Length; i++) tuple[i] = Convert(tuple[i]);
                    return tuple;
                case HashSet<object?> set:
                    _done[o] = set;
                    return set;
                case PickledObject obj:
                    _done[o] = obj;
                    foreach (var name in obj.MutableAttributes.Keys.ToList()) obj.MutableAttributes[name] = Convert(obj.MutableAttributes[name]);
                    return obj;
                case Storage storage:
                    // A storage saved on its own (not through a tensor) comes out as its 1-D tensor.
                    _done[o] = storage.Data;
                    ExportedStorages.Add(storage.Data);
                    return storage.Data;
                case PickleGlobal global:
                    throw new CheckpointFormatException($"{source}: the saved object holds a bare reference to {global.FullName}, which is not a value.");
                default:
                    throw new CheckpointFormatException($"{source}: unexpected {o.GetType().Name} in the unpickled graph.");
            }
        }
    }
}
