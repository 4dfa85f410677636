using System.Text.Json;
using BlipSharp.Generation;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Captioning;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Data;
using BlipSharp.Training.Losses;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Finetuning;

/// <summary>
/// salesforce/BLIP caption fine-tuning parity (<c>BLIP_Decoder</c> built from a pretraining checkpoint): the training
/// text (prompt + pre_caption, [DEC] first, prompt and padding not supervised), every recorded value of the training
/// forward and its gradients (with the LM head tied to the word embeddings, as BLIP's decoder has it), BLIP's
/// <c>generate</c> for every recorded run (greedy and transformers 4.15 beam search: sequences, scores, returned
/// captions) and the position-embedding interpolation of the task loader. Tolerances come from the fixture's
/// fp32-vs-fp64 noise.
/// </summary>
[Trait("Category", "Parity")]
public sealed class CaptionParityTests(ITestOutputHelper output)
{
    private const string CaptionModel = "models.blip.BLIP_Decoder";

    private static readonly string[] UnusedPrefixes =
        ["text_encoder", "vision_model_m.", "vision_proj", "text_proj", "itm_head", "temp", "image_queue", "text_queue", "queue_ptr", "idx_queue"];

    private static readonly Lazy<BlipTokenizer> SharedTokenizer = new(() =>
        BlipTokenizer.FromPretrained(Fixtures.HfModelDirs().First(d => File.Exists(Path.Combine(d, "vocab.txt")))));

    public static IEnumerable<object[]> Cases() => OriginalFixtures.CaseDirs(CaptionModel).Select(d => new object[] { Path.GetFileName(d) });

    private static BlipTokenizer Tokenizer => SharedTokenizer.Value;

    /// <summary>The captioner of a fixture folder: its config (optionally at another image size) and BLIP's pretraining weights.</summary>
    private static BlipForConditionalGeneration LoadCaptioner(string dir, int? imageSize = null, List<string>? log = null)
    {
        var config = OriginalFixtures.TaskConfig(dir);
        if (imageSize is int size) config = config with { VisionConfig = config.VisionConfig with { ImageSize = size } };
        var model = new BlipForConditionalGeneration(config);
        OriginalTaskCheckpoint.LoadInto(model, OriginalFixtures.WeightsFile(dir), new OriginalTaskLoadOptions { UnusedPrefixes = UnusedPrefixes, Log = log is null ? null : log.Add });
        return model;
    }

    /// <summary>BLIP_Decoder's prompt and the training tokenizer's max_length, from config.json.</summary>
    private static CaptioningTaskOptions TaskOptions(string dir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "config.json")));
        var root = doc.RootElement;
        var kwargs = root.GetProperty("tokenizer").GetProperty("train_kwargs");
        Assert.Equal("longest", kwargs.GetProperty("padding").GetString());
        Assert.True(kwargs.GetProperty("truncation").GetBoolean());
        return new CaptioningTaskOptions
        {
            Prompt = root.GetProperty("constructor").GetProperty("prompt").GetString()!,
            MaxTextLength = kwargs.GetProperty("max_length").GetInt32(),
        };
    }

    private static JsonElement Train(FixtureCases cases) => cases.Json.GetProperty("cases").GetProperty("train");

    /// <summary>The raw captions through BLIP's pre_caption (max_words 30), without the prompt.</summary>
    private static List<string> CleanCaptions(FixtureCases cases) =>
        Train(cases).GetProperty("captions_raw").EnumerateArray().Select(c => TextCleaning.PreCaption(c.GetString()!, TextCleaning.DatasetMaxWords)).ToList();

    [Theory]
    [MemberData(nameof(Cases))]
    public void TrainingTextIsThePromptPlusTheCleanedCaptionWithPromptAndPaddingUnsupervised(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        using var cases = new FixtureCases(dir);
        var train = Train(cases);
        using var task = new CaptioningTask(LoadCaptioner(dir), Tokenizer, TaskOptions(dir));
        Assert.Equal(train.GetProperty("prompt").GetString(), task.Options.Prompt);
        Assert.Equal(train.GetProperty("prompt_length").GetInt32(), task.PromptLength);

        var captions = CleanCaptions(cases);
        var expectedTexts = train.GetProperty("captions").EnumerateArray().Select(c => c.GetString()!).ToList();
        Assert.Equal(expectedTexts, captions.Select(c => task.Options.Prompt + c).ToList());

        using var text = task.Tokenize(captions);
        var fromTokenizer = FixtureModels.Long(cases, "train.input_ids_tokenizer");
        Assert.True(fromTokenizer.select(1, 0).eq(Tokenizer.ClsTokenId).all().ToBoolean(), "the tokenizer's ids start with [CLS]");
        TensorAssert.Equal(fromTokenizer.narrow(1, 1, fromTokenizer.shape[1] - 1), text.DecoderInputIds.narrow(1, 1, text.DecoderInputIds.shape[1] - 1), $"{name}: input ids after column 0");
        TensorAssert.Equal(cases.Tensor("train.decoder_input_ids"), text.DecoderInputIds, $"{name}: train.decoder_input_ids");
        TensorAssert.Equal(cases.Tensor("train.attention_mask"), text.AttentionMask, $"{name}: train.attention_mask");
        TensorAssert.Equal(cases.Tensor("train.decoder_targets"), text.Labels, $"{name}: train.decoder_targets");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TrainingForwardMatchesEveryRecordedValue(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        using var cases = new FixtureCases(dir);
        using var task = new CaptioningTask(LoadCaptioner(dir), Tokenizer, TaskOptions(dir));
        task.Model.train();
        using var scope = NewDisposeScope();
        var losses = task.Forward(cases.Tensor("pixel_values"), CleanCaptions(cases));

        var targets = losses.Text.Labels.narrow(1, 1, losses.Text.Labels.shape[1] - 1);           // (B, T-1)
        var ignored = targets.eq(LanguageModelingLoss.IgnoreIndex);
        var logits = losses.Logits.narrow(1, 0, losses.Logits.shape[1] - 1);                      // (B, T-1, V)
        var atTarget = logits.gather(2, targets.clamp_min(0).unsqueeze(2)).squeeze(2);            // (B, T-1)
        var actual = new Dictionary<string, Tensor>
        {
            ["train.image_embeds"] = losses.ImageEmbeds,
            ["train.sequence_output"] = losses.SequenceOutput,
            ["train.per_token_loss"] = losses.PerToken,
            ["train.logsumexp"] = logits.logsumexp(2),
            ["train.logits_mean"] = logits.mean([2]),
            ["train.loss"] = losses.Loss,
        };
        foreach (var (key, value) in actual) FixtureModels.Check(cases, key, value);
        // Every train.* tensor of the folder is checked here, by the text test or by the gradient test.
        string[] textTensors = ["train.input_ids_tokenizer", "train.attention_mask", "train.decoder_input_ids", "train.decoder_targets", "train.logit_at_target"];
        foreach (string n in cases.TensorNames.Where(n => n.StartsWith("train.", StringComparison.Ordinal)))
            Assert.True(actual.ContainsKey(n) || textTensors.Contains(n) || n.StartsWith("train.grad.", StringComparison.Ordinal), $"{name}: fixture tensor '{n}' is not checked");
        // logit_at_target is meaningless where the target is -100.
        TensorAssert.Close(cases.Tensor("train.logit_at_target").masked_fill(ignored, 0), atTarget.masked_fill(ignored, 0),
            cases.Tolerance("train.logit_at_target"), $"{name}: train.logit_at_target (supervised positions)");
        double recorded = Train(cases).GetProperty("loss").GetDouble();
        Assert.True(Math.Abs(losses.Loss.ToDouble() - recorded) <= cases.Tolerance("train.loss"), $"{name}: loss {losses.Loss.ToDouble():G9}, BLIP {recorded:G9}");
        output.WriteLine($"{name}: loss {losses.Loss.ToDouble():G9} (BLIP {recorded:G9})");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryRecordedGradientMatches(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        using var cases = new FixtureCases(dir);
        using var task = new CaptioningTask(LoadCaptioner(dir), Tokenizer, TaskOptions(dir));
        task.Model.train();
        var parameters = task.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (NewDisposeScope())
        {
            var losses = task.Forward(cases.Tensor("pixel_values"), CleanCaptions(cases));
            losses.Loss.backward();
        }
        var names = cases.TensorNames.Where(n => n.StartsWith("train.grad.", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        Assert.NotEmpty(names);
        foreach (string n in names)
        {
            string original = n["train.grad.".Length..];
            string ours = OriginalBlipKeyMap.Rename(original);
            Assert.True(parameters.TryGetValue(ours, out var p), $"{name}: '{original}' -> '{ours}' is not a parameter of the captioner");
            Assert.True(p!.grad is not null, $"{name}: '{ours}' received no gradient");
            FixtureModels.Check(cases, n, p.grad!);
        }
        output.WriteLine($"{name}: {names.Count} gradients");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TheTiedLmHeadIsOneTensorWhoseGradientIsTheSumOfBothUses(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        using var cases = new FixtureCases(dir);
        var options = TaskOptions(dir);
        var pixels = cases.Tensor("pixel_values");
        var captions = CleanCaptions(cases);

        // Untied (the HF layout as loaded): two Parameters with equal values, one gradient each.
        using var untied = LoadCaptioner(dir);
        Assert.False(untied.text_decoder.WeightsTied);
        untied.train();
        using var task = new CaptioningTask(LoadCaptioner(dir), Tokenizer, options);
        using (NewDisposeScope())
        {
            using var text = task.Tokenize(captions);
            var image = untied.EncodeImage(pixels);
            var decoded = untied.text_decoder.Forward(text.DecoderInputIds, text.AttentionMask, image);
            new LanguageModelingLoss(options.LabelSmoothing).Forward(decoded.Logits, text.Labels).Loss.backward();
        }
        var embeddingGrad = untied.text_decoder.bert.embeddings.word_embeddings.weight!.grad!;
        var headGrad = untied.text_decoder.cls.predictions.decoder.weight!.grad!;
        Assert.True(headGrad.abs().max().ToDouble() > 0 && embeddingGrad.abs().max().ToDouble() > 0, "both uses must contribute");

        // Tied (the task): one Parameter under both names, optimised once, whose gradient adds both contributions.
        var decoder = task.CaptionModel.text_decoder;
        Assert.True(decoder.WeightsTied);
        var tied = decoder.bert.embeddings.word_embeddings.get_parameter("weight")!;
        Assert.Same(tied, decoder.cls.predictions.decoder.get_parameter("weight"));
        Assert.True(task.Model.state_dict().ContainsKey("text_decoder.cls.predictions.decoder.weight"), "both names stay in the state_dict");
        var groups = ((BlipSharp.Training.Training.ITrainingTask<ImageTextBatch>)task).ParameterGroups(0.05);
        Assert.Equal(1, groups.SelectMany(g => g.Parameters).Count(p => ReferenceEquals(p.Parameter, tied)));
        task.Model.train();
        using (NewDisposeScope())
        {
            task.Forward(pixels, captions).Loss.backward();
        }
        using var expected = embeddingGrad + headGrad;
        TensorAssert.Close(expected, tied.grad!, Tolerances.FromNoise(0, expected.abs().max().ToDouble()), $"{name}: tied word-embedding gradient");
        using var headOnly = (tied.grad! - headGrad).abs().max();
        Assert.True(headOnly.ToDouble() > 1e-3 * headGrad.abs().max().ToDouble(), "the tied gradient must include the embedding lookup's part");
    }

    public static IEnumerable<object[]> GenerateRuns()
    {
        foreach (string dir in OriginalFixtures.CaseDirs(CaptionModel))
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "cases.json")));
            var runs = doc.RootElement.GetProperty("cases").GetProperty("generate").EnumerateObject().Select(r => r.Name).ToList();
            if (runs.Count == 0) throw new InvalidDataException($"{dir}/cases.json: no generate runs");
            foreach (string run in runs) yield return [Path.GetFileName(dir), run];
        }
    }

    /// <summary>The options of a recorded run (the kwargs BLIP passed to <c>text_decoder.generate</c>), with transformers 4.15's beam scoring.</summary>
    private static GenerationOptions RunOptions(JsonElement run)
    {
        var kwargs = run.GetProperty("text_decoder_generate_kwargs");
        var known = new HashSet<string> { "max_length", "min_length", "num_beams", "eos_token_id", "pad_token_id", "repetition_penalty" };
        foreach (var p in kwargs.EnumerateObject())
            Assert.True(known.Contains(p.Name), $"generate kwarg '{p.Name}' is not replayed by this test");
        return new GenerationOptions
        {
            MaxLength = kwargs.GetProperty("max_length").GetInt32(),
            MinLength = kwargs.GetProperty("min_length").GetInt32(),
            NumBeams = kwargs.GetProperty("num_beams").GetInt32(),
            EosTokenId = kwargs.GetProperty("eos_token_id").GetInt64(),
            PadTokenId = kwargs.GetProperty("pad_token_id").GetInt64(),
            RepetitionPenalty = kwargs.GetProperty("repetition_penalty").GetDouble(),
            BeamLengthNormalization = BeamLengthNormalization.WholeSequence,
        };
    }

    [Theory]
    [MemberData(nameof(GenerateRuns))]
    public void GenerateReturnsBlipsSequencesScoresAndCaptions(string name, string runName)
    {
        string dir = OriginalFixtures.CaseDir(name);
        using var cases = new FixtureCases(dir);
        var run = cases.Json.GetProperty("cases").GetProperty("generate").GetProperty(runName);
        var options = RunOptions(run);
        string prompt = TaskOptions(dir).Prompt;
        using var model = LoadCaptioner(dir);
        model.train(); // Generate must evaluate in eval mode and restore this

        using var start = BlipCaptionGenerator.DecoderStartIds(Tokenizer, prompt);
        var expectedStart = FixtureModels.Long(cases, "generate.decoder_start_ids");
        TensorAssert.Equal(expectedStart, start.expand(expectedStart.shape[0], -1), $"{name}: generate.decoder_start_ids");

        using var result = BlipCaptionGenerator.Generate(model, Tokenizer, cases.Tensor("pixel_values"), prompt, options);
        Assert.True(model.training, "the model's training mode is restored");
        var expected = FixtureModels.Long(cases, $"generate.{runName}.sequences");
        using var sequences = tensor(result.Sequences.Sequences.SelectMany(s => s).ToArray(), ScalarType.Int64)
            .view(result.Sequences.Sequences.Count, -1);                                                      // (B, L)
        TensorAssert.Equal(expected, sequences, $"{name}: generate.{runName}.sequences");

        var captions = run.GetProperty("captions_returned").EnumerateArray().Select(c => c.GetString()!).ToList();
        Assert.Equal(captions, result.Captions);
        var decoded = run.GetProperty("decoded").EnumerateArray().Select(c => c.GetString()!).ToList();
        Assert.Equal(decoded, result.Sequences.Sequences.Select(s => Tokenizer.Decode(s)).ToList());

        string scoresName = $"generate.{runName}.sequences_scores";
        if (run.GetProperty("sequences_scores").ValueKind == JsonValueKind.Null)
        {
            Assert.Equal(1, options.NumBeams);
            Assert.Null(result.Sequences.SequenceScores);
            return;
        }
        Assert.NotNull(result.Sequences.SequenceScores);
        using var scores = tensor(result.Sequences.SequenceScores!.ToArray());
        FixtureModels.Check(cases, scoresName, scores);
        var recorded = run.GetProperty("sequences_scores").EnumerateArray().Select(s => s.GetDouble()).ToList();
        for (int i = 0; i < recorded.Count; i++)
            Assert.True(Math.Abs(recorded[i] - result.Sequences.SequenceScores![i]) <= cases.Tolerance(scoresName), $"{name} {runName}: score {i}");
        output.WriteLine($"{name} {runName}: scores [{string.Join(", ", result.Sequences.SequenceScores!.Select(s => s.ToString("G7")))}]");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void BeamScoresNormalisedByTheGeneratedTokensAreNotWhatBlipReports(string name)
    {
        // The option must matter: transformers 4.2x+'s normalisation gives other scores for BLIP's beam runs.
        string dir = OriginalFixtures.CaseDir(name);
        using var cases = new FixtureCases(dir);
        using var model = LoadCaptioner(dir);
        string prompt = TaskOptions(dir).Prompt;
        int beamRuns = 0;
        foreach (var run in cases.Json.GetProperty("cases").GetProperty("generate").EnumerateObject())
        {
            if (run.Value.GetProperty("sequences_scores").ValueKind == JsonValueKind.Null) continue;
            beamRuns++;
            var options = RunOptions(run.Value) with { BeamLengthNormalization = BeamLengthNormalization.GeneratedTokens };
            using var result = BlipCaptionGenerator.Generate(model, Tokenizer, cases.Tensor("pixel_values"), prompt, options);
            var recorded = run.Value.GetProperty("sequences_scores").EnumerateArray().Select(s => s.GetDouble()).ToList();
            double tol = cases.Tolerance($"generate.{run.Name}.sequences_scores");
            Assert.Contains(Enumerable.Range(0, recorded.Count), i => Math.Abs(recorded[i] - result.Sequences.SequenceScores![i]) > 100 * tol);
        }
        Assert.True(beamRuns > 0, $"{name}: no beam-search run recorded");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TheTaskLoaderInterpolatesPositionEmbeddingsAsBlip(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        using var cases = new FixtureCases(dir);
        var settings = cases.Json.GetProperty("cases").GetProperty("interpolate_pos_embed");
        int toSize = settings.GetProperty("to_image_size").GetInt32();
        var config = OriginalFixtures.TaskConfig(dir);
        Assert.Equal(settings.GetProperty("from_image_size").GetInt32(), config.VisionConfig.ImageSize);
        Assert.Equal(settings.GetProperty("patch").GetInt32(), config.VisionConfig.PatchSize);

        using var original = LoadCaptioner(dir);
        TensorAssert.Close(cases.Tensor("interpolate_pos_embed.input"), original.vision_model.embeddings.position_embedding, 0, $"{name}: interpolate_pos_embed.input");
        var log = new List<string>();
        using var resized = LoadCaptioner(dir, toSize, log);
        FixtureModels.Check(cases, "interpolate_pos_embed.output", resized.vision_model.embeddings.position_embedding);
        Assert.Contains(log, l => l.Contains("interpolated", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void WholeSequenceScoresAreSummedLogProbabilitiesOverTheWholeHypothesisWithAndWithoutAPrompt(string name)
    {
        // With BLIP's prompt, and as a VQA evaluator calls it: encoder states with an explicit mask, [DEC] alone as the
        // start. Each returned score must be the teacher-forced sum of the generated tokens' log-probabilities (its end
        // token included) divided by the hypothesis length counting [DEC] and the prompt (end token excluded). (With
        // [DEC] alone, 4.15 and 4.2x+ differ only for hypotheses that reach the maximum length: L versus L - 1.)
        string dir = OriginalFixtures.CaseDir(name);
        using var cases = new FixtureCases(dir);
        using var model = LoadCaptioner(dir);
        model.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var states = model.EncodeImage(cases.Tensor("pixel_values"));                                     // (B, 1+N, Dv)
        var mask = ones(states.shape[0], states.shape[1], dtype: ScalarType.Int64);                        // (B, 1+N)
        int unfinished = 0;
        foreach (string prompt in new[] { TaskOptions(dir).Prompt, "" })
        {
            var start = BlipCaptionGenerator.DecoderStartIds(Tokenizer, prompt);                            // (1, P): [DEC] prompt
            if (prompt.Length == 0) Assert.Equal(new long[] { 1, 1 }, start.shape);
            var options = BlipCaptionGenerator.BeamSearch(numBeams: 3, maxLength: 12, minLength: 3);
            using var result = TextGenerator.Generate(model.text_decoder, states, mask, start, options: options);
            int p = result.PromptLength;
            Assert.Equal((int)start.shape[1], p);
            for (int row = 0; row < result.Sequences.Count; row++)
            {
                long[] seq = result.Sequences[row];
                int end = p;
                while (end < seq.Length && seq[end] != result.EosTokenId) end++;
                bool finished = end < seq.Length;
                if (!finished) unfinished++;
                long[] forced = seq[..(finished ? end + 1 : end)];                                          // hypothesis (+ its end token)
                var ids = tensor(forced, ScalarType.Int64).unsqueeze(0);                                    // (1, L)
                var logits = model.text_decoder.Forward(ids, null, states.narrow(0, row, 1), mask.narrow(0, row, 1)).Logits; // (1, L, V)
                int generated = forced.Length - p;
                var logProbs = logits.log_softmax(2).narrow(1, p - 1, generated);                           // (1, G, V): predictions of tokens P..L-1
                double sum = logProbs.gather(2, ids.narrow(1, p, generated).unsqueeze(2)).sum().ToDouble();
                double expected = sum / end;                                                                // end = tokens before the end token, [DEC] and prompt included
                double actual = result.SequenceScores![row];
                Assert.True(Math.Abs(expected - actual) <= 1e-5 * Math.Max(1, Math.Abs(expected)),
                    $"{name} prompt '{prompt}' row {row}: score {actual:G9}, teacher-forced sum / whole length {expected:G9} (length {end}, finished {finished})");
            }
        }
        output.WriteLine($"{name}: {unfinished} hypotheses reached the maximum length");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void BadTrainingInputIsRefusedNamingWhatIsWrong(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        using var cases = new FixtureCases(dir);
        using var task = new CaptioningTask(LoadCaptioner(dir), Tokenizer, TaskOptions(dir));
        var e = Assert.Throws<ArgumentException>(() => task.Forward(cases.Tensor("pixel_values"), ["one caption"]));
        Assert.Contains("1 captions", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => task.Tokenize(["fine", null!]));
        Assert.Contains("caption 1", e.Message, StringComparison.Ordinal);
        using var other = LoadCaptioner(dir);
        e = Assert.Throws<ArgumentException>(() => new CaptioningTask(other, Tokenizer, new CaptioningTaskOptions { Prompt = "a picture of ", MaxTextLength = 5 }));
        Assert.Contains("a picture of", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void StripPromptCutsCodePointsAsPythonSlicing()
    {
        Assert.Equal(" dub", BlipCaptionGenerator.StripPrompt("a picture ofち dub", "a picture of "));
        Assert.Equal("x", BlipCaptionGenerator.StripPrompt("ab\U0001F600x", "abc"));
        Assert.Equal("", BlipCaptionGenerator.StripPrompt("a pic", "a picture of "));
        Assert.Equal("two cats", BlipCaptionGenerator.StripPrompt("two cats", ""));
    }
}
