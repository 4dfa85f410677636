using System.Text.Json;
using System.Text.RegularExpressions;
using BlipSharp.Generation;
using BlipSharp.Tests.Generation;
using BlipSharp.Tests.TestSupport;

namespace BlipSharp.Tests.Pipelines;

/// <summary>Fixture folders by architecture, and the image files a generate run used.</summary>
public static class PipelineFixtures
{
    /// <summary>Every hf-blip model folder written from <paramref name="architecture"/>; fails when there is none.</summary>
    public static IReadOnlyList<string> Dirs(string architecture)
    {
        var dirs = Fixtures.HfModelDirs().Where(d =>
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(d, "cases.json")));
            return doc.RootElement.GetProperty("architecture").GetString() == architecture;
        }).ToList();
        if (dirs.Count == 0) throw new InvalidOperationException($"no {architecture} folder in {Fixtures.HfBlipDir}");
        return dirs;
    }

    /// <summary>The image files of a folder's cases.json, in order.</summary>
    public static IReadOnlyList<string> ImageFiles(FixtureCases cases) =>
        cases.Json.GetProperty("images").EnumerateArray().Select(e => Path.Combine(Fixtures.HfBlipDir, e.GetProperty("file").GetString()!)).ToList();

    /// <summary>The image files a captioning run encoded: every image, or the "pixel_values[a:b]" slice.</summary>
    public static IReadOnlyList<string> RunImages(FixtureCases cases, JsonElement run)
    {
        var files = ImageFiles(cases);
        int n = (int)cases.Tensor("pixel_values").shape[0];
        var all = files.Take(n).ToList();
        if (!run.TryGetProperty("pixel_values", out var desc)) return all;
        var m = Regex.Match(desc.GetString() ?? "", @"\[(\d+):(\d+)\]");
        if (!m.Success) return all;
        int from = int.Parse(m.Groups[1].Value), to = int.Parse(m.Groups[2].Value);
        return all.Skip(from).Take(to - from).ToList();
    }

    /// <summary>(folder, run) for every generate run of an architecture.</summary>
    public static IEnumerable<object[]> Runs(string architecture)
    {
        var names = Dirs(architecture).Select(Path.GetFileName).ToHashSet();
        return GenerationFixtureRuns.All().Where(r => names.Contains((string)r[0]));
    }

    /// <summary>A fixture row without the padding that batching added (the end token kept).</summary>
    public static long[] Trimmed(JsonElement row, int promptLength)
    {
        var ids = row.EnumerateArray().Select(v => v.GetInt64()).ToList();
        int end = promptLength;
        while (end < ids.Count && ids[end] != 102 && ids[end] != 0) end++;
        if (end < ids.Count && ids[end] == 102) end++;
        return ids.Take(end).ToArray();
    }

    public static GenerationOptions Options(JsonElement run) => GenerationFixtureRuns.Options(run);
}
