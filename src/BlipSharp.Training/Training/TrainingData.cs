using BlipSharp.Training.Data;

namespace BlipSharp.Training.Training;

/// <summary>Builds the training data a recipe's <c>data</c> section describes.</summary>
public static class TrainingData
{
    /// <summary>
    /// Reads <c>data.train_files</c> in order (BLIP's <c>pretrain_dataset</c> concatenates its files): BLIP annotation
    /// files (a JSON list or JSON lines of <c>{image, caption}</c>) and WebDataset <c>.tar</c> shards (a path ending in
    /// <c>.tar</c>; <see cref="WebDataset.Load"/>), in any mix, such as a CapFilt merge's <c>bootstrapped.jsonl</c>
    /// and <c>shards/chunk-*.tar</c>. Every caption is one training pair: a record or sample whose caption is a list
    /// becomes one entry per caption (same image, same <see cref="ImageTextEntry.ImageIndex"/>, the location naming
    /// the caption), so a CapFilt shard sample holding an image's kept texts as a list trains exactly as the JSON
    /// format's one record per text. Image indices are dense over all files, in order of first appearance: in
    /// annotation files an image is its <c>image_id</c> (else its path), as <see cref="BlipAnnotations"/> reads
    /// several files; in shards its <c>image_id</c> (else the sample key), as <see cref="WebDataset.Load"/> reads
    /// several shards; an annotation image and a shard image are never the same one.
    /// </summary>
    /// <param name="data">The <c>data</c> section (<c>image_root</c> applies to annotation files only).</param>
    /// <param name="onIssue">Called for every skipped record, sample or damaged shard end (the message names the file or shard and where).</param>
    /// <exception cref="FileNotFoundException">A listed file or shard does not exist or is a folder.</exception>
    /// <exception cref="DataFormatException">An annotation file is not JSON, or a shard cannot be opened.</exception>
    public static ImageTextDataset LoadDataset(DataConfig data, Action<DataIssue>? onIssue = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        foreach (string file in data.TrainFiles)
        {
            string kind = IsShard(file) ? "shard" : "annotation file";
            if (Directory.Exists(file)) throw new FileNotFoundException($"data.train_files: {file} is a folder, not an annotation file or a .tar shard", file);
            if (!File.Exists(file)) throw new FileNotFoundException($"data.train_files: {kind} not found: {file}", file);
        }
        var log = new DataIssueLog(onIssue: onIssue);
        var annotationOptions = new AnnotationOptions { ImageRoot = data.ImageRoot, OnIssue = issue => log.Report(issue) };
        var shardOptions = new WebDatasetOptions { OnIssue = issue => log.Report(issue) };
        var indexer = new ImageIndexer();
        var entries = new List<ImageTextEntry>();
        foreach (string file in data.TrainFiles)
        {
            bool shard = IsShard(file);
            var part = shard ? WebDataset.Load([file], shardOptions) : BlipAnnotations.Load(file, annotationOptions);
            foreach (var entry in part)
            {
                // The keys BlipAnnotations and WebDataset number images by, kept apart by kind.
                string key = shard ? "shard:" + entry.ImageId
                    : entry.ImageId != null ? "annotation:id:" + entry.ImageId : "annotation:path:" + entry.Image.Name;
                int image = indexer.IndexOf(key);
                int count = entry.Captions.Count;
                if (count == 1)
                {
                    entries.Add(entry with { ImageIndex = image });
                    continue;
                }
                for (int c = 0; c < count; c++)
                    entries.Add(entry with { Captions = [entry.Captions[c]], ImageIndex = image, Location = $"{entry.Location}, caption {c + 1} of {count}" });
            }
        }
        return new ImageTextDataset(string.Join(", ", data.TrainFiles), entries, log);
    }

    /// <summary>Whether a <c>data.train_files</c> path is a WebDataset shard (it ends in <c>.tar</c>) rather than an annotation file.</summary>
    /// <param name="path">The path.</param>
    public static bool IsShard(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return path.EndsWith(".tar", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The loader: BLIP's train transform (random resized crop, flip, RandomAugment) and seeded batches.</summary>
    /// <param name="dataset">The samples.</param>
    /// <param name="data">The <c>data</c> section.</param>
    /// <param name="seed">The recipe's seed (the loader takes its low 32 bits).</param>
    /// <param name="onIssue">Called for every image that cannot be read.</param>
    public static ImageTextLoader CreateLoader(ImageTextDataset dataset, DataConfig data, long seed, Action<DataIssue>? onIssue = null)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        ArgumentNullException.ThrowIfNull(data);
        var loader = new ImageTextLoader(dataset, TrainTransform(data), new DataLoaderOptions
        {
            BatchSize = data.BatchSize,
            Shuffle = true,
            DropLast = true,
            Seed = unchecked((int)seed),
            Workers = data.Workers,
            Prefetch = data.Prefetch,
            MaxWords = data.MaxWords,
            Prompt = data.Prompt,
            SwapLeftRightOnFlip = data.SwapLeftRightOnFlip,
            OnIssue = onIssue,
        });
        if (loader.BatchesPerEpoch == 0)
            throw new TrainingConfigException("data.batch_size", $"({data.BatchSize}) is larger than the dataset ({dataset.Count} samples): an epoch has no complete batch");
        return loader;
    }

    /// <summary>BLIP's train transform with the <c>data</c> section's crop, flip and RandomAugment settings.</summary>
    /// <param name="data">The <c>data</c> section.</param>
    public static BlipTrainTransform TrainTransform(DataConfig data)
    {
        ArgumentNullException.ThrowIfNull(data);
        return new BlipTrainTransform(new BlipTrainTransformOptions
        {
            ImageSize = data.ImageSize,
            MinScale = data.MinScale,
            MaxScale = data.MaxScale,
            MinRatio = data.MinRatio,
            MaxRatio = data.MaxRatio,
            FlipProbability = data.FlipProbability,
            RandAugment = data.RandAugment ? new RandomAugmentOptions() : null,
        });
    }
}
