using System.Diagnostics;
using System.Text.Json;
using BlipSharp.Cli;
using BlipSharp.Modeling;
using BlipSharp.Tests.Pipelines;
using BlipSharp.Tests.TestSupport;
using Xunit;

namespace BlipSharp.Tests.Cli;

/// <summary>The <c>blip</c> command, in-process and as a process, against the fixture models.</summary>
public sealed class CliTests
{
    public static IEnumerable<object[]> CaptionRuns() => PipelineFixtures.Runs(nameof(BlipForConditionalGeneration));

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = BlipCli.RunAsync(args, output, error).GetAwaiter().GetResult();
        return (code, output.ToString(), error.ToString());
    }

    /// <summary>Command-line flags for a fixture run's generate kwargs (transformers' defaults when absent: greedy, 0..20).</summary>
    private static List<string> Flags(JsonElement run)
    {
        var kwargs = run.GetProperty("kwargs");
        int Get(string name, int fallback) => kwargs.TryGetProperty(name, out var v) ? v.GetInt32() : fallback;
        foreach (var kw in kwargs.EnumerateObject())
            Assert.Contains(kw.Name, new[] { "num_beams", "min_length", "max_length" });
        return ["--beams", Get("num_beams", 1).ToString(), "--min-length", Get("min_length", 0).ToString(), "--max-length", Get("max_length", 20).ToString()];
    }

    [Theory]
    [Trait("Category", "Parity")]
    [MemberData(nameof(CaptionRuns))]
    public void CaptionJsonPrintsTheFixtureTextAndIds(string model, string run)
    {
        string dir = Fixtures.HfModelDir(model);
        using var cases = new FixtureCases(dir);
        var spec = cases.Json.GetProperty("cases").GetProperty("generate").GetProperty(run);
        var images = PipelineFixtures.RunImages(cases, spec);
        var args = new List<string> { "caption", "--model", dir };
        args.AddRange(images);
        args.AddRange(Flags(spec));
        string? prompt = spec.TryGetProperty("prompt", out var p) && p.ValueKind == JsonValueKind.String ? p.GetString() : null;
        if (prompt is not null) args.AddRange(["--prompt", prompt]);
        args.Add("--json");

        var (code, output, error) = Run([.. args]);
        Assert.True(code == BlipCli.Success, error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(images.Count, lines.Length);
        var rows = spec.GetProperty("sequences").EnumerateArray().ToList();
        var texts = spec.GetProperty("decoded_skip_special").EnumerateArray().Select(t => t.GetString()!).ToList();
        int promptLength = spec.GetProperty("prompt_len").GetInt32();
        for (int i = 0; i < lines.Length; i++)
        {
            using var line = JsonDocument.Parse(lines[i]);
            Assert.Equal(images[i], line.RootElement.GetProperty("image").GetString());
            Assert.Equal(PipelineFixtures.Trimmed(rows[i], promptLength), line.RootElement.GetProperty("ids").EnumerateArray().Select(v => v.GetInt64()).ToArray());
            string expected = prompt is null ? texts[i] : texts[i][(prompt.Length + 1)..];
            Assert.Equal(expected, line.RootElement.GetProperty("caption").GetString());
        }
    }

    [Fact]
    public void FoldersAndGlobsAreCaptionedAndAnUnreadableImageIsSkippedNotFatal()
    {
        string dir = PipelineFixtures.Dirs(nameof(BlipForConditionalGeneration))[0];
        using var cases = new FixtureCases(dir);
        var sources = PipelineFixtures.ImageFiles(cases);
        string folder = Directory.CreateTempSubdirectory("blip-cli-").FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(folder, "sub"));
            File.Copy(sources[0], Path.Combine(folder, "a.png"));
            File.Copy(sources[1], Path.Combine(folder, "sub", "b.png"));
            File.WriteAllBytes(Path.Combine(folder, "sub", "broken.jpg"), [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]);
            File.WriteAllText(Path.Combine(folder, "notes.txt"), "not an image");

            var (code, output, error) = Run("caption", "--model", dir, folder, "--beams", "1", "--json", "--batch-size", "2");
            Assert.Equal(BlipCli.SomeInputsFailed, code);
            var records = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
            Assert.Equal(3, records.Count); // a.png, sub/b.png, sub/broken.jpg (error record); notes.txt is not an image
            Assert.Equal(2, records.Count(r => r.TryGetProperty("caption", out _)));
            var failure = Assert.Single(records, r => r.TryGetProperty("error", out _));
            Assert.EndsWith("broken.jpg", failure.GetProperty("image").GetString());
            Assert.Contains("broken.jpg", error);

            // A quoted glob is expanded by blip itself; the same captions come back in text form.
            var (globCode, globOutput, _) = Run("caption", "--model", dir, Path.Combine(folder, "**", "*.png"), "--beams", "1");
            Assert.Equal(BlipCli.Success, globCode);
            var textLines = globOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(2, textLines.Length);
            string captionA = records.First(r => r.GetProperty("image").GetString()!.EndsWith("a.png")).GetProperty("caption").GetString()!;
            Assert.Contains(textLines, l => l.EndsWith("a.png: " + captionA));
        }
        finally { Directory.Delete(folder, recursive: true); }
    }

    [Fact]
    public void VqaMatchAndEmbedVerbsPrintTheirResults()
    {
        string vqaDir = PipelineFixtures.Dirs(nameof(BlipForQuestionAnswering))[0];
        string itmDir = PipelineFixtures.Dirs(nameof(BlipForImageTextRetrieval))[0];
        using var cases = new FixtureCases(vqaDir);
        // transformers' (and the original BLIP's) answer decoder attends to the question's padding too, so an answer
        // depends on the batch it was generated in: asked alone, only an unpadded fixture question reproduces its row.
        var questions = cases.Json.GetProperty("cases").GetProperty("questions");
        int q = questions.GetProperty("attention_mask").EnumerateArray().ToList().FindIndex(m => m.EnumerateArray().All(v => v.GetInt32() == 1));
        Assert.True(q >= 0, "no unpadded question in the fixture");
        string question = questions.GetProperty("texts")[q].GetString()!;
        string image = PipelineFixtures.ImageFiles(cases)[questions.GetProperty("image_index")[q].GetInt32()];
        var greedy = cases.Json.GetProperty("cases").GetProperty("generate").GetProperty("greedy_default");

        var (code, output, error) = Run("vqa", "--model", vqaDir, image, question, "--beams", "1", "--min-length", "0", "--max-length", "20", "--json");
        Assert.True(code == 0, error);
        using (var doc = JsonDocument.Parse(output))
        {
            Assert.Equal(greedy.GetProperty("decoded_skip_special")[q].GetString(), doc.RootElement.GetProperty("answer").GetString());
            Assert.Equal(PipelineFixtures.Trimmed(greedy.GetProperty("sequences")[q], 1), doc.RootElement.GetProperty("ids").EnumerateArray().Select(v => v.GetInt64()).ToArray());
        }

        (code, output, error) = Run("vqa", "--model", vqaDir, image, question, "--candidates", "two", "three", "a cat", "--json");
        Assert.True(code == 0, error);
        using (var doc = JsonDocument.Parse(output))
        {
            var ranking = doc.RootElement.GetProperty("ranking").EnumerateArray().ToList();
            Assert.Equal(3, ranking.Count);
            Assert.Equal(ranking[0].GetProperty("answer").GetString(), doc.RootElement.GetProperty("answer").GetString());
            var ll = ranking.Select(r => r.GetProperty("log_likelihood").GetDouble()).ToList();
            Assert.True(ll[0] >= ll[1] && ll[1] >= ll[2]);
        }

        using var itm = new FixtureCases(itmDir);
        var itc = itm.Json.GetProperty("cases").GetProperty("itc_all_texts");
        var texts = itc.GetProperty("texts").EnumerateArray().Select(t => t.GetString()!).ToList();
        string itmImage = PipelineFixtures.ImageFiles(itm)[0];
        (code, output, error) = Run(["match", "--model", itmDir, itmImage, .. texts, "--json"]);
        Assert.True(code == 0, error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(texts.Count, lines.Count);
        for (int t = 0; t < texts.Count; t++)
        {
            Assert.Equal(texts[t], lines[t].GetProperty("text").GetString());
            Assert.Equal(itc.GetProperty("cosine")[0][t].GetDouble(), lines[t].GetProperty("itc_cosine").GetDouble(), 4);
            double p = lines[t].GetProperty("itm_probability").GetDouble();
            Assert.InRange(p, 0.0, 1.0);
        }

        (code, output, error) = Run("embed", "--model", itmDir, itmImage, "--text", texts[0]);
        Assert.True(code == 0, error);
        var embeds = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(2, embeds.Count);
        var a = embeds[0].GetProperty("embedding").EnumerateArray().Select(v => v.GetDouble()).ToArray();
        var b = embeds[1].GetProperty("embedding").EnumerateArray().Select(v => v.GetDouble()).ToArray();
        Assert.Equal(1.0, Math.Sqrt(a.Sum(v => v * v)), 5);
        Assert.Equal(itc.GetProperty("cosine")[0][0].GetDouble(), a.Zip(b).Sum(x => x.First * x.Second), 4);
    }

    [Fact]
    public void BadArgumentsAreOneClearLineAndExitCodeTwo()
    {
        string dir = PipelineFixtures.Dirs(nameof(BlipForConditionalGeneration))[0];
        using var cases = new FixtureCases(dir);
        string image = PipelineFixtures.ImageFiles(cases)[0];
        var (code, _, error) = Run("caption", "--model", dir, image, "--beams", "0");
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains("--beams", error);
        (code, _, error) = Run("caption", "--model", dir, image, "--beams", "2", "--num-captions", "3");
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains("--num-captions", error);
        (code, _, error) = Run("caption", "--model", Path.Combine(dir, "does-not-exist"), image);
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains("does-not-exist", error);
        (code, _, error) = Run("caption", "--model", dir, "/no/such/image.jpg");
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains("/no/such/image.jpg", error);
        (code, _, _) = Run("caption");
        Assert.Equal(BlipCli.UsageError, code);
    }

    [Fact]
    [Trait("Category", "Parity")]
    public void TheBuiltCommandRunsAsAProcess()
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "blip.dll");
        Assert.True(File.Exists(dll), $"{dll} is missing: the test project references the CLI project");
        string dir = PipelineFixtures.Dirs(nameof(BlipForConditionalGeneration))[0];
        using var cases = new FixtureCases(dir);
        var spec = cases.Json.GetProperty("cases").GetProperty("generate").GetProperty("single_beam3_min5");
        var image = PipelineFixtures.RunImages(cases, spec).Single();
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { dll, "caption", "--model", dir, image, "--beams", "3", "--min-length", "5", "--max-length", "20", "--json" }) info.ArgumentList.Add(a);
        info.Environment["OMP_WAIT_POLICY"] = "PASSIVE";
        using var process = Process.Start(info)!;
        string stdout = process.StandardOutput.ReadToEnd();
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal(spec.GetProperty("decoded_skip_special")[0].GetString(), doc.RootElement.GetProperty("caption").GetString());
        Assert.Equal(spec.GetProperty("sequences")[0].EnumerateArray().Select(v => v.GetInt64()), doc.RootElement.GetProperty("ids").EnumerateArray().Select(v => v.GetInt64()));
    }
}
