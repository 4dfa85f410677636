using System.Diagnostics;
using System.Formats.Tar;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using BlipSharp.Generation;
using BlipSharp.Processing;
using BlipSharp.Training.Captioning;
using BlipSharp.Training.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.CapFilt;

/// <summary>Where a CapFilt run stands.</summary>
/// <param name="RecordsRead">Input records read so far (all parts).</param>
/// <param name="RecordsDone">Records of this run's committed chunks.</param>
/// <param name="ChunksCommitted">Chunks this run committed.</param>
/// <param name="ChunksAlreadyDone">Chunks of this part found committed by an earlier run and skipped.</param>
/// <param name="ImagesPerSecond">Images through both models per second of this run.</param>
public readonly record struct CapFiltProgress(long RecordsRead, long RecordsDone, int ChunksCommitted, int ChunksAlreadyDone, double ImagesPerSecond);

/// <summary>What one <see cref="CapFiltRunner.Run"/> did.</summary>
/// <param name="Records">Input records (all parts).</param>
/// <param name="Chunks">Chunks of the whole input.</param>
/// <param name="ChunksCommitted">Chunks this run committed.</param>
/// <param name="ChunksAlreadyDone">Chunks of this part an earlier run had committed.</param>
/// <param name="Images">Images this run captioned and filtered.</param>
/// <param name="Seconds">Wall time of this run.</param>
/// <param name="Completed">Every chunk of this part is committed (false when stopped early).</param>
public sealed record CapFiltRunResult(long Records, long Chunks, int ChunksCommitted, int ChunksAlreadyDone, long Images, double Seconds, bool Completed);

/// <summary>
/// BLIP's CapFilt (the "bootstrapping" of BLIP, section 3.3): for every web image the captioner writes synthetic
/// captions by nucleus sampling, and the filter's ITM head scores the web text(s) and every synthetic caption against
/// the image; texts predicted as matched are kept. Input records are cut into chunks of
/// <see cref="CapFiltOptions.ChunkSize"/>; each chunk is processed in batches and committed as one file by an atomic
/// rename, so a run killed at any moment and started again with the same settings redoes only the chunk it was in, and
/// every input record ends up in exactly one committed chunk. Chunks are the unit of sharding too
/// (<see cref="CapFiltOptions.Shard"/>: part <c>i</c> of <c>N</c> does the chunks <c>k</c> with <c>k mod N = i</c>), and
/// each chunk samples from its own seeded stream, so the output does not depend on how many parts there were.
/// Images are decoded on other threads, two batches ahead of the models.
/// </summary>
/// <remarks>
/// Layout of the output folder: <c>capfilt.json</c> (the settings; a restart with other settings is refused),
/// <c>chunks/chunk-NNNNNN.jsonl</c> (one line per input record: status, image, every text with its ITM probability,
/// ITC cosine and verdict), for shard inputs <c>chunks/chunk-NNNNNN.tar</c> (the images with kept texts and those texts),
/// <c>parts/part-I-of-N.json</c> (written when a part has every chunk committed). <see cref="CapFiltMerge"/> then checks
/// and assembles the dataset.
/// </remarks>
public sealed class CapFiltRunner
{
    /// <summary>The settings file of an output folder.</summary>
    public const string SettingsFile = "capfilt.json";

    /// <summary>The folder of committed chunks.</summary>
    public const string ChunksDirectory = "chunks";

    /// <summary>The folder of finished-part markers.</summary>
    public const string PartsDirectory = "parts";

    private readonly CapFiltCaptioner _captioner;
    private readonly CapFiltFilter _filter;
    private readonly CapFiltOptions _options;
    private readonly string _prompt;
    private readonly GenerationOptions _generation;

    /// <summary>Prepares a run.</summary>
    /// <param name="captioner">The captioner (not disposed here).</param>
    /// <param name="filter">The filter (not disposed here).</param>
    /// <param name="options">Inputs, output and settings.</param>
    public CapFiltRunner(CapFiltCaptioner captioner, CapFiltFilter filter, CapFiltOptions options)
    {
        ArgumentNullException.ThrowIfNull(captioner);
        ArgumentNullException.ThrowIfNull(filter);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _captioner = captioner;
        _filter = filter;
        _options = options;
        _prompt = options.Prompt ?? captioner.Prompt;
        _generation = new GenerationOptions
        {
            DoSample = true,
            TopP = options.TopP,
            TopK = options.TopK,
            Temperature = options.Temperature,
            RepetitionPenalty = options.RepetitionPenalty,
            MaxLength = options.MaxLength,
            MinLength = options.MinLength,
            NumReturnSequences = Math.Max(1, options.NumCaptions),
        };
        _generation.Validate();
    }

    /// <summary>The settings this run writes to (and checks against) <c>capfilt.json</c>.</summary>
    public JsonObject Settings => _options.Settings(_captioner.Description, _filter.Description, _prompt,
        _filter.FirstTokenId is null ? ItmFirstToken.Cls : ItmFirstToken.Enc);

    /// <summary>The file of chunk <paramref name="chunk"/> in <paramref name="outputDirectory"/>.</summary>
    public static string ChunkPath(string outputDirectory, long chunk, string extension = ".jsonl") =>
        Path.Combine(outputDirectory, ChunksDirectory, $"chunk-{chunk.ToString("D6", CultureInfo.InvariantCulture)}{extension}");

    /// <summary>The marker of a finished part.</summary>
    public static string PartPath(string outputDirectory, ShardSpec part) =>
        Path.Combine(outputDirectory, PartsDirectory, $"part-{part.Index}-of-{part.Count}.json");

    /// <summary>
    /// Processes this part's chunks that are not committed yet. Stopping through <paramref name="cancellation"/> ends
    /// after the current batch; the chunk in progress is not committed and is redone by the next run.
    /// </summary>
    /// <param name="progress">Receives progress after every batch.</param>
    /// <param name="log">Receives notes (skipped chunks, settings).</param>
    /// <param name="cancellation">Stops the run.</param>
    /// <exception cref="CapFiltException">The output folder holds another run's settings.</exception>
    public CapFiltRunResult Run(IProgress<CapFiltProgress>? progress = null, Action<string>? log = null, CancellationToken cancellation = default)
    {
        log ??= _ => { };
        string output = _options.OutputDirectory;
        Directory.CreateDirectory(Path.Combine(output, ChunksDirectory));
        Directory.CreateDirectory(Path.Combine(output, PartsDirectory));
        CheckOrWriteSettings(output, Settings);
        RemoveStaleTemporaries(output, log);

        var clock = Stopwatch.StartNew();
        var channel = Channel.CreateBounded<DecodedBatch>(new BoundedChannelOptions(2) { SingleReader = true, SingleWriter = true });
        var totals = new ReaderTotals();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var producer = Task.Run(() => Produce(channel.Writer, totals, log, stop.Token));

        int committed = 0;
        long images = 0, recordsDone = 0;
        var chunkResults = new List<RecordResult>();
        try
        {
            foreach (var batch in channel.Reader.ReadAllAsync(CancellationToken.None).ToBlockingEnumerable())
            {
                if (cancellation.IsCancellationRequested) break;
                chunkResults.AddRange(Process(batch));
                images += batch.Items.Count(i => i.Image != null);
                if (batch.LastOfChunk)
                {
                    Commit(output, batch.Chunk, chunkResults);
                    committed++;
                    recordsDone += chunkResults.Count;
                    chunkResults.Clear();
                }
                progress?.Report(new CapFiltProgress(Interlocked.Read(ref totals.Records), recordsDone, committed, totals.Skipped, images / Math.Max(1e-9, clock.Elapsed.TotalSeconds)));
            }
        }
        finally
        {
            stop.Cancel();
            while (channel.Reader.TryRead(out _))
            {
            }
            try
            {
                producer.GetAwaiter().GetResult();
            }
            catch (OperationCanceledException)
            {
            }
        }
        bool completed = !cancellation.IsCancellationRequested && totals.Finished;
        long chunks = (totals.Records + _options.ChunkSize - 1) / _options.ChunkSize;
        if (completed)
        {
            var missing = Enumerable.Range(0, (int)chunks).Where(k => _options.Shard.Owns(k) && !File.Exists(ChunkPath(output, k))).ToList();
            if (missing.Count > 0) throw new CapFiltException($"{output}: chunk(s) {string.Join(", ", missing.Take(10))} of part {_options.Shard} are not committed after the run (was a file removed while it ran?)");
            var marker = new JsonObject
            {
                ["part"] = _options.Shard.ToString(),
                ["records"] = totals.Records,
                ["chunks"] = chunks,
                ["chunk_size"] = _options.ChunkSize,
                ["owned_chunks"] = Enumerable.Range(0, (int)chunks).Count(k => _options.Shard.Owns(k)),
            };
            AtomicFile.WriteText(PartPath(output, _options.Shard), marker.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        return new CapFiltRunResult(totals.Records, chunks, committed, totals.Skipped, images, clock.Elapsed.TotalSeconds, completed);
    }

    /// <summary>
    /// Deletes the temporary files a killed run of this part left (a chunk or this part's marker being written when the
    /// process died); other parts' temporaries are left alone, as another process may be writing them.
    /// </summary>
    private void RemoveStaleTemporaries(string output, Action<string> log)
    {
        int removed = 0;
        foreach (string file in Directory.EnumerateFiles(Path.Combine(output, ChunksDirectory), "chunk-*.tmp-*"))
        {
            string name = Path.GetFileName(file);
            int dash = name.IndexOf('-', StringComparison.Ordinal), dot = name.IndexOf('.', StringComparison.Ordinal);
            if (dash < 0 || dot < dash || !long.TryParse(name.AsSpan(dash + 1, dot - dash - 1), NumberStyles.None, CultureInfo.InvariantCulture, out long chunk)) continue;
            if (!_options.Shard.Owns(chunk)) continue;
            File.Delete(file);
            removed++;
        }
        string marker = PartPath(output, _options.Shard);
        foreach (string file in Directory.EnumerateFiles(Path.GetDirectoryName(marker)!, Path.GetFileName(marker) + ".tmp-*"))
        {
            File.Delete(file);
            removed++;
        }
        if (removed > 0) log($"removed {removed} unfinished file(s) of an interrupted run");
    }

    private static void CheckOrWriteSettings(string output, JsonObject settings)
    {
        string path = Path.Combine(output, SettingsFile);
        if (File.Exists(path))
        {
            JsonObject? existing;
            try
            {
                existing = JsonNode.Parse(File.ReadAllText(path)) as JsonObject;
            }
            catch (JsonException e)
            {
                throw new CapFiltException($"{path} is not valid JSON ({e.Message}); it is not a CapFilt output folder, or it was damaged");
            }
            if (existing is null) throw new CapFiltException($"{path} is not a JSON object");
            var differences = settings.Select(kv => kv.Key).Concat(existing.Select(kv => kv.Key)).Distinct()
                .Where(k => !JsonNode.DeepEquals(settings[k], existing[k]))
                .Select(k => $"{k}: {existing[k]?.ToJsonString() ?? "absent"} there, {settings[k]?.ToJsonString() ?? "absent"} now").ToList();
            if (differences.Count > 0)
                throw new CapFiltException($"{output} holds a CapFilt run with other settings ({string.Join("; ", differences)}); "
                    + "restart with the same settings, or use another --out");
            return;
        }
        AtomicFile.WriteText(path, settings.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    private sealed class ReaderTotals
    {
        public long Records;
        public int Skipped;
        public bool Finished;
    }

    /// <summary>A record with its decoded image, or why it has none.</summary>
    private sealed record Item(CapFiltRecord Record, RgbImage? Image, string? Problem, string Status);

    private sealed record DecodedBatch(long Chunk, int Index, List<Item> Items, bool LastOfChunk);

    private void Produce(ChannelWriter<DecodedBatch> writer, ReaderTotals totals, Action<string> log, CancellationToken token)
    {
        try
        {
            string output = _options.OutputDirectory;
            var pending = new List<CapFiltRecord>();
            long current = 0;
            foreach (var record in CapFiltInput.Read(_options.Inputs, _options.ImageRoot))
            {
                token.ThrowIfCancellationRequested();
                long chunk = record.Ordinal / _options.ChunkSize;
                if (chunk != current)
                {
                    Emit(writer, current, pending, output, totals, token);
                    pending.Clear();
                    current = chunk;
                }
                Interlocked.Increment(ref totals.Records);
                if (_options.Shard.Owns(chunk)) pending.Add(record);
            }
            Emit(writer, current, pending, output, totals, token);
            totals.Finished = true;
            writer.Complete();
        }
        catch (Exception e)
        {
            writer.Complete(e is OperationCanceledException ? null : e);
            if (e is not OperationCanceledException) throw;
        }
    }

    private void Emit(ChannelWriter<DecodedBatch> writer, long chunk, List<CapFiltRecord> records, string output, ReaderTotals totals, CancellationToken token)
    {
        if (records.Count == 0) return;
        if (File.Exists(ChunkPath(output, chunk)))
        {
            totals.Skipped++;
            return;
        }
        int batches = (records.Count + _options.BatchSize - 1) / _options.BatchSize;
        for (int b = 0; b < batches; b++)
        {
            var slice = records.GetRange(b * _options.BatchSize, Math.Min(_options.BatchSize, records.Count - b * _options.BatchSize));
            var items = new Item[slice.Count];
            Parallel.For(0, slice.Count, new ParallelOptions { MaxDegreeOfParallelism = _options.DecodeThreads, CancellationToken = token }, i => items[i] = Decode(slice[i]));
            writer.WriteAsync(new DecodedBatch(chunk, b, [.. items], b == batches - 1), token).AsTask().GetAwaiter().GetResult();
        }
    }

    private Item Decode(CapFiltRecord record)
    {
        if (record.Problem != null || record.Image == null) return new Item(record, null, record.Problem, "malformed");
        try
        {
            return new Item(record, record.Image.Decode(_captioner.ImageProcessor.Options.Decoder), null, "ok");
        }
        catch (ImageDecodeException e)
        {
            return new Item(record, null, e.Reason, "unreadable");
        }
    }

    /// <summary>One scored text.</summary>
    internal sealed record ScoredText(string Text, double Itm, double Itc, bool Kept);

    /// <summary>One input record's outcome.</summary>
    internal sealed record RecordResult(CapFiltRecord Record, string Status, string? Problem, IReadOnlyList<ScoredText> Web, IReadOnlyList<ScoredText> Synthetic);

    private List<RecordResult> Process(DecodedBatch batch)
    {
        var ok = batch.Items.Where(i => i.Image != null).ToList();
        var results = new Dictionary<CapFiltRecord, RecordResult>();
        if (ok.Count > 0)
        {
            using var scope = NewDisposeScope();
            using var inference = inference_mode();
            var images = ok.Select(i => i.Image!).ToList();
            IReadOnlyList<string>[] synthetic = Caption(images, batch.Chunk, batch.Index);
            var webTexts = ok.Select(i => i.Record.WebTexts).ToList();
            var scored = Filter(images, webTexts, synthetic);
            for (int i = 0; i < ok.Count; i++)
                results[ok[i].Record] = new RecordResult(ok[i].Record, "ok", null, scored[i].Web, scored[i].Synthetic);
        }
        return batch.Items.Select(i => results.TryGetValue(i.Record, out var r) ? r : new RecordResult(i.Record, i.Status, i.Problem, [], [])).ToList();
    }

    private IReadOnlyList<string>[] Caption(List<RgbImage> images, long chunk, int batchIndex)
    {
        var result = new IReadOnlyList<string>[images.Count];
        if (_options.NumCaptions == 0)
        {
            Array.Fill(result, []);
            return result;
        }
        var device = Pipelines.PipelineModel.DeviceOf(_captioner.Model);
        var pixels = _captioner.ImageProcessor.Preprocess(images).to(device);
        var options = _generation with { Seed = SeededRandom.DeriveSeed(_options.Seed, chunk, batchIndex, 7) };
        using var generated = BlipCaptionGenerator.Generate(_captioner.Model, _captioner.Tokenizer, pixels, _prompt, options);
        int k = _options.NumCaptions;
        for (int i = 0; i < images.Count; i++)
            result[i] = generated.Captions.Skip(i * k).Take(k).Select(c => c.Trim()).ToArray();
        return result;
    }

    private (List<ScoredText> Web, List<ScoredText> Synthetic)[] Filter(List<RgbImage> images, List<IReadOnlyList<string>> web, IReadOnlyList<string>[] synthetic)
    {
        var model = _filter.Model;
        var device = Pipelines.PipelineModel.DeviceOf(model);
        var pixels = _filter.ImageProcessor.Preprocess(images).to(device);
        var imageEmbeds = model.EncodeImage(pixels);                         // (I, 1+N, Dv)
        var imageFeatures = model.ImageFeatures(imageEmbeds);                // (I, P)

        var texts = new List<string>();
        var owner = new List<long>();
        for (int i = 0; i < images.Count; i++)
        {
            foreach (string t in web[i])
            {
                texts.Add(TextCleaning.PreCaption(t, _options.MaxWords));
                owner.Add(i);
            }
            foreach (string t in synthetic[i])
            {
                texts.Add(TextCleaning.PreCaption(t, _options.MaxWords));
                owner.Add(i);
            }
        }
        var itm = new double[texts.Count];
        var itc = new double[texts.Count];
        if (texts.Count > 0)
        {
            var tokens = _filter.Tokenizer.EncodeToTensors(texts,
                new TokenizerEncodeOptions { Padding = PaddingStrategy.Longest, Truncation = true, MaxLength = _options.MaxTextLength }, device);
            var owners = tensor(owner.ToArray(), device: device);
            var textFeatures = model.TextFeatures(model.EncodeText(tokens.InputIds, tokens.AttentionMask)); // (T, P)
            var cosine = imageFeatures.index_select(0, owners).mul(textFeatures).sum(1);
            cosine.to(ScalarType.Float64, CPU).data<double>().CopyTo(itc, 0);

            var matchIds = tokens.InputIds;
            if (_filter.FirstTokenId is long first)
            {
                matchIds = matchIds.clone();
                matchIds.select(1, 0).fill_(first);
            }
            for (int start = 0; start < texts.Count; start += _options.ItmBatchSize)
            {
                using var pairScope = NewDisposeScope();
                int count = Math.Min(_options.ItmBatchSize, texts.Count - start);
                var index = owners.narrow(0, start, count);
                using var output = model.ImageTextMatchingFromEmbeds(imageEmbeds.index_select(0, index),
                    matchIds.narrow(0, start, count), tokens.AttentionMask.narrow(0, start, count));
                output.Probabilities.select(1, 1).to(ScalarType.Float64, CPU).data<double>().CopyTo(itm, start);
            }
        }

        var result = new (List<ScoredText> Web, List<ScoredText> Synthetic)[images.Count];
        int p = 0;
        for (int i = 0; i < images.Count; i++)
        {
            var w = new List<ScoredText>();
            foreach (string t in web[i]) w.Add(Score(t, p++));
            var s = new List<ScoredText>();
            foreach (string t in synthetic[i]) s.Add(Score(t, p++));
            result[i] = (w, s);
        }
        return result;

        ScoredText Score(string text, int index) => new(text, itm[index], itc[index], Keeps(itm[index], itc[index]));
    }

    /// <summary>Whether a text with these scores is kept.</summary>
    /// <param name="itm">Its ITM match probability.</param>
    /// <param name="itc">Its ITC cosine similarity.</param>
    public bool Keeps(double itm, double itc) => itm >= _options.Threshold && (_options.ItcThreshold is not double t || itc >= t);

    private void Commit(string output, long chunk, List<RecordResult> results)
    {
        bool shards = CapFiltInput.IsShard(_options.Inputs[0]);
        if (shards) WriteChunkShard(ChunkPath(output, chunk, ".tar"), results);
        AtomicFile.Write(ChunkPath(output, chunk), stream =>
        {
            foreach (var r in results)
            {
                using (var w = new Utf8JsonWriter(stream)) CapFiltRecordJson.Write(w, r);
                stream.WriteByte((byte)'\n');
            }
        });
    }

    /// <summary>The chunk's images that kept a text, as WebDataset samples: <c>ORDINAL.EXT</c> and <c>ORDINAL.json</c> (<c>caption</c>: the kept texts).</summary>
    private static void WriteChunkShard(string path, List<RecordResult> results)
    {
        AtomicFile.Write(path, stream =>
        {
            using var tar = new TarWriter(stream, TarEntryFormat.Ustar, leaveOpen: true);
            foreach (var r in results)
            {
                var kept = r.Web.Where(t => t.Kept).Select(t => ("web", t)).Concat(r.Synthetic.Where(t => t.Kept).Select(t => ("synthetic", t))).ToList();
                if (kept.Count == 0 || r.Record.Image is null) continue;
                string key = r.Record.Ordinal.ToString("D12", CultureInfo.InvariantCulture);
                Add(tar, $"{key}.{r.Record.ImageExtension}", r.Record.Image.ReadAllBytes());
                var json = new JsonObject
                {
                    ["caption"] = new JsonArray(kept.Select(k => (JsonNode)k.t.Text).ToArray()),
                    ["capfilt_source"] = new JsonArray(kept.Select(k => (JsonNode)k.Item1).ToArray()),
                    ["itm"] = new JsonArray(kept.Select(k => (JsonNode)k.t.Itm).ToArray()),
                    ["itc"] = new JsonArray(kept.Select(k => (JsonNode)k.t.Itc).ToArray()),
                    ["image_id"] = r.Record.ImageId,
                    ["input"] = $"{r.Record.Source}: {r.Record.Location}",
                };
                foreach (var (name, value) in r.Record.Extra)
                    if (!json.ContainsKey(name)) json[name] = JsonNode.Parse(value.GetRawText());
                Add(tar, $"{key}.json", System.Text.Encoding.UTF8.GetBytes(json.ToJsonString()));
            }
        });

        static void Add(TarWriter tar, string name, byte[] data)
        {
            var entry = new UstarTarEntry(TarEntryType.RegularFile, name)
            {
                DataStream = new MemoryStream(data, writable: false),
                ModificationTime = DateTimeOffset.UnixEpoch,
                Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
            };
            tar.WriteEntry(entry);
        }
    }
}

/// <summary>Files written whole or not at all: a temporary file in the same folder, flushed to disk, then renamed over the target.</summary>
internal static class AtomicFile
{
    public static void Write(string path, Action<Stream> write)
    {
        string temp = $"{path}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            try
            {
                File.Delete(temp);
            }
            catch (IOException)
            {
            }
            throw;
        }
    }

    public static void WriteText(string path, string text) => Write(path, s =>
    {
        var bytes = new System.Text.UTF8Encoding(false).GetBytes(text);
        s.Write(bytes);
    });
}
