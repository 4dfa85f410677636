using System.Globalization;
using System.Text.Json.Nodes;

namespace BlipSharp.Training.CapFilt;

/// <summary>Which part of the input one process does: chunks <c>k</c> with <c>k mod Count == Index</c>.</summary>
/// <param name="Index">This process's part, 0-based.</param>
/// <param name="Count">How many parts.</param>
public readonly record struct ShardSpec(int Index, int Count)
{
    /// <summary>The whole input in one process.</summary>
    public static ShardSpec Single => new(0, 1);

    /// <summary>Whether chunk <paramref name="chunk"/> is this part's.</summary>
    public bool Owns(long chunk) => chunk % Count == Index;

    /// <summary>Parses <c>"i/N"</c> (0 ≤ i &lt; N).</summary>
    /// <exception cref="FormatException">Not of that form; the message names the problem.</exception>
    public static ShardSpec Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0 || !int.TryParse(text.AsSpan(0, slash), NumberStyles.None, CultureInfo.InvariantCulture, out int index)
            || !int.TryParse(text.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int count))
            throw new FormatException($"'{text}' is not i/N (for example 0/4: the first of four parts)");
        if (count < 1) throw new FormatException($"'{text}': N must be at least 1");
        if (index >= count) throw new FormatException($"'{text}': i must be below N (parts are numbered 0..{count - 1})");
        return new ShardSpec(index, count);
    }

    /// <inheritdoc />
    public override string ToString() => $"{Index}/{Count}";
}

/// <summary>
/// What a CapFilt run does. The defaults are BLIP's: one synthetic caption per image by nucleus sampling (top-p 0.9,
/// top-k 50 as transformers' default, repetition penalty 1.1, 10..30 tokens counting <c>[DEC]</c> and the prompt: BLIP's
/// <c>generate(sample=True)</c>), texts kept when the ITM head predicts "matched" (probability ≥ 0.5, the argmax).
/// </summary>
public sealed record CapFiltOptions
{
    /// <summary>The web data: BLIP annotation files (<c>.json</c> list or <c>.jsonl</c>) or WebDataset <c>.tar</c> shards, not both.</summary>
    public IReadOnlyList<string> Inputs { get; init; } = [];

    /// <summary>The folder annotation image paths are relative to (null: each file's folder).</summary>
    public string? ImageRoot { get; init; }

    /// <summary>Human-annotated annotation files passed through into the bootstrapped dataset unfiltered (BLIP's COCO pairs).</summary>
    public IReadOnlyList<string> Human { get; init; } = [];

    /// <summary>The output folder (chunks, shard markers and, after the merge, the dataset).</summary>
    public string OutputDirectory { get; init; } = "";

    /// <summary>Synthetic captions per image.</summary>
    public int NumCaptions { get; init; } = 1;

    /// <summary>Nucleus sampling's probability mass.</summary>
    public double TopP { get; init; } = 0.9;

    /// <summary>Sampling keeps at most this many tokens (0: no limit); transformers' default 50, which BLIP does not change.</summary>
    public int TopK { get; init; } = 50;

    /// <summary>Sampling temperature.</summary>
    public double Temperature { get; init; } = 1.0;

    /// <summary>Penalty on repeated tokens (BLIP's sampling: 1.1).</summary>
    public double RepetitionPenalty { get; init; } = 1.1;

    /// <summary>Maximum sequence length counting <c>[DEC]</c> and the prompt (BLIP: 30).</summary>
    public int MaxLength { get; init; } = 30;

    /// <summary>Minimum sequence length counting <c>[DEC]</c> and the prompt (BLIP: 10).</summary>
    public int MinLength { get; init; } = 10;

    /// <summary>The captioner's prompt; null: the captioner's own (<see cref="CapFiltCaptioner.Prompt"/>).</summary>
    public string? Prompt { get; init; }

    /// <summary>Seeds the sampling; each chunk draws from its own stream, so results do not depend on sharding or restarts.</summary>
    public long Seed { get; init; }

    /// <summary>A text is kept when its ITM match probability is at least this (0.5: the ITM head's argmax).</summary>
    public double Threshold { get; init; } = 0.5;

    /// <summary>When set, a text must also have an ITC cosine similarity of at least this to be kept.</summary>
    public double? ItcThreshold { get; init; }

    /// <summary>Texts are cut to this many tokens for the filter (BLIP's retrieval models: 35).</summary>
    public int MaxTextLength { get; init; } = 35;

    /// <summary>Web texts are cleaned with BLIP's <c>pre_caption(text, max_words)</c> before the filter reads them.</summary>
    public int MaxWords { get; init; } = 30;

    /// <summary>Images per model batch.</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>Image-text pairs per ITM forward.</summary>
    public int ItmBatchSize { get; init; } = 128;

    /// <summary>Input records per committed chunk (the unit of resume and of sharding).</summary>
    public int ChunkSize { get; init; } = 1000;

    /// <summary>This process's part of the input.</summary>
    public ShardSpec Shard { get; init; } = ShardSpec.Single;

    /// <summary>Threads decoding images (they run ahead of the models by two batches).</summary>
    public int DecodeThreads { get; init; } = Math.Max(1, Environment.ProcessorCount / 2);

    /// <summary>Checks the values, and that the input and human files exist; the message names the option.</summary>
    /// <exception cref="CapFiltException">A value is out of range or a file is missing.</exception>
    public void Validate()
    {
        if (Inputs.Count == 0) throw new CapFiltException("--input: give at least one annotation file or .tar shard");
        int shards = Inputs.Count(CapFiltInput.IsShard);
        if (shards != 0 && shards != Inputs.Count) throw new CapFiltException("--input: give annotation files or .tar shards, not both");
        foreach (string input in Inputs) CheckFile("--input", input);
        foreach (string human in Human) CheckFile("--human", human);
        if (string.IsNullOrWhiteSpace(OutputDirectory)) throw new CapFiltException("--out: name the output folder");
        if (Shard.Count < 1 || Shard.Index < 0 || Shard.Index >= Shard.Count)
            throw new CapFiltException($"--shard must be i/N with 0 <= i < N, got {Shard.Index}/{Shard.Count}");
        if (NumCaptions < 0) throw new CapFiltException($"--num-captions must be at least 0, got {NumCaptions}");
        if (!(TopP > 0 && TopP <= 1)) throw new CapFiltException($"--top-p must lie in (0, 1], got {TopP}");
        if (TopK < 0) throw new CapFiltException($"--top-k must be at least 0, got {TopK}");
        if (!(Temperature > 0)) throw new CapFiltException($"--temperature must be positive, got {Temperature}");
        if (!(RepetitionPenalty > 0)) throw new CapFiltException($"--repetition-penalty must be positive, got {RepetitionPenalty}");
        if (MinLength < 0 || MaxLength < 2 || MinLength > MaxLength) throw new CapFiltException($"--min-length ({MinLength}) and --max-length ({MaxLength}) need 0 <= min <= max and max >= 2");
        if (!(Threshold >= 0 && Threshold <= 1)) throw new CapFiltException($"--threshold is an ITM probability within 0..1, got {Threshold}");
        if (ItcThreshold is double itc && !(itc >= -1 && itc <= 1)) throw new CapFiltException($"--itc-threshold is a cosine within -1..1, got {itc}");
        if (MaxTextLength < 2) throw new CapFiltException($"--max-text-length must be at least 2, got {MaxTextLength}");
        if (MaxWords < 1) throw new CapFiltException($"--max-words must be at least 1, got {MaxWords}");
        if (BatchSize < 1) throw new CapFiltException($"--batch-size must be at least 1, got {BatchSize}");
        if (ItmBatchSize < 1) throw new CapFiltException($"--itm-batch-size must be at least 1, got {ItmBatchSize}");
        if (ChunkSize < 1) throw new CapFiltException($"--chunk-size must be at least 1, got {ChunkSize}");
        if (DecodeThreads < 1) throw new CapFiltException($"--decode-threads must be at least 1, got {DecodeThreads}");
    }

    /// <summary>An input or human file is found now, not after hours of work (human files are read by the merge).</summary>
    private static void CheckFile(string option, string path)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new CapFiltException($"{option}: a file name is empty");
        if (!File.Exists(path))
            throw new CapFiltException($"{option}: {path} {(Directory.Exists(path) ? "is a directory, not a file" : "does not exist")}");
    }

    /// <summary>
    /// The settings that decide the output (inputs, models, sampling, filter, chunking), as written to the run's
    /// <c>capfilt.json</c>. A restart or another shard with different settings is refused. The shard split, the ITM
    /// batch size and the threads are not among them (they do not change a chunk's content); the batch size is, because
    /// it decides which images are sampled together.
    /// </summary>
    /// <param name="captioner">The captioner's description.</param>
    /// <param name="filter">The filter's description.</param>
    /// <param name="prompt">The prompt in effect.</param>
    /// <param name="itmToken">The ITM first token in effect.</param>
    public JsonObject Settings(string captioner, string filter, string prompt, ItmFirstToken itmToken) => new()
    {
        ["inputs"] = new JsonArray(Inputs.Select(i => (JsonNode)Path.GetFullPath(i)).ToArray()),
        ["image_root"] = ImageRoot is null ? null : Path.GetFullPath(ImageRoot),
        ["human"] = new JsonArray(Human.Select(i => (JsonNode)Path.GetFullPath(i)).ToArray()),
        ["captioner"] = captioner,
        ["filter"] = filter,
        ["prompt"] = prompt,
        ["num_captions"] = NumCaptions,
        ["top_p"] = TopP,
        ["top_k"] = TopK,
        ["temperature"] = Temperature,
        ["repetition_penalty"] = RepetitionPenalty,
        ["max_length"] = MaxLength,
        ["min_length"] = MinLength,
        ["seed"] = Seed,
        ["threshold"] = Threshold,
        ["itc_threshold"] = ItcThreshold,
        ["itm_token"] = itmToken == ItmFirstToken.Enc ? "enc" : "cls",
        ["max_text_length"] = MaxTextLength,
        ["max_words"] = MaxWords,
        ["batch_size"] = BatchSize,
        ["chunk_size"] = ChunkSize,
    };
}
