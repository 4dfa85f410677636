using System.Text;
using System.Text.Json;
using BlipSharp.Checkpoints;

namespace BlipSharp.Processing;

/// <summary>
/// Reads the files of a saved Hugging Face <c>BertTokenizer</c> the way <c>from_pretrained</c> (transformers 4.40)
/// does. When <c>tokenizer_config.json</c> has <c>added_tokens_decoder</c> (files written by 4.34 and later), it
/// defines the added tokens and <c>added_tokens.json</c>/<c>special_tokens_map.json</c> are only checked for
/// well-formedness; otherwise (older files) <c>special_tokens_map.json</c> overrides the special tokens and
/// <c>added_tokens.json</c> gives the added tokens' ids.
/// </summary>
internal static class TokenizerFiles
{
    public const string VocabFile = "vocab.txt";
    public const string ConfigFile = "tokenizer_config.json";
    public const string AddedTokensFile = "added_tokens.json";
    public const string SpecialTokensMapFile = "special_tokens_map.json";

    private static readonly string[] SpecialTokenKeys = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

    /// <summary>What a tokenizer folder holds.</summary>
    internal sealed record Contents(
        string VocabPath,
        IReadOnlyList<string> Vocabulary,
        BlipTokenizerOptions Options,
        IReadOnlyDictionary<int, AddedToken> AddedTokens,
        IReadOnlyDictionary<string, AddedToken> SpecialTokenDefinitions);

    public static Contents Read(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException($"tokenizer folder not found: {Path.GetFullPath(directory)}");
        string vocabPath = Path.Combine(directory, VocabFile);
        if (!File.Exists(vocabPath))
            throw new FileNotFoundException($"tokenizer vocabulary not found: {vocabPath} (a WordPiece {VocabFile} is required)", vocabPath);
        var vocabulary = ReadVocabulary(vocabPath);

        using var config = ReadJsonObject(directory, ConfigFile);
        using var addedTokensJson = ReadJsonObject(directory, AddedTokensFile);
        using var specialTokensMap = ReadJsonObject(directory, SpecialTokensMapFile);

        var options = BlipTokenizerOptions.BertDefaults;
        var specialValues = new Dictionary<string, AddedToken?>(StringComparer.Ordinal);
        var additional = new List<AddedToken>();
        var added = new Dictionary<int, AddedToken>();
        bool hasDecoder = false;

        if (config is not null)
        {
            var root = config.Document.RootElement;
            var file = config.Path;
            if (String(root, "tokenizer_class", file) is { } cls && !cls.StartsWith("Bert", StringComparison.Ordinal))
                throw new CheckpointFormatException($"{file}: tokenizer_class '{cls}' is not a BERT WordPiece tokenizer");
            options = options with
            {
                DoLowerCase = Bool(root, "do_lower_case", file) ?? options.DoLowerCase,
                StripAccents = root.TryGetProperty("strip_accents", out _) ? Bool(root, "strip_accents", file) : options.StripAccents,
                TokenizeChineseChars = Bool(root, "tokenize_chinese_chars", file) ?? options.TokenizeChineseChars,
                DoBasicTokenize = Bool(root, "do_basic_tokenize", file) ?? options.DoBasicTokenize,
                NeverSplit = StringList(root, "never_split", file) ?? options.NeverSplit,
                ModelMaxLength = root.TryGetProperty("model_max_length", out _) ? MaxLength(root, file) : options.ModelMaxLength,
                CleanUpTokenizationSpaces = Bool(root, "clean_up_tokenization_spaces", file) ?? options.CleanUpTokenizationSpaces,
                PaddingSide = Side(root, "padding_side", file) ?? options.PaddingSide,
                TruncationSide = Side(root, "truncation_side", file) ?? options.TruncationSide,
            };
            foreach (string key in SpecialTokenKeys)
            {
                if (root.TryGetProperty(key, out var value)) specialValues[key] = Token(value, key, file, special: true);
            }
            if (root.TryGetProperty("additional_special_tokens", out var list)) additional = TokenList(list, "additional_special_tokens", file);
            if (root.TryGetProperty("added_tokens_decoder", out var decoder))
            {
                hasDecoder = true;
                ReadAddedTokensDecoder(decoder, file, added);
            }
        }

        if (!hasDecoder)
        {
            // Legacy files: special_tokens_map.json overrides the config's special tokens, added_tokens.json gives ids.
            if (specialTokensMap is not null)
            {
                var root = specialTokensMap.Document.RootElement;
                foreach (string key in SpecialTokenKeys)
                {
                    if (root.TryGetProperty(key, out var value)) specialValues[key] = Token(value, key, specialTokensMap.Path, special: true);
                }
                if (root.TryGetProperty("additional_special_tokens", out var list))
                {
                    foreach (var token in TokenList(list, "additional_special_tokens", specialTokensMap.Path))
                    {
                        if (!additional.Any(t => t.Content == token.Content)) additional.Add(token);
                    }
                }
            }
            if (addedTokensJson is not null)
            {
                var specialContents = specialValues.Values.Where(t => t is not null).Select(t => t!.Content).Concat(additional.Select(t => t.Content)).ToHashSet();
                foreach (var property in addedTokensJson.Document.RootElement.EnumerateObject())
                {
                    if (property.Value.ValueKind != JsonValueKind.Number || !property.Value.TryGetInt32(out int id) || id < 0)
                        throw new CheckpointFormatException($"{addedTokensJson.Path}: the id of '{property.Name}' must be a non-negative integer, found {property.Value.GetRawText()}");
                    bool special = specialContents.Contains(property.Name);
                    added[id] = new AddedToken(property.Name) { Special = special, Normalized = !special };
                }
            }
        }
        else
        {
            // Read for well-formedness only, as Hugging Face ignores them here.
            if (addedTokensJson is not null)
            {
                foreach (var property in addedTokensJson.Document.RootElement.EnumerateObject())
                {
                    if (property.Value.ValueKind != JsonValueKind.Number || !property.Value.TryGetInt32(out _))
                        throw new CheckpointFormatException($"{addedTokensJson.Path}: the id of '{property.Name}' must be an integer, found {property.Value.GetRawText()}");
                }
            }
        }

        var definitions = new Dictionary<string, AddedToken>(StringComparer.Ordinal);
        foreach (var token in specialValues.Values.Concat(additional))
        {
            if (token is not null) definitions[token.Content] = token;
        }
        string? Special(string key, string? fallback) => specialValues.TryGetValue(key, out var t) ? t?.Content : fallback;
        string? unk = Special("unk_token", options.UnkToken);
        if (unk is null) throw new CheckpointFormatException($"{config?.Path ?? specialTokensMap?.Path}: unk_token must not be null");
        options = options with
        {
            BosToken = Special("bos_token", options.BosToken),
            EosToken = Special("eos_token", options.EosToken),
            UnkToken = unk,
            SepToken = Special("sep_token", options.SepToken),
            PadToken = Special("pad_token", options.PadToken),
            ClsToken = Special("cls_token", options.ClsToken),
            MaskToken = Special("mask_token", options.MaskToken),
            AdditionalSpecialTokens = additional.Select(t => t.Content).ToList(),
        };
        return new Contents(vocabPath, vocabulary, options, added, definitions);
    }

    /// <summary>
    /// Reads <c>vocab.txt</c> as Python's <c>load_vocab</c> does: UTF-8, one token per line (universal newlines),
    /// the line index is the id. A duplicate entry is an error here (Python would silently keep the later id).
    /// </summary>
    public static List<string> ReadVocabulary(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        string text;
        try
        {
            text = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            int line = 1 + (e.Index >= 0 ? bytes.AsSpan(0, Math.Min(e.Index, bytes.Length)).Count((byte)'\n') : 0);
            throw new CheckpointFormatException($"{path}: line {line} is not valid UTF-8", e);
        }
        var tokens = new List<string>();
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        int start = 0;
        while (start < text.Length)
        {
            int end = text.AsSpan(start).IndexOfAny('\r', '\n');
            string token = end < 0 ? text[start..] : text.Substring(start, end);
            int next = end < 0 ? text.Length : start + end + (text[start + end] == '\r' && start + end + 1 < text.Length && text[start + end + 1] == '\n' ? 2 : 1);
            if (seen.TryGetValue(token, out int first))
                throw new CheckpointFormatException($"{path}: line {tokens.Count + 1} repeats the token '{token}' of line {first + 1}");
            seen[token] = tokens.Count;
            tokens.Add(token);
            start = next;
        }
        if (tokens.Count == 0) throw new CheckpointFormatException($"{path}: the vocabulary is empty");
        return tokens;
    }

    private sealed class JsonFile(string path, JsonDocument document) : IDisposable
    {
        public string Path { get; } = path;
        public JsonDocument Document { get; } = document;
        public void Dispose() => Document.Dispose();
    }

    private static JsonFile? ReadJsonObject(string directory, string name)
    {
        string path = Path.Combine(directory, name);
        if (!File.Exists(path)) return null;
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(
                $"{path}: malformed JSON at line {(e.LineNumber ?? 0) + 1}, byte {(e.BytePositionInLine ?? 0) + 1}: {e.Message}", e);
        }
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            var kind = document.RootElement.ValueKind;
            document.Dispose();
            throw new CheckpointFormatException($"{path}: expected a JSON object at the top level, found {kind}");
        }
        return new JsonFile(path, document);
    }

    private static void ReadAddedTokensDecoder(JsonElement decoder, string file, Dictionary<int, AddedToken> added)
    {
        if (decoder.ValueKind != JsonValueKind.Object)
            throw new CheckpointFormatException($"{file}: added_tokens_decoder must be an object of id -> token, found {decoder.ValueKind}");
        foreach (var entry in decoder.EnumerateObject())
        {
            if (!int.TryParse(entry.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id))
                throw new CheckpointFormatException($"{file}: added_tokens_decoder key '{entry.Name}' is not a token id");
            string field = $"added_tokens_decoder[\"{entry.Name}\"]";
            if (entry.Value.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException($"{file}: {field} must be an object with a 'content' field, found {entry.Value.ValueKind}");
            added[id] = Token(entry.Value, field, file, special: false)!;
        }
    }

    // A token value: "text", {"content": "text", "lstrip": ..., ...} or null.
    private static AddedToken? Token(JsonElement value, string field, string file, bool special)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Null:
                return null;
            case JsonValueKind.String:
                return new AddedToken(value.GetString()!) { Special = special, Normalized = !special };
            case JsonValueKind.Object:
                string? content = null;
                var token = new AddedToken("") { Special = special };
                foreach (var p in value.EnumerateObject())
                {
                    string name = $"{field}.{p.Name}";
                    switch (p.Name)
                    {
                        case "content":
                            content = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()
                                : throw new CheckpointFormatException($"{file}: {name} must be a string, found {p.Value.ValueKind}");
                            break;
                        case "lstrip": token = token with { LStrip = BoolValue(p.Value, name, file) }; break;
                        case "rstrip": token = token with { RStrip = BoolValue(p.Value, name, file) }; break;
                        case "single_word": token = token with { SingleWord = BoolValue(p.Value, name, file) }; break;
                        case "special": token = token with { Special = BoolValue(p.Value, name, file) }; break;
                        case "normalized":
                            token = token with { Normalized = p.Value.ValueKind == JsonValueKind.Null ? null : BoolValue(p.Value, name, file) };
                            break;
                        case "__type":
                            break;
                        default:
                            throw new CheckpointFormatException($"{file}: {name} is not a field of an added token");
                    }
                }
                if (string.IsNullOrEmpty(content)) throw new CheckpointFormatException($"{file}: {field} has no 'content'");
                return token with { Content = content };
            default:
                throw new CheckpointFormatException($"{file}: {field} must be a string, a token object or null, found {value.ValueKind}");
        }
    }

    private static List<AddedToken> TokenList(JsonElement value, string field, string file)
    {
        if (value.ValueKind == JsonValueKind.Null) return [];
        if (value.ValueKind != JsonValueKind.Array)
            throw new CheckpointFormatException($"{file}: {field} must be a list, found {value.ValueKind}");
        var tokens = new List<AddedToken>();
        int i = 0;
        foreach (var item in value.EnumerateArray())
        {
            var token = Token(item, $"{field}[{i++}]", file, special: true)
                ?? throw new CheckpointFormatException($"{file}: {field}[{i - 1}] is null");
            if (!tokens.Any(t => t.Content == token.Content)) tokens.Add(token);
        }
        return tokens;
    }

    private static bool BoolValue(JsonElement value, string field, string file) => value.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw new CheckpointFormatException($"{file}: {field} must be true or false, found {value.GetRawText()}"),
    };

    private static bool? Bool(JsonElement root, string field, string file) =>
        root.TryGetProperty(field, out var value) && value.ValueKind != JsonValueKind.Null ? BoolValue(value, field, file) : null;

    private static string? String(JsonElement root, string field, string file)
    {
        if (!root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind == JsonValueKind.String ? value.GetString()
            : throw new CheckpointFormatException($"{file}: {field} must be a string, found {value.GetRawText()}");
    }

    private static List<string>? StringList(JsonElement root, string field, string file)
    {
        if (!root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Array)
            throw new CheckpointFormatException($"{file}: {field} must be a list of strings, found {value.ValueKind}");
        return value.EnumerateArray().Select((item, i) => item.ValueKind == JsonValueKind.String ? item.GetString()!
            : throw new CheckpointFormatException($"{file}: {field}[{i}] must be a string, found {item.GetRawText()}")).ToList();
    }

    // model_max_length: a positive integer; Hugging Face writes a huge number (int(1e30)) for "no limit".
    private static int? MaxLength(JsonElement root, string file)
    {
        var value = root.GetProperty("model_max_length");
        if (value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double d) || d != Math.Floor(d) || d <= 0)
            throw new CheckpointFormatException($"{file}: model_max_length must be a positive integer, found {value.GetRawText()}");
        return d > int.MaxValue ? null : (int)d;
    }

    private static TokenizerSide? Side(JsonElement root, string field, string file) => String(root, field, file) switch
    {
        null => null,
        "right" => TokenizerSide.Right,
        "left" => TokenizerSide.Left,
        var other => throw new CheckpointFormatException($"{file}: {field} must be \"right\" or \"left\", found \"{other}\""),
    };
}
