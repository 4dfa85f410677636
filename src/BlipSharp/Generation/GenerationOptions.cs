namespace BlipSharp.Generation;

/// <summary>
/// How text is generated, with the meaning and defaults of transformers' <c>GenerationConfig</c>: lengths count
/// every token of the sequence, the start token and any prompt included.
/// </summary>
public sealed record GenerationOptions
{
    /// <summary>Longest sequence, start token and prompt included (transformers' <c>max_length</c>, default 20).</summary>
    public int MaxLength { get; init; } = 20;

    /// <summary>When set, the most new tokens after the prompt; overrides <see cref="MaxLength"/> (transformers' <c>max_new_tokens</c>).</summary>
    public int? MaxNewTokens { get; init; }

    /// <summary>End of sequence is forbidden before the sequence has this many tokens, prompt included (<c>min_length</c>).</summary>
    public int MinLength { get; init; }

    /// <summary>Beams for beam search; 1 means greedy decoding or sampling.</summary>
    public int NumBeams { get; init; } = 1;

    /// <summary>Exponent of the length in beam scores: score = sum of log-probabilities / length^penalty.</summary>
    public double LengthPenalty { get; init; } = 1.0;

    /// <summary>
    /// The length beam scores are normalised by: the generated tokens (transformers 4.2x+, the default) or the whole
    /// sequence with start token and prompt (transformers 4.15, as salesforce/BLIP ran); see <see cref="Generation.BeamLengthNormalization"/>.
    /// </summary>
    public BeamLengthNormalization BeamLengthNormalization { get; init; } = BeamLengthNormalization.GeneratedTokens;

    /// <summary>Beam search stops for an input as soon as it has <see cref="NumBeams"/> finished hypotheses.</summary>
    public bool EarlyStopping { get; init; }

    /// <summary>Sequences returned per input (at most <see cref="NumBeams"/> for beam search; any number when sampling).</summary>
    public int NumReturnSequences { get; init; } = 1;

    /// <summary>Sample the next token instead of taking the most likely one (nucleus / top-k sampling).</summary>
    public bool DoSample { get; init; }

    /// <summary>Sampling keeps the <c>TopK</c> most likely tokens (transformers' default 50; 0 disables).</summary>
    public int TopK { get; init; } = 50;

    /// <summary>Nucleus sampling keeps the smallest set of tokens whose probability reaches <c>TopP</c> (1 disables).</summary>
    public double TopP { get; init; } = 1.0;

    /// <summary>Sampling divides the logits by this temperature.</summary>
    public double Temperature { get; init; } = 1.0;

    /// <summary>Divides positive (multiplies negative) scores of tokens already in the sequence; 1 disables.</summary>
    public double RepetitionPenalty { get; init; } = 1.0;

    /// <summary>Forbids repeating any n-gram of this size; 0 disables.</summary>
    public int NoRepeatNgramSize { get; init; }

    /// <summary>Seed of the sampling generator; null draws one from the system.</summary>
    public long? Seed { get; init; }

    /// <summary>Return the raw next-token logits of every step (<see cref="GeneratedSequences.StepLogits"/>).</summary>
    public bool OutputLogits { get; init; }

    /// <summary>Reuse past keys and values (the KV cache); false recomputes the whole sequence at every step.</summary>
    public bool UseCache { get; init; } = true;

    /// <summary>
    /// Token that ends a sequence; null takes the decoder config's <c>sep_token_id</c> (<c>[SEP]</c>, 102), as
    /// transformers' BLIP <c>generate</c> does (it ignores <c>eos_token_id</c>).
    /// </summary>
    public long? EosTokenId { get; init; }

    /// <summary>Token that fills finished rows; null takes the decoder config's <c>pad_token_id</c> (<c>[PAD]</c>, 0).</summary>
    public long? PadTokenId { get; init; }

    /// <summary>Greedy decoding with BLIP's usual caption settings: 20 tokens at most, 5 at least (the original repository's defaults).</summary>
    public static GenerationOptions Greedy { get; } = new() { MaxLength = 20, MinLength = 5 };

    /// <summary>Beam search as BLIP evaluates captions: 3 beams, max 20, min 5, repetition penalty 1.0.</summary>
    public static GenerationOptions BeamSearch { get; } = new() { NumBeams = 3, MaxLength = 20, MinLength = 5 };

    /// <summary>Nucleus sampling as BLIP's CapFilt: top-p 0.9, max 20, min 5, repetition penalty 1.1.</summary>
    public static GenerationOptions Nucleus { get; } = new() { DoSample = true, TopP = 0.9, MaxLength = 20, MinLength = 5, RepetitionPenalty = 1.1 };

    /// <summary>Throws when a setting is out of range, naming it.</summary>
    public void Validate()
    {
        if (MaxLength < 1) throw new ArgumentOutOfRangeException(nameof(MaxLength), MaxLength, "max length must be at least 1.");
        if (MaxNewTokens is < 1) throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, "max new tokens must be at least 1.");
        if (MinLength < 0) throw new ArgumentOutOfRangeException(nameof(MinLength), MinLength, "min length must not be negative.");
        if (NumBeams < 1) throw new ArgumentOutOfRangeException(nameof(NumBeams), NumBeams, "the number of beams must be at least 1.");
        if (NumReturnSequences < 1) throw new ArgumentOutOfRangeException(nameof(NumReturnSequences), NumReturnSequences, "at least one sequence must be returned.");
        if (NumBeams > 1 && NumReturnSequences > NumBeams)
            throw new ArgumentException($"beam search returns at most num_beams ({NumBeams}) sequences per input, not {NumReturnSequences}.", nameof(NumReturnSequences));
        if (NumBeams == 1 && !DoSample && NumReturnSequences > 1)
            throw new ArgumentException("greedy decoding returns one sequence per input: use beam search or sampling for more.", nameof(NumReturnSequences));
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "top-k must not be negative.");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "top-p must be in (0, 1].");
        if (!(Temperature > 0) || double.IsInfinity(Temperature)) throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "temperature must be a positive number.");
        if (!(RepetitionPenalty > 0) || double.IsInfinity(RepetitionPenalty)) throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, "repetition penalty must be a positive number.");
        if (NoRepeatNgramSize < 0) throw new ArgumentOutOfRangeException(nameof(NoRepeatNgramSize), NoRepeatNgramSize, "no-repeat n-gram size must not be negative.");
        if (!Enum.IsDefined(BeamLengthNormalization)) throw new ArgumentOutOfRangeException(nameof(BeamLengthNormalization), BeamLengthNormalization, "unknown beam length normalization.");
        if (double.IsNaN(LengthPenalty) || double.IsInfinity(LengthPenalty)) throw new ArgumentOutOfRangeException(nameof(LengthPenalty), LengthPenalty, "length penalty must be finite.");
    }
}
