namespace BlipSharp.Generation;

/// <summary>
/// Which length beam search divides a hypothesis's summed log-probabilities by (raised to
/// <see cref="GenerationOptions.LengthPenalty"/>). transformers changed this between the version salesforce/BLIP
/// pins (4.15) and current ones; with a prompt the two rank and stop differently, so BLIP's published beam-search
/// numbers need <see cref="WholeSequence"/>.
/// </summary>
public enum BeamLengthNormalization
{
    /// <summary>
    /// transformers 4.2x and later (the hf-blip fixtures: 4.40): the generated length, i.e. the tokens after the
    /// start token and prompt, the end token included for a hypothesis that ends with one. A hypothesis finished at
    /// step t is scored <c>sum_logprobs / (cur_len + 1 - prompt_len)^lp</c>; <c>is_done</c> compares the worst kept
    /// score with <c>best_sum / (cur_len + 1 - prompt_len)^lp</c>; open beams at the end with <c>(len - prompt_len)^lp</c>.
    /// The default.
    /// </summary>
    GeneratedTokens,

    /// <summary>
    /// transformers 4.15 (what salesforce/BLIP pins and its released caption and VQA numbers used): the whole
    /// hypothesis, start token and prompt included (for BLIP's captioner <c>[DEC] a picture of</c> counts 4), the end
    /// token excluded. A hypothesis that ends at a step where the sequences have <c>cur_len</c> tokens is scored
    /// <c>sum_logprobs / cur_len^lp</c> (its tokens without the end token); <c>is_done</c> compares the worst kept score
    /// with <c>best_sum / cur_len^lp</c>; open beams at the end are scored by their full length. The output rows are
    /// built as in later versions: each best hypothesis shorter than the maximum length gets one end token, and shorter
    /// rows are padded up to <c>min(longest + 1, max_length)</c>.
    /// </summary>
    WholeSequence,
}
