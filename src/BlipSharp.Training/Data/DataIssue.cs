namespace BlipSharp.Training.Data;

/// <summary>
/// One malformed record that a reader skipped: which file, where in it (a record index, a line number or a
/// tar member) and why.
/// </summary>
/// <param name="Source">The file (or shard) the record came from.</param>
/// <param name="Location">Where in <paramref name="Source"/>: <c>"record 12"</c>, <c>"line 7"</c>, <c>"sample '000123'"</c>.</param>
/// <param name="Reason">What is wrong with it.</param>
public sealed record DataIssue(string Source, string Location, string Reason)
{
    /// <summary><c>file: location: reason</c>.</summary>
    public override string ToString() => $"{Source}: {Location}: {Reason}";
}

/// <summary>
/// A record or file that cannot be read: thrown for malformed records in strict mode, and always for a file
/// that cannot be read at all (missing, not JSON, a truncated tar). The message names the file and the record.
/// </summary>
public sealed class DataFormatException : Exception
{
    /// <summary>Creates the exception for one problem.</summary>
    /// <param name="issue">The file, location and reason.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public DataFormatException(DataIssue issue, Exception? inner = null)
        : base(issue.ToString(), inner)
    {
        Issue = issue;
    }

    /// <summary>The file, location and reason.</summary>
    public DataIssue Issue { get; }
}

/// <summary>
/// Collects the records a reader skipped. Keeps the first <see cref="MaxKept"/> issues in full and counts all of
/// them; in strict mode the first one throws. Thread-safe.
/// </summary>
public sealed class DataIssueLog
{
    /// <summary>How many issues are kept in <see cref="Issues"/>; later ones are only counted.</summary>
    public const int MaxKept = 1000;

    private readonly List<DataIssue> _issues = [];
    private readonly Action<DataIssue>? _onIssue;
    private long _count;

    /// <summary>Creates a log.</summary>
    /// <param name="strict">Throw <see cref="DataFormatException"/> on the first issue instead of skipping.</param>
    /// <param name="onIssue">Called for every issue (for example to write it to a logger); may be called from worker threads.</param>
    public DataIssueLog(bool strict = false, Action<DataIssue>? onIssue = null)
    {
        Strict = strict;
        _onIssue = onIssue;
    }

    /// <summary>Whether the first issue throws.</summary>
    public bool Strict { get; }

    /// <summary>How many records were skipped.</summary>
    public long Count => Interlocked.Read(ref _count);

    /// <summary>The first <see cref="MaxKept"/> issues, in the order they were reported.</summary>
    public IReadOnlyList<DataIssue> Issues
    {
        get
        {
            lock (_issues) return _issues.ToArray();
        }
    }

    /// <summary>Records a skipped item, or throws in strict mode.</summary>
    /// <param name="issue">What was skipped and why.</param>
    /// <param name="inner">The underlying error, if any (kept as the inner exception in strict mode).</param>
    public void Report(DataIssue issue, Exception? inner = null)
    {
        if (Strict) throw new DataFormatException(issue, inner);
        Interlocked.Increment(ref _count);
        lock (_issues)
        {
            if (_issues.Count < MaxKept) _issues.Add(issue);
        }
        _onIssue?.Invoke(issue);
    }
}
