using BlipSharp.Checkpoints;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Training;
using static TorchSharp.torch;

namespace BlipSharp.Training.Finetuning;

/// <summary>
/// Finds and loads the weights fine-tuning starts from (<c>model.init</c>: a pretraining checkpoint) and the weights
/// an evaluation scores (a fine-tuning run). Both accept a file, a checkpoint folder or a run folder.
/// </summary>
public static class FinetuneWeights
{
    /// <summary>
    /// The weights file <paramref name="path"/> names: a file as is (<c>.safetensors</c>, or a BLIP <c>.pth</c>); a
    /// checkpoint folder's <c>model.safetensors</c>; a run folder's newest complete checkpoint.
    /// </summary>
    /// <param name="path">A file, a checkpoint folder (<c>checkpoints/step-N</c>) or a run folder.</param>
    /// <param name="key">The recipe key or option that named it, for errors (e.g. <c>model.init</c>).</param>
    /// <exception cref="FileNotFoundException">Nothing loadable is there; the message says what was looked for.</exception>
    public static string Resolve(string path, string key)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (File.Exists(path)) return path;
        if (!Directory.Exists(path)) throw new FileNotFoundException($"{key}: {path} does not exist (a weights file, a checkpoint folder or a run folder)", path);
        string direct = Path.Combine(path, Trainer<IDisposable>.ModelFile);
        if (File.Exists(direct)) return direct;
        string checkpoints = Path.Combine(path, Trainer<IDisposable>.CheckpointsDirectory);
        if (Directory.Exists(checkpoints))
        {
            string? latest = new CheckpointStore(checkpoints).Latest();
            if (latest is not null) return Path.Combine(latest, Trainer<IDisposable>.ModelFile);
            throw new FileNotFoundException($"{key}: the run folder {path} has no complete checkpoint in {checkpoints}", path);
        }
        throw new FileNotFoundException($"{key}: {path} is a folder without {Trainer<IDisposable>.ModelFile} or {Trainer<IDisposable>.CheckpointsDirectory}/", path);
    }

    /// <summary>
    /// The state_dict of a pretraining checkpoint, keys as BLIP saves them or as <c>blip pretrain</c> saves them (the
    /// loaders of the task models map both: <see cref="OriginalTaskCheckpoint.LoadInto(nn.Module, IReadOnlyDictionary{string, Tensor}, string, OriginalTaskLoadOptions?)"/>).
    /// The caller disposes the tensors.
    /// </summary>
    /// <param name="path">What <see cref="Resolve"/> accepts.</param>
    /// <param name="key">The recipe key that named it.</param>
    /// <returns>The resolved file and its tensors.</returns>
    public static (string File, Dictionary<string, Tensor> StateDict) ReadPretrained(string path, string key = "model.init")
    {
        string file = Resolve(path, key);
        return (file, OriginalTaskCheckpoint.ReadStateDict(file));
    }

    /// <summary>
    /// Loads weights a fine-tuning run wrote (the trainer's <c>model.safetensors</c>) into <paramref name="model"/>,
    /// strictly: every key of the model, nothing else, same shapes.
    /// </summary>
    /// <param name="model">The task's model, built from the same recipe.</param>
    /// <param name="path">What <see cref="Resolve"/> accepts.</param>
    /// <param name="key">The option that named it, for errors.</param>
    /// <returns>The file loaded.</returns>
    public static string LoadTrained(nn.Module model, string path, string key = "--weights")
    {
        ArgumentNullException.ThrowIfNull(model);
        string file = Resolve(path, key);
        var weights = file.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)
            ? SafeTensors.Load(file)
            : throw new CheckpointFormatException($"{key}: {file} is not a .safetensors file written by blip finetune");
        try
        {
            StateDictLoader.LoadStrict(model, weights, file);
        }
        finally
        {
            foreach (var t in weights.Values) t.Dispose();
        }
        return file;
    }
}
