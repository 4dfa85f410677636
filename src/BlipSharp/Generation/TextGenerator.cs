using BlipSharp.Modeling.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Generation;

/// <summary>
/// Autoregressive generation with BLIP's image- (or question-) grounded decoder: greedy decoding, sampling (top-k,
/// nucleus, temperature), beam search and beam sampling, with the logits processors and the exact scoring and
/// stopping rules of transformers' <c>generate</c>. Decoding is incremental through a <see cref="KeyValueCache"/>
/// unless <see cref="GenerationOptions.UseCache"/> is false.
/// </summary>
public static class TextGenerator
{
    /// <summary>
    /// Generates continuations of <paramref name="promptIds"/> for each encoder item.
    /// </summary>
    /// <param name="decoder">The decoder with its LM head.</param>
    /// <param name="encoderStates">(B, S, E) states the decoder cross-attends to (image or question), or null.</param>
    /// <param name="encoderAttentionMask">(B, S) 1/0 mask of the encoder states, or null for all ones.</param>
    /// <param name="promptIds">(B, P) or (1, P) int64 start ids: the start token, then any prompt tokens.</param>
    /// <param name="promptMask">(B, P) or (1, P) 1/0 mask of the prompt, or null for all ones.</param>
    /// <param name="options">Decoding settings; null for transformers' defaults (greedy, 20 tokens).</param>
    /// <returns>B x <see cref="GenerationOptions.NumReturnSequences"/> rows, the prompt included.</returns>
    public static GeneratedSequences Generate(BlipTextLMHeadModel decoder, Tensor? encoderStates, Tensor? encoderAttentionMask,
        Tensor promptIds, Tensor? promptMask = null, GenerationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(decoder);
        ArgumentNullException.ThrowIfNull(promptIds);
        options ??= new GenerationOptions();
        options.Validate();
        options = options with
        {
            EosTokenId = options.EosTokenId ?? decoder.Config.SepTokenId,
            PadTokenId = options.PadTokenId ?? decoder.Config.PadTokenId,
        };
        if (promptIds.dim() != 2 || promptIds.shape[1] < 1)
            throw new ArgumentException($"prompt ids must be (batch, length >= 1), got ({string.Join(", ", promptIds.shape)}).", nameof(promptIds));
        long batch = encoderStates?.shape[0] ?? promptIds.shape[0];
        if (promptIds.shape[0] != batch && promptIds.shape[0] != 1)
            throw new ArgumentException($"prompt ids have {promptIds.shape[0]} rows for {batch} encoder items.", nameof(promptIds));
        if (promptMask is not null && !promptMask.shape.SequenceEqual(promptIds.shape))
            throw new ArgumentException($"prompt mask shape ({string.Join(", ", promptMask.shape)}) differs from the prompt's ({string.Join(", ", promptIds.shape)}).", nameof(promptMask));
        if (encoderAttentionMask is not null && encoderStates is not null &&
            (encoderAttentionMask.shape[0] != batch || encoderAttentionMask.shape[1] != encoderStates.shape[1]))
            throw new ArgumentException($"encoder mask ({string.Join(", ", encoderAttentionMask.shape)}) does not match encoder states ({string.Join(", ", encoderStates.shape)}).", nameof(encoderAttentionMask));

        int promptLength = (int)promptIds.shape[1];
        int maxLength = options.MaxNewTokens is int maxNew ? promptLength + maxNew : options.MaxLength;
        if (maxLength <= promptLength)
            throw new ArgumentException($"max length {maxLength} leaves no room after the {promptLength} start and prompt tokens; raise MaxLength or set MaxNewTokens.");

        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        long[][] prompts = ReadPrompts(promptIds, batch);
        long[][]? promptMasks = promptMask is null ? null : ReadPrompts(promptMask.to_type(ScalarType.Int64), batch);
        var run = new Run(decoder, encoderStates, encoderAttentionMask, options, maxLength, promptLength);
        var result = options.NumBeams > 1
            ? run.BeamSearch((int)batch, prompts, promptMasks)
            : run.GreedyOrSample((int)batch, prompts, promptMasks);
        return result;
    }

    private static long[][] ReadPrompts(Tensor ids, long batch)
    {
        using var cpu = ids.to(CPU).to_type(ScalarType.Int64).contiguous();
        long rows = cpu.shape[0], length = cpu.shape[1];
        var flat = cpu.data<long>().ToArray();
        var result = new long[batch][];
        for (long b = 0; b < batch; b++)
            result[b] = flat.AsSpan((int)((rows == 1 ? 0 : b) * length), (int)length).ToArray();
        return result;
    }

    /// <summary>One generation call: the decoder, its inputs and the running state shared by the strategies.</summary>
    private sealed class Run(BlipTextLMHeadModel decoder, Tensor? encoderStates, Tensor? encoderMask, GenerationOptions options, int maxLength, int promptLength)
    {
        private readonly long _eos = options.EosTokenId!.Value;
        private readonly long _pad = options.PadTokenId!.Value;
        private readonly List<ILogitsProcessor> _processors = LogitsProcessorList.Processors(options);
        private readonly List<ILogitsProcessor> _warpers = LogitsProcessorList.Warpers(options);
        private readonly List<Tensor> _stepLogits = [];
        private readonly Device _device = decoder.bert.embeddings.position_embeddings.weight!.device;
        private Generator? _generator;

        public GeneratedSequences GreedyOrSample(int batch, long[][] prompts, long[][]? promptMasks)
        {
            int group = options.DoSample ? options.NumReturnSequences : 1;
            int rows = batch * group;
            var sequences = Expand(prompts, group);
            using var stepper = new Stepper(decoder, encoderStates, encoderMask, group, options.UseCache, _device, ExpandMask(promptMasks, group));
            var unfinished = Enumerable.Repeat(true, rows).ToArray();
            var newTokens = sequences;
            while (true)
            {
                using var stepScope = NewDisposeScope();
                using var logits = stepper.Next(newTokens, sequences);             // (N, V) float32
                RecordLogits(logits);
                LogitsProcessorList.Apply(_processors, sequences, logits);
                long[] next;
                if (options.DoSample)
                {
                    LogitsProcessorList.Apply(_warpers, sequences, logits);
                    using var probs = logits.softmax(1);
                    using var drawn = multinomial(probs, 1, replacement: false, generator: Generator()); // (N, 1)
                    next = ToArray(drawn);
                }
                else
                {
                    using var best = logits.argmax(1);                              // (N)
                    next = ToArray(best);
                }
                bool any = false;
                for (int r = 0; r < rows; r++)
                {
                    if (!unfinished[r]) next[r] = _pad;
                    sequences[r].Add(next[r]);
                    if (next[r] == _eos) unfinished[r] = false;
                    any |= unfinished[r];
                }
                if (!any || sequences[0].Count >= maxLength) break;
                newTokens = next.Select(t => new List<long> { t }).ToArray();
            }
            return Result(sequences.Select(s => s.ToArray()).ToArray(), scores: null);
        }

        public GeneratedSequences BeamSearch(int batch, long[][] prompts, long[][]? promptMasks)
        {
            int beams = options.NumBeams, rows = batch * beams;
            var sequences = Expand(prompts, beams);
            using var stepper = new Stepper(decoder, encoderStates, encoderMask, beams, options.UseCache, _device, ExpandMask(promptMasks, beams));
            var beamScores = new float[rows];
            for (int r = 0; r < rows; r++) beamScores[r] = r % beams == 0 ? 0f : -1e9f;
            var hypotheses = Enumerable.Range(0, batch).Select(_ => new BeamHypotheses(beams, options.LengthPenalty, options.EarlyStopping)).ToArray();
            var done = new bool[batch];
            var newTokens = sequences;
            int candidates = 2 * beams;
            bool wholeSequence = options.BeamLengthNormalization == BeamLengthNormalization.WholeSequence;
            while (true)
            {
                using var stepScope = NewDisposeScope();
                using var logits = stepper.Next(newTokens, sequences);              // (N, V)
                RecordLogits(logits);
                long vocab = logits.shape[1];
                var logProbs = logits.log_softmax(1);                               // (N, V)
                LogitsProcessorList.Apply(_processors, sequences, logProbs);
                var running = tensor(beamScores, ScalarType.Float32, _device).unsqueeze(1); // (N, 1)
                var total = logProbs + running;                                     // (N, V)
                Tensor topScores, topIds;
                if (options.DoSample)
                {
                    LogitsProcessorList.Apply(_warpers, sequences, total);
                    var flat = total.view(batch, beams * vocab);                    // (B, K*V)
                    var drawn = multinomial(flat.softmax(1), candidates, replacement: false, generator: Generator());
                    var drawnScores = flat.gather(1, drawn);
                    var (sorted, order) = drawnScores.sort(dim: 1, descending: true);
                    topScores = sorted;
                    topIds = drawn.gather(1, order);
                }
                else
                {
                    (topScores, topIds) = total.view(batch, beams * vocab).topk(candidates, dim: 1); // (B, 2K)
                }
                float[] scores = topScores.to(CPU).data<float>().ToArray();
                long[] ids = ToArray(topIds);

                // transformers >= 4.2x scores a hypothesis ending here by the length it reaches with its end token
                // (cur_len = tokens so far + 1, generated length = cur_len - prompt length, end token included);
                // 4.15 by the hypothesis as it stands (every token so far, prompt included, end token excluded).
                int currentLength = sequences[0].Count + 1;
                int normalizingLength = wholeSequence ? sequences[0].Count : currentLength - promptLength;
                var nextScores = new float[rows];
                var nextTokens = new long[rows];
                var nextRows = new long[rows];
                for (int b = 0; b < batch; b++)
                {
                    if (done[b])
                    {
                        for (int k = 0; k < beams; k++)
                        {
                            nextScores[b * beams + k] = 0f;
                            nextTokens[b * beams + k] = _pad;
                            nextRows[b * beams + k] = b * beams + k;
                        }
                        continue;
                    }
                    int kept = 0;
                    float best = float.NegativeInfinity;
                    for (int rank = 0; rank < candidates; rank++)
                    {
                        int c = b * candidates + rank;
                        best = Math.Max(best, scores[c]);
                    }
                    for (int rank = 0; rank < candidates && kept < beams; rank++)
                    {
                        int c = b * candidates + rank;
                        long token = ids[c] % vocab;
                        int sourceRow = b * beams + (int)(ids[c] / vocab);
                        if (token == _eos)
                        {
                            if (rank >= beams) continue; // an end not among the top n candidates is not kept
                            hypotheses[b].Add(sequences[sourceRow].ToArray(), scores[c], normalizingLength);
                        }
                        else
                        {
                            nextScores[b * beams + kept] = scores[c];
                            nextTokens[b * beams + kept] = token;
                            nextRows[b * beams + kept] = sourceRow;
                            kept++;
                        }
                    }
                    if (kept < beams)
                        throw new InvalidOperationException($"beam search found fewer than {beams} continuations that are not end-of-sequence.");
                    done[b] = hypotheses[b].IsDone(best, normalizingLength);
                }

                var reordered = new List<long>[rows];
                for (int r = 0; r < rows; r++)
                {
                    reordered[r] = [.. sequences[(int)nextRows[r]], nextTokens[r]];
                }
                sequences = reordered;
                beamScores = nextScores;
                stepper.Reorder(nextRows);
                if (done.All(d => d) || sequences[0].Count >= maxLength) break;
                newTokens = nextTokens.Select(t => new List<long> { t }).ToArray();
            }

            // Open beams of unfinished inputs compete with the finished hypotheses.
            for (int b = 0; b < batch; b++)
            {
                if (done[b]) continue;
                for (int k = 0; k < beams; k++)
                {
                    int r = b * beams + k;
                    hypotheses[b].Add(sequences[r].ToArray(), beamScores[r], wholeSequence ? sequences[r].Count : sequences[r].Count - promptLength);
                }
            }
            int keep = options.NumReturnSequences;
            var chosen = new List<(double Score, long[] Tokens)>();
            foreach (var h in hypotheses) chosen.AddRange(h.Best(keep));
            int width = Math.Min(chosen.Max(c => c.Tokens.Length) + 1, maxLength);
            var output = new long[chosen.Count][];
            for (int i = 0; i < chosen.Count; i++)
            {
                var row = new long[width];
                Array.Fill(row, _pad);
                chosen[i].Tokens.CopyTo(row, 0);
                if (chosen[i].Tokens.Length < width) row[chosen[i].Tokens.Length] = _eos;
                output[i] = row;
            }
            return Result(output, chosen.Select(c => (float)c.Score).ToArray());
        }

        private GeneratedSequences Result(long[][] sequences, float[]? scores)
        {
            Tensor? logits = null;
            if (_stepLogits.Count > 0)
            {
                logits = stack(_stepLogits, 0).DetachFromDisposeScope(); // (steps, N, V), owned by the result
                foreach (var t in _stepLogits) t.Dispose();
            }
            return new GeneratedSequences(sequences, promptLength, scores, logits, _eos, _pad);
        }

        private void RecordLogits(Tensor logits)
        {
            if (options.OutputLogits) _stepLogits.Add(logits.clone().DetachFromDisposeScope());
        }

        private Generator Generator()
        {
            if (_generator is not null) return _generator;
            ulong seed = options.Seed is long s ? unchecked((ulong)s) : (ulong)Random.Shared.NextInt64();
            _generator = new Generator(seed, _device);
            return _generator;
        }

        private static List<long>[] Expand(long[][] rows, int group) =>
            rows.SelectMany(r => Enumerable.Range(0, group).Select(_ => r.ToList())).ToArray();

        private static long[][]? ExpandMask(long[][]? rows, int group) =>
            rows?.SelectMany(r => Enumerable.Range(0, group).Select(_ => r)).ToArray();

        private static long[] ToArray(Tensor t)
        {
            using var cpu = t.to(CPU).contiguous();
            return cpu.data<long>().ToArray();
        }
    }

    /// <summary>Runs the decoder one step at a time, incrementally through a cache or by full recomputation.</summary>
    private sealed class Stepper : IDisposable
    {
        private readonly BlipTextLMHeadModel _decoder;
        private readonly KeyValueCache? _cache;
        private readonly Tensor? _expandedStates;
        private readonly Tensor? _expandedMask;
        private readonly Device _device;
        private List<long>[]? _mask; // per-row 1/0 mask over all tokens; null while every token is attended

        public Stepper(BlipTextLMHeadModel decoder, Tensor? encoderStates, Tensor? encoderMask, int group, bool useCache, Device device, long[][]? promptMask)
        {
            _decoder = decoder;
            _device = device;
            if (promptMask is not null && promptMask.Any(r => r.Any(v => v == 0)))
                _mask = promptMask.Select(r => r.ToList()).ToArray();
            if (useCache)
            {
                _cache = KeyValueCache.Create(decoder.bert, encoderStates, encoderMask, group);
            }
            else if (encoderStates is not null)
            {
                _expandedStates = encoderStates.repeat_interleave(group, 0).DetachFromDisposeScope();                 // (N, S, E)
                _expandedMask = encoderMask?.repeat_interleave(group, 0).DetachFromDisposeScope();                    // (N, S)
            }
        }

        /// <summary>Logits (N, V) float32 for the next token, after feeding <paramref name="newTokens"/>; <paramref name="sequences"/> already holds them.</summary>
        public Tensor Next(IReadOnlyList<List<long>> newTokens, IReadOnlyList<List<long>> sequences)
        {
            if (_mask is not null && _mask[0].Count < sequences[0].Count)
                foreach (var m in _mask) m.AddRange(Enumerable.Repeat(1L, sequences[0].Count - m.Count));
            using var mask = _mask is null ? null : RepetitionPenaltyProcessor.TokenTensor(_mask, _device);
            if (_cache is not null)
            {
                using var ids = RepetitionPenaltyProcessor.TokenTensor(newTokens, _device);
                using var logits = _decoder.DecodeNext(ids, mask, _cache);
                return logits.to_type(ScalarType.Float32);
            }
            using var all = RepetitionPenaltyProcessor.TokenTensor(sequences, _device);
            using var output = _decoder.Forward(all, mask, _expandedStates, _expandedMask);
            using var last = output.Logits.select(1, all.shape[1] - 1);              // (N, V)
            return last.to_type(ScalarType.Float32);
        }

        /// <summary>Row r continues old row <paramref name="rows"/>[r].</summary>
        public void Reorder(long[] rows)
        {
            if (_mask is not null) _mask = rows.Select(r => _mask[(int)r].ToList()).ToArray();
            if (_cache is null) return;
            using var index = tensor(rows, ScalarType.Int64, _device);
            _cache.Reorder(index);
        }

        public void Dispose()
        {
            _cache?.Dispose();
            _expandedStates?.Dispose();
            _expandedMask?.Dispose();
        }
    }
}
