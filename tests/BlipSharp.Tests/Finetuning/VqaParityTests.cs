using BlipSharp.Generation;
using System.Collections.Concurrent;
using System.Text.Json;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Vqa;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Finetuning;

/// <summary>
/// One BLIP_VQA fixture folder replayed: the training batch built from its annotations (weights, counts, ids), one
/// training forward + backward through <see cref="VqaTask"/>, the test question encoding, and the rank evaluation
/// through <see cref="VqaRankEvaluator"/>. Every value is kept under the fixture's tensor name.
/// </summary>
public sealed class VqaReplay : IDisposable
{
    public const string VqaModel = "models.blip_vqa.BLIP_VQA";

    public string Name { get; }
    public FixtureCases Cases { get; }
    public BlipTokenizer Tokenizer { get; }
    public VqaCollatedText Collated { get; }
    public IReadOnlyList<string> RankAnswers { get; }
    public Dictionary<string, Tensor> Actual { get; } = new(StringComparer.Ordinal);
    private readonly BlipForQuestionAnswering _model;

    public VqaReplay(string name)
    {
        Name = name;
        string dir = OriginalFixtures.CaseDir(name);
        Cases = new FixtureCases(dir);
        Tokenizer = Tokenizer0();
        _model = LoadModel(dir);
        var cases = Cases.Json.GetProperty("cases");

        // Dataset + collate.
        var annotations = cases.GetProperty("train").GetProperty("annotations").EnumerateArray()
            .Select((e, i) => VqaAnnotationReader.Parse(e, VqaSplit.Train, $"{dir}/cases.json", i)).ToList();
        Collated = VqaAnswerWeighting.Collate(annotations.Select(a => VqaAnswerWeighting.Weigh(a)).ToList());

        // Training forward + backward.
        _model.train();
        var task = new VqaTask(_model);
        var batch = VqaTask.CreateBatch(Tokenizer, Cases.Tensor("train.pixel_values"), Collated);
        Keep("train.weights", batch.Weights);
        Keep("train.n", batch.AnswerCounts);
        Keep("train.question.input_ids", batch.QuestionIds);
        Keep("train.question.attention_mask", batch.QuestionMask);
        Keep("train.answer.input_ids", batch.AnswerIds);
        Keep("train.answer.attention_mask", batch.AnswerMask);
        Keep("train.pixel_values", batch.PixelValues.clone());
        using (var output = task.Forward(batch))
        {
            output.Loss.backward();
            Keep("train.image_embeds", output.ImageEmbeds.detach().clone());
            Keep("train.question_output.last_hidden_state", output.QuestionStates.detach().clone());
            Keep("train.question_states", output.RepeatedQuestionStates.detach().clone());
            Keep("train.question_atts", output.RepeatedQuestionMask.clone());
            Keep("train.answer_targets", output.AnswerTargets.clone());
            Keep("train.answer_output.loss", output.PerAnswerLoss.detach().clone());
            Keep("train.answer_sequence_output", output.AnswerHiddenStates.detach().clone());
            Keep("train.loss", output.Loss.detach().clone());
        }
        var parameters = _model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (string tensorName in Cases.TensorNames.Where(n => n.StartsWith("train.grad.", StringComparison.Ordinal)))
        {
            string ours = OriginalBlipKeyMap.Rename(tensorName["train.grad.".Length..]);
            if (parameters.TryGetValue(ours, out var p) && p.grad is { } g) Keep(tensorName, g.clone());
        }
        _model.zero_grad();

        // Test question encoding and rank evaluation.
        _model.eval();
        var rank = cases.GetProperty("rank");
        var questions = Strings(rank.GetProperty("questions"));
        RankAnswers = Strings(rank.GetProperty("answer_list"));
        using (no_grad())
        {
            var pixels = Cases.Tensor("test.pixel_values");
            var encoded = VqaTextEncoding.EncodeQuestions(Tokenizer, questions);
            Keep("test.pixel_values", pixels.clone());
            Keep("test.question.input_ids", encoded.InputIds);
            Keep("test.question.attention_mask", encoded.AttentionMask);
            using var image = _model.EncodeImage(pixels);
            Keep("test.question_output.last_hidden_state", _model.EncodeQuestion(image, encoded.InputIds, encoded.AttentionMask));
        }
        using var evaluator = new VqaRankEvaluator(_model, Tokenizer, RankAnswers, new VqaRankOptions { K = rank.GetProperty("k_test").GetInt32() });
        Keep("rank.answer_candidates.input_ids", evaluator.CandidateIds.clone());
        Keep("rank.answer_candidates.attention_mask", evaluator.CandidateMask.clone());
        var ranking = evaluator.Rank(Cases.Tensor("test.pixel_values"), questions);
        Keep("rank.start_logits_at_first_tokens", ranking.FirstTokenLogits);
        Keep("rank.start_logsumexp", ranking.FirstTokenLogSumExp);
        Keep("rank.prob_first_token", ranking.FirstTokenProbabilities);
        Keep("rank.topk_probs", ranking.TopKProbabilities);
        Keep("rank.topk_ids", ranking.Indices);
        Keep("rank.input_ids", ranking.CandidateIds);
        Keep("rank.targets_ids", ranking.CandidateTargets);
        Keep("rank.log_probs_sum", ranking.LogLikelihoods);
        Keep("rank.max_ids", ranking.Best);
        ChosenAnswers = evaluator.Answer(Cases.Tensor("test.pixel_values"), questions);
    }

    /// <summary>The strings <see cref="VqaRankEvaluator.Answer"/> returned for the rank questions.</summary>
    public IReadOnlyList<string> ChosenAnswers { get; }

    /// <summary>BLIP's tokenizer: bert-base-uncased + [DEC] + [ENC], from the hf-blip fixtures (the vocabulary the README names).</summary>
    public static BlipTokenizer Tokenizer0() => BlipTokenizer.FromPretrained(Fixtures.HfModelDir("BlipForQuestionAnswering"));

    /// <summary>The fixture's BLIP_VQA with its own weights.</summary>
    public static BlipForQuestionAnswering LoadModel(string dir)
    {
        var model = new BlipForQuestionAnswering(OriginalFixtures.TaskConfig(dir));
        OriginalTaskCheckpoint.LoadInto(model, OriginalFixtures.WeightsFile(dir));
        return model;
    }

    public static List<string> Strings(JsonElement array) => array.EnumerateArray().Select(e => e.GetString()!).ToList();

    private void Keep(string name, Tensor value) => Actual[name] = value;

    public void Dispose()
    {
        foreach (var t in Actual.Values) t.Dispose();
        _model.Dispose();
        Cases.Dispose();
    }
}

/// <summary>One replay per VQA fixture folder, shared by the parity tests.</summary>
public sealed class VqaReplays : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<VqaReplay>> _replays = new();

    public VqaReplay Get(string name) => _replays.GetOrAdd(name, n => new Lazy<VqaReplay>(() => new VqaReplay(n))).Value;

    public void Dispose()
    {
        foreach (var r in _replays.Values.Where(r => r.IsValueCreated)) r.Value.Dispose();
    }
}

/// <summary>
/// BLIP_VQA parity with salesforce/BLIP (the blip-original fixtures): the answer weighting of <c>vqa_dataset</c> +
/// <c>vqa_collate_fn</c>, the training loss with every intermediate value and the stored gradients, the test question
/// encoding, and <c>train_vqa.evaluation</c>'s rank inference. Tolerances come from each tensor's fp32-vs-fp64 noise.
/// </summary>
[Trait("Category", "Parity")]
public sealed class VqaParityTests(VqaReplays replays, ITestOutputHelper output) : IClassFixture<VqaReplays>
{
    public static IEnumerable<object[]> Cases() => OriginalFixtures.CaseDirs(VqaReplay.VqaModel).Select(d => new object[] { Path.GetFileName(d) });

    private void CheckAll(VqaReplay r, string prefix, Func<string, bool>? select = null)
    {
        var names = r.Cases.TensorNames.Where(n => n.StartsWith(prefix, StringComparison.Ordinal) && (select?.Invoke(n) ?? true))
            .Order(StringComparer.Ordinal).ToList();
        Assert.NotEmpty(names);
        double worst = 0;
        string worstName = "";
        foreach (string name in names)
        {
            Assert.True(r.Actual.TryGetValue(name, out var actual), $"{r.Name}: the replay produced no value for fixture tensor '{name}'");
            var expected = r.Cases.Tensor(name);
            if (!expected.is_floating_point())
            {
                TensorAssert.Equal(expected, actual!, $"{r.Name}: {name}");
                continue;
            }
            FixtureModels.Check(r.Cases, name, actual!);
            using var diff = (expected.to_type(ScalarType.Float64) - actual!.reshape(expected.shape).to_type(ScalarType.Float64)).abs().max();
            double ratio = diff.ToDouble() / r.Cases.Tolerance(name);
            if (ratio > worst) (worst, worstName) = (ratio, name);
        }
        output.WriteLine($"{r.Name}: {names.Count} '{prefix}*' tensors; worst |diff|/tol {worst:F3} ({worstName})");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void AnswerWeightsCountsAndTokenIdsMatchTheDatasetAndCollate(string name)
    {
        var r = replays.Get(name);
        var train = r.Cases.Json.GetProperty("cases").GetProperty("train");
        Assert.Equal(VqaReplay.Strings(train.GetProperty("questions")), r.Collated.Questions);
        Assert.Equal(VqaReplay.Strings(train.GetProperty("answers")), r.Collated.Answers);
        Assert.Equal(train.GetProperty("n").EnumerateArray().Select(e => e.GetInt32()), r.Collated.AnswerCounts);
        Assert.Equal(train.GetProperty("weights").EnumerateArray().Select(e => (float)e.GetDouble()), r.Collated.Weights);
        // Exactly (float32 bits), as are the ids.
        string[] exact = ["train.weights", "train.n", "train.question.input_ids", "train.question.attention_mask",
            "train.answer.input_ids", "train.answer.attention_mask", "train.pixel_values"];
        foreach (string n in exact)
        {
            var expected = r.Cases.Tensor(n);
            var actual = r.Actual[n];
            Assert.True(expected.shape.SequenceEqual(actual.shape), $"{name}: {n} shape [{string.Join(", ", actual.shape)}]");
            Assert.True(expected.eq(actual.to_type(expected.dtype)).all().ToBoolean(), $"{name}: {n} differs");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TrainingLossAndEveryIntermediateMatch(string name)
    {
        var r = replays.Get(name);
        CheckAll(r, "train.", n => !n.StartsWith("train.grad.", StringComparison.Ordinal));
        var train = r.Cases.Json.GetProperty("cases").GetProperty("train");
        double tol = r.Cases.Tolerance("train.loss");
        double loss = r.Actual["train.loss"].ToDouble();
        Assert.True(Math.Abs(loss - train.GetProperty("loss").GetDouble()) <= tol, $"{name}: loss {loss:G9}, BLIP {train.GetProperty("loss").GetDouble():G9}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void StoredGradientsMatch(string name)
    {
        var r = replays.Get(name);
        CheckAll(r, "train.grad.");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TestQuestionEncodingMatches(string name)
    {
        var r = replays.Get(name);
        CheckAll(r, "test.");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void GeneratedAnswersMatchBlipsBeamSearch(string name)
    {
        // BLIP_VQA.forward(train=False, inference='generate'): [DEC] start, 3 beams, max 10, min 1, cross-attention to every
        // question state (mask of ones), beams scored as transformers 4.15 does (sum of log-probabilities / whole length).
        var r = replays.Get(name);
        var generate = r.Cases.Json.GetProperty("cases").GetProperty("generate");
        var kwargs = generate.GetProperty("text_decoder_generate_kwargs");
        Assert.True(generate.GetProperty("encoder_attention_mask_all_ones").GetBoolean());
        var options = new GenerationOptions
        {
            NumBeams = kwargs.GetProperty("num_beams").GetInt32(),
            MaxLength = kwargs.GetProperty("max_length").GetInt32(),
            MinLength = kwargs.GetProperty("min_length").GetInt32(),
            EosTokenId = kwargs.GetProperty("eos_token_id").GetInt64(),
            PadTokenId = kwargs.GetProperty("pad_token_id").GetInt64(),
            BeamLengthNormalization = BeamLengthNormalization.WholeSequence,
        };
        using var model = VqaReplay.LoadModel(OriginalFixtures.CaseDir(name));
        using var noGrad = no_grad();
        var questions = VqaReplay.Strings(generate.GetProperty("questions"));
        var imageIndex = generate.GetProperty("image_index").EnumerateArray().Select(i => i.GetInt64()).ToArray();
        using var index = tensor(imageIndex);
        using var pixels = r.Cases.Tensor("test.pixel_values").index_select(0, index);
        var encoded = VqaTextEncoding.EncodeQuestions(r.Tokenizer, questions);
        using var image = model.EncodeImage(pixels);
        using var states = model.EncodeQuestion(image, encoded.InputIds, encoded.AttentionMask);
        using var generated = model.GenerateAnswer(states, options);

        var expected = r.Cases.Tensor("generate.sequences");
        TensorAssert.Equal(expected, tensor(generated.Sequences.SelectMany(s => s).ToArray(), [generated.Sequences.Count, generated.Sequences[0].Length]), $"{name}: generate.sequences");
        Assert.Equal(VqaReplay.Strings(generate.GetProperty("answers")),
            generated.Sequences.Select(s => r.Tokenizer.Decode(s, skipSpecialTokens: true)).ToList());
        Assert.NotNull(generated.SequenceScores);
        using var scores = tensor(generated.SequenceScores!.ToArray());
        FixtureModels.Check(r.Cases, "generate.sequences_scores", scores);
        output.WriteLine($"{name}: answers [{string.Join(" | ", generated.Sequences.Select(s => r.Tokenizer.Decode(s, skipSpecialTokens: true)))}]");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void RankInferenceMatchesAndAnswersAreListStrings(string name)
    {
        var r = replays.Get(name);
        CheckAll(r, "rank.");
        var rank = r.Cases.Json.GetProperty("cases").GetProperty("rank");
        var expected = rank.GetProperty("result").EnumerateArray().Select(e => e.GetProperty("answer").GetString()!).ToList();
        Assert.Equal(expected, r.ChosenAnswers);
        var maxIds = rank.GetProperty("max_ids").EnumerateArray().Select(e => r.RankAnswers[e.GetInt32()]).ToList();
        Assert.Equal(maxIds, r.ChosenAnswers);
    }

    /// <summary>
    /// The decoder's LM head IS its word-embedding matrix (BLIP's tie): after <see cref="VqaTask"/> ties them, the one
    /// tensor's gradient is the sum of what the two separate tensors of an untied copy receive.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void TheTiedLmHeadGetsTheSumOfBothGradients(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        using var cases = new FixtureCases(dir);
        var tokenizer = VqaReplay.Tokenizer0();
        var annotations = cases.Json.GetProperty("cases").GetProperty("train").GetProperty("annotations").EnumerateArray()
            .Select((e, i) => VqaAnnotationReader.Parse(e, VqaSplit.Train, "cases.json", i)).ToList();
        var text = VqaAnswerWeighting.Collate(annotations.Select(a => VqaAnswerWeighting.Weigh(a)).ToList());

        using var untied = VqaReplay.LoadModel(dir);
        Assert.False(untied.text_decoder.WeightsTied);
        var untiedTask = new VqaTask(untied, new VqaTaskOptions { TieLanguageModelHead = false });
        Assert.False(untied.text_decoder.WeightsTied);
        using (var scope = NewDisposeScope()) untiedTask.Forward(VqaTask.CreateBatch(tokenizer, cases.Tensor("train.pixel_values"), text)).Loss.backward();
        var headGrad = untied.text_decoder.cls.predictions.decoder.weight!.grad!;
        var embeddingGrad = untied.text_decoder.bert.embeddings.word_embeddings.weight!.grad!;
        Assert.True(headGrad.abs().max().ToDouble() > 0 && embeddingGrad.abs().max().ToDouble() > 0);

        using var tied = VqaReplay.LoadModel(dir);
        var task = new VqaTask(tied);
        Assert.True(tied.text_decoder.WeightsTied);
        using (var scope = NewDisposeScope()) task.Forward(VqaTask.CreateBatch(tokenizer, cases.Tensor("train.pixel_values"), text)).Loss.backward();
        var tiedGrad = tied.text_decoder.bert.embeddings.word_embeddings.weight!.grad!;
        using var sum = headGrad + embeddingGrad;
        TensorAssert.Close(sum, tiedGrad, Tolerances.FromNoise(cases.Noise("train.grad.text_decoder.cls.predictions.bias"), sum.abs().max().ToDouble()), $"{name}: tied gradient");
        Assert.True(tied.state_dict().ContainsKey("text_decoder.cls.predictions.decoder.weight"));
    }
}
