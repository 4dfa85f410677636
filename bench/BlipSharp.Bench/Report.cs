using System.Globalization;
using System.Text;

namespace BlipSharp.Bench;

/// <summary>Markdown tables, printed as each section finishes.</summary>
internal sealed class MarkdownTable(params string[] headers)
{
    private readonly List<string[]> _rows = [];

    public MarkdownTable Add(params string[] cells)
    {
        _rows.Add(cells);
        return this;
    }

    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.Append("| ").AppendJoin(" | ", headers).AppendLine(" |");
        sb.Append('|').AppendJoin("|", headers.Select((_, i) => i == 0 ? "---" : "---:")).AppendLine("|");
        foreach (var row in _rows) sb.Append("| ").AppendJoin(" | ", row).AppendLine(" |");
        return sb.ToString();
    }
}

/// <summary>Number formatting for the tables.</summary>
internal static class Fmt
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;
    public static string Sec(double s) => double.IsNaN(s) ? "—" : s >= 1 ? s.ToString("F2", C) + " s" : (s * 1000).ToString(s >= 0.1 ? "F0" : "F1", C) + " ms";
    public static string Num(double v, string format = "F1") => double.IsNaN(v) ? "—" : v.ToString(format, C);
    public static string Pct(double v) => double.IsNaN(v) ? "—" : (v * 100).ToString("F0", C) + "%";
    public static string Ratio(double v) => double.IsNaN(v) ? "—" : v.ToString("F2", C) + "x";
    public static string MiB(double v) => v.ToString("F0", C);
}
