using System.Globalization;
using System.Text;
using System.Text.Json;

namespace BlipSharp.Training.Training;

/// <summary>
/// <c>metrics.jsonl</c>: one JSON object per logged step, e.g.
/// <c>{"step": 50, "epoch": 0, "lr": 5.1e-6, "loss": 7.31, "itc": 2.1, "itm": 0.69, "lm": 4.5, "images_per_s": 41.2, "elapsed_s": 90.3, "peak_rss_mib": 812.4}</c>.
/// Each line is flushed when written. Resuming truncates the file to the checkpoint's step, so a run that was
/// killed and resumed leaves the same lines as one that never stopped.
/// </summary>
public sealed class MetricsLog : IDisposable
{
    private readonly StreamWriter _writer;

    /// <summary>Opens <paramref name="path"/> for appending.</summary>
    /// <param name="path">The file.</param>
    public MetricsLog(string path)
    {
        Path = path;
        _writer = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read), new UTF8Encoding(false));
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>Appends one line and flushes it.</summary>
    /// <param name="values">Field names and values, in order (numbers are written in round-trip form).</param>
    public void Write(IEnumerable<KeyValuePair<string, object>> values)
    {
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            foreach (var (key, value) in values)
            {
                switch (value)
                {
                    case long l: w.WriteNumber(key, l); break;
                    case int i: w.WriteNumber(key, i); break;
                    case double d when double.IsFinite(d): w.WriteNumber(key, d); break;
                    case double d: w.WriteString(key, d.ToString(CultureInfo.InvariantCulture)); break;
                    case string s: w.WriteString(key, s); break;
                    default: w.WriteString(key, Convert.ToString(value, CultureInfo.InvariantCulture)); break;
                }
            }
            w.WriteEndObject();
        }
        _writer.WriteLine(Encoding.UTF8.GetString(buffer.ToArray()));
        _writer.Flush();
    }

    /// <summary>
    /// Rewrites <paramref name="path"/> (atomically) keeping only the complete lines whose <c>step</c> is at most
    /// <paramref name="step"/>: what a resume from that step must continue.
    /// </summary>
    /// <param name="path">The metrics file (nothing happens if it does not exist).</param>
    /// <param name="step">The checkpoint's step.</param>
    /// <returns>How many lines were dropped.</returns>
    public static int TruncateAfter(string path, long step)
    {
        if (!File.Exists(path)) return 0;
        var kept = new List<string>();
        int dropped = 0;
        foreach (string line in File.ReadLines(path))
        {
            if (line.Length == 0) continue;
            long? lineStep = null;
            try
            {
                using var doc = JsonDocument.Parse(line);
                if (doc.RootElement.TryGetProperty("step", out var s) && s.TryGetInt64(out long v)) lineStep = v;
            }
            catch (JsonException)
            {
            }
            if (lineStep is { } ls && ls <= step) kept.Add(line);
            else dropped++;
        }
        if (dropped == 0) return 0;
        string temp = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        File.WriteAllLines(temp, kept, new UTF8Encoding(false));
        File.Move(temp, path, overwrite: true);
        return dropped;
    }

    /// <summary>Reads every line of a metrics file.</summary>
    /// <param name="path">The file.</param>
    public static IReadOnlyList<JsonElement> Read(string path) =>
        File.ReadLines(path).Where(l => l.Length > 0).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();

    /// <inheritdoc />
    public void Dispose() => _writer.Dispose();
}
