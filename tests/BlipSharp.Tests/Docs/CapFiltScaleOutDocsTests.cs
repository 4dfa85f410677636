using System.CommandLine;
using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using BlipSharp.Cli;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.CapFilt;
using Xunit;

namespace BlipSharp.Tests.Docs;

/// <summary>
/// docs/capfilt-scale-out.md and its example files (the Slurm array and merge scripts, the Kubernetes manifest): every
/// <c>blip</c> command line in them, with its shell variables given example values, parses with the real command
/// (no unknown option, no missing value), <c>--shard</c> comes out as the part the scheduler means, and the files agree
/// with each other (N, the output folder, the labels the document selects by).
/// </summary>
public sealed class CapFiltScaleOutDocsTests
{
    private static readonly string Docs = Path.Combine(Fixtures.RepoRoot, "docs");

    /// <summary>Example values for the variables the command lines use; a variable not listed here fails the test.</summary>
    private static readonly Dictionary<string, string> Variables = new(StringComparer.Ordinal)
    {
        ["DATA"] = "/shared/blip",
        ["OUT"] = "/shared/blip/capfilt/run-1",
        ["PARTS"] = "8",
        ["SLURM_ARRAY_TASK_ID"] = "3",
        ["SLURM_CPUS_PER_TASK"] = "32",
        ["JOB_COMPLETION_INDEX"] = "5",
    };

    private sealed record DocCommand(string File, int Line, string Text, string[] Args, ParseResult Parse)
    {
        public string Verb => Parse.CommandResult.Command.Name;

        public override string ToString() => $"{File}:{Line}: {Text}";
    }

    private static List<DocCommand> Commands(string relativePath)
    {
        string path = Path.Combine(Docs, relativePath);
        Assert.True(File.Exists(path), $"{path} is missing");
        var root = BlipCli.CreateRootCommand(TextWriter.Null, TextWriter.Null);
        var result = new List<DocCommand>();
        var lines = File.ReadAllText(path).Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            int first = i + 1;
            string line = lines[i].Trim();
            while (line.EndsWith('\\') && i + 1 < lines.Length) line = line[..^1] + " " + lines[++i].Trim();
            foreach (string prefix in new[] { "exec ", "srun " })
                if (line.StartsWith(prefix, StringComparison.Ordinal)) line = line[prefix.Length..];
            if (line.EndsWith(" &", StringComparison.Ordinal)) line = line[..^2];
            if (!line.StartsWith("blip ", StringComparison.Ordinal) || line.Contains("[--", StringComparison.Ordinal)) continue; // a usage synopsis
            var unknown = new List<string>();
            var words = ShellWords(line, unknown);
            Assert.True(unknown.Count == 0, $"{relativePath}:{first}: no example value for ${string.Join(", $", unknown)}");
            var args = words.Skip(1).ToArray();
            var parse = root.Parse(args);
            Assert.True(parse.Errors.Count == 0, $"{relativePath}:{first}: {line}\n  -> {string.Join("; ", parse.Errors.Select(e => e.Message))}");
            result.Add(new DocCommand(relativePath, first, line, args, parse));
        }
        return result;
    }

    /// <summary>Splits a shell command line into words: quotes, backslashes, <c>$NAME</c> / <c>${NAME}</c> from <see cref="Variables"/>, <c>$(...)</c> as one opaque value.</summary>
    private static List<string> ShellWords(string line, List<string> unknown)
    {
        var words = new List<string>();
        var word = new StringBuilder();
        bool inWord = false;
        int i = 0;
        while (i < line.Length)
        {
            char c = line[i];
            if (char.IsWhiteSpace(c))
            {
                if (inWord) words.Add(word.ToString());
                word.Clear();
                inWord = false;
                i++;
                continue;
            }
            inWord = true;
            if (c == '\'')
            {
                int end = line.IndexOf('\'', i + 1);
                Assert.True(end > 0, $"unterminated ' in: {line}");
                word.Append(line, i + 1, end - i - 1);
                i = end + 1;
            }
            else if (c == '"')
            {
                i++;
                while (true)
                {
                    Assert.True(i < line.Length, $"unterminated \" in: {line}");
                    if (line[i] == '"') break;
                    if (line[i] == '$') i = Expand(line, i, word, unknown);
                    else if (line[i] == '\\' && i + 1 < line.Length && "\"\\$`".Contains(line[i + 1])) { word.Append(line[i + 1]); i += 2; }
                    else word.Append(line[i++]);
                }
                i++;
            }
            else if (c == '$') i = Expand(line, i, word, unknown);
            else if (c == '\\' && i + 1 < line.Length) { word.Append(line[i + 1]); i += 2; }
            else { word.Append(c); i++; }
        }
        if (inWord) words.Add(word.ToString());
        return words;
    }

    private static int Expand(string line, int i, StringBuilder word, List<string> unknown)
    {
        if (line[i + 1] == '(')
        {
            int depth = 0, j = i + 1;
            for (; j < line.Length; j++)
            {
                if (line[j] == '(') depth++;
                else if (line[j] == ')' && --depth == 0) break;
            }
            word.Append("COMMAND-OUTPUT");
            return j + 1;
        }
        string name;
        int next;
        if (line[i + 1] == '{')
        {
            int end = line.IndexOf('}', i);
            name = line[(i + 2)..end];
            next = end + 1;
        }
        else
        {
            var m = Regex.Match(line[(i + 1)..], "^[A-Za-z_][A-Za-z0-9_]*");
            name = m.Value;
            next = i + 1 + m.Length;
        }
        if (Variables.TryGetValue(name, out string? value)) word.Append(value);
        else unknown.Add(name);
        return next;
    }

    private static string Value(DocCommand command, string option) => command.Parse.GetValue<string>(option)!;

    private static string Read(string relativePath) => File.ReadAllText(Path.Combine(Docs, relativePath));

    [Fact]
    public void TheSlurmArrayRunsPartTaskIdOfNIntoTheFolderTheMergeJobMerges()
    {
        string script = Read("capfilt/slurm-capfilt.sh");
        var run = Assert.Single(Commands("capfilt/slurm-capfilt.sh"));
        var merge = Assert.Single(Commands("capfilt/slurm-capfilt-merge.sh"));

        Assert.Equal("capfilt", run.Verb);
        Assert.Equal(new ShardSpec(3, 8), ShardSpec.Parse(Value(run, "--shard"))); // $SLURM_ARRAY_TASK_ID/$PARTS
        var array = Regex.Match(script, @"^#SBATCH --array=0-(\d+)$", RegexOptions.Multiline);
        Assert.True(array.Success, "slurm-capfilt.sh has no '#SBATCH --array=0-(N-1)' line");
        Assert.Contains("PARTS=${PARTS:-$SLURM_ARRAY_TASK_COUNT}", script, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^#SBATCH --requeue$", script);
        Assert.Matches(@"(?m)^trap requeue USR1$", script);
        Assert.Matches(@"(?m)^#SBATCH --signal=B:USR1@\d+$", script);
        Assert.Contains("#SBATCH --kill-on-invalid-dep=yes", Read("capfilt/slurm-capfilt-merge.sh"), StringComparison.Ordinal);

        Assert.Equal("merge", merge.Verb);
        Assert.Equal(Value(run, "--out"), Assert.Single(merge.Parse.GetValue<string[]>("dirs")!));
    }

    [Fact]
    public void TheIndexedJobRunsPartCompletionIndexOfCompletionsIntoTheVolumeTheMergeJobMerges()
    {
        string yaml = Read("capfilt/capfilt-indexed-job.yaml");
        var commands = Commands("capfilt/capfilt-indexed-job.yaml");
        Assert.Equal(["capfilt", "merge"], commands.Select(c => c.Verb));
        var (run, merge) = (commands[0], commands[1]);

        int completions = int.Parse(Regex.Match(yaml, @"(?m)^  completions: (\d+)").Groups[1].Value);
        int parallelism = int.Parse(Regex.Match(yaml, @"(?m)^  parallelism: (\d+)").Groups[1].Value);
        Assert.Equal(Variables["PARTS"], Regex.Match(yaml, "- name: PARTS\\s+value: \"(\\d+)\"").Groups[1].Value);
        Assert.Equal(new ShardSpec(5, completions), ShardSpec.Parse(Value(run, "--shard"))); // $JOB_COMPLETION_INDEX/$PARTS
        Assert.InRange(parallelism, 1, completions);
        Assert.Matches(@"(?m)^  completionMode: Indexed$", yaml);
        Assert.Matches(@"(?m)^  backoffLimitPerIndex: \d+", yaml);
        Assert.Matches(@"(?m)^  podReplacementPolicy: Failed", yaml);
        Assert.Equal(2, Regex.Matches(yaml, @"(?m)^      restartPolicy: Never\b").Count);
        Assert.Matches(@"accessModes: \[ReadWriteMany\]", yaml);
        string claim = Regex.Match(yaml, @"(?m)^kind: PersistentVolumeClaim\nmetadata:\n  name: (\S+)").Groups[1].Value;
        Assert.Equal(2, Regex.Matches(yaml, $@"claimName: {Regex.Escape(claim)}\n").Count);
        Assert.Equal(Value(run, "--out"), Assert.Single(merge.Parse.GetValue<string[]>("dirs")!));

        // The labels the document's `kubectl apply -l` selects by.
        foreach (string step in new[] { "storage", "parts", "merge" })
            Assert.Matches($@"blipsharp.io/step: {step}\n", yaml);
        Assert.Contains("-l 'blipsharp.io/step in (storage,parts)'", Read("capfilt-scale-out.md"), StringComparison.Ordinal);
    }

    [Fact]
    public void TheDocumentsCommandLinesParseAndItsLinksAndScriptsExist()
    {
        string doc = Read("capfilt-scale-out.md");
        var commands = Commands("capfilt-scale-out.md");
        Assert.Equal(["capfilt", "merge", "capfilt", "pretrain"], commands.Select(c => c.Verb));
        Assert.Equal(new ShardSpec(0, 3), ShardSpec.Parse(Value(commands[0], "--shard")));
        Assert.Equal(3, commands[1].Parse.GetValue<string[]>("dirs")!.Length);
        Assert.Equal(new ShardSpec(3, 8), ShardSpec.Parse(Value(commands[2], "--shard")));

        // The Slurm command quoted in the document is the script's, word for word.
        Assert.Equal(Assert.Single(Commands("capfilt/slurm-capfilt.sh")).Args, commands[2].Args);

        foreach (Match link in Regex.Matches(doc, @"\]\((capfilt/[^)]+)\)"))
            Assert.True(File.Exists(Path.Combine(Docs, link.Groups[1].Value)), $"capfilt-scale-out.md links to a missing {link.Groups[1].Value}");
        foreach (Match script in Regex.Matches(doc, @"docs/(capfilt/[\w.-]+)"))
            Assert.True(File.Exists(Path.Combine(Docs, script.Groups[1].Value)), $"capfilt-scale-out.md names a missing docs/{script.Groups[1].Value}");
        Assert.Contains("sbatch --dependency=afterok:$jid docs/capfilt/slurm-capfilt-merge.sh", doc, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("capfilt/slurm-capfilt.sh")]
    [InlineData("capfilt/slurm-capfilt-merge.sh")]
    public void TheSlurmScriptsAreValidBash(string script)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardError = true };
        start.ArgumentList.Add("-n");
        start.ArgumentList.Add(Path.Combine(Docs, script));
        using var bash = Process.Start(start)!;
        string error = bash.StandardError.ReadToEnd();
        bash.WaitForExit();
        Assert.True(bash.ExitCode == 0, $"bash -n {script}: {error}");
    }
}
