using BlipSharp.Generation;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Captioning;

/// <summary>Captions as salesforce/BLIP's <c>BLIP_Decoder.generate</c> returns them, with the token ids and scores behind them.</summary>
/// <param name="Captions">One caption per returned sequence (images in order, then their sequences): the decoded
/// text without special tokens, with the prompt's characters cut off.</param>
/// <param name="Sequences">The generated ids ([DEC] and the prompt included) and, for beam search, the scores.</param>
public sealed record GeneratedCaptions(IReadOnlyList<string> Captions, GeneratedSequences Sequences) : IDisposable
{
    /// <summary>Disposes the sequences' step logits, if any.</summary>
    public void Dispose() => Sequences.Dispose();
}

/// <summary>
/// Caption generation for fine-tuning evaluation, as salesforce/BLIP's <c>BLIP_Decoder.generate</c>: the decoder
/// starts from <c>tokenizer(prompt).input_ids</c> with column 0 set to <c>[DEC]</c> and the trailing <c>[SEP]</c>
/// dropped; <c>max_length</c>/<c>min_length</c> count <c>[DEC]</c> and the prompt; the end token is <c>[SEP]</c> and
/// padding <c>[PAD]</c>; the image states are not masked; each caption is
/// <c>tokenizer.decode(ids, skip_special_tokens=True)[len(prompt):]</c> (a cut by characters, not by tokens).
/// Beam search should use <see cref="BeamLengthNormalization.WholeSequence"/> (transformers 4.15, what BLIP ran):
/// <see cref="BeamSearch"/> and <see cref="Greedy"/> build BLIP's settings.
/// </summary>
public static class BlipCaptionGenerator
{
    /// <summary>
    /// BLIP's beam search (<c>sample=False</c>): <paramref name="numBeams"/> beams, repetition penalty 1.0, scores
    /// normalised by the whole sequence as transformers 4.15 does. COCO fine-tuning evaluates with 3 beams, max 20,
    /// min 5 (<c>configs/caption_coco.yaml</c>); <c>BLIP_Decoder.generate</c>'s own defaults are 3, 30, 10.
    /// </summary>
    /// <param name="numBeams">Beams (BLIP: 3).</param>
    /// <param name="maxLength">Longest sequence, [DEC] and prompt included.</param>
    /// <param name="minLength">No end token before this many tokens, [DEC] and prompt included.</param>
    public static GenerationOptions BeamSearch(int numBeams = 3, int maxLength = 20, int minLength = 5) => new()
    {
        NumBeams = numBeams,
        MaxLength = maxLength,
        MinLength = minLength,
        RepetitionPenalty = 1.0,
        BeamLengthNormalization = BeamLengthNormalization.WholeSequence,
    };

    /// <summary>Greedy decoding with BLIP's lengths (<c>num_beams=1</c>): identical in transformers 4.15 and later.</summary>
    /// <param name="maxLength">Longest sequence, [DEC] and prompt included.</param>
    /// <param name="minLength">No end token before this many tokens, [DEC] and prompt included.</param>
    public static GenerationOptions Greedy(int maxLength = 20, int minLength = 5) => new()
    {
        MaxLength = maxLength,
        MinLength = minLength,
        RepetitionPenalty = 1.0,
    };

    /// <summary>
    /// The decoder start ids (1, P) of <paramref name="prompt"/>: <c>tokenizer(prompt).input_ids</c> with column 0 set
    /// to <c>[DEC]</c> and the trailing <c>[SEP]</c> dropped (BLIP: <c>[DEC] a picture of</c>; an empty prompt gives
    /// <c>[DEC]</c> alone).
    /// </summary>
    /// <param name="tokenizer">The tokenizer.</param>
    /// <param name="prompt">The prompt.</param>
    /// <param name="device">Where the tensor goes (default CPU).</param>
    public static Tensor DecoderStartIds(BlipTokenizer tokenizer, string prompt, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(prompt);
        long[] ids = tokenizer.Encode(prompt);                                  // [CLS] prompt [SEP]
        if (ids.Length < 2 || ids[^1] != tokenizer.SepTokenId)
            throw new ArgumentException($"the prompt '{prompt}' does not tokenise to [CLS] ... [SEP] (it is cut to the tokenizer's maximum length?).", nameof(prompt));
        var start = ids[..^1];
        start[0] = tokenizer.BosTokenId;
        return tensor(start, dtype: ScalarType.Int64, device: device).unsqueeze(0); // (1, P)
    }

    /// <summary>
    /// Generates captions for <paramref name="pixelValues"/> as BLIP's evaluation does (<c>model.eval()</c>, no
    /// gradients; the model's training mode is restored afterwards).
    /// </summary>
    /// <param name="model">The captioning model.</param>
    /// <param name="tokenizer">The tokenizer (start ids and decoding).</param>
    /// <param name="pixelValues">(B, 3, S, S) images through BLIP's test transform, in the model's dtype and device.</param>
    /// <param name="prompt">BLIP: <c>"a picture of "</c>; may be empty.</param>
    /// <param name="options">Decoding settings, e.g. <see cref="BeamSearch"/>; the end and pad tokens default to the decoder config's [SEP] and [PAD].</param>
    public static GeneratedCaptions Generate(BlipForConditionalGeneration model, BlipTokenizer tokenizer, Tensor pixelValues, string prompt, GenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(pixelValues);
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(options);
        if (pixelValues.dim() != 4)
            throw new ArgumentException($"pixel values must be (B, 3, S, S), got ({string.Join(", ", pixelValues.shape)}).", nameof(pixelValues));
        bool wasTraining = model.training;
        model.eval();
        try
        {
            GeneratedSequences sequences;
            using (no_grad())
            using (NewDisposeScope())
            {
                var image = model.EncodeImage(pixelValues);                                  // (B, 1+N, Dv)
                var start = DecoderStartIds(tokenizer, prompt, image.device);                // (1, P)
                sequences = model.GenerateFromImageEmbeds(image, start, decoderAttentionMask: null, options);
            }
            var captions = sequences.Sequences
                .Select(row => StripPrompt(tokenizer.Decode(row, skipSpecialTokens: true), prompt))
                .ToList();
            return new GeneratedCaptions(captions, sequences);
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    /// <summary>
    /// Python's <c>text[len(prompt):]</c>: drops as many characters (Unicode code points) from the start of
    /// <paramref name="decoded"/> as <paramref name="prompt"/> has, whatever they are. BLIP cuts this way, so when the
    /// first generated word piece glues onto the prompt's last word (<c>"a picture ofち dub"</c>) the cut takes it too.
    /// </summary>
    /// <param name="decoded">The decoded sequence.</param>
    /// <param name="prompt">The prompt.</param>
    public static string StripPrompt(string decoded, string prompt)
    {
        ArgumentNullException.ThrowIfNull(decoded);
        ArgumentNullException.ThrowIfNull(prompt);
        int count = prompt.EnumerateRunes().Count();
        int index = 0;
        foreach (var rune in decoded.EnumerateRunes())
        {
            if (count == 0) break;
            index += rune.Utf16SequenceLength;
            count--;
        }
        return decoded[index..];
    }
}
