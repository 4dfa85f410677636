namespace BlipSharp.Checkpoints.Hub;

/// <summary>
/// The files <see cref="HubModel.Resolve(string, HubFileSet, HubOptions?)"/> fetches from a repository. A required
/// file that the repository lacks is an error; a missing optional file is recorded as absent (as huggingface_hub
/// does, in <c>.no_exist/&lt;commit&gt;/&lt;file&gt;</c>). <see cref="IncludeWeights"/> fetches the weights the way
/// <see cref="BlipCheckpoint.FindWeights"/> reads them.
/// </summary>
public sealed record HubFileSet
{
    /// <summary>The model configuration file.</summary>
    public const string ConfigFile = "config.json";

    /// <summary>The weight files tried in this order when <see cref="IncludeWeights"/> is set.</summary>
    public static IReadOnlyList<string> WeightFiles { get; } = ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"];

    /// <summary>Files that must exist in the repository.</summary>
    public IReadOnlyList<string> Required { get; init; } = [];

    /// <summary>Files fetched when the repository has them.</summary>
    public IReadOnlyList<string> Optional { get; init; } = [];

    /// <summary>
    /// Fetch the weights: <c>model.safetensors</c>, else <c>model.safetensors.index.json</c> and every shard it
    /// names, else <c>pytorch_model.bin</c>; a repository with none of them is an error.
    /// </summary>
    public bool IncludeWeights { get; init; }

    /// <summary>What a task model's <c>FromPretrained</c> reads: <c>config.json</c>, the weights, <c>generation_config.json</c> if present.</summary>
    public static HubFileSet Model { get; } = new()
    {
        Required = [ConfigFile],
        Optional = ["generation_config.json"],
        IncludeWeights = true,
    };

    /// <summary>What <c>BlipTokenizer.FromPretrained</c> reads: <c>vocab.txt</c> and the optional tokenizer configs.</summary>
    public static HubFileSet Tokenizer { get; } = new()
    {
        Required = ["vocab.txt"],
        Optional = ["tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"],
    };

    /// <summary>What <c>BlipImageProcessor.FromPretrained</c> reads: <c>preprocessor_config.json</c>.</summary>
    public static HubFileSet ImageProcessor { get; } = new() { Required = ["preprocessor_config.json"] };

    /// <summary>What <c>BlipProcessor.FromPretrained</c> reads: the tokenizer and image processor files.</summary>
    public static HubFileSet Processor { get; } = new()
    {
        Required = [.. Tokenizer.Required, .. ImageProcessor.Required],
        Optional = Tokenizer.Optional,
    };

    /// <summary>
    /// Everything a BLIP model folder holds: <c>config.json</c> and the weights (required), the tokenizer files,
    /// <c>preprocessor_config.json</c> and <c>generation_config.json</c> (each fetched when present).
    /// </summary>
    public static HubFileSet All { get; } = new()
    {
        Required = [ConfigFile],
        Optional = [.. Processor.Required, .. Processor.Optional, .. Model.Optional],
        IncludeWeights = true,
    };

    /// <summary>An explicit list of files, all required.</summary>
    public static HubFileSet Of(params string[] required) => new() { Required = [.. required] };
}
