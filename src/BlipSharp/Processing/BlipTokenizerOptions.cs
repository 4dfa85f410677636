namespace BlipSharp.Processing;

/// <summary>
/// Settings of a <see cref="BlipTokenizer"/>: the <c>tokenizer_config.json</c> fields of a Hugging Face
/// <c>BertTokenizer</c>. The defaults are those of the BLIP checkpoints (<see cref="Default"/>);
/// <see cref="BertDefaults"/> holds the <c>BertTokenizer</c> class defaults, which
/// <see cref="BlipTokenizer.FromPretrained"/> uses for fields a config leaves out.
/// </summary>
public sealed record BlipTokenizerOptions
{
    /// <summary>The BLIP settings: lowercase, 512 tokens, <c>[DEC]</c> as BOS and <c>[ENC]</c> as additional special token.</summary>
    public static BlipTokenizerOptions Default { get; } = new();

    /// <summary>
    /// The Hugging Face <c>BertTokenizer</c> constructor defaults: no model maximum, no BOS token, no additional
    /// special tokens.
    /// </summary>
    public static BlipTokenizerOptions BertDefaults { get; } = new()
    {
        ModelMaxLength = null,
        BosToken = null,
        AdditionalSpecialTokens = [],
    };

    /// <summary>Lowercase the text (<c>do_lower_case</c>).</summary>
    public bool DoLowerCase { get; init; } = true;

    /// <summary>Strip accents by NFD decomposition (<c>strip_accents</c>); null follows <see cref="DoLowerCase"/>.</summary>
    public bool? StripAccents { get; init; }

    /// <summary>Put every CJK ideograph in a word of its own (<c>tokenize_chinese_chars</c>).</summary>
    public bool TokenizeChineseChars { get; init; } = true;

    /// <summary>Run the basic tokenizer (cleanup, lowercasing, punctuation split) before WordPiece (<c>do_basic_tokenize</c>).</summary>
    public bool DoBasicTokenize { get; init; } = true;

    /// <summary>Words the basic tokenizer keeps whole and WordPiece leaves alone (<c>never_split</c>).</summary>
    public IReadOnlyList<string> NeverSplit { get; init; } = [];

    /// <summary>Longest sequence the model accepts (<c>model_max_length</c>); null means unbounded.</summary>
    public int? ModelMaxLength { get; init; } = 512;

    /// <summary>Unknown-word token (<c>unk_token</c>).</summary>
    public string UnkToken { get; init; } = "[UNK]";

    /// <summary>Separator, appended to every encoded text (<c>sep_token</c>).</summary>
    public string? SepToken { get; init; } = "[SEP]";

    /// <summary>Padding token (<c>pad_token</c>).</summary>
    public string? PadToken { get; init; } = "[PAD]";

    /// <summary>Classifier token, prepended to every encoded text (<c>cls_token</c>).</summary>
    public string? ClsToken { get; init; } = "[CLS]";

    /// <summary>Masked-language-modelling token (<c>mask_token</c>).</summary>
    public string? MaskToken { get; init; } = "[MASK]";

    /// <summary>Beginning-of-sequence token (<c>bos_token</c>): BLIP's decoder start token <c>[DEC]</c>.</summary>
    public string? BosToken { get; init; } = "[DEC]";

    /// <summary>End-of-sequence token (<c>eos_token</c>); BLIP has none and ends generation at <c>[SEP]</c>.</summary>
    public string? EosToken { get; init; }

    /// <summary>Further special tokens (<c>additional_special_tokens</c>): BLIP's <c>[ENC]</c>.</summary>
    public IReadOnlyList<string> AdditionalSpecialTokens { get; init; } = ["[ENC]"];

    /// <summary>
    /// Tokens added after the special tokens, in order, as <c>tokenizer.add_tokens(...)</c> does: a token not in
    /// the vocabulary gets the next free id.
    /// </summary>
    public IReadOnlyList<AddedToken> AddedTokens { get; init; } = [];

    /// <summary>Remove the space before punctuation and contractions when decoding (<c>clean_up_tokenization_spaces</c>).</summary>
    public bool CleanUpTokenizationSpaces { get; init; } = true;

    /// <summary>Words longer than this many characters become <see cref="UnkToken"/> (WordPiece's <c>max_input_chars_per_word</c>).</summary>
    public int MaxInputCharsPerWord { get; init; } = 100;

    /// <summary>Side on which padding is added (<c>padding_side</c>).</summary>
    public TokenizerSide PaddingSide { get; init; } = TokenizerSide.Right;

    /// <summary>Side from which tokens are removed by truncation (<c>truncation_side</c>).</summary>
    public TokenizerSide TruncationSide { get; init; } = TokenizerSide.Right;
}
