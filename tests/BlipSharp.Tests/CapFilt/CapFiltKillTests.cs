using System.Diagnostics;
using System.Runtime.InteropServices;
using BlipSharp.Cli;
using BlipSharp.Training.CapFilt;
using Xunit;
using Xunit.Abstractions;
using static BlipSharp.Tests.CapFilt.CapFiltWorld;

namespace BlipSharp.Tests.CapFilt;

/// <summary>
/// <c>blip capfilt</c> as a child process stopped once with SIGTERM, then killed with SIGKILL at seeded-random moments and
/// started again with the same command until it finishes: the output must be byte for byte an uninterrupted run's, every
/// record exactly once, with no temporary file left.
/// </summary>
public sealed class CapFiltKillTests(CapFiltWorld world, ITestOutputHelper log) : IClassFixture<CapFiltWorld>
{
    private const int Kills = 4;
    private const int SigTerm = 15;

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SendSignal(int pid, int signal);

    [Fact]
    public async Task ARunKilledAtRandomMomentsAndRestartedEndsWithTheUninterruptedBytes()
    {
        // 65 records in chunks of 1, one image per batch: a few seconds of work in 65 commits, so kills land mid-run.
        string[] Command(string output) =>
        [
            "capfilt", "--captioner", Captioner, "--filter", Filter, "--input", world.PretrainFile, world.BadFile, "--human", world.HumanFile,
            "--out", output, "--chunk-size", "1", "--batch-size", "1", "--seed", "5", "--max-length", "16", "--min-length", "5", "--threads", "1",
            "--decode-threads", "1",
        ];
        const int records = WebPairs + BadRecords, chunks = records;

        string reference = world.NewOutput("kill-reference");
        var (code, _, error) = Blip(Command(reference));
        Assert.True(code == 0, error);

        string output = world.NewOutput("killed");
        string chunkDir = Path.Combine(output, CapFiltRunner.ChunksDirectory);
        int Committed() => Directory.Exists(chunkDir) ? Directory.GetFiles(chunkDir, "chunk-*.jsonl").Length : 0;

        // First a polite stop: SIGTERM ends the run after its current batch, exit code 1, committed chunks kept.
        using (var child = StartChild(Command(output)))
        {
            var stderr = child.StandardError.ReadToEndAsync();
            _ = child.StandardOutput.ReadToEndAsync();
            await WaitFor(() => Committed() >= 1 || child.HasExited);
            Assert.False(child.HasExited, "the run ended before the first chunk was committed");
            Assert.Equal(0, SendSignal(child.Id, SigTerm));
            Assert.True(child.WaitForExit(60_000));
            string err = await stderr;
            Assert.True(child.ExitCode == BlipCli.SomeInputsFailed, $"exit {child.ExitCode}: {err}");
            Assert.Contains("stopped before the end; run the same command again to go on (committed chunks are kept)", err);
        }
        int afterStop = Committed();
        Assert.InRange(afterStop, 1, chunks - 1);

        // Then SIGKILL at seeded-random moments: after 1..4 more committed chunks, 0..0.5 s after the next chunk, or
        // 0.1..1.5 s after the start (model loading included).
        var random = new Random(20240611);
        int kills = 0, starts = 0;
        var committedAtKill = new List<int>();
        while (true)
        {
            Assert.True(starts < Kills + 3, $"not finished after {starts} starts");
            starts++;
            using var child = StartChild(Command(output));
            var stdout = child.StandardOutput.ReadToEndAsync();
            var stderr = child.StandardError.ReadToEndAsync();
            if (kills < Kills)
            {
                int before = Committed(), mode = random.Next(3);
                int wantChunks = before + (mode == 0 ? random.Next(1, 5) : 1);
                var delay = TimeSpan.FromMilliseconds(mode == 1 ? random.Next(0, 500) : random.Next(100, 1500));
                if (mode < 2) await WaitFor(() => Committed() >= wantChunks || child.HasExited);
                await Task.Delay(mode == 0 ? TimeSpan.Zero : delay);
                if (!child.HasExited)
                {
                    child.Kill(entireProcessTree: true); // SIGKILL: no chance to clean up
                    Assert.True(child.WaitForExit(30_000));
                    kills++;
                    committedAtKill.Add(Committed());
                    log.WriteLine($"start {starts}: killed with {Committed()} of {chunks} chunks committed ("
                        + (mode == 0 ? $"waited for chunk {wantChunks})" : mode == 1 ? $"{delay.TotalMilliseconds} ms after chunk {wantChunks})" : $"after {delay.TotalMilliseconds} ms)"));
                    continue;
                }
            }
            Assert.True(child.WaitForExit(120_000), "the last run did not finish");
            string err = await stderr;
            Assert.True(child.ExitCode == 0, $"exit {child.ExitCode}: {err}");
            Assert.StartsWith($"{records} records: ", await stdout);
            log.WriteLine($"start {starts}: finished; {err.Split('\n').FirstOrDefault(l => l.Contains("already done", StringComparison.Ordinal))}");
            break;
        }

        // The kills happened mid-run: before the last chunk was committed, with progress between them (the test can fail).
        Assert.True(kills >= 4, $"only {kills} kills landed before the run finished");
        Assert.True(committedAtKill.Count(n => n < chunks) >= 4, $"chunks committed at the kills: {string.Join(", ", committedAtKill)} of {chunks}");
        Assert.True(committedAtKill.Max() > afterStop, "no chunk was committed between the kills");

        byte[] expected = File.ReadAllBytes(Path.Combine(reference, CapFiltMerge.ScoresFile));
        Assert.Equal(expected, File.ReadAllBytes(Path.Combine(output, CapFiltMerge.ScoresFile)));
        Assert.Equal(Enumerable.Range(0, records).Select(i => (long)i),
            ReadLines(Path.Combine(output, CapFiltMerge.ScoresFile)).Select(s => s.GetProperty("ordinal").GetInt64()));
        Assert.Equal(File.ReadAllBytes(Path.Combine(reference, CapFiltMerge.DatasetFile)), File.ReadAllBytes(Path.Combine(output, CapFiltMerge.DatasetFile)));
        Assert.Equal(chunks, Committed());
        Assert.Empty(Directory.GetFiles(output, "*.tmp-*", SearchOption.AllDirectories));
    }

    /// <summary>Polls <paramref name="condition"/> every 2 ms, for at most a minute.</summary>
    private static async Task WaitFor(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "waited a minute");
            await Task.Delay(2);
        }
    }

    /// <summary>Starts <c>dotnet blip.dll ARGS</c> (the built command, as a user runs it).</summary>
    private static Process StartChild(string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "blip.dll");
        Assert.True(File.Exists(dll), $"{dll} is missing: the test project references the CLI project");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(dll);
        foreach (string a in args) info.ArgumentList.Add(a);
        info.Environment["OMP_WAIT_POLICY"] = "PASSIVE";
        return Process.Start(info)!;
    }
}
