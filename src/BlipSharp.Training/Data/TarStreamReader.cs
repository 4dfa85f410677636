using System.Text;

namespace BlipSharp.Training.Data;

/// <summary>What a tar member is.</summary>
public enum TarEntryKind
{
    /// <summary>A regular file (type <c>'0'</c> or NUL, and the contiguous-file type <c>'7'</c>).</summary>
    File,

    /// <summary>A directory (<c>'5'</c>).</summary>
    Directory,

    /// <summary>A hard link (<c>'1'</c>).</summary>
    HardLink,

    /// <summary>A symbolic link (<c>'2'</c>).</summary>
    SymbolicLink,

    /// <summary>Anything else (devices, FIFOs, sparse files, vendor types); its data is skipped.</summary>
    Other,
}

/// <summary>One member of a tar archive as <see cref="TarStreamReader"/> reports it.</summary>
/// <param name="Name">The full path: a pax <c>path</c> record, else a GNU long name, else ustar prefix + "/" + name.</param>
/// <param name="Kind">Regular file, directory, link or other.</param>
/// <param name="TypeFlag">The raw type byte of the header.</param>
/// <param name="Size">Bytes of data (a pax <c>size</c> record wins over the header field).</param>
/// <param name="HeaderOffset">Where the member's own header starts in the stream (after any long-name or pax headers).</param>
/// <param name="DataOffset">Where its data starts in the stream.</param>
/// <param name="LinkName">The link target for links, else null.</param>
public sealed record TarEntryInfo(string Name, TarEntryKind Kind, char TypeFlag, long Size, long HeaderOffset, long DataOffset, string? LinkName);

/// <summary>
/// Reads a tar archive from a <see cref="Stream"/> one member at a time, without unpacking it: POSIX ustar
/// (with the name prefix), GNU (<c>'L'</c> long names, <c>'K'</c> long link names, base-256 sizes) and pax
/// (<c>'x'</c> per-member records for <c>path</c>, <c>linkpath</c> and <c>size</c>; <c>'g'</c> global headers are
/// skipped). Data that is not read is skipped, by seeking when the stream can seek. Every header checksum is
/// verified; a truncated or corrupt archive is a <see cref="DataFormatException"/> naming the source and the
/// byte offset. A clean end of stream at a header boundary counts as the end of the archive, as Python's
/// <c>tarfile</c> treats it.
/// </summary>
public sealed class TarStreamReader : IDisposable
{
    private const int BlockSize = 512;

    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private readonly byte[] _header = new byte[BlockSize];
    private long _position;
    private long _dataRemaining; // unread data bytes of the current member
    private long _padding;       // padding after the current member's data
    private bool _finished;

    /// <summary>Creates a reader positioned before the first member.</summary>
    /// <param name="stream">A readable stream at the start of the archive.</param>
    /// <param name="sourceName">How error messages name the archive (usually its path).</param>
    /// <param name="leaveOpen">Leave <paramref name="stream"/> open when the reader is disposed.</param>
    public TarStreamReader(Stream stream, string sourceName = "tar", bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanRead) throw new ArgumentException("the stream is not readable", nameof(stream));
        _stream = stream;
        SourceName = sourceName ?? "tar";
        _leaveOpen = leaveOpen;
    }

    /// <summary>How error messages name the archive.</summary>
    public string SourceName { get; }

    /// <summary>The member last returned by <see cref="ReadNext"/>, or null before the first and after the end.</summary>
    public TarEntryInfo? Current { get; private set; }

    /// <summary>Bytes consumed from the stream so far.</summary>
    public long Position => _position;

    /// <summary>
    /// Advances to the next member, skipping whatever data of the current one was not read. Returns null at the
    /// end of the archive (two zero blocks, one zero block followed by the end of the stream, or the end of the
    /// stream at a header boundary).
    /// </summary>
    public TarEntryInfo? ReadNext()
    {
        if (_finished) return null;
        SkipRest();
        string? longName = null, longLink = null;
        Dictionary<string, string>? pax = null;
        while (true)
        {
            long headerOffset = _position;
            int got = ReadUpTo(_header);
            if (got == 0)
            {
                if (longName != null || pax != null)
                    throw Error(headerOffset, "the archive ends after an extended header, before the member it describes");
                return Finish();
            }
            if (got < BlockSize) throw Error(headerOffset, $"truncated: the archive ends inside a header ({got} of 512 bytes)");
            if (IsZeroBlock(_header))
            {
                if (longName != null || pax != null)
                    throw Error(headerOffset, "an end-of-archive block follows an extended header");
                return Finish();
            }
            VerifyChecksum(headerOffset);

            char type = (char)_header[156];
            long size = ParseSize(headerOffset);
            if (pax != null && pax.TryGetValue("size", out var paxSize))
            {
                if (!long.TryParse(paxSize, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out size))
                    throw Error(headerOffset, $"pax size record '{paxSize}' is not a number");
            }

            switch (type)
            {
                case 'L':
                    longName = ReadString(ReadMetaData(size, headerOffset, "GNU long name"));
                    continue;
                case 'K':
                    longLink = ReadString(ReadMetaData(size, headerOffset, "GNU long link name"));
                    continue;
                case 'x':
                    pax = ParsePax(ReadMetaData(size, headerOffset, "pax header"), headerOffset);
                    continue;
                case 'g':
                    ReadMetaData(size, headerOffset, "pax global header");
                    continue;
            }

            string name = pax != null && pax.TryGetValue("path", out var paxPath) ? paxPath : longName ?? HeaderName();
            string? link = pax != null && pax.TryGetValue("linkpath", out var paxLink) ? paxLink : longLink ?? NullTerminated(157, 100);
            var kind = type switch
            {
                '0' or '\0' or '7' => TarEntryKind.File,
                '5' => TarEntryKind.Directory,
                '1' => TarEntryKind.HardLink,
                '2' => TarEntryKind.SymbolicLink,
                _ => TarEntryKind.Other,
            };
            // Like Python's tarfile: links, devices, directories and FIFOs carry no data whatever the size says.
            bool hasData = type is not ('1' or '2' or '3' or '4' or '5' or '6');
            long dataSize = hasData ? size : 0;
            _dataRemaining = dataSize;
            _padding = Padding(dataSize);
            Current = new TarEntryInfo(name, kind, type, dataSize, headerOffset, _position,
                kind is TarEntryKind.HardLink or TarEntryKind.SymbolicLink ? link : null);
            return Current;
        }
    }

    /// <summary>Reads all data of the current member (at most <paramref name="maxBytes"/>).</summary>
    /// <param name="maxBytes">Refuse members larger than this (a guard against absurd sizes in corrupt headers).</param>
    public byte[] ReadData(long maxBytes = int.MaxValue)
    {
        var entry = Current ?? throw new InvalidOperationException("no current tar member: call ReadNext first");
        if (_dataRemaining != entry.Size) throw new InvalidOperationException($"the data of '{entry.Name}' was already read");
        if (entry.Size > maxBytes || entry.Size > Array.MaxLength)
            throw Error(entry.HeaderOffset, $"member '{entry.Name}' is {entry.Size} bytes, over the limit of {Math.Min(maxBytes, Array.MaxLength)}");
        var data = new byte[entry.Size];
        int got = ReadUpTo(data);
        _dataRemaining -= got;
        if (got < data.Length)
            throw Error(entry.DataOffset, $"truncated: the archive ends inside the data of member '{entry.Name}' ({got} of {entry.Size} bytes)");
        return data;
    }

    /// <summary>Reads the remaining members to the end, returning each with its data (for small archives and tests).</summary>
    public IEnumerable<(TarEntryInfo Entry, byte[] Data)> ReadAll()
    {
        while (ReadNext() is { } entry) yield return (entry, entry.Kind == TarEntryKind.File ? ReadData() : []);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (!_leaveOpen) _stream.Dispose();
    }

    private TarEntryInfo? Finish()
    {
        _finished = true;
        Current = null;
        return null;
    }

    private void SkipRest()
    {
        if (Current is not { } entry) return;
        if (_dataRemaining > 0) Skip(_dataRemaining, entry, mustExist: true);
        _dataRemaining = 0;
        if (_padding > 0) Skip(_padding, entry, mustExist: false); // a missing final padding is only noticed as the end
        _padding = 0;
    }

    private void Skip(long count, TarEntryInfo entry, bool mustExist)
    {
        if (_stream.CanSeek)
        {
            long available = _stream.Length - _stream.Position;
            if (available < count)
            {
                if (mustExist)
                    throw Error(entry.DataOffset, $"truncated: the archive ends inside the data of member '{entry.Name}' ({entry.Size - (count - available)} of {entry.Size} bytes)");
                _stream.Seek(available, SeekOrigin.Current);
                _position += available;
                return;
            }
            _stream.Seek(count, SeekOrigin.Current);
            _position += count;
            return;
        }
        var buffer = new byte[(int)Math.Min(count, 81920)];
        long left = count;
        while (left > 0)
        {
            int n = _stream.Read(buffer, 0, (int)Math.Min(left, buffer.Length));
            if (n == 0)
            {
                if (mustExist)
                    throw Error(entry.DataOffset, $"truncated: the archive ends inside the data of member '{entry.Name}' ({entry.Size - left} of {entry.Size} bytes)");
                return;
            }
            left -= n;
            _position += n;
        }
    }

    private byte[] ReadMetaData(long size, long headerOffset, string what)
    {
        if (size > 1 << 24) throw Error(headerOffset, $"{what} of {size} bytes is implausibly large");
        var data = new byte[size];
        int got = ReadUpTo(data);
        if (got < size) throw Error(headerOffset, $"truncated: the archive ends inside a {what} ({got} of {size} bytes)");
        long pad = Padding(size);
        var scratch = new byte[pad];
        ReadUpTo(scratch);
        return data;
    }

    private int ReadUpTo(Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = _stream.Read(buffer[total..]);
            if (n == 0) break;
            total += n;
        }
        _position += total;
        return total;
    }

    private static long Padding(long size) => (BlockSize - size % BlockSize) % BlockSize;

    private static bool IsZeroBlock(ReadOnlySpan<byte> block) => !block.ContainsAnyExcept((byte)0);

    private void VerifyChecksum(long offset)
    {
        long stored = ParseOctal(_header.AsSpan(148, 8), offset, "checksum");
        long unsigned = 0, signed = 0;
        for (int i = 0; i < BlockSize; i++)
        {
            byte b = i is >= 148 and < 156 ? (byte)' ' : _header[i];
            unsigned += b;
            signed += (sbyte)b;
        }
        if (stored != unsigned && stored != signed)
            throw Error(offset, $"bad header checksum (stored {stored}, computed {unsigned}): not a tar archive, or corrupt");
    }

    private long ParseSize(long offset)
    {
        var field = _header.AsSpan(124, 12);
        if ((field[0] & 0x80) != 0)
        {
            // GNU base-256: the remaining bits big-endian; a leading 0xFF means negative.
            if (field[0] == 0xFF) throw Error(offset, "negative member size");
            long v = field[0] & 0x7F;
            for (int i = 1; i < field.Length; i++)
            {
                if (v > (long.MaxValue >> 8)) throw Error(offset, "member size overflows");
                v = (v << 8) | field[i];
            }
            return v;
        }
        return ParseOctal(field, offset, "size");
    }

    private long ParseOctal(ReadOnlySpan<byte> field, long offset, string what)
    {
        int i = 0;
        while (i < field.Length && field[i] is (byte)' ' or 0) i++;
        long v = 0;
        bool any = false;
        for (; i < field.Length && field[i] is >= (byte)'0' and <= (byte)'7'; i++)
        {
            v = v * 8 + (field[i] - '0');
            any = true;
        }
        for (; i < field.Length; i++)
        {
            if (field[i] is not ((byte)' ' or 0))
                throw Error(offset, $"the {what} field '{Encoding.ASCII.GetString(field).TrimEnd('\0')}' is not octal: not a tar archive, or corrupt");
        }
        return any ? v : 0;
    }

    private string HeaderName()
    {
        string name = NullTerminated(0, 100);
        // POSIX ustar ("ustar\0"): a non-empty prefix goes before the name. GNU ("ustar  \0") uses that area otherwise.
        bool posix = _header.AsSpan(257, 6).SequenceEqual("ustar\0"u8);
        if (posix)
        {
            string prefix = NullTerminated(345, 155);
            if (prefix.Length > 0) return prefix + "/" + name;
        }
        return name;
    }

    private string NullTerminated(int start, int length)
    {
        var field = _header.AsSpan(start, length);
        int end = field.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? field : field[..end]);
    }

    private static string ReadString(byte[] data)
    {
        int end = Array.IndexOf(data, (byte)0);
        return Encoding.UTF8.GetString(data, 0, end < 0 ? data.Length : end);
    }

    private Dictionary<string, string> ParsePax(byte[] data, long offset)
    {
        var records = new Dictionary<string, string>(StringComparer.Ordinal);
        int pos = 0;
        while (pos < data.Length)
        {
            if (data[pos] == 0) break; // some writers pad with NULs
            int space = Array.IndexOf(data, (byte)' ', pos);
            if (space < 0 || !int.TryParse(Encoding.ASCII.GetString(data, pos, space - pos), out int length) || length <= space - pos + 1 || pos + length > data.Length || data[pos + length - 1] != (byte)'\n')
                throw Error(offset, $"malformed pax record at byte {pos} of the extended header");
            string record = Encoding.UTF8.GetString(data, space + 1, pos + length - space - 2);
            int eq = record.IndexOf('=');
            if (eq <= 0) throw Error(offset, $"malformed pax record '{record}'");
            records[record[..eq]] = record[(eq + 1)..];
            pos += length;
        }
        return records;
    }

    private DataFormatException Error(long offset, string reason) =>
        new(new DataIssue(SourceName, $"byte offset {offset}", reason));
}
