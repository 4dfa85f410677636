using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using BlipSharp.Training.CapFilt;
using BlipSharp.Training.Evaluation;
using BlipSharp.Training.Training;

namespace BlipSharp.Cli;

/// <summary>
/// <c>blip bootstrap --config FILE [--out DIR] [--set key=value]... [--threads N] [--json]</c>: BLIP's whole
/// bootstrapping loop on the synthetic world as one recipe (<see cref="BootstrapPipeline"/>): world, ViT stage, raw
/// pretraining, captioner, filter, CapFilt, bootstrapped pretraining, evaluation of both. Every stage is a subfolder of
/// the run folder; the same command again skips the completed stages and resumes the interrupted one.
/// </summary>
internal static class BootstrapCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var config = new Option<string>("--config", "-c") { Description = "Bootstrap recipe (JSON), e.g. configs/bootstrap-synthetic.json.", Required = true };
        var set = new Option<string[]>("--set") { Description = "Override a recipe key: --set seed=2 --set capfilt.threshold=0.3 (repeatable; values are JSON, else strings).", Arity = ArgumentArity.ZeroOrMore };
        set.AllowMultipleArgumentsPerToken = false;
        var outDir = new Option<string?>("--out", "-o") { Description = "Run folder (overrides output.dir): one subfolder per stage, results.json, results.md." };
        var threads = new Option<int?>("--threads") { Description = "Torch intra-op threads for every stage (default: libtorch's choice)." };
        var json = new Option<bool>("--json") { Description = "Print the result as one JSON object." };
        var command = new Command("bootstrap", "Run BLIP's bootstrapping loop on the synthetic world: raw pretraining, captioner + filter, CapFilt, bootstrapped pretraining, and compare both.")
        {
            config, set, outDir, threads, json,
        };
        command.SetAction(result =>
        {
            int? n = result.GetValue(threads);
            CommonTraining.SetThreads(n);
            var overrides = (result.GetValue(set) ?? []).ToList();
            if (result.GetValue(outDir) is string o) overrides.Add("output.dir=" + JsonValue.Create(o).ToJsonString());
            BootstrapRecipe recipe;
            try
            {
                recipe = BootstrapRecipe.Load(result.GetValue(config)!, overrides);
            }
            catch (TrainingConfigException e)
            {
                throw new CliException(e.Message);
            }
            var log = CommonTraining.Log(error);
            var pipeline = new BootstrapPipeline(recipe, new VerbStageRunner(n, error), line => log("bootstrap: " + line));
            BootstrapResult run;
            try
            {
                run = pipeline.Run();
            }
            catch (BootstrapException e)
            {
                throw new CliException(e.Message);
            }
            if (result.GetValue(json))
            {
                var obj = new JsonObject
                {
                    ["completed"] = run.Completed,
                    ["run"] = run.RunDirectory,
                    ["ran"] = new JsonArray(run.Ran.Select(s => (JsonNode)s).ToArray()),
                    ["skipped"] = new JsonArray(run.Skipped.Select(s => (JsonNode)s).ToArray()),
                    ["results"] = run.Comparison is null ? null : BootstrapPipeline.ResultsJson(run.Comparison),
                };
                output.WriteLine(obj.ToJsonString());
            }
            else if (run.Comparison is { } c)
            {
                output.Write(BootstrapPipeline.Report(c));
            }
            else
            {
                output.WriteLine($"stopped; run the same command again to go on ({run.RunDirectory})");
            }
            return run.Completed ? BlipCli.Success : BlipCli.SomeInputsFailed;
        });
        return command;
    }

    /// <summary>The stages through the <c>blip</c> verbs, in-process; their output goes to the error stream.</summary>
    private sealed class VerbStageRunner(int? threads, TextWriter error) : IBootstrapStageRunner
    {
        public void Synthesize(BootstrapWorld world, string directory)
        {
            var args = new List<string> { "synth", "--out", directory, "--seed", Text(world.Seed), "--size", Text(world.Size), "--noise", world.Noise.ToString("R", CultureInfo.InvariantCulture) };
            if (world.PretrainImages is int p) args.AddRange(["--pretrain-images", Text(p)]);
            if (world.HumanImages is int h) args.AddRange(["--human-images", Text(h)]);
            if (world.TestImages is int t) args.AddRange(["--test-images", Text(t)]);
            if (world.ClassifyImages is int c) args.AddRange(["--classify-images", Text(c)]);
            Verb("world", args);
        }

        public BootstrapTrainResult Train(BootstrapTrainRequest request)
        {
            var args = request.Task == "pretrain"
                ? new List<string> { "pretrain" }
                : new List<string> { "finetune", request.Task, "--split", "none" };
            args.AddRange(["--config", request.Config, "--out", request.RunDirectory, "--resume", "--json"]);
            foreach (string s in request.Overrides) args.AddRange(["--set", s]);
            var (code, json) = Verb(request.Stage, args);
            if (code == BlipCli.SomeInputsFailed) return new BootstrapTrainResult(false, json?["step"]?.GetValue<long>() ?? 0, json?["total_steps"]?.GetValue<long>() ?? 0);
            if (json is null) throw new BootstrapException($"stage {request.Stage}: blip {args[0]} printed no JSON summary");
            return new BootstrapTrainResult(json["completed"]!.GetValue<bool>(), json["step"]!.GetValue<long>(), json["total_steps"]!.GetValue<long>());
        }

        public long StepsPerEpoch(string config, IReadOnlyList<string> overrides) => BootstrapPipeline.CountStepsPerEpoch(config, overrides);

        public bool CapFilt(CapFiltOptions o, string captioner, string filter)
        {
            var args = new List<string>
            {
                "capfilt", "--captioner", captioner, "--filter", filter, "--out", o.OutputDirectory,
                "--num-captions", Text(o.NumCaptions), "--top-p", Real(o.TopP), "--top-k", Text(o.TopK),
                "--min-length", Text(o.MinLength), "--max-length", Text(o.MaxLength), "--seed", Text(o.Seed),
                "--threshold", Real(o.Threshold), "--batch-size", Text(o.BatchSize), "--chunk-size", Text(o.ChunkSize), "--json",
            };
            if (o.ItcThreshold is double itc) args.AddRange(["--itc-threshold", Real(itc)]);
            foreach (string i in o.Inputs) args.AddRange(["--input", i]);
            foreach (string h in o.Human) args.AddRange(["--human", h]);
            var (code, _) = Verb("capfilt", args);
            return code == BlipCli.Success;
        }

        public SyntheticEvaluationResult Evaluate(string pretrainRun, string testFile, SyntheticEvaluationOptions options) =>
            SyntheticEvaluation.EvaluateRun(pretrainRun, testFile, options);

        /// <summary>Runs a verb; exit 0 or 1 (stopped) return with its JSON line, anything else is an error.</summary>
        private (int Code, JsonObject? Json) Verb(string stage, List<string> args)
        {
            if (threads is int n && args[0] != "synth") args.AddRange(["--threads", Text(n)]);
            var stdout = new StringWriter();
            int code = BlipCli.RunAsync([.. args], stdout, error).GetAwaiter().GetResult();
            if (code != BlipCli.Success && code != BlipCli.SomeInputsFailed)
                throw new BootstrapException($"stage {stage}: blip {string.Join(' ', args.Take(args[0] == "finetune" ? 2 : 1))} failed (exit code {code}; its message is above)");
            string? last = stdout.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault();
            JsonObject? json = null;
            if (last is not null && last.StartsWith('{'))
            {
                try
                {
                    json = JsonNode.Parse(last) as JsonObject;
                }
                catch (JsonException)
                {
                }
            }
            return (code, json);
        }

        private static string Text(long v) => v.ToString(CultureInfo.InvariantCulture);

        private static string Real(double v) => v.ToString("R", CultureInfo.InvariantCulture);
    }
}
