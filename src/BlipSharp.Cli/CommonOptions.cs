using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;
using BlipSharp.Checkpoints;
using BlipSharp.Checkpoints.Hub;
using static TorchSharp.torch;

namespace BlipSharp.Cli;

/// <summary>Options every verb shares: the model, its precision and device, threads, batching and JSON output.</summary>
internal sealed class CommonOptions
{
    public Option<string> Model { get; }
    public Option<string> DType { get; } = new("--dtype")
    {
        Description = "Model precision: float32, bfloat16 (faster on CPUs with AVX512-BF16) or float16.",
        DefaultValueFactory = _ => "float32",
    };
    public Option<string> Device { get; } = new("--device") { Description = "Torch device: cpu, cuda or cuda:N.", DefaultValueFactory = _ => "cpu" };
    public Option<int?> Threads { get; } = new("--threads") { Description = "Torch intra-op threads (default: libtorch's choice, one per core)." };
    public Option<int> BatchSize { get; } = new("--batch-size") { Description = "Images processed together.", DefaultValueFactory = _ => 8 };
    public Option<bool> Json { get; } = new("--json") { Description = "Print one JSON object per line instead of text." };
    public Option<bool> Offline { get; } = new("--offline") { Description = "Use only the local Hugging Face cache, never the network (as HF_HUB_OFFLINE=1)." };

    public CommonOptions(string defaultModel)
    {
        Model = new Option<string>("--model", "-m")
        {
            Description = $"Model: a local folder (config.json + weights + tokenizer files) or a Hugging Face hub id. Default {defaultModel}.",
            DefaultValueFactory = _ => defaultModel,
        };
    }

    public void AddTo(Command command)
    {
        command.Options.Add(Model);
        command.Options.Add(DType);
        command.Options.Add(Device);
        command.Options.Add(Threads);
        command.Options.Add(BatchSize);
        command.Options.Add(Json);
        command.Options.Add(Offline);
    }

    /// <summary>Applies threads and builds the load options; throws <see cref="CliException"/> for a bad value.</summary>
    public BlipLoadOptions LoadOptions(ParseResult result, TextWriter error)
    {
        if (result.GetValue(Threads) is int threads)
        {
            if (threads < 1) throw new CliException($"--threads must be at least 1, got {threads}.");
            set_num_threads(threads);
        }
        if (result.GetValue(BatchSize) < 1) throw new CliException($"--batch-size must be at least 1, got {result.GetValue(BatchSize)}.");
        ScalarType? dtype = result.GetValue(DType)?.ToLowerInvariant() switch
        {
            "float32" or "fp32" => null,
            "bfloat16" or "bf16" => ScalarType.BFloat16,
            "float16" or "fp16" => ScalarType.Float16,
            var other => throw new CliException($"--dtype must be float32, bfloat16 or float16, got '{other}'."),
        };
        Device device;
        try { device = new Device(result.GetValue(Device)!); }
        catch (Exception e) { throw new CliException($"--device '{result.GetValue(Device)}' is not a torch device: {e.Message}"); }
        var hub = new HubOptions
        {
            Offline = result.GetValue(Offline) ? true : null,
            Progress = new DownloadProgress(error, ProgressBar.ShouldDraw(error)),
        };
        return new BlipLoadOptions { DType = dtype, Device = device, Hub = hub, Log = line => error.WriteLine(line) };
    }

    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static string ToJson(object value) => JsonSerializer.Serialize(value, JsonOptions);
}

/// <summary>Reports model downloads on the error stream: a live line on a terminal, else one line per file when it completes.</summary>
internal sealed class DownloadProgress(TextWriter error, bool live) : IProgress<HubDownloadProgress>
{
    private readonly object _gate = new();

    public void Report(HubDownloadProgress value)
    {
        bool done = value.TotalBytes > 0 && value.BytesDownloaded >= value.TotalBytes;
        if (!live && !done) return;
        string line = $"downloading {value.RepoId}/{value.FileName}: {value.BytesDownloaded / 1048576.0:F1}/{value.TotalBytes / 1048576.0:F1} MiB";
        lock (_gate)
        {
            if (live) error.Write("\r" + line + (done ? "\n" : ""));
            else error.WriteLine(line);
        }
    }
}

/// <summary>A user error: printed as one line, exit code 2, no stack trace.</summary>
internal sealed class CliException(string message) : Exception(message);
