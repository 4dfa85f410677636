using System.Text.Json;
using BlipSharp.Checkpoints;
using BlipSharp.Cli;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Pretraining;
using BlipSharp.Training.Synthetic;
using BlipSharp.Training.Training;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Training;

/// <summary>
/// BLIP's pretraining task through the trainer and the <c>blip pretrain</c> command: configs/pretrain-tiny.json, shrunk
/// further, on the synthetic world (a CPU smoke run of the real entry point), resumed exactly, and in bfloat16.
/// </summary>
public sealed class TrainerPretrainTaskTests(TrainerWorld world) : IClassFixture<TrainerWorld>
{
    /// <summary>configs/pretrain-tiny.json on the test world: 32 px, batches of 4, a 2-block ViT and a 1-layer BERT.</summary>
    private string[] Overrides(string run, params string[] more) =>
    [
        "--config", Path.Combine(Fixtures.RepoRoot, "configs", "pretrain-tiny.json"), "--out", run, "--threads", "2",
        "--set", $"data.train_files=[{JsonSerializer.Serialize(world.AnnotationFile)}]", "--set", "data.image_size=32", "--set", "data.batch_size=4",
        "--set", "data.workers=1", "--set", $"model.tokenizer={Path.Combine(world.Directory, SyntheticVocabulary.DirectoryName)}", "--set", "model.vision_config.image_size=32",
        "--set", "model.vision_config.hidden_size=32", "--set", "model.vision_config.intermediate_size=64", "--set", "model.vision_config.num_hidden_layers=2",
        "--set", "model.text_config.hidden_size=32", "--set", "model.text_config.intermediate_size=64", "--set", "model.text_config.num_hidden_layers=1",
        "--set", "model.vision_init=null", "--set", "model.embed_dim=16", "--set", "model.queue_size=16", "--set", "train.warmup_steps=2", "--set", "output.log_every=1",
        "--set", "output.checkpoint_every=2", .. more.SelectMany(m => new[] { "--set", m }),
    ];

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = BlipCli.RunAsync(args, output, error).GetAwaiter().GetResult();
        return (code, output.ToString(), error.ToString());
    }

    private static List<string> MetricValues(string runDir) =>
        MetricsLog.Read(Path.Combine(runDir, "metrics.jsonl"))
            .Select(l => string.Join(",", l.EnumerateObject().Where(p => p.Name is not ("images_per_s" or "elapsed_s" or "peak_rss_mib")).Select(p => $"{p.Name}={p.Value.GetRawText()}")))
            .ToList();

    [Fact]
    public void TheTinyRecipeTrainsAndResumesToTheSameLosses()
    {
        string dir = world.NewRunDir();
        string straight = Path.Combine(dir, "straight");
        var (code, output, error) = Run(["pretrain", .. Overrides(straight, "train.max_steps=6")]);
        Assert.True(code == 0, error);
        Assert.StartsWith("trained step 6/6", output);
        Assert.Contains("blip: pretrain: ViT 32x2 at 32 px, text 32x1, queue 16, alpha 0.4", error);
        var lines = MetricsLog.Read(Path.Combine(straight, "metrics.jsonl"));
        Assert.Equal(6, lines.Count);
        foreach (var line in lines)
        {
            foreach (string key in new[] { "loss", "loss_ita", "loss_itm", "loss_lm" })
                Assert.True(double.IsFinite(line.GetProperty(key).GetDouble()) && line.GetProperty(key).GetDouble() > 0, key);
            double total = line.GetProperty("loss_ita").GetDouble() + line.GetProperty("loss_itm").GetDouble() + line.GetProperty("loss_lm").GetDouble();
            Assert.True(Math.Abs(total - line.GetProperty("loss").GetDouble()) <= 1e-6 * total, $"{total} vs {line.GetProperty("loss")}"); // float32 sum
        }
        // alpha ramps over two epochs of 12 batches: batch i of epoch 0 has 0.4 * i / 24.
        Assert.Equal([0, 0.4 / 24, 0.8 / 24, 1.2 / 24, 1.6 / 24, 2.0 / 24], lines.Select(l => Math.Round(l.GetProperty("alpha").GetDouble(), 6)).Select(v => v).ToArray(),
            new ToleranceComparer(1e-6));

        // Stopped after step 3 (as Ctrl+C would: a checkpoint at the step), resumed to 6: the same losses, the same weights and queues.
        string resumed = Path.Combine(dir, "resumed");
        Assert.Equal(0, Run(["pretrain", .. Overrides(resumed, "train.max_steps=3")]).Code);
        (code, _, error) = Run(["pretrain", "--resume", .. Overrides(resumed, "train.max_steps=6")]);
        Assert.True(code == 0, error);
        Assert.Equal(MetricValues(straight), MetricValues(resumed));
        var a = SafeTensors.Load(Path.Combine(straight, "checkpoints", "step-00000006", "model.safetensors"));
        var b = SafeTensors.Load(Path.Combine(resumed, "checkpoints", "step-00000006", "model.safetensors"));
        Assert.Contains("image_queue", a.Keys);
        Assert.Contains("text_encoder_m.embeddings.word_embeddings.weight", a.Keys);
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (key, t) in a) Assert.True(t.equal(b[key]).all().item<bool>(), key);
        foreach (var t in a.Values.Concat(b.Values)) t.Dispose();
        Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public void BFloat16BuildsTheModelInBFloat16AndKeepsFloat32Masters()
    {
        string dir = world.NewRunDir();
        string run = Path.Combine(dir, "run");
        var (code, _, error) = Run(["pretrain", .. Overrides(run, "train.max_steps=2", "train.precision=bfloat16", "train.gradient_checkpointing=true")]);
        Assert.True(code == 0, error);
        Assert.All(MetricsLog.Read(Path.Combine(run, "metrics.jsonl")), l => Assert.True(double.IsFinite(l.GetProperty("loss").GetDouble())));
        var weights = SafeTensors.Load(Path.Combine(run, "checkpoints", "step-00000002", "model.safetensors"));
        Assert.Equal(ScalarType.Float32, weights["vision_model.encoder.layers.0.mlp.fc1.weight"].dtype);    // a master
        Assert.Equal(ScalarType.BFloat16, weights["vision_model_m.encoder.layers.0.mlp.fc1.weight"].dtype); // momentum copy, as the model holds it
        Assert.Equal(ScalarType.BFloat16, weights["image_queue"].dtype);
        foreach (var t in weights.Values) t.Dispose();
        Directory.Delete(dir, recursive: true);
    }

    private sealed class ToleranceComparer(double tolerance) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;

        public int GetHashCode(double obj) => 0;
    }
}
