using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using BlipSharp.Processing;
using BlipSharp.Tests.TestSupport;
using Xunit;

namespace BlipSharp.Tests.Processing;

/// <summary>
/// Parity with Hugging Face's slow <c>BertTokenizer</c>: every entry of <c>tokenizer_cases.json</c> and every
/// tokenized or decoded text recorded in a model folder's <c>cases.json</c>.
/// </summary>
[Trait("Category", "Parity")]
public sealed class TokenizerTests
{
    private static readonly Lazy<JsonDocument> TokenizerCases = new(() =>
        JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Fixtures.HfBlipDir, "tokenizer_cases.json"))));

    private static readonly Lazy<BlipTokenizer> CaseTokenizer = new(LoadCaseTokenizer);

    /// <summary>xunit member data: the index of every entry of tokenizer_cases.json.</summary>
    public static IEnumerable<object[]> TokenizerCaseIndices()
    {
        int count = TokenizerCases.Value.RootElement.GetProperty("cases").GetArrayLength();
        if (count == 0) throw new InvalidOperationException($"no cases in {Fixtures.HfBlipDir}/tokenizer_cases.json");
        return Enumerable.Range(0, count).Select(i => new object[] { i });
    }

    // tokenizer_cases.json names the vocabulary it was made with; use the model folder whose vocab.txt is that one.
    private static BlipTokenizer LoadCaseTokenizer()
    {
        var dirs = Fixtures.HfModelDirs().ToList();
        if (dirs.Count == 0) throw new InvalidOperationException($"no model folders in {Fixtures.HfBlipDir}");
        string? sha = TokenizerCases.Value.RootElement.TryGetProperty("vocab_sha256", out var s) ? s.GetString() : null;
        string dir = sha is null
            ? dirs[0]
            : dirs.FirstOrDefault(d => Sha256(Path.Combine(d, "vocab.txt")) == sha)
              ?? throw new InvalidOperationException($"no model folder in {Fixtures.HfBlipDir} has the vocab.txt with sha256 {sha}");
        return BlipTokenizer.FromPretrained(dir);
    }

    private static string Sha256(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));

    [Theory]
    [MemberData(nameof(TokenizerCaseIndices))]
    public void MatchesHuggingFaceTokenizerCase(int index)
    {
        var tokenizer = CaseTokenizer.Value;
        var entry = TokenizerCases.Value.RootElement.GetProperty("cases")[index];
        string call = entry.GetProperty("call").GetString()!;
        var (options, isBatchCall) = ParseCall(call);
        var text = entry.GetProperty("text");
        string context = $"case {index}: {call} on {text.GetRawText()}";

        if (text.ValueKind == JsonValueKind.String)
        {
            Assert.False(isBatchCall, $"{context}: a single text with a list call");
            string s = text.GetString()!;
            var batch = tokenizer.Encode(s, options);
            AssertEqual(Longs(entry.GetProperty("input_ids")), batch.InputIds[0], $"{context}: input_ids");
            AssertEqual(Longs(entry.GetProperty("attention_mask")), batch.AttentionMask[0], $"{context}: attention_mask");
            if (entry.TryGetProperty("tokens", out var tokens))
                Assert.Equal(Strings(tokens), tokenizer.Tokenize(s));
            if (entry.TryGetProperty("decode", out var decode))
                Assert.Equal(decode.GetString(), tokenizer.Decode(batch.InputIds[0]));
            if (entry.TryGetProperty("decode_skip_special", out var skip))
                Assert.Equal(skip.GetString(), tokenizer.Decode(batch.InputIds[0], skipSpecialTokens: true));
        }
        else
        {
            var texts = Strings(text);
            var batch = tokenizer.Encode(texts, options);
            var expectedIds = entry.GetProperty("input_ids").EnumerateArray().Select(Longs).ToList();
            var expectedMask = entry.GetProperty("attention_mask").EnumerateArray().Select(Longs).ToList();
            Assert.Equal(expectedIds.Count, batch.Count);
            for (int b = 0; b < texts.Count; b++)
            {
                AssertEqual(expectedIds[b], batch.InputIds[b], $"{context}: input_ids[{b}]");
                AssertEqual(expectedMask[b], batch.AttentionMask[b], $"{context}: attention_mask[{b}]");
            }
            if (entry.TryGetProperty("tokens", out var tokens))
            {
                var expected = tokens.EnumerateArray().Select(Strings).ToList();
                for (int b = 0; b < texts.Count; b++) Assert.Equal(expected[b], tokenizer.Tokenize(texts[b]));
            }
            if (entry.TryGetProperty("decode", out var decode))
                Assert.Equal(Strings(decode), tokenizer.BatchDecode(batch.InputIds));
            if (entry.TryGetProperty("decode_skip_special", out var skip))
                Assert.Equal(Strings(skip), tokenizer.BatchDecode(batch.InputIds, skipSpecialTokens: true));
        }
    }

    [Theory]
    [MemberData(nameof(Fixtures.HfModelNames), MemberType = typeof(Fixtures))]
    public void ReproducesModelFixtureTokenization(string model)
    {
        string dir = Fixtures.HfModelDir(model);
        var tokenizer = BlipTokenizer.FromPretrained(dir);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "cases.json")));
        var root = doc.RootElement;
        int checks = 0;

        // The tokenizer covers the text embedding table: text_config.vocab_size, or BlipTextConfig's default 30524.
        using (var config = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "config.json"))))
        {
            int expectedVocab = config.RootElement.TryGetProperty("text_config", out var textConfig)
                && textConfig.TryGetProperty("vocab_size", out var vocabSize) ? vocabSize.GetInt32() : 30524;
            Assert.Equal(expectedVocab, tokenizer.VocabSize);
        }

        if (root.TryGetProperty("special_ids", out var specialIds))
        {
            foreach (var p in specialIds.EnumerateObject())
            {
                Assert.Equal(p.Value.GetInt64(), tokenizer.ConvertTokenToId(p.Name));
                Assert.Equal(p.Name, tokenizer.ConvertIdToToken(p.Value.GetInt64()));
                checks++;
            }
            AssertSpecialProperty(specialIds, "[PAD]", tokenizer.PadTokenId);
            AssertSpecialProperty(specialIds, "[UNK]", tokenizer.UnkTokenId);
            AssertSpecialProperty(specialIds, "[CLS]", tokenizer.ClsTokenId);
            AssertSpecialProperty(specialIds, "[SEP]", tokenizer.SepTokenId);
            AssertSpecialProperty(specialIds, "[MASK]", tokenizer.MaskTokenId);
            AssertSpecialProperty(specialIds, "[DEC]", tokenizer.BosTokenId);
            AssertSpecialProperty(specialIds, "[ENC]", tokenizer.EncTokenId);
        }

        foreach (var (path, node) in Objects(root.GetProperty("cases"), "cases"))
        {
            // Processor output for a list of texts (captions, questions, ITM/ITC texts): padding="longest".
            if (node.TryGetProperty("texts", out var texts) && node.TryGetProperty("input_ids", out var ids))
            {
                var batch = tokenizer.Encode(Strings(texts), new TokenizerEncodeOptions { Padding = PaddingStrategy.Longest });
                AssertBatch(ids, node.TryGetProperty("attention_mask", out var m) ? m : null, batch, $"{model}/{path}");
                checks++;
            }
            // VQA answers go through the same tokenizer call; the loss labels are its ids.
            if (node.TryGetProperty("answers", out var answers) && node.TryGetProperty("labels", out var labels))
            {
                var batch = tokenizer.Encode(Strings(answers), new TokenizerEncodeOptions { Padding = PaddingStrategy.Longest });
                AssertBatch(labels, null, batch, $"{model}/{path} (answers)");
                checks++;
            }
            // Captioning prompt: the processor's ids for the prompt text, one row per image.
            if (node.TryGetProperty("prompt", out var prompt) && prompt.ValueKind == JsonValueKind.String
                && node.TryGetProperty("prompt_input_ids_from_processor", out var promptIds))
            {
                int rows = promptIds.GetArrayLength();
                var batch = tokenizer.Encode(Enumerable.Repeat(prompt.GetString()!, rows).ToList(),
                    new TokenizerEncodeOptions { Padding = PaddingStrategy.Longest });
                AssertBatch(promptIds, node.TryGetProperty("prompt_attention_mask_from_processor", out var pm) ? pm : null, batch, $"{model}/{path} (prompt)");
                checks++;
            }
            // Generated sequences and their decoded text.
            if (node.TryGetProperty("sequences", out var sequences) && node.TryGetProperty("decoded", out var decoded))
            {
                var rows = sequences.EnumerateArray().Select(Longs).ToList();
                Assert.Equal(Strings(decoded), tokenizer.BatchDecode(rows));
                if (node.TryGetProperty("decoded_skip_special", out var skip))
                    Assert.Equal(Strings(skip), tokenizer.BatchDecode(rows, skipSpecialTokens: true));
                checks++;
            }
        }
        Assert.True(checks > 0, $"{dir}/cases.json has no tokenizer results to compare");
    }

    private static void AssertSpecialProperty(JsonElement specialIds, string token, long actual)
    {
        if (specialIds.TryGetProperty(token, out var id)) Assert.Equal(id.GetInt64(), actual);
    }

    private static void AssertBatch(JsonElement ids, JsonElement? mask, TokenizedBatch batch, string context)
    {
        var expectedIds = ids.EnumerateArray().Select(Longs).ToList();
        Assert.Equal(expectedIds.Count, batch.Count);
        for (int b = 0; b < expectedIds.Count; b++) AssertEqual(expectedIds[b], batch.InputIds[b], $"{context}: input_ids[{b}]");
        if (mask is { } m)
        {
            var expectedMask = m.EnumerateArray().Select(Longs).ToList();
            for (int b = 0; b < expectedMask.Count; b++) AssertEqual(expectedMask[b], batch.AttentionMask[b], $"{context}: attention_mask[{b}]");
        }
    }

    private static void AssertEqual(long[] expected, long[] actual, string context) =>
        Assert.True(expected.SequenceEqual(actual), $"{context}\n expected [{string.Join(", ", expected)}]\n actual   [{string.Join(", ", actual)}]");

    /// <summary>Every JSON object under <paramref name="element"/>, depth first, with its path.</summary>
    private static IEnumerable<(string Path, JsonElement Node)> Objects(JsonElement element, string path)
    {
        if (element.ValueKind == JsonValueKind.Object)
        {
            yield return (path, element);
            foreach (var p in element.EnumerateObject())
                foreach (var x in Objects(p.Value, $"{path}.{p.Name}")) yield return x;
        }
        else if (element.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (var item in element.EnumerateArray())
                foreach (var x in Objects(item, $"{path}[{i++}]")) yield return x;
        }
    }

    private static long[] Longs(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt64()).ToArray();

    private static List<string> Strings(JsonElement array) => array.EnumerateArray().Select(e => e.GetString()!).ToList();

    /// <summary>
    /// Translates the recorded Python call, e.g. <c>tokenizer(text, max_length=16, truncation=True, padding='max_length')</c>,
    /// into encode options. An argument this port does not know fails the test rather than being ignored.
    /// </summary>
    internal static (TokenizerEncodeOptions Options, bool IsBatch) ParseCall(string call)
    {
        var match = Regex.Match(call, @"^tokenizer\((?<arg>\w+)(?<kwargs>(\s*,\s*\w+\s*=\s*[^,()]+)*)\s*\)$");
        Assert.True(match.Success, $"unrecognised tokenizer call: {call}");
        bool isBatch = match.Groups["arg"].Value.Contains("list", StringComparison.Ordinal);
        var options = new TokenizerEncodeOptions();
        foreach (string part in match.Groups["kwargs"].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] kv = part.Split('=', 2, StringSplitOptions.TrimEntries);
            string key = kv[0], value = kv[1].Trim('\'', '"');
            options = key switch
            {
                "padding" => options with
                {
                    Padding = value switch
                    {
                        "True" or "longest" => PaddingStrategy.Longest,
                        "max_length" => PaddingStrategy.MaxLength,
                        "False" or "do_not_pad" => PaddingStrategy.None,
                        _ => throw new InvalidOperationException($"unknown padding '{value}' in {call}"),
                    },
                },
                "truncation" => options with
                {
                    Truncation = value switch
                    {
                        "True" or "longest_first" or "only_first" => true,
                        "False" or "do_not_truncate" => false,
                        "None" => null,
                        _ => throw new InvalidOperationException($"unknown truncation '{value}' in {call}"),
                    },
                },
                "max_length" => options with { MaxLength = value == "None" ? null : int.Parse(value, CultureInfo.InvariantCulture) },
                "add_special_tokens" => options with { AddSpecialTokens = value == "True" },
                _ => throw new InvalidOperationException($"unsupported tokenizer argument '{key}' in {call}"),
            };
        }
        return (options, isBatch);
    }
}
