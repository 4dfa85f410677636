using System.Text;
using static TorchSharp.torch;

namespace BlipSharp.Processing;

/// <summary>
/// The BLIP text tokenizer: a port of Hugging Face's slow Python <c>BertTokenizer</c> (transformers 4.40) with
/// BLIP's extra tokens <c>[DEC]</c> (decoder start, the BOS token) and <c>[ENC]</c>. Token ids, tokens and decoded
/// strings match the Python tokenizer exactly.
/// </summary>
/// <remarks>
/// Tokenizing a text goes through the same stages as in Python:
/// <list type="number">
/// <item>with <see cref="BlipTokenizerOptions.DoLowerCase"/>, everything except special-token literals is lowercased
/// (so <c>[SEP]</c> stays special while <c>[sep]</c> is ordinary text);</item>
/// <item>the text is split around literal added tokens (<c>[CLS]</c>, <c>[SEP]</c>, <c>[PAD]</c>, <c>[MASK]</c>,
/// <c>[UNK]</c>, <c>[DEC]</c>, <c>[ENC]</c>), which are kept whole;</item>
/// <item>every other piece goes through the basic tokenizer (cleanup, CJK splitting, NFC, lowercasing and accent
/// stripping, punctuation split) and then WordPiece.</item>
/// </list>
/// </remarks>
public sealed class BlipTokenizer
{
    /// <summary>BLIP's encoder token, prepended instead of <c>[CLS]</c> for image-grounded text encoding in original BLIP.</summary>
    public const string EncToken = "[ENC]";

    private static readonly string[] CleanUpReplacements =
    [
        " .", ".", " ?", "?", " !", "!", " ,", ",", " ' ", "'", " n't", "n't", " 'm", "'m", " 's", "'s", " 've", "'ve", " 're", "'re",
    ];

    private readonly Dictionary<string, int> _vocab;
    private readonly string[] _idsToTokens;
    private readonly Dictionary<int, AddedToken> _addedDecoder = [];
    private readonly Dictionary<string, int> _addedEncoder = new(StringComparer.Ordinal);
    private readonly List<string> _additionalSpecialTokens;
    private readonly List<string> _allSpecialTokens = [];
    private readonly HashSet<string> _allSpecialTokenSet = new(StringComparer.Ordinal);
    private readonly HashSet<long> _allSpecialIds = [];
    private readonly List<string> _lowercaseExempt = [];
    private readonly HashSet<string> _decodeApartTokens = new(StringComparer.Ordinal);
    private readonly AddedTokenTrie _trie = new();
    private readonly BasicTokenizer? _basic;
    private readonly WordPieceTokenizer _wordPiece;

    private BlipTokenizer(IReadOnlyList<string> vocabulary, BlipTokenizerOptions options, IReadOnlyDictionary<int, AddedToken> addedTokens,
        IReadOnlyDictionary<string, AddedToken> specialTokenDefinitions, string source)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.ModelMaxLength is <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), $"ModelMaxLength must be positive, got {options.ModelMaxLength}");
        if (options.MaxInputCharsPerWord < 0)
            throw new ArgumentOutOfRangeException(nameof(options), $"MaxInputCharsPerWord must not be negative, got {options.MaxInputCharsPerWord}");
        Options = options;

        _vocab = new Dictionary<string, int>(vocabulary.Count, StringComparer.Ordinal);
        _idsToTokens = new string[vocabulary.Count];
        for (int i = 0; i < vocabulary.Count; i++)
        {
            string token = vocabulary[i] ?? throw new ArgumentException($"{source}: vocabulary entry {i} is null", nameof(vocabulary));
            if (!_vocab.TryAdd(token, i))
                throw new ArgumentException($"{source}: duplicate vocabulary entry '{token}' at ids {_vocab[token]} and {i}", nameof(vocabulary));
            _idsToTokens[i] = token;
        }
        if (_vocab.Count == 0) throw new ArgumentException($"{source}: the vocabulary is empty", nameof(vocabulary));

        foreach (var (id, token) in addedTokens)
        {
            if (id < 0) throw new ArgumentException($"{source}: added token '{token.Content}' has a negative id {id}");
            if (token.Content.Length == 0) throw new ArgumentException($"{source}: added token {id} is empty");
            if (_addedEncoder.TryGetValue(token.Content, out int other) && other != id)
                throw new ArgumentException($"{source}: added token '{token.Content}' has two ids, {other} and {id}");
            _addedDecoder[id] = token;
            _addedEncoder[token.Content] = id;
        }

        // The special tokens, in Hugging Face's SPECIAL_TOKENS_ATTRIBUTES order: bos, eos, unk, sep, pad, cls, mask, additional.
        _additionalSpecialTokens = [.. options.AdditionalSpecialTokens];
        var specials = new List<string>();
        foreach (string? token in new[] { options.BosToken, options.EosToken, options.UnkToken, options.SepToken, options.PadToken, options.ClsToken, options.MaskToken }
                     .Concat(_additionalSpecialTokens))
        {
            if (token is null) continue;
            if (token.Length == 0) throw new ArgumentException($"{source}: a special token is the empty string");
            if (!specials.Contains(token)) specials.Add(token);
        }
        _allSpecialTokens.AddRange(specials);

        // PreTrainedTokenizer.__init__: special tokens that are not yet added tokens become added tokens (their vocab id,
        // or the next free id); then the user's added tokens, as tokenizer.add_tokens would.
        AddTokens(specials.Select(s =>
                _addedEncoder.TryGetValue(s, out int id) ? _addedDecoder[id]
                : specialTokenDefinitions.TryGetValue(s, out var definition) ? definition
                : new AddedToken(s) { Special = true, Normalized = false }),
            specialTokens: true);
        AddTokens(options.AddedTokens, specialTokens: false);

        foreach (string s in _allSpecialTokens) _allSpecialTokenSet.Add(s);
        foreach (string s in _allSpecialTokens) _allSpecialIds.Add(ConvertTokenToId(s));

        // Lowercasing skips special tokens and the non-special added tokens that match normalised text.
        _lowercaseExempt.AddRange(_allSpecialTokens);
        _lowercaseExempt.AddRange(_addedDecoder.Values.Where(t => !t.Special && t.IsNormalized).Select(t => t.Content));

        // Decoding: added tokens that are not special tokens, and additional special tokens beyond the base
        // vocabulary ([ENC]), are decoded as separate strings.
        foreach (string content in _addedEncoder.Keys)
        {
            if (!_allSpecialTokenSet.Contains(content)) _decodeApartTokens.Add(content);
        }
        foreach (string s in _additionalSpecialTokens)
        {
            if (ConvertTokenToId(s) >= _vocab.Count) _decodeApartTokens.Add(s);
        }

        foreach (var token in _addedDecoder.Values) _trie.Add(token.Content);
        VocabSize = _vocab.Count + _addedEncoder.Keys.Count(k => !_vocab.ContainsKey(k));

        if (options.DoBasicTokenize)
        {
            _basic = new BasicTokenizer(options.DoLowerCase, options.NeverSplit, options.TokenizeChineseChars, options.StripAccents);
        }
        _wordPiece = new WordPieceTokenizer(_vocab, options.UnkToken, options.MaxInputCharsPerWord);
    }

    /// <summary>
    /// Loads the tokenizer that <c>BlipProcessor.save_pretrained</c> writes: <c>vocab.txt</c> (required),
    /// <c>tokenizer_config.json</c>, <c>added_tokens.json</c> and <c>special_tokens_map.json</c> (each optional).
    /// Fields a config leaves out take the <see cref="BlipTokenizerOptions.BertDefaults"/>.
    /// A Hub repo id instead of a folder is downloaded into the huggingface_hub cache (<see cref="Checkpoints.Hub.HubModel"/>).
    /// </summary>
    /// <param name="pathOrRepoId">A tokenizer folder, or a repo id such as <c>Salesforce/blip-image-captioning-base</c>.</param>
    /// <param name="hub">Hub settings for a repo id; null reads the environment as huggingface_hub does.</param>
    /// <exception cref="DirectoryNotFoundException">The directory does not exist.</exception>
    /// <exception cref="FileNotFoundException">There is no <c>vocab.txt</c>; the message names its path.</exception>
    /// <exception cref="Checkpoints.CheckpointFormatException">A file is malformed; the message names the file and the line or field.</exception>
    /// <exception cref="Checkpoints.Hub.HubException">A repo id could not be downloaded or found in the cache.</exception>
    public static BlipTokenizer FromPretrained(string pathOrRepoId, Checkpoints.Hub.HubOptions? hub = null)
    {
        string directory = Checkpoints.Hub.HubModel.ResolveForLoading(pathOrRepoId, Checkpoints.Hub.HubFileSet.Tokenizer, hub);
        var files = TokenizerFiles.Read(directory);
        try
        {
            return new BlipTokenizer(files.Vocabulary, files.Options, files.AddedTokens, files.SpecialTokenDefinitions, directory);
        }
        catch (ArgumentException e)
        {
            throw new Checkpoints.CheckpointFormatException(e.Message, e);
        }
    }

    /// <summary>
    /// Creates a tokenizer from a vocabulary (the lines of a <c>vocab.txt</c>: a token's id is its index) and
    /// options (BLIP's when null). Special tokens missing from the vocabulary are appended, as Hugging Face does:
    /// with the BLIP defaults, <c>[DEC]</c> and <c>[ENC]</c> get the two ids after the vocabulary.
    /// </summary>
    /// <exception cref="ArgumentException">The vocabulary is empty or has a duplicate entry.</exception>
    public static BlipTokenizer Create(IEnumerable<string> vocabulary, BlipTokenizerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        return new BlipTokenizer(vocabulary.ToList(), options ?? BlipTokenizerOptions.Default,
            new Dictionary<int, AddedToken>(), new Dictionary<string, AddedToken>(), "vocabulary");
    }

    /// <summary>The settings this tokenizer was built with.</summary>
    public BlipTokenizerOptions Options { get; }

    /// <summary>Number of distinct tokens, added tokens included (Python <c>len(tokenizer)</c>): 30524 for BLIP.</summary>
    public int VocabSize { get; }

    /// <summary>Number of entries of <c>vocab.txt</c> (Python <c>tokenizer.vocab_size</c>): 30522 for BLIP.</summary>
    public int BaseVocabSize => _vocab.Count;

    /// <summary>Longest sequence the model accepts (<c>model_max_length</c>), or null when unbounded.</summary>
    public int? ModelMaxLength => Options.ModelMaxLength;

    /// <summary>Id of <c>[PAD]</c> (0).</summary>
    public long PadTokenId => SpecialId(Options.PadToken, "pad_token");

    /// <summary>Id of <c>[UNK]</c> (100).</summary>
    public long UnkTokenId => SpecialId(Options.UnkToken, "unk_token");

    /// <summary>Id of <c>[CLS]</c> (101).</summary>
    public long ClsTokenId => SpecialId(Options.ClsToken, "cls_token");

    /// <summary>Id of <c>[SEP]</c> (102), which also ends BLIP's generated text.</summary>
    public long SepTokenId => SpecialId(Options.SepToken, "sep_token");

    /// <summary>Id of <c>[MASK]</c> (103).</summary>
    public long MaskTokenId => SpecialId(Options.MaskToken, "mask_token");

    /// <summary>Id of the BOS token <c>[DEC]</c> (30522), the start token of BLIP's text decoder.</summary>
    public long BosTokenId => SpecialId(Options.BosToken, "bos_token");

    /// <summary>Id of <c>[ENC]</c> (30523).</summary>
    public long EncTokenId => _addedEncoder.ContainsKey(EncToken) || _vocab.ContainsKey(EncToken)
        ? ConvertTokenToId(EncToken)
        : throw new InvalidOperationException($"this tokenizer has no {EncToken} token");

    /// <summary>The special tokens in Hugging Face order (<c>all_special_tokens</c>): bos, eos, unk, sep, pad, cls, mask, additional.</summary>
    public IReadOnlyList<string> AllSpecialTokens => _allSpecialTokens;

    /// <summary>Ids of <see cref="AllSpecialTokens"/> (<c>all_special_ids</c>), which <c>skipSpecialTokens</c> removes.</summary>
    public IReadOnlySet<long> AllSpecialIds => _allSpecialIds;

    /// <summary>The added tokens by id (<c>added_tokens_decoder</c>): the special tokens and the tokens beyond the vocabulary.</summary>
    public IReadOnlyDictionary<int, AddedToken> AddedTokens => _addedDecoder;

    private long SpecialId(string? token, string name) =>
        token is null ? throw new InvalidOperationException($"this tokenizer has no {name}") : ConvertTokenToId(token);

    // ---------------------------------------------------------------- tokenizing

    /// <summary>
    /// Splits <paramref name="text"/> into tokens (Python <c>tokenizer.tokenize(text)</c>), without <c>[CLS]</c>/<c>[SEP]</c>.
    /// </summary>
    /// <remarks>
    /// Lowercasing happens one character at a time outside special-token literals, as in Python, so a word-final
    /// capital sigma becomes σ (not ς) there too.
    /// </remarks>
    public IReadOnlyList<string> Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (Options.DoLowerCase && Options.DoBasicTokenize) text = LowercaseOutsideExemptTokens(text);

        var pieces = _trie.Split(text);
        for (int i = 0; i < pieces.Count; i++)
        {
            string piece = pieces[i];
            if (!_addedEncoder.TryGetValue(piece, out int id)) continue;
            var token = _addedDecoder[id];
            string? left = i > 0 ? pieces[i - 1] : null;
            string? right = i < pieces.Count - 1 ? pieces[i + 1] : null;
            if (token.RStrip && !string.IsNullOrEmpty(right)) pieces[i + 1] = PythonUnicode.LStrip(right);
            if (token.LStrip && !string.IsNullOrEmpty(left)) pieces[i - 1] = PythonUnicode.RStrip(left);
            if (token.SingleWord && !string.IsNullOrEmpty(left) && left[^1] != ' ')
            {
                pieces[i - 1] += piece;
                pieces[i] = "";
            }
            else if (token.SingleWord && !string.IsNullOrEmpty(right) && right[0] != ' ')
            {
                pieces[i] += right;
                pieces[i + 1] = "";
            }
        }

        var tokens = new List<string>();
        foreach (string piece in pieces)
        {
            if (piece.Length == 0) continue;
            if (_addedEncoder.ContainsKey(piece)) tokens.Add(piece);
            else TokenizeWithoutAddedTokens(piece, tokens);
        }
        return tokens;
    }

    // BertTokenizer._tokenize: the basic tokenizer (special tokens never split), then WordPiece.
    private void TokenizeWithoutAddedTokens(string text, List<string> output)
    {
        if (_basic is null)
        {
            output.AddRange(_wordPiece.Tokenize(text));
            return;
        }
        foreach (string word in _basic.Tokenize(text, _allSpecialTokenSet))
        {
            if (_basic.NeverSplit.Contains(word)) output.Add(word);
            else _wordPiece.TokenizeWord(word, output);
        }
    }

    // re.sub("(special|...)|(.+?)", keep special, lowercase the rest) of PreTrainedTokenizer.tokenize.
    private string LowercaseOutsideExemptTokens(string text)
    {
        var sb = new StringBuilder(text.Length);
        int i = 0;
        while (i < text.Length)
        {
            string? exempt = null;
            foreach (string token in _lowercaseExempt)
            {
                if (text.AsSpan(i).StartsWith(token, StringComparison.Ordinal))
                {
                    exempt = token;
                    break;
                }
            }
            if (exempt is not null)
            {
                sb.Append(exempt);
                i += exempt.Length;
                continue;
            }
            int cp = PythonUnicode.CodePointAt(text, i, out int len);
            PythonUnicode.AppendLower(sb, cp);
            i += len;
        }
        return sb.ToString();
    }

    // ---------------------------------------------------------------- ids

    /// <summary>The id of a token: an added token's id, else its vocabulary id, else the id of <c>[UNK]</c>.</summary>
    public long ConvertTokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (_addedEncoder.TryGetValue(token, out int added)) return added;
        if (_vocab.TryGetValue(token, out int id)) return id;
        if (_addedEncoder.TryGetValue(Options.UnkToken, out int unkAdded)) return unkAdded;
        if (_vocab.TryGetValue(Options.UnkToken, out int unk)) return unk;
        throw new InvalidOperationException($"token '{token}' is not in the vocabulary and the unknown token '{Options.UnkToken}' is not either");
    }

    /// <summary>The ids of <paramref name="tokens"/> (Python <c>convert_tokens_to_ids</c>).</summary>
    public long[] ConvertTokensToIds(IEnumerable<string> tokens) => tokens.Select(ConvertTokenToId).ToArray();

    /// <summary>The token of an id: an added token's text, else the vocabulary entry, else <c>[UNK]</c>.</summary>
    public string ConvertIdToToken(long id)
    {
        if (id is >= 0 and <= int.MaxValue)
        {
            if (_addedDecoder.TryGetValue((int)id, out var added)) return added.Content;
            if (id < _idsToTokens.Length) return _idsToTokens[id];
        }
        return Options.UnkToken;
    }

    /// <summary>The tokens of <paramref name="ids"/>, leaving out special tokens when <paramref name="skipSpecialTokens"/>.</summary>
    public IReadOnlyList<string> ConvertIdsToTokens(IEnumerable<long> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var tokens = new List<string>();
        foreach (long id in ids)
        {
            if (skipSpecialTokens && _allSpecialIds.Contains(id)) continue;
            tokens.Add(ConvertIdToToken(id));
        }
        return tokens;
    }

    // ---------------------------------------------------------------- encoding

    /// <summary>
    /// The token ids of one text (Python <c>tokenizer(text)["input_ids"]</c>): <c>[CLS] ... [SEP]</c> when
    /// <paramref name="addSpecialTokens"/>, no truncation, no padding.
    /// </summary>
    public long[] Encode(string text, bool addSpecialTokens = true) =>
        Encode(text, TokenizerEncodeOptions.Default with { AddSpecialTokens = addSpecialTokens }).InputIds[0];

    /// <summary>One text, encoded with <paramref name="options"/> (Python <c>tokenizer(text, **kwargs)</c>), as a batch of one row.</summary>
    public TokenizedBatch Encode(string text, TokenizerEncodeOptions options)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Encode([text], options);
    }

    /// <summary>
    /// A batch of texts (Python <c>tokenizer(texts, **kwargs)</c>). With the default options rows are not padded;
    /// use <see cref="PaddingStrategy.Longest"/> for a rectangular batch, as BLIP's processor does.
    /// </summary>
    public TokenizedBatch Encode(IReadOnlyList<string> texts, TokenizerEncodeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(texts);
        options ??= TokenizerEncodeOptions.Default;
        if (options.MaxLength is <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), $"MaxLength must be positive, got {options.MaxLength}");

        // PreTrainedTokenizerBase._get_padding_truncation_strategies.
        var padding = options.Padding;
        int? maxLength = options.MaxLength;
        bool truncate = options.Truncation ?? (maxLength is not null && padding == PaddingStrategy.None);
        if (maxLength is null)
        {
            if (padding == PaddingStrategy.MaxLength)
            {
                if (ModelMaxLength is null) padding = PaddingStrategy.None;
                else maxLength = ModelMaxLength;
            }
            if (truncate)
            {
                if (ModelMaxLength is null) truncate = false;
                else maxLength = ModelMaxLength;
            }
        }
        if (padding != PaddingStrategy.None && Options.PadToken is null)
            throw new InvalidOperationException("padding was requested but this tokenizer has no pad token");

        var rows = new long[texts.Count][];
        for (int b = 0; b < texts.Count; b++)
        {
            string text = texts[b] ?? throw new ArgumentException($"text {b} is null", nameof(texts));
            rows[b] = PrepareForModel(ConvertTokensToIds(Tokenize(text)), options.AddSpecialTokens, truncate ? maxLength : null);
        }

        int target = padding switch
        {
            PaddingStrategy.Longest => rows.Length == 0 ? 0 : rows.Max(r => r.Length),
            PaddingStrategy.MaxLength => maxLength!.Value,
            _ => 0,
        };
        long pad = padding == PaddingStrategy.None ? 0 : PadTokenId;
        var inputIds = new long[rows.Length][];
        var attentionMask = new long[rows.Length][];
        for (int b = 0; b < rows.Length; b++)
        {
            var ids = rows[b];
            int missing = padding == PaddingStrategy.None ? 0 : Math.Max(0, target - ids.Length);
            var paddedIds = new long[ids.Length + missing];
            var mask = new long[ids.Length + missing];
            int offset = Options.PaddingSide == TokenizerSide.Left ? missing : 0;
            int padOffset = Options.PaddingSide == TokenizerSide.Left ? 0 : ids.Length;
            ids.CopyTo(paddedIds, offset);
            mask.AsSpan(offset, ids.Length).Fill(1);
            paddedIds.AsSpan(padOffset, missing).Fill(pad);
            inputIds[b] = paddedIds;
            attentionMask[b] = mask;
        }
        return new TokenizedBatch(inputIds, attentionMask);
    }

    /// <summary>
    /// Like <see cref="Encode(IReadOnlyList{string}, TokenizerEncodeOptions?)"/>, returning int64 tensors
    /// <c>(B, T)</c> on <paramref name="device"/>. The options must pad (the default here is
    /// <see cref="PaddingStrategy.Longest"/>).
    /// </summary>
    public TokenizedTensors EncodeToTensors(IReadOnlyList<string> texts, TokenizerEncodeOptions? options = null, Device? device = null) =>
        Encode(texts, options ?? new TokenizerEncodeOptions { Padding = PaddingStrategy.Longest }).ToTensors(device);

    // PreTrainedTokenizerBase.prepare_for_model for one sequence: truncate, then add [CLS] ... [SEP].
    private long[] PrepareForModel(long[] ids, bool addSpecialTokens, int? truncateTo)
    {
        int specialCount = addSpecialTokens ? 2 : 0;
        int total = ids.Length + specialCount;
        if (truncateTo is { } max && total > max)
        {
            int remove = total - max;
            // As in Python, a sequence too short to lose that many tokens is left whole (HF logs an error).
            if (ids.Length > remove)
            {
                ids = Options.TruncationSide == TokenizerSide.Left ? ids[remove..] : ids[..^remove];
            }
        }
        if (!addSpecialTokens) return ids;
        var result = new long[ids.Length + 2];
        result[0] = ClsTokenId;
        ids.CopyTo(result, 1);
        result[^1] = SepTokenId;
        return result;
    }

    // ---------------------------------------------------------------- decoding

    /// <summary>
    /// Joins WordPiece tokens into text (Python <c>convert_tokens_to_string</c>): join with spaces, glue <c>##</c>
    /// continuations to the previous piece, strip.
    /// </summary>
    public string ConvertTokensToString(IEnumerable<string> tokens) =>
        PythonUnicode.Strip(string.Join(' ', tokens).Replace(" ##", "", StringComparison.Ordinal));

    /// <summary>
    /// Turns ids back into text (Python <c>tokenizer.decode</c>). Special tokens are dropped when
    /// <paramref name="skipSpecialTokens"/>; with <paramref name="cleanUpTokenizationSpaces"/> (the tokenizer's
    /// setting when null, true for BLIP) the spaces before <c>. ? ! ,</c> and in contractions are removed.
    /// </summary>
    public string Decode(IEnumerable<long> ids, bool skipSpecialTokens = false, bool? cleanUpTokenizationSpaces = null)
    {
        var tokens = ConvertIdsToTokens(ids, skipSpecialTokens);

        // Added tokens outside the special set, and [ENC], are decoded apart from their neighbours.
        var subTexts = new List<string>();
        var current = new List<string>();
        foreach (string token in tokens)
        {
            if (_decodeApartTokens.Contains(token))
            {
                if (current.Count > 0)
                {
                    string joined = ConvertTokensToString(current);
                    if (joined.Length > 0) subTexts.Add(joined);
                    current.Clear();
                }
                subTexts.Add(token);
            }
            else
            {
                current.Add(token);
            }
        }
        if (current.Count > 0) subTexts.Add(ConvertTokensToString(current));

        string text = string.Join(' ', subTexts);
        return cleanUpTokenizationSpaces ?? Options.CleanUpTokenizationSpaces ? CleanUpTokenization(text) : text;
    }

    /// <summary>Decodes each row of <paramref name="sequences"/> (Python <c>batch_decode</c>).</summary>
    public IReadOnlyList<string> BatchDecode(IEnumerable<IEnumerable<long>> sequences, bool skipSpecialTokens = false) =>
        sequences.Select(s => Decode(s, skipSpecialTokens)).ToList();

    /// <summary>Decodes each row of an integer tensor <c>(B, T)</c>, such as generated sequences.</summary>
    public IReadOnlyList<string> BatchDecode(Tensor sequences, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        if (sequences.dim() != 2) throw new ArgumentException($"expected a (B, T) tensor, got shape [{string.Join(", ", sequences.shape)}]", nameof(sequences));
        using var cpu = sequences.to_type(ScalarType.Int64).cpu();
        long rows = cpu.shape[0], length = cpu.shape[1];
        var flat = cpu.data<long>().ToArray();
        var result = new List<string>((int)rows);
        for (long b = 0; b < rows; b++) result.Add(Decode(new ArraySegment<long>(flat, (int)(b * length), (int)length), skipSpecialTokens));
        return result;
    }

    /// <summary>Python <c>clean_up_tokenization</c>: removes the space before punctuation and English contractions.</summary>
    public static string CleanUpTokenization(string text)
    {
        for (int i = 0; i < CleanUpReplacements.Length; i += 2)
        {
            text = text.Replace(CleanUpReplacements[i], CleanUpReplacements[i + 1], StringComparison.Ordinal);
        }
        return text;
    }

    // ---------------------------------------------------------------- construction helpers

    // PreTrainedTokenizer._add_tokens.
    private void AddTokens(IEnumerable<AddedToken> tokens, bool specialTokens)
    {
        var currentVocab = new Dictionary<string, int>(_vocab, StringComparer.Ordinal);
        foreach (var (content, id) in _addedEncoder) currentVocab[content] = id;
        int nextId = currentVocab.Count;
        int added = 0;
        foreach (var original in tokens)
        {
            var token = original;
            if (token.Content.Length == 0) continue;
            if (specialTokens) token = token with { Special = true };
            if (!token.Special && token.IsNormalized && Options.DoLowerCase && Options.DoBasicTokenize)
                token = token with { Content = PythonUnicode.Lower(token.Content) };
            if (!currentVocab.TryGetValue(token.Content, out int id))
            {
                id = nextId + added;
                currentVocab[token.Content] = id;
                added++;
            }
            if (token.Special && !_allSpecialTokens.Contains(token.Content))
            {
                _additionalSpecialTokens.Add(token.Content);
                _allSpecialTokens.Add(token.Content);
            }
            _addedDecoder[id] = token;
            _addedEncoder[token.Content] = id;
        }
    }
}
