using System.Globalization;
using static TorchSharp.torch;

namespace BlipSharp.Bench;

/// <summary>The parts of the benchmark.</summary>
[Flags]
internal enum Sections
{
    None = 0,
    /// <summary>GEMM throughput (the yardstick).</summary>
    Gemm = 1,
    /// <summary>Vision encoder time and achieved GFLOP/s.</summary>
    Vision = 2,
    /// <summary>Image-text matching, from image states and end to end.</summary>
    Itm = 4,
    /// <summary>Unimodal text embeddings per second.</summary>
    Text = 8,
    /// <summary>Vision encoder with each attention kernel, and without inference mode.</summary>
    Kernels = 16,
    /// <summary>Per-op times of one vision block.</summary>
    Ops = 32,
    /// <summary>Live tensors and RSS over many vision + ITM calls.</summary>
    Stability = 64,
    /// <summary>Captioning (beam 3 and greedy, 20 new tokens) against the vision encoder.</summary>
    Generation = 128,
    /// <summary>bfloat16 vs float32 output deviation on the hf-blip fixture models (BLIP_FIXTURES_DIR).</summary>
    Fixtures = 256,
    All = Gemm | Vision | Itm | Text | Kernels | Ops | Stability | Generation | Fixtures,
    /// <summary>
    /// Peak RSS and time of the retrieval evaluator at COCO's counts with a tiny model (minutes; not in <see cref="All"/>).
    /// Runs before the BLIP-base models are built, which it then skips when it is the only section.
    /// </summary>
    RetrievalEval = 512,
    /// <summary>
    /// Images/s of the CapFilt engine (captioner + filter) at BLIP-base shapes over generated images (minutes; not in
    /// <see cref="All"/>). Runs before the other sections' models are built, which it then skips when it is the only section.
    /// </summary>
    CapFilt = 1024,
}

/// <summary>Command-line options.</summary>
internal sealed record BenchOptions
{
    public Sections Sections { get; init; } = Sections.All;
    public int Reps { get; init; } = 10;
    public int Warmup { get; init; } = 2;
    public int Threads { get; init; } = 2;
    public int Batch { get; init; } = 1;
    public int ImageSize { get; init; } = 384;
    public int TextBatch { get; init; } = 32;
    public int TextLength { get; init; } = 35;
    public int StabilityCalls { get; init; } = 200;
    public int GemmSize { get; init; } = 2048;
    public IReadOnlyList<ScalarType> DTypes { get; init; } = [ScalarType.Float32, ScalarType.BFloat16];
    public int RetrievalImages { get; init; } = 5000;
    public int RetrievalTexts { get; init; } = 25000;
    public IReadOnlyList<int> RetrievalK { get; init; } = [4];
    public int ItmBatch { get; init; } = 256;
    public int CapFiltImages { get; init; } = 64;
    public int CapFiltBatch { get; init; } = 32;
    public int CaptionLength { get; init; } = 15;
    public int CapFiltProbe { get; init; } = 8;
    public bool TunedMalloc { get; init; }
    public long Seed { get; init; }
    public bool Help { get; init; }

    public const string Usage = """
        BlipSharp benchmark: BLIP-base shapes (BlipConfig defaults), random weights, float32 and bfloat16
        measured in one run with the cases interleaved round by round, so ratios hold under background load.
        Prints markdown to stdout, progress to stderr.

        usage: dotnet run -c Release --project bench/BlipSharp.Bench -- [options]

          --sections LIST      comma list of gemm, vision, itm, text, kernels, ops, stability, generation, fixtures,
                               or all (default all); retrieval-eval (not in all) measures the retrieval evaluator
                               with a tiny model at COCO's counts (several minutes); capfilt (not in all) measures
                               blip capfilt's engine at BLIP-base shapes (several minutes)
          --reps N             timed rounds per measurement (default 10); medians are reported
          --warmup N           untimed calls per case first (default 2)
          --threads N          torch intra-op threads (default 2)
          --batch N            images per vision call (default 1)
          --image-size N       pixels per side (default 384, the BLIP-base config)
          --text-batch N       texts per text-embedding call (default 32)
          --text-len N         tokens per text (default 35, BLIP's retrieval max_length)
          --stability-calls N  vision + ITM calls in the memory-stability loop (default 200)
          --gemm-size N        side of the square GEMM yardstick (default 2048)
          --dtypes LIST        fp32, bf16 or fp32,bf16 (default both)
          --retrieval-images N images in retrieval-eval (default 5000, COCO's test split)
          --retrieval-texts N  texts in retrieval-eval (default 25000)
          --retrieval-k LIST   comma list of k_test values, one evaluation each (default 4)
          --itm-batch N        ITM pairs per forward in retrieval-eval (default 256)
          --capfilt-images N   images per capfilt run (default 64)
          --capfilt-batch N    capfilt images per batch and records per chunk (default 32, the CLI's batch)
          --caption-length N   capfilt's forced-length run: tokens counting [DEC] and the prompt (default 15)
          --capfilt-probe N    images of capfilt's generated-length probe (default 8; 0: none)
          --malloc MODE        default (glibc as is) or tuned (mallopt: keep freed memory, see RESULTS.md)
          --seed N             weight and input seed (default 0)
          -h, --help           this text
        """;

    public static BenchOptions Parse(IReadOnlyList<string> args)
    {
        var o = new BenchOptions();
        for (int i = 0; i < args.Count; i++)
        {
            string name = args[i];
            string Value() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"{name} needs a value.");
            int Int() => int.TryParse(Value(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= 0
                ? v : throw new ArgumentException($"{name} needs a non-negative integer.");
            o = name switch
            {
                "--sections" => o with { Sections = ParseSections(Value()) },
                "--reps" => o with { Reps = Math.Max(1, Int()) },
                "--warmup" => o with { Warmup = Int() },
                "--threads" => o with { Threads = Math.Max(1, Int()) },
                "--batch" => o with { Batch = Math.Max(1, Int()) },
                "--image-size" => o with { ImageSize = Math.Max(16, Int()) },
                "--text-batch" => o with { TextBatch = Math.Max(1, Int()) },
                "--text-len" => o with { TextLength = Math.Max(2, Int()) },
                "--stability-calls" => o with { StabilityCalls = Int() },
                "--gemm-size" => o with { GemmSize = Math.Max(64, Int()) },
                "--dtypes" => o with { DTypes = ParseDTypes(Value()) },
                "--retrieval-images" => o with { RetrievalImages = Math.Max(1, Int()) },
                "--retrieval-texts" => o with { RetrievalTexts = Math.Max(1, Int()) },
                "--retrieval-k" => o with { RetrievalK = ParseInts(name, Value()) },
                "--itm-batch" => o with { ItmBatch = Math.Max(1, Int()) },
                "--capfilt-images" => o with { CapFiltImages = Math.Max(1, Int()) },
                "--capfilt-batch" => o with { CapFiltBatch = Math.Max(1, Int()) },
                "--caption-length" => o with { CaptionLength = Math.Max(5, Int()) },
                "--capfilt-probe" => o with { CapFiltProbe = Int() },
                "--malloc" => o with
                {
                    TunedMalloc = Value() switch
                    {
                        "tuned" => true,
                        "default" => false,
                        var m => throw new ArgumentException($"--malloc: '{m}' is not default or tuned."),
                    },
                },
                "--seed" => o with { Seed = Int() },
                "-h" or "--help" => o with { Help = true },
                _ => throw new ArgumentException($"unknown option '{name}' (see --help)."),
            };
        }
        return o;
    }

    private static Sections ParseSections(string list)
    {
        var result = Sections.None;
        foreach (string part in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            result |= Enum.TryParse<Sections>(part.Replace("-", ""), ignoreCase: true, out var s) && s != Sections.None
                ? s : throw new ArgumentException($"--sections: unknown section '{part}'.");
        }
        return result;
    }

    private static List<int> ParseInts(string name, string list) =>
        list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(v =>
            int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n > 0
                ? n : throw new ArgumentException($"{name}: '{v}' is not a positive integer.")).ToList();

    private static List<ScalarType> ParseDTypes(string list) =>
        list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(d => d switch
        {
            "fp32" or "float32" => ScalarType.Float32,
            "bf16" or "bfloat16" => ScalarType.BFloat16,
            _ => throw new ArgumentException($"--dtypes: '{d}' is not fp32 or bf16."),
        }).Distinct().ToList();
}
