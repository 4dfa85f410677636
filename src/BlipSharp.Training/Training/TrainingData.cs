using BlipSharp.Training.Data;

namespace BlipSharp.Training.Training;

/// <summary>Builds the training data a recipe's <c>data</c> section describes.</summary>
public static class TrainingData
{
    /// <summary>Reads the annotation files (BLIP's <c>pretrain_dataset</c> concatenates them in order).</summary>
    /// <param name="data">The <c>data</c> section.</param>
    /// <param name="onIssue">Called for every skipped record or image.</param>
    public static ImageTextDataset LoadDataset(DataConfig data, Action<DataIssue>? onIssue = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        foreach (string file in data.TrainFiles)
            if (!File.Exists(file)) throw new FileNotFoundException($"data.train_files: annotation file not found: {file}", file);
        return BlipAnnotations.Load(data.TrainFiles, new AnnotationOptions { ImageRoot = data.ImageRoot, OnIssue = onIssue });
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
