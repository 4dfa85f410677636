using Microsoft.Extensions.FileSystemGlobbing;

namespace BlipSharp.Cli;

/// <summary>Turns command-line image arguments (files, folders, globs) into an ordered list of image files.</summary>
internal static class ImageInputs
{
    /// <summary>File extensions taken from folders and globs (a file named explicitly is always taken).</summary>
    public static readonly IReadOnlySet<string> Extensions = new HashSet<string>(StringComparer.OrdinalIgnoreCase)
    {
        ".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".ico", ".wbmp", ".heic", ".heif", ".avif",
    };

    /// <summary>
    /// Expands each argument: an existing file as is; a folder to its image files, recursively, sorted; a pattern
    /// with <c>*</c>, <c>?</c> or <c>**</c> to the matching image files, sorted. Arguments that match nothing are
    /// returned in <paramref name="missing"/> instead of failing the whole run.
    /// </summary>
    public static List<string> Expand(IEnumerable<string> arguments, out List<string> missing)
    {
        var files = new List<string>();
        missing = [];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var arg in arguments)
        {
            var found = ExpandOne(arg);
            if (found.Count == 0) missing.Add(arg);
            foreach (var f in found)
                if (seen.Add(Path.GetFullPath(f))) files.Add(f);
        }
        return files;
    }

    private static List<string> ExpandOne(string arg)
    {
        if (File.Exists(arg)) return [arg];
        if (Directory.Exists(arg))
            return Directory.EnumerateFiles(arg, "*", SearchOption.AllDirectories)
                .Where(f => Extensions.Contains(Path.GetExtension(f)))
                .Order(StringComparer.Ordinal).ToList();
        if (arg.IndexOfAny(['*', '?']) < 0) return [];

        // Split the pattern into the folder before the first wildcard segment and the pattern after it.
        string normalized = arg.Replace('\\', '/');
        var segments = normalized.Split('/');
        int firstWild = Array.FindIndex(segments, s => s.IndexOfAny(['*', '?']) >= 0);
        string root = string.Join('/', segments.Take(firstWild));
        if (root.Length == 0) root = normalized.StartsWith('/') ? "/" : ".";
        string pattern = string.Join('/', segments.Skip(firstWild));
        if (!Directory.Exists(root)) return [];
        var matcher = new Matcher(StringComparison.Ordinal);
        matcher.AddInclude(pattern);
        return matcher.GetResultsInFullPath(root)
            .Where(f => Extensions.Contains(Path.GetExtension(f)))
            .Select(f => root == "." ? Path.GetRelativePath(".", f) : Path.Combine(root, Path.GetRelativePath(root, f)))
            .Order(StringComparer.Ordinal).ToList();
    }
}
