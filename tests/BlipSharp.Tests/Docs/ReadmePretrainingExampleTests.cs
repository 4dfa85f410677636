using BlipSharp.Configuration;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Data;
using BlipSharp.Training.Optimization;
using BlipSharp.Training.Pretraining;
using BlipSharp.Training.Synthetic;
using TorchSharp;
using Xunit;

namespace BlipSharp.Tests.Docs;

/// <summary>
/// The README's pretraining example, run as written on the synthetic world with a tiny model (a CPU smoke
/// training run through the real entry points): the loader, the tokenizer, Step, backward, AdamW and the export.
/// </summary>
public sealed class ReadmePretrainingExampleTests
{
    [Fact]
    public void ReadmePretrainingExampleRuns()
    {
        string root = Directory.CreateTempSubdirectory("blipsharp-readme-pretrain-").FullName;
        string previous = Environment.CurrentDirectory;
        string tokenizerDir = Fixtures.HfModelDirs().First(d => File.Exists(Path.Combine(d, "vocab.txt")));
        var logged = new List<IReadOnlyDictionary<string, double>>();
        try
        {
            Environment.CurrentDirectory = root;
            SyntheticWorld.Generate("synth", new SyntheticWorldOptions { Seed = 1, PretrainImages = 32, HumanImages = 0, ValImages = 0, TestImages = 0, VqaImages = 0 });
            var loader = new ImageTextLoader(BlipAnnotations.Load("synth/pretrain.json"),
                new BlipTrainTransform(new BlipTrainTransformOptions { ImageSize = 32 }), new DataLoaderOptions { BatchSize = 8, Seed = 1 });

            // --- as in README.md (a tiny model from scratch instead of model_base.pth; the tokenizer from a local folder) ---
            var config = TinyConfig();
            using var model = new BlipPretrainingModel(config);
            model.train();
            using var optimizer = BlipOptimizer.CreateAdamW(model.TrainableParameters(), new AdamWOptions { LearningRate = 3e-4 });
            var task = new PretrainingTask(model);
            var tokenizer = BlipTokenizer.FromPretrained(tokenizerDir);
            var textOptions = new TokenizerEncodeOptions { Padding = PaddingStrategy.MaxLength, Truncation = true, MaxLength = 30 };
            foreach (var batch in loader.ReadEpoch(epoch: 0))
            {
                using (batch)
                using (torch.NewDisposeScope())
                {
                    var text = tokenizer.EncodeToTensors(batch.Captions, textOptions);
                    double alpha = AlphaSchedule.Pretraining(epoch: 0, batch.Position.Batch, loader.BatchesPerEpoch);
                    optimizer.zero_grad();
                    var losses = task.Step(new PretrainingBatch(batch.Pixels, text.InputIds, text.AttentionMask), alpha);
                    losses.Total.backward();
                    optimizer.step();
                    logged.Add(losses.ToLogValues());
                }
            }
            HuggingFaceExport.SaveForConditionalGeneration(model, "my-captioner",
                new HuggingFaceExportOptions { TokenizerDirectory = tokenizerDir });
            // --- end ---

            Assert.Equal(4, logged.Count);
            Assert.All(logged, l => Assert.All(l.Values, v => Assert.True(double.IsFinite(v) && v > 0)));
            Assert.Equal(0, model.queue_ptr.ToInt64()); // 4 batches of 8 into a queue of 16
            using var captioner = BlipForConditionalGeneration.FromPretrained("my-captioner");
            Assert.Equal(32, captioner.Config.VisionConfig.ImageSize);
            Assert.Equal(1e-6, captioner.Config.VisionConfig.LayerNormEps);
        }
        finally
        {
            Environment.CurrentDirectory = previous;
            Directory.Delete(root, recursive: true);
        }
    }

    private static BlipPretrainingConfig TinyConfig() => new BlipPretrainingConfig
    {
        VisionConfig = BlipPretrainingConfig.VisionTransformer(imageSize: 32, patchSize: 16, width: 16, depth: 1, heads: 2, mlpRatio: 2.0, layerNormEps: 1e-6),
        TextConfig = new BlipTextConfig { HiddenSize = 16, NumHiddenLayers = 1, NumAttentionHeads = 2, IntermediateSize = 24, MaxPositionEmbeddings = 32, LabelSmoothing = 0.1 },
        EmbedDim = 8,
        QueueSize = 16,
    }.Normalized();
}
