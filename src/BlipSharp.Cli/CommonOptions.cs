using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;
using BlipSharp.Checkpoints;
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
        return new BlipLoadOptions { DType = dtype, Device = device, Log = line => error.WriteLine(line) };
    }

    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static string ToJson(object value) => JsonSerializer.Serialize(value, JsonOptions);
}

/// <summary>A user error: printed as one line, exit code 2, no stack trace.</summary>
internal sealed class CliException(string message) : Exception(message);
