using System.Text;
using BlipSharp.Checkpoints;
using BlipSharp.Processing;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Processing;

/// <summary>Tokenizer behaviour on tiny inline vocabularies: WordPiece, normalisation, special tokens, encoding, decoding, errors.</summary>
public sealed class TokenizerUnitTests : IDisposable
{
    // ids:                          0        1        2        3        4         5     6        7        8       9        10
    private static readonly string[] Vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "runn", "##ing", "a",
        // 11    12     13    14     15   16   17   18      19      20   21   22     23      24    25    26   27
        "##b", "##c", "ab", "##x", "c", ",", ".", "hello", "cafe", "[", "]", "sep", "##bcd", "中", "文", "'", "s",
        // 28   29     30        31     32    33
        "i", "##a", "héllo", "b", "😀", "##😀"];

    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-tok-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static BlipTokenizer Tiny(BlipTokenizerOptions? options = null) => BlipTokenizer.Create(Vocab, options);

    // ---------------------------------------------------------------- WordPiece

    [Fact]
    public void SplitsWordsGreedilyIntoLongestPieces()
    {
        var tokenizer = Tiny();
        Assert.Equal(["un", "##aff", "##able", "runn", "##ing"], tokenizer.Tokenize("unaffable running"));
        Assert.Equal([5L, 6, 7, 8, 9], tokenizer.Encode("unaffable running", addSpecialTokens: false));
    }

    [Fact]
    public void WordThatCannotBeCoveredBecomesOneUnknown()
    {
        var tokenizer = Tiny();
        // "unz": "un" matches but "##z" does not, so the whole word (not just its tail) is [UNK].
        Assert.Equal(["[UNK]", "a"], tokenizer.Tokenize("unz a"));
    }

    [Fact]
    public void GreedyMatchDoesNotBacktrack()
    {
        // "abcd" = "a" + "##bcd" exists, but greedy takes "ab" first, then "##c", then "##d" fails: [UNK].
        Assert.Equal(["[UNK]"], Tiny().Tokenize("abcd"));
        Assert.Equal(["ab", "##c"], Tiny().Tokenize("abc"));
    }

    [Fact]
    public void WordLongerThanMaxInputCharsIsUnknown()
    {
        var tokenizer = Tiny();
        Assert.Equal(Enumerable.Repeat("##a", 99).Prepend("a"), tokenizer.Tokenize(new string('a', 100)));
        Assert.Equal(["[UNK]"], tokenizer.Tokenize(new string('a', 101)));
        var shortLimit = Tiny(BlipTokenizerOptions.Default with { MaxInputCharsPerWord = 3 });
        Assert.Equal(["[UNK]"], shortLimit.Tokenize("aaaa"));
    }

    [Fact]
    public void CountsCharactersAsCodePoints()
    {
        // Three emoji are six UTF-16 units but three Python characters.
        var tokenizer = Tiny(BlipTokenizerOptions.Default with { MaxInputCharsPerWord = 3 });
        Assert.Equal(["😀", "##😀", "##😀"], tokenizer.Tokenize("😀😀😀"));
        Assert.Equal(["[UNK]"], tokenizer.Tokenize("😀😀😀😀"));
    }

    // ---------------------------------------------------------------- basic tokenizer

    [Fact]
    public void LowercasesAndStripsAccents()
    {
        Assert.Equal(["hello", "cafe"], Tiny().Tokenize("HÉLLO Café"));
        // strip_accents=false keeps the accent (and the word is in the vocabulary as such).
        Assert.Equal(["héllo"], Tiny(BlipTokenizerOptions.Default with { StripAccents = false }).Tokenize("HÉLLO"));
        // Dotted capital I lowercases to "i" + U+0307 in Python; accent stripping leaves "i".
        Assert.Equal(["i"], Tiny().Tokenize("\u0130"));
    }

    [Fact]
    public void CasedTokenizerKeepsCase()
    {
        var cased = Tiny(BlipTokenizerOptions.Default with { DoLowerCase = false });
        Assert.Equal(["[UNK]", "hello"], cased.Tokenize("Hello hello"));
        // strip_accents=None follows do_lower_case=False: accents stay.
        Assert.Equal(["héllo"], cased.Tokenize("héllo"));
    }

    [Fact]
    public void SplitsPunctuationAndChineseCharacters()
    {
        var tokenizer = Tiny();
        Assert.Equal(["a", ",", "b", ".", "c"], tokenizer.Tokenize("a,b.c"));
        Assert.Equal(["a", "'", "s"], tokenizer.Tokenize("a's"));
        Assert.Equal(["a", "中", "文", "b"], tokenizer.Tokenize("a中文b"));
    }

    [Fact]
    public void CleansControlAndWhitespaceCharacters()
    {
        var tokenizer = Tiny();
        // NUL, U+FFFD, zero-width space (Cf) and private use (Co) vanish; NBSP, tab, U+2028 separate words.
        Assert.Equal(["ab"], tokenizer.Tokenize("a\u0000\uFFFD\u200B\uE000b"));
        Assert.Equal(["a", "b", "c", "a"], tokenizer.Tokenize(" a\u00A0b\tc\u2028a "));
        Assert.Empty(tokenizer.Tokenize(" \t\n "));
    }

    [Fact]
    public void DropsCharactersUnknownToPythonsUnicodeVersion()
    {
        // U+1FAE8 (Unicode 15) is unassigned for Python 3.11 (Unicode 14), so BERT's cleanup drops it;
        // U+1F431 (cat face, Unicode 6) is an ordinary symbol that is not in this vocabulary.
        var tokenizer = Tiny();
        Assert.Equal(["a", "b"], tokenizer.Tokenize("a \U0001FAE8 b"));
        Assert.Equal(["a", "[UNK]", "b"], tokenizer.Tokenize("a \U0001F431 b"));
    }

    // ---------------------------------------------------------------- special and added tokens

    [Fact]
    public void AppendsMissingSpecialTokensAfterTheVocabulary()
    {
        var tokenizer = Tiny();
        Assert.Equal(Vocab.Length, tokenizer.BosTokenId);
        Assert.Equal(Vocab.Length + 1, tokenizer.EncTokenId);
        Assert.Equal(Vocab.Length + 2, tokenizer.VocabSize);
        Assert.Equal(Vocab.Length, tokenizer.BaseVocabSize);
        Assert.Equal((0L, 1L, 2L, 3L, 4L), (tokenizer.PadTokenId, tokenizer.UnkTokenId, tokenizer.ClsTokenId, tokenizer.SepTokenId, tokenizer.MaskTokenId));
        Assert.Equal(["[DEC]", "[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]", "[ENC]"], tokenizer.AllSpecialTokens);
    }

    [Fact]
    public void KeepsLiteralSpecialTokensWholeButNotTheirLowercaseForms()
    {
        var tokenizer = Tiny();
        Assert.Equal(["a", "[SEP]", "b", "[DEC]", "[ENC]", "c"], tokenizer.Tokenize("a[SEP]b [DEC][ENC] c"));
        Assert.Equal(["[", "sep", "]"], tokenizer.Tokenize("[sep]"));
        Assert.Equal(["[", "sep", "]"], tokenizer.Tokenize("[Sep]"));
        Assert.Equal([2L, 10, 3, 31, 3], tokenizer.Encode("a[SEP]b"));
    }

    [Fact]
    public void AddedTokensPreferTheLongestMatch()
    {
        var tokenizer = Tiny(BlipTokenizerOptions.Default with
        {
            DoLowerCase = false,
            AddedTokens = [new AddedToken("<ab>"), new AddedToken("<ab>c")],
        });
        Assert.Equal(["a", "<ab>c", "b"], tokenizer.Tokenize("a<ab>c b"));
        Assert.Equal(["<ab>", "a"], tokenizer.Tokenize("<ab>a"));
        // Ids continue after [DEC] and [ENC].
        Assert.Equal(Vocab.Length + 2, tokenizer.ConvertTokenToId("<ab>"));
        Assert.Equal(Vocab.Length + 4, tokenizer.VocabSize);
    }

    [Fact]
    public void AddedTokenStripFlagsEatNeighbouringSpaces()
    {
        var tokenizer = Tiny(BlipTokenizerOptions.Default with
        {
            AddedTokens = [new AddedToken("<x>") { Special = true, LStrip = true, RStrip = true }],
        });
        Assert.Equal(["a", "<x>", "b"], tokenizer.Tokenize("a   <x>   b"));
        Assert.Contains("<x>", tokenizer.AllSpecialTokens);
    }

    // ---------------------------------------------------------------- encoding

    [Fact]
    public void TruncatesOnlyWhenAskedOrWhenMaxLengthAloneIsGiven()
    {
        var tokenizer = Tiny();
        string text = "a b c a b c";
        Assert.Equal(8, tokenizer.Encode([text], new TokenizerEncodeOptions { MaxLength = 5, Truncation = false }).InputIds[0].Length);
        // Hugging Face: max_length without padding or truncation turns truncation on.
        Assert.Equal([2L, 10, 31, 15, 3], tokenizer.Encode([text], new TokenizerEncodeOptions { MaxLength = 5 }).InputIds[0]);
        // ... but not when padding is requested.
        Assert.Equal(8, tokenizer.Encode([text], new TokenizerEncodeOptions { MaxLength = 5, Padding = PaddingStrategy.Longest }).InputIds[0].Length);
        // A sequence too short to lose the requested number of tokens stays whole (Hugging Face logs an error).
        Assert.Equal([2L, 10, 3], tokenizer.Encode(["a"], new TokenizerEncodeOptions { MaxLength = 2, Truncation = true }).InputIds[0]);
    }

    [Fact]
    public void TruncationAndMaxLengthPaddingDefaultToTheModelMaximum()
    {
        var tokenizer = Tiny(BlipTokenizerOptions.Default with { ModelMaxLength = 6 });
        var batch = tokenizer.Encode(["a b c a b c", "a"], new TokenizerEncodeOptions { Truncation = true, Padding = PaddingStrategy.MaxLength });
        Assert.Equal([2L, 10, 31, 15, 10, 3], batch.InputIds[0]);
        Assert.Equal([2L, 10, 3, 0, 0, 0], batch.InputIds[1]);
        Assert.Equal([1L, 1, 1, 0, 0, 0], batch.AttentionMask[1]);

        // With no model maximum, both fall back to doing nothing, as in Hugging Face.
        var unbounded = Tiny(BlipTokenizerOptions.Default with { ModelMaxLength = null });
        var raw = unbounded.Encode(["a b c a b c", "a"], new TokenizerEncodeOptions { Truncation = true, Padding = PaddingStrategy.MaxLength });
        Assert.Equal([8, 3], raw.InputIds.Select(r => r.Length));
    }

    [Fact]
    public void PadsOnTheConfiguredSide()
    {
        var left = Tiny(BlipTokenizerOptions.Default with { PaddingSide = TokenizerSide.Left });
        var batch = left.Encode(["a b", "a"], new TokenizerEncodeOptions { Padding = PaddingStrategy.Longest });
        Assert.Equal([0L, 2, 10, 3], batch.InputIds[1]);
        Assert.Equal([0L, 1, 1, 1], batch.AttentionMask[1]);
    }

    [Fact]
    public void BuildsInt64Tensors()
    {
        var tokenizer = Tiny();
        using var tensors = tokenizer.EncodeToTensors(["a b", "a"]);
        Assert.Equal(ScalarType.Int64, tensors.InputIds.dtype);
        Assert.Equal([2L, 4], tensors.InputIds.shape);
        Assert.Equal([2L, 10, 3, 0], tensors.InputIds[1].data<long>().ToArray());
        Assert.Equal([1L, 1, 1, 0], tensors.AttentionMask[1].data<long>().ToArray());

        var ragged = tokenizer.Encode(["a b", "a"]);
        Assert.False(ragged.IsRectangular);
        var error = Assert.Throws<InvalidOperationException>(() => ragged.ToTensors());
        Assert.Contains("Padding", error.Message);
    }

    // ---------------------------------------------------------------- decoding

    [Fact]
    public void DecodeMergesPiecesAndCleansUpSpaces()
    {
        var tokenizer = Tiny();
        long[] ids = tokenizer.Encode("unaffable, a's b.");
        Assert.Equal("[CLS] unaffable, a's b. [SEP]", tokenizer.Decode(ids));
        Assert.Equal("unaffable, a's b.", tokenizer.Decode(ids, skipSpecialTokens: true));
        Assert.Equal("[CLS] unaffable , a ' s b . [SEP]", tokenizer.Decode(ids, cleanUpTokenizationSpaces: false));
        Assert.Equal("[UNK]", tokenizer.Decode([999_999]));
    }

    [Fact]
    public void DecodesEncApartFromItsNeighboursButNotDec()
    {
        // [ENC] is an additional special token beyond the base vocabulary, so Hugging Face decodes it as its own
        // string; [DEC] (the BOS token) is joined with the rest, so a following "##" piece glues onto it.
        var tokenizer = Tiny();
        long dec = tokenizer.BosTokenId, enc = tokenizer.EncTokenId;
        Assert.Equal("[DEC]b a", tokenizer.Decode([dec, 11, 10]));
        Assert.Equal("[ENC] ##b a", tokenizer.Decode([enc, 11, 10]));
        Assert.Equal("##b a", tokenizer.Decode([dec, 11, 10], skipSpecialTokens: true));
    }

    [Fact]
    public void BatchDecodesATensor()
    {
        var tokenizer = Tiny();
        using var sequences = tensor(new long[] { tokenizer.BosTokenId, 10, 31, 3, tokenizer.BosTokenId, 3, 0, 0 }, [2, 4]);
        Assert.Equal(["a b", ""], tokenizer.BatchDecode(sequences, skipSpecialTokens: true));
        Assert.Equal(["[DEC] a b [SEP]", "[DEC] [SEP] [PAD] [PAD]"], tokenizer.BatchDecode(sequences));
    }

    // ---------------------------------------------------------------- loading and errors

    [Fact]
    public void MissingVocabularyIsAnErrorNamingThePath()
    {
        var error = Assert.Throws<FileNotFoundException>(() => BlipTokenizer.FromPretrained(_dir));
        Assert.Contains(Path.Combine(_dir, "vocab.txt"), error.Message);
        Assert.Throws<DirectoryNotFoundException>(() => BlipTokenizer.FromPretrained(Path.Combine(_dir, "nope")));
    }

    [Fact]
    public void DuplicateVocabularyEntryIsAnErrorNamingTheLines()
    {
        File.WriteAllText(Path.Combine(_dir, "vocab.txt"), "[PAD]\n[UNK]\nab\ncd\nab\n");
        var error = Assert.Throws<CheckpointFormatException>(() => BlipTokenizer.FromPretrained(_dir));
        Assert.Contains("vocab.txt", error.Message);
        Assert.Contains("line 5", error.Message);
        Assert.Contains("line 3", error.Message);
        Assert.Throws<ArgumentException>(() => BlipTokenizer.Create(["a", "b", "a"]));
        Assert.Throws<ArgumentException>(() => BlipTokenizer.Create([]));
    }

    [Fact]
    public void InvalidUtf8VocabularyIsAnErrorNamingTheLine()
    {
        File.WriteAllBytes(Path.Combine(_dir, "vocab.txt"), [.. "[PAD]\n[UNK]\n"u8, 0xFF, 0xFE, (byte)'\n']);
        var error = Assert.Throws<CheckpointFormatException>(() => BlipTokenizer.FromPretrained(_dir));
        Assert.Contains("line 3", error.Message);
    }

    [Fact]
    public void MalformedConfigIsAnErrorNamingFileAndLine()
    {
        WriteVocab();
        string config = Path.Combine(_dir, "tokenizer_config.json");
        File.WriteAllText(config, "{\n  \"do_lower_case\": true,\n  \"model_max_length\": 512,,\n}");
        var error = Assert.Throws<CheckpointFormatException>(() => BlipTokenizer.FromPretrained(_dir));
        Assert.Contains(config, error.Message);
        Assert.Contains("line 3", error.Message);

        File.WriteAllText(config, "{\"do_lower_case\": \"yes\"}");
        error = Assert.Throws<CheckpointFormatException>(() => BlipTokenizer.FromPretrained(_dir));
        Assert.Contains("do_lower_case", error.Message);

        File.WriteAllText(config, "{\"added_tokens_decoder\": {\"5\": {\"lstrip\": false}}}");
        error = Assert.Throws<CheckpointFormatException>(() => BlipTokenizer.FromPretrained(_dir));
        Assert.Contains("added_tokens_decoder[\"5\"]", error.Message);

        File.WriteAllText(config, "{\"tokenizer_class\": \"GPT2Tokenizer\"}");
        error = Assert.Throws<CheckpointFormatException>(() => BlipTokenizer.FromPretrained(_dir));
        Assert.Contains("GPT2Tokenizer", error.Message);
    }

    [Fact]
    public void ReadsLegacyAddedTokensAndSpecialTokensMap()
    {
        // Files without added_tokens_decoder (transformers before 4.34): ids come from added_tokens.json and the
        // special tokens from special_tokens_map.json.
        WriteVocab();
        File.WriteAllText(Path.Combine(_dir, "added_tokens.json"), "{\"[DEC]\": 7, \"[ENC]\": 8}");
        File.WriteAllText(Path.Combine(_dir, "special_tokens_map.json"),
            "{\"bos_token\": {\"content\": \"[DEC]\", \"normalized\": false}, \"additional_special_tokens\": [\"[ENC]\"], \"unk_token\": \"[UNK]\"}");
        var tokenizer = BlipTokenizer.FromPretrained(_dir);
        Assert.Equal(7, tokenizer.BosTokenId);
        Assert.Equal(8, tokenizer.EncTokenId);
        Assert.Equal(9, tokenizer.VocabSize);
        Assert.Null(tokenizer.ModelMaxLength);
        Assert.Equal(["[DEC]", "a", "[ENC]"], tokenizer.Tokenize("[DEC] A[ENC]"));
        Assert.Equal("a", tokenizer.Decode([7, 5, 8], skipSpecialTokens: true));
    }

    [Fact]
    public void WithoutConfigTakesTheBertDefaults()
    {
        WriteVocab();
        var tokenizer = BlipTokenizer.FromPretrained(_dir);
        Assert.Equal(7, tokenizer.VocabSize);
        Assert.Null(tokenizer.ModelMaxLength);
        Assert.Throws<InvalidOperationException>(() => tokenizer.BosTokenId);
        Assert.Throws<InvalidOperationException>(() => tokenizer.EncTokenId);
        Assert.Equal([2L, 5, 6, 3], tokenizer.Encode("A b"));
    }

    private void WriteVocab() =>
        File.WriteAllText(Path.Combine(_dir, "vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\n", new UTF8Encoding(false));
}
