using System.Diagnostics;

namespace BlipSharp.Cli;

/// <summary>
/// A one-line progress bar on the error stream: done/total, rate and time left. Drawn only when the error stream is
/// an interactive terminal (or when forced), so redirected output and JSON lines stay clean.
/// </summary>
internal sealed class ProgressBar : IDisposable
{
    private readonly TextWriter _writer;
    private readonly int _total;
    private readonly string _unit;
    private readonly bool _enabled;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private int _done;
    private int _failed;

    public ProgressBar(TextWriter writer, int total, string unit, bool enabled)
    {
        _writer = writer;
        _total = total;
        _unit = unit;
        _enabled = enabled && total > 0;
        Draw();
    }

    /// <summary>Whether a bar should be drawn on <paramref name="error"/>: only the real console's stderr, when it is a terminal.</summary>
    public static bool ShouldDraw(TextWriter error) => ReferenceEquals(error, Console.Error) && !Console.IsErrorRedirected;

    public void Advance(int done, int failed = 0)
    {
        _done += done;
        _failed += failed;
        Draw();
    }

    /// <summary>The progress line, e.g. <c>[=====&gt;    ] 12/40 images, 3.1/s, 0:09 left</c>.</summary>
    public string Line()
    {
        const int width = 24;
        double fraction = _total == 0 ? 1 : (double)(_done + _failed) / _total;
        int filled = (int)Math.Round(fraction * width);
        string bar = new string('=', Math.Max(0, filled - 1)) + (filled > 0 ? (filled == width ? "=" : ">") : "") + new string(' ', width - filled);
        double seconds = _clock.Elapsed.TotalSeconds;
        double rate = seconds > 0 ? (_done + _failed) / seconds : 0;
        string left = rate > 0 ? TimeSpan.FromSeconds((_total - _done - _failed) / rate).ToString(@"m\:ss") : "?";
        string failed = _failed > 0 ? $", {_failed} failed" : "";
        return $"[{bar}] {_done + _failed}/{_total} {_unit}{failed}, {rate:F1}/s, {left} left";
    }

    private void Draw()
    {
        if (!_enabled) return;
        _writer.Write("\r" + Line());
        _writer.Flush();
    }

    public void Dispose()
    {
        if (_enabled) _writer.WriteLine();
    }
}
