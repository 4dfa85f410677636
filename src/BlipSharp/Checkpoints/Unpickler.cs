using System.Buffers.Binary;
using System.Numerics;
using System.Text;

namespace BlipSharp.Checkpoints;

/// <summary>
/// A global (<c>module.name</c>) that the restricted unpickler resolved from the allow-list.
/// <see cref="Invoke"/> is what REDUCE / NEWOBJ call; a global without it (a storage type) cannot be called.
/// </summary>
internal sealed record PickleGlobal(string Module, string Name, Func<object?[], object?>? Invoke)
{
    public string FullName => $"{Module}.{Name}";
}

/// <summary>
/// A Python dict while it is being unpickled: insertion-ordered, any hashable key (tuples compare by value).
/// Turned into a .NET dictionary once the whole pickle is read.
/// </summary>
internal sealed class PickleDict
{
    public OrderedDictionary<object, object?> Items { get; } = new(PickleKeyComparer.Instance);

    /// <summary>Attributes set by BUILD (an OrderedDict's <c>__dict__</c>, e.g. torch's state_dict <c>_metadata</c>).</summary>
    public PickleDict? Attributes { get; set; }

    public void Set(object? key, object? value, Func<string> where)
    {
        if (key is null) throw new CheckpointFormatException($"{where()}: a dict key is None, which is not supported.");
        if (key is List<object?> or PickleDict or HashSet<object?>)
            throw new CheckpointFormatException($"{where()}: a dict key is an unhashable {PythonTypeName(key)}.");
        Items[key] = value;
    }

    internal static string PythonTypeName(object? o) => o switch
    {
        null => "None",
        string => "str",
        long or BigInteger => "int",
        double => "float",
        bool => "bool",
        byte[] => "bytes",
        object?[] => "tuple",
        List<object?> => "list",
        PickleDict => "dict",
        HashSet<object?> => "set",
        PickleGlobal g => g.FullName,
        _ => o.GetType().Name,
    };
}

/// <summary>Dictionary-key equality as Python sees it for the key types a checkpoint has: tuples by value.</summary>
internal sealed class PickleKeyComparer : IEqualityComparer<object?>
{
    public static readonly PickleKeyComparer Instance = new();

    public new bool Equals(object? x, object? y)
    {
        if (x is object?[] a && y is object?[] b)
        {
            if (a.Length != b.Length) return false;
            for (int i = 0; i < a.Length; i++)
            {
                if (!(a[i] is null ? b[i] is null : b[i] is not null && Equals(a[i], b[i]))) return false;
            }
            return true;
        }
        return object.Equals(x, y);
    }

    public int GetHashCode(object? obj)
    {
        if (obj is null) return 0;
        if (obj is object?[] items)
        {
            var hash = new HashCode();
            foreach (var item in items) hash.Add(GetHashCode(item));
            return hash.ToHashCode();
        }
        return obj.GetHashCode();
    }
}

/// <summary>
/// A restricted reader of Python pickles (protocols 2 to 5, the binary opcodes). It never runs code: a GLOBAL
/// is looked up in an allow-list supplied by the caller, and anything else is rejected naming the
/// <c>module.name</c>. Containers come out as <see cref="PickleDict"/>, <see cref="List{T}"/> (list),
/// <c>object?[]</c> (tuple) and <see cref="HashSet{T}"/> (set); scalars as long (or BigInteger beyond 64 bits),
/// double, bool, string, byte[] and null.
/// </summary>
internal sealed class Unpickler
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly byte[] _data;
    private readonly string _source;
    private readonly Func<string, string, long, PickleGlobal> _resolveGlobal;
    private readonly Func<object?, long, object?> _persistentLoad;
    private readonly Dictionary<long, object?> _memo = new();
    private readonly Stack<List<object?>> _metastack = new();
    private List<object?> _stack = new();
    private int _pos;
    private int _opStart;

    /// <param name="data">The pickle bytes.</param>
    /// <param name="source">Names the pickle in messages, e.g. <c>/path/model.pth:archive/data.pkl</c>.</param>
    /// <param name="resolveGlobal">Returns the allowed global for (module, name, offset) or throws.</param>
    /// <param name="persistentLoad">Resolves a persistent id (BINPERSID) at an offset.</param>
    public Unpickler(byte[] data, string source, Func<string, string, long, PickleGlobal> resolveGlobal, Func<object?, long, object?> persistentLoad)
    {
        _data = data;
        _source = source;
        _resolveGlobal = resolveGlobal;
        _persistentLoad = persistentLoad;
    }

    /// <summary>Where the opcode being executed starts, for messages.</summary>
    public string Where => $"{_source} at offset {_opStart}";

    /// <summary>Reads the pickle up to STOP and returns its value.</summary>
    public object? Load()
    {
        while (true)
        {
            _opStart = _pos;
            if (_pos >= _data.Length)
                throw Error($"the pickle ends at offset {_pos} without a STOP opcode (truncated)");
            byte op = _data[_pos++];
            switch (op)
            {
                case 0x80: // PROTO
                    {
                        int proto = ReadByte();
                        if (proto > 5) throw Error($"pickle protocol {proto} is not supported (2 to 5 are)");
                        break;
                    }
                case 0x95: // FRAME: a length hint; the framed opcodes follow inline
                    ReadUInt64();
                    break;
                case (byte)'.': // STOP
                    {
                        var result = Pop();
                        if (_metastack.Count > 0) throw Error("STOP with an unclosed MARK");
                        return result;
                    }
                case (byte)'(': // MARK
                    _metastack.Push(_stack);
                    _stack = new List<object?>();
                    break;
                case (byte)'0': // POP
                    if (_stack.Count > 0) Pop(); else PopMark();
                    break;
                case (byte)'1': // POP_MARK
                    PopMark();
                    break;
                case (byte)'2': // DUP
                    Push(Peek());
                    break;

                case (byte)'N': Push(null); break; // NONE
                case 0x88: Push(true); break; // NEWTRUE
                case 0x89: Push(false); break; // NEWFALSE
                case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4))); break; // BININT
                case (byte)'K': Push((long)ReadByte()); break; // BININT1
                case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2))); break; // BININT2
                case 0x8a: Push(ReadLong(ReadByte())); break; // LONG1
                case 0x8b: // LONG4
                    {
                        int n = BinaryPrimitives.ReadInt32LittleEndian(Take(4));
                        if (n < 0) throw Error($"LONG4 with negative length {n}");
                        Push(ReadLong(n));
                        break;
                    }
                case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(Take(8))); break; // BINFLOAT

                case (byte)'X': Push(ReadUtf8(ReadUInt32())); break; // BINUNICODE
                case 0x8c: Push(ReadUtf8(ReadByte())); break; // SHORT_BINUNICODE
                case 0x8d: Push(ReadUtf8(ReadUInt64())); break; // BINUNICODE8
                case (byte)'B': Push(Take(ReadUInt32()).ToArray()); break; // BINBYTES
                case (byte)'C': Push(Take(ReadByte()).ToArray()); break; // SHORT_BINBYTES
                case 0x8e: Push(Take(ReadUInt64()).ToArray()); break; // BINBYTES8

                case (byte)'}': Push(new PickleDict()); break; // EMPTY_DICT
                case (byte)'d': // DICT
                    {
                        var items = PopMark();
                        var dict = new PickleDict();
                        SetItems(dict, items);
                        Push(dict);
                        break;
                    }
                case (byte)']': Push(new List<object?>()); break; // EMPTY_LIST
                case (byte)'l': Push(PopMark()); break; // LIST
                case (byte)')': Push(Array.Empty<object?>()); break; // EMPTY_TUPLE
                case (byte)'t': Push(PopMark().ToArray()); break; // TUPLE
                case 0x85: Push(new[] { Pop() }); break; // TUPLE1
                case 0x86: // TUPLE2
                    {
                        var b = Pop();
                        var a = Pop();
                        Push(new[] { a, b });
                        break;
                    }
                case 0x87: // TUPLE3
                    {
                        var c = Pop();
                        var b = Pop();
                        var a = Pop();
                        Push(new[] { a, b, c });
                        break;
                    }
                case 0x8f: Push(new HashSet<object?>(PickleKeyComparer.Instance)); break; // EMPTY_SET
                case 0x90: // ADDITEMS
                    {
                        var items = PopMark();
                        if (Peek() is not HashSet<object?> set) throw Error($"ADDITEMS on a {PickleDict.PythonTypeName(Peek())}, not a set");
                        foreach (var item in items) set.Add(item);
                        break;
                    }
                case 0x91: Push(new HashSet<object?>(PopMark(), PickleKeyComparer.Instance)); break; // FROZENSET

                case (byte)'a': // APPEND
                    {
                        var value = Pop();
                        AsList(Peek(), "APPEND").Add(value);
                        break;
                    }
                case (byte)'e': // APPENDS
                    {
                        var items = PopMark();
                        AsList(Peek(), "APPENDS").AddRange(items);
                        break;
                    }
                case (byte)'s': // SETITEM
                    {
                        var value = Pop();
                        var key = Pop();
                        AsDict(Peek(), "SETITEM").Set(key, value, () => Where);
                        break;
                    }
                case (byte)'u': // SETITEMS
                    {
                        var items = PopMark();
                        SetItems(AsDict(Peek(), "SETITEMS"), items);
                        break;
                    }

                case (byte)'q': Memo(ReadByte()); break; // BINPUT
                case (byte)'r': Memo(ReadUInt32()); break; // LONG_BINPUT
                case 0x94: Memo(_memo.Count); break; // MEMOIZE
                case (byte)'h': Push(Recall(ReadByte())); break; // BINGET
                case (byte)'j': Push(Recall(ReadUInt32())); break; // LONG_BINGET

                case (byte)'c': // GLOBAL
                    {
                        string module = ReadLine();
                        string name = ReadLine();
                        Push(_resolveGlobal(module, name, _opStart));
                        break;
                    }
                case 0x93: // STACK_GLOBAL
                    {
                        var name = Pop();
                        var module = Pop();
                        if (module is not string m || name is not string n) throw Error("STACK_GLOBAL needs two strings (module, name)");
                        Push(_resolveGlobal(m, n, _opStart));
                        break;
                    }
                case (byte)'Q': // BINPERSID
                    Push(_persistentLoad(Pop(), _opStart));
                    break;
                case (byte)'R': // REDUCE
                    {
                        var args = Pop();
                        var callable = Pop();
                        Push(Call(callable, args, "REDUCE"));
                        break;
                    }
                case 0x81: // NEWOBJ
                    {
                        var args = Pop();
                        var cls = Pop();
                        Push(Call(cls, args, "NEWOBJ"));
                        break;
                    }
                case 0x92: // NEWOBJ_EX
                    {
                        var kwargs = Pop();
                        var args = Pop();
                        var cls = Pop();
                        if (kwargs is not PickleDict { Items.Count: 0 }) throw Error("NEWOBJ_EX with keyword arguments is not supported");
                        Push(Call(cls, args, "NEWOBJ_EX"));
                        break;
                    }
                case (byte)'b': // BUILD
                    {
                        var state = Pop();
                        Build(Peek(), state);
                        break;
                    }
                default:
                    throw Error($"unsupported pickle opcode 0x{op:x2} ({OpcodeName(op)}) at offset {_opStart}");
            }
        }
    }

    private object? Call(object? callable, object? args, string opcode)
    {
        if (callable is not PickleGlobal global) throw Error($"{opcode} on a {PickleDict.PythonTypeName(callable)}, which is not callable");
        if (args is not object?[] tuple) throw Error($"{opcode} of {global.FullName} with {PickleDict.PythonTypeName(args)} arguments instead of a tuple");
        if (global.Invoke is null) throw Error($"{global.FullName} cannot be called");
        try
        {
            return global.Invoke(tuple);
        }
        catch (CheckpointFormatException)
        {
            throw;
        }
        catch (Exception e)
        {
            throw new CheckpointFormatException($"{Where}: {global.FullName}({string.Join(", ", tuple.Select(PickleDict.PythonTypeName))}) failed: {e.Message}", e);
        }
    }

    private void Build(object? target, object? state)
    {
        // state is a dict, or (dict or None, slot dict or None) for objects with __slots__.
        PickleDict? dictState = state switch
        {
            PickleDict d => d,
            object?[] { Length: 2 } pair when pair[0] is PickleDict or null && pair[1] is null => pair[0] as PickleDict,
            _ => throw Error($"BUILD with a {PickleDict.PythonTypeName(state)} state on a {PickleDict.PythonTypeName(target)} is not supported"),
        };
        switch (target)
        {
            case PickleDict dict:
                if (dictState is null) break;
                dict.Attributes ??= new PickleDict();
                foreach (var (k, v) in dictState.Items) dict.Attributes.Items[k] = v;
                break;
            case PickledObject obj:
                if (dictState is null) break;
                foreach (var (k, v) in dictState.Items)
                {
                    if (k is not string name) throw Error($"BUILD of {obj.ClassName} with a non-string attribute name ({PickleDict.PythonTypeName(k)})");
                    obj.MutableAttributes[name] = v;
                }
                break;
            default:
                throw Error($"BUILD on a {PickleDict.PythonTypeName(target)} is not supported");
        }
    }

    private void SetItems(PickleDict dict, List<object?> items)
    {
        if (items.Count % 2 != 0) throw Error($"SETITEMS with an odd number of items ({items.Count})");
        for (int i = 0; i < items.Count; i += 2) dict.Set(items[i], items[i + 1], () => Where);
    }

    private List<object?> AsList(object? o, string opcode) =>
        o as List<object?> ?? throw Error($"{opcode} on a {PickleDict.PythonTypeName(o)}, not a list");

    private PickleDict AsDict(object? o, string opcode) =>
        o as PickleDict ?? throw Error($"{opcode} on a {PickleDict.PythonTypeName(o)}, not a dict");

    private void Memo(long index)
    {
        if (_stack.Count == 0) throw Error("memo PUT with an empty stack");
        _memo[index] = _stack[^1];
    }

    private object? Recall(long index) =>
        _memo.TryGetValue(index, out var value) ? value : throw Error($"memo GET of index {index}, which was never PUT");

    private void Push(object? o) => _stack.Add(o);

    private object? Pop()
    {
        if (_stack.Count == 0) throw Error(_metastack.Count > 0 ? "an opcode pops across a MARK" : "stack underflow");
        var o = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return o;
    }

    private object? Peek()
    {
        if (_stack.Count == 0) throw Error("stack underflow");
        return _stack[^1];
    }

    private List<object?> PopMark()
    {
        if (_metastack.Count == 0) throw Error("no MARK to pop to");
        var items = _stack;
        _stack = _metastack.Pop();
        return items;
    }

    private byte ReadByte() => Take(1)[0];

    private long ReadUInt32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

    private long ReadUInt64()
    {
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(Take(8));
        return n > long.MaxValue ? long.MaxValue : (long)n;
    }

    private ReadOnlySpan<byte> Take(long count)
    {
        if (count > _data.Length - _pos)
            throw Error($"opcode 0x{_data[_opStart]:x2} ({OpcodeName(_data[_opStart])}) at offset {_opStart} needs {count} bytes at offset {_pos} but the pickle ends at {_data.Length} (truncated)");
        var span = _data.AsSpan(_pos, (int)count);
        _pos += (int)count;
        return span;
    }

    private string ReadUtf8(long length)
    {
        var bytes = Take(length);
        try { return StrictUtf8.GetString(bytes); }
        catch (DecoderFallbackException e) { throw new CheckpointFormatException($"{Where}: a string is not valid UTF-8.", e); }
    }

    private string ReadLine()
    {
        int end = Array.IndexOf(_data, (byte)'\n', _pos);
        if (end < 0) throw Error($"a text argument at offset {_pos} has no terminating newline (truncated)");
        var line = ReadUtf8(end - _pos);
        _pos++;
        return line;
    }

    private object ReadLong(int length)
    {
        if (length == 0) return 0L;
        var value = new BigInteger(Take(length), isUnsigned: false, isBigEndian: false);
        return value >= long.MinValue && value <= long.MaxValue ? (object)(long)value : value;
    }

    private CheckpointFormatException Error(string problem) => new($"{_source}: {problem}.");

    /// <summary>The pickletools name of an opcode byte, or "not a pickle opcode".</summary>
    internal static string OpcodeName(byte op) => op switch
    {
        (byte)'(' => "MARK", (byte)'.' => "STOP", (byte)'0' => "POP", (byte)'1' => "POP_MARK", (byte)'2' => "DUP",
        (byte)'F' => "FLOAT", (byte)'I' => "INT", (byte)'J' => "BININT", (byte)'K' => "BININT1", (byte)'L' => "LONG",
        (byte)'M' => "BININT2", (byte)'N' => "NONE", (byte)'P' => "PERSID", (byte)'Q' => "BINPERSID", (byte)'R' => "REDUCE",
        (byte)'S' => "STRING", (byte)'T' => "BINSTRING", (byte)'U' => "SHORT_BINSTRING", (byte)'V' => "UNICODE",
        (byte)'X' => "BINUNICODE", (byte)'a' => "APPEND", (byte)'b' => "BUILD", (byte)'c' => "GLOBAL", (byte)'d' => "DICT",
        (byte)'}' => "EMPTY_DICT", (byte)'e' => "APPENDS", (byte)'g' => "GET", (byte)'h' => "BINGET", (byte)'i' => "INST",
        (byte)'j' => "LONG_BINGET", (byte)'l' => "LIST", (byte)']' => "EMPTY_LIST", (byte)'o' => "OBJ", (byte)'p' => "PUT",
        (byte)'q' => "BINPUT", (byte)'r' => "LONG_BINPUT", (byte)'s' => "SETITEM", (byte)'t' => "TUPLE", (byte)')' => "EMPTY_TUPLE",
        (byte)'u' => "SETITEMS", (byte)'G' => "BINFLOAT", (byte)'B' => "BINBYTES", (byte)'C' => "SHORT_BINBYTES",
        0x80 => "PROTO", 0x81 => "NEWOBJ", 0x82 => "EXT1", 0x83 => "EXT2", 0x84 => "EXT4", 0x85 => "TUPLE1", 0x86 => "TUPLE2",
        0x87 => "TUPLE3", 0x88 => "NEWTRUE", 0x89 => "NEWFALSE", 0x8a => "LONG1", 0x8b => "LONG4", 0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8", 0x8e => "BINBYTES8", 0x8f => "EMPTY_SET", 0x90 => "ADDITEMS", 0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX", 0x93 => "STACK_GLOBAL", 0x94 => "MEMOIZE", 0x95 => "FRAME", 0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER", 0x98 => "READONLY_BUFFER",
        _ => "not a pickle opcode",
    };
}
