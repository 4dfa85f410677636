using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Checkpoints;

/// <summary>
/// Reads and writes the safetensors format: an 8-byte little-endian header length, a JSON header mapping
/// tensor names to <c>{dtype, shape, data_offsets}</c>, then the raw little-endian data.
/// The header is validated before any tensor is created: the declared length lies within the file, every
/// dtype is known, every offset range lies inside the data section, ranges do not overlap, and
/// <c>dtype size x element count</c> equals the byte length.
/// </summary>
public static class SafeTensors
{
    /// <summary>Largest header we accept (the format's reference implementation uses 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>One tensor entry of a safetensors header.</summary>
    /// <param name="Name">Tensor name (the state_dict key).</param>
    /// <param name="DType">Element type.</param>
    /// <param name="Shape">Dimensions.</param>
    /// <param name="Begin">Start of the data, relative to the data section.</param>
    /// <param name="End">End (exclusive) of the data, relative to the data section.</param>
    public sealed record Entry(string Name, ScalarType DType, long[] Shape, long Begin, long End);

    /// <summary>A parsed and validated header.</summary>
    /// <param name="Entries">Tensor entries in file order.</param>
    /// <param name="Metadata">The optional <c>__metadata__</c> string map.</param>
    /// <param name="DataOffset">Absolute file offset of the data section.</param>
    public sealed record Header(IReadOnlyList<Entry> Entries, IReadOnlyDictionary<string, string> Metadata, long DataOffset);

    /// <summary>Reads and validates the header of <paramref name="path"/> without reading tensor data.</summary>
    public static Header ReadHeader(string path)
    {
        using var stream = OpenForRead(path);
        return ReadHeader(stream, path);
    }

    /// <summary>
    /// Reads every tensor of a safetensors file. With <paramref name="dtype"/>, floating-point tensors are
    /// converted to it (integer tensors keep their type); without, each tensor keeps the file's dtype.
    /// </summary>
    public static Dictionary<string, Tensor> Load(string path, ScalarType? dtype = null)
    {
        using var stream = OpenForRead(path);
        var header = ReadHeader(stream, path);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var entry in header.Entries)
            {
                var tensor = ReadTensor(stream, header, entry, path);
                if (dtype is { } target && tensor.is_floating_point() && tensor.dtype != target)
                {
                    var converted = tensor.to_type(target);
                    tensor.Dispose();
                    tensor = converted;
                }
                result[entry.Name] = tensor;
            }
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        return result;
    }

    /// <summary>Writes tensors to <paramref name="path"/> atomically (a temporary file, then a rename).</summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var items = tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        var header = new Dictionary<string, object>(StringComparer.Ordinal);
        if (metadata is { Count: > 0 }) header["__metadata__"] = metadata;
        long offset = 0;
        var blobs = new List<byte[]>(items.Count);
        foreach (var (name, tensor) in items)
        {
            using var cpu = tensor.detach().cpu().contiguous();
            byte[] bytes = cpu.bytes.ToArray();
            blobs.Add(bytes);
            header[name] = new Dictionary<string, object>
            {
                ["dtype"] = DTypeName(cpu.dtype),
                ["shape"] = cpu.shape,
                ["data_offsets"] = new[] { offset, offset + bytes.Length },
            };
            offset += bytes.Length;
        }
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
        int padding = (8 - json.Length % 8) % 8;
        string tmp = path + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                fs.Write(BitConverter.GetBytes((ulong)(json.Length + padding)));
                fs.Write(json);
                for (int i = 0; i < padding; i++) fs.WriteByte((byte)' ');
                foreach (var blob in blobs) fs.Write(blob);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    private static FileStream OpenForRead(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"safetensors file not found: {path}", path);
        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
    }

    private static Header ReadHeader(FileStream stream, string path)
    {
        long fileLength = stream.Length;
        if (fileLength < 8)
            throw new CheckpointFormatException($"{path}: not a safetensors file: {fileLength} bytes, too short for the 8-byte header length.");
        Span<byte> lenBytes = stackalloc byte[8];
        stream.ReadExactly(lenBytes);
        ulong headerLength = BitConverter.ToUInt64(lenBytes);
        if (headerLength > (ulong)MaxHeaderBytes || (long)headerLength > fileLength - 8)
            throw new CheckpointFormatException(
                $"{path}: safetensors header declares {headerLength} bytes but the file has only {fileLength - 8} bytes after the length field (truncated or not a safetensors file).");
        var json = new byte[headerLength];
        stream.ReadExactly(json);
        long dataOffset = 8 + (long)headerLength;
        long dataLength = fileLength - dataOffset;

        JsonDocument doc;
        try { doc = JsonDocument.Parse(json); }
        catch (JsonException e) { throw new CheckpointFormatException($"{path}: safetensors header is not valid JSON: {e.Message}", e); }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException($"{path}: safetensors header must be a JSON object.");
            var entries = new List<Entry>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                        throw new CheckpointFormatException($"{path}: __metadata__ must be an object of strings.");
                    foreach (var m in prop.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                    continue;
                }
                entries.Add(ParseEntry(prop, path));
            }
            ValidateRanges(entries, dataLength, path);
            return new Header(entries, metadata, dataOffset);
        }
    }

    private static Entry ParseEntry(JsonProperty prop, string path)
    {
        string name = prop.Name;
        var v = prop.Value;
        if (v.ValueKind != JsonValueKind.Object
            || !v.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String
            || !v.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array
            || !v.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2)
            throw new CheckpointFormatException($"{path}: tensor '{name}': header entry needs dtype (string), shape (array) and data_offsets ([begin, end]).");
        var dtype = ParseDType(dtypeEl.GetString()!, name, path);
        var shape = new long[shapeEl.GetArrayLength()];
        int i = 0;
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
                throw new CheckpointFormatException($"{path}: tensor '{name}': shape {shapeEl.GetRawText()} has a dimension that is not a non-negative integer.");
            shape[i++] = dim;
        }
        var offs = offEl.EnumerateArray().ToArray();
        if (!offs[0].TryGetInt64(out long begin) || !offs[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw new CheckpointFormatException($"{path}: tensor '{name}': data_offsets {offEl.GetRawText()} are not an ordered pair of non-negative integers.");
        long elements = 1;
        foreach (long dim in shape)
        {
            elements = checked(elements * dim);
        }
        long expected = checked(elements * ElementSize(dtype));
        if (end - begin != expected)
            throw new CheckpointFormatException(
                $"{path}: tensor '{name}': dtype {dtypeEl.GetString()} x shape [{string.Join(", ", shape)}] needs {expected} bytes but data_offsets [{begin}, {end}] hold {end - begin}.");
        return new Entry(name, dtype, shape, begin, end);
    }

    private static void ValidateRanges(List<Entry> entries, long dataLength, string path)
    {
        foreach (var e in entries)
        {
            if (e.End > dataLength)
                throw new CheckpointFormatException(
                    $"{path}: tensor '{e.Name}': data_offsets [{e.Begin}, {e.End}] run past the data section ({dataLength} bytes); the file is truncated or the header lies.");
        }
        var sorted = entries.Where(e => e.End > e.Begin).OrderBy(e => e.Begin).ToList();
        for (int i = 1; i < sorted.Count; i++)
        {
            if (sorted[i].Begin < sorted[i - 1].End)
                throw new CheckpointFormatException(
                    $"{path}: tensors '{sorted[i - 1].Name}' [{sorted[i - 1].Begin}, {sorted[i - 1].End}] and '{sorted[i].Name}' [{sorted[i].Begin}, {sorted[i].End}] overlap.");
        }
    }

    private static Tensor ReadTensor(FileStream stream, Header header, Entry entry, string path)
    {
        var tensor = empty(entry.Shape, entry.DType);
        try
        {
            long length = entry.End - entry.Begin;
            if (length == 0) return tensor;
            stream.Seek(header.DataOffset + entry.Begin, SeekOrigin.Begin);
            var span = tensor.bytes; // a view of the tensor's own memory
            int read = 0;
            while (read < span.Length)
            {
                int n = stream.Read(span[read..]);
                if (n == 0) throw new CheckpointFormatException($"{path}: tensor '{entry.Name}': unexpected end of file.");
                read += n;
            }
            if (!BitConverter.IsLittleEndian)
                throw new PlatformNotSupportedException("safetensors data is little-endian; big-endian hosts are not supported.");
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    private static ScalarType ParseDType(string name, string tensor, string path) => name switch
    {
        "F32" => ScalarType.Float32,
        "F16" => ScalarType.Float16,
        "BF16" => ScalarType.BFloat16,
        "F64" => ScalarType.Float64,
        "I64" => ScalarType.Int64,
        "I32" => ScalarType.Int32,
        "I16" => ScalarType.Int16,
        "I8" => ScalarType.Int8,
        "U8" => ScalarType.Byte,
        "BOOL" => ScalarType.Bool,
        _ => throw new CheckpointFormatException($"{path}: tensor '{tensor}': unsupported dtype '{name}'."),
    };

    private static string DTypeName(ScalarType t) => t switch
    {
        ScalarType.Float32 => "F32",
        ScalarType.Float16 => "F16",
        ScalarType.BFloat16 => "BF16",
        ScalarType.Float64 => "F64",
        ScalarType.Int64 => "I64",
        ScalarType.Int32 => "I32",
        ScalarType.Int16 => "I16",
        ScalarType.Int8 => "I8",
        ScalarType.Byte => "U8",
        ScalarType.Bool => "BOOL",
        _ => throw new ArgumentException($"safetensors cannot store dtype {t}."),
    };

    internal static int ElementSize(ScalarType t) => t switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        ScalarType.Int8 or ScalarType.Byte or ScalarType.Bool => 1,
        _ => throw new ArgumentException($"unsupported dtype {t}"),
    };
}
