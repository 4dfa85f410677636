using System.Text.Json;
using BlipSharp.Processing;

namespace BlipSharp.Training.Synthetic;

/// <summary>
/// A WordPiece vocabulary for the synthetic world, written next to its data as a tokenizer folder that
/// <see cref="BlipTokenizer.FromPretrained"/> loads. The world uses about 200 words; with BERT's 30,522 entries the
/// LM head of a tiny model costs more than the rest of the model, so tiny recipes use this one instead.
/// </summary>
/// <remarks>
/// Layout of <c>vocab.txt</c>: the special tokens first (<c>[PAD]</c> 0, <c>[UNK]</c> 1, <c>[CLS]</c> 2, <c>[SEP]</c> 3,
/// <c>[MASK]</c> 4, <c>[DEC]</c> 5, <c>[ENC]</c> 6), then every word of the world's texts that occurs at least
/// <see cref="MinCount"/> times and has no digit (lowercased, split as BERT's basic tokenizer splits, ordinal order), then one entry per
/// ASCII letter and digit with its <c>##</c> continuation, so rarer words (noise such as file names) fall back to
/// characters instead of <c>[UNK]</c>. <c>special_tokens_map.json</c> names <c>[DEC]</c> the BOS token and <c>[ENC]</c>
/// an additional special token, as BLIP's tokenizer does; a recipe using the folder sets
/// <c>text_config.vocab_size</c> to the number of lines, <c>text_config.bos_token_id</c> to 5 and <c>enc_token_id</c> to 6.
/// </remarks>
public static class SyntheticVocabulary
{
    /// <summary>The folder the world writes the tokenizer into.</summary>
    public const string DirectoryName = "tokenizer";

    /// <summary>Words rarer than this are left to the character fallback.</summary>
    public const int MinCount = 2;

    /// <summary>The special tokens, in id order.</summary>
    public static IReadOnlyList<string> SpecialTokens { get; } = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"];

    /// <summary>Id of <c>[SEP]</c> (the end of every text, where generation stops) in this vocabulary.</summary>
    public const int SepTokenId = 3;

    /// <summary>Id of <c>[DEC]</c> (the decoder's BOS token) in this vocabulary.</summary>
    public const int DecTokenId = 5;

    /// <summary>Id of <c>[ENC]</c> in this vocabulary.</summary>
    public const int EncTokenId = 6;

    /// <summary>Builds the vocabulary of <paramref name="texts"/> (see the remarks of the class for its layout).</summary>
    public static IReadOnlyList<string> Build(IEnumerable<string> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var basic = new BasicTokenizer(doLowerCase: true);
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string text in texts)
            foreach (string word in basic.Tokenize(text))
                counts[word] = counts.GetValueOrDefault(word) + 1;

        var vocabulary = new List<string>(SpecialTokens);
        var seen = new HashSet<string>(SpecialTokens, StringComparer.Ordinal);
        // Words with digits (file names, prices in spam) are left to the character pieces, which keeps the size set by
        // the caption grammar alone rather than by the seed.
        foreach (string word in counts.Where(c => c.Value >= MinCount && !c.Key.Any(char.IsAsciiDigit)).Select(c => c.Key).Order(StringComparer.Ordinal))
            if (seen.Add(word)) vocabulary.Add(word);
        foreach (char c in "abcdefghijklmnopqrstuvwxyz0123456789")
        {
            if (seen.Add(c.ToString())) vocabulary.Add(c.ToString());
            if (seen.Add("##" + c)) vocabulary.Add("##" + c);
        }
        return vocabulary;
    }

    /// <summary>
    /// Writes <c>vocab.txt</c>, <c>special_tokens_map.json</c> and <c>tokenizer_config.json</c> into
    /// <paramref name="directory"/> (created if needed) and returns the file names written.
    /// </summary>
    public static IReadOnlyList<string> Write(string directory, IReadOnlyList<string> vocabulary)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(vocabulary);
        for (int i = 0; i < SpecialTokens.Count; i++)
            if (vocabulary.Count <= i || vocabulary[i] != SpecialTokens[i])
                throw new ArgumentException($"the vocabulary must start with {string.Join(" ", SpecialTokens)}.", nameof(vocabulary));
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, TokenizerFiles.VocabFile), string.Join("\n", vocabulary) + "\n");
        var special = new Dictionary<string, object>
        {
            ["bos_token"] = "[DEC]",
            ["cls_token"] = "[CLS]",
            ["mask_token"] = "[MASK]",
            ["pad_token"] = "[PAD]",
            ["sep_token"] = "[SEP]",
            ["unk_token"] = "[UNK]",
            ["additional_special_tokens"] = new[] { "[ENC]" },
        };
        var options = new JsonSerializerOptions { WriteIndented = true };
        File.WriteAllText(Path.Combine(directory, TokenizerFiles.SpecialTokensMapFile), JsonSerializer.Serialize(special, options));
        var config = new Dictionary<string, object>(special)
        {
            ["do_lower_case"] = true,
            ["model_max_length"] = 512,
            ["tokenizer_class"] = "BertTokenizer",
        };
        File.WriteAllText(Path.Combine(directory, TokenizerFiles.ConfigFile), JsonSerializer.Serialize(config, options));
        return [TokenizerFiles.VocabFile, TokenizerFiles.SpecialTokensMapFile, TokenizerFiles.ConfigFile];
    }
}
