using System.Runtime.InteropServices;
using BlipSharp.Configuration;
using BlipSharp.Modeling.Vision;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Bench;

/// <summary>The sections, in order; each adds rows to the summary and may print its own table.</summary>
internal sealed class Benchmark(BenchOptions options, bool tunedMalloc) : IDisposable
{
    private readonly BlipConfig _config = new BlipConfig
    {
        VisionConfig = new BlipVisionConfig { ImageSize = options.ImageSize },
    }.Normalized();
    private readonly List<Workload> _workloads = [];
    private readonly MarkdownTable _memory = new("point", "VmRSS MiB", "VmHWM MiB (peak since previous row)", "live tensors");
    private readonly List<string> _details = [];
    private MarkdownTable? _summary;
    private readonly string _loadAtStart = NativeRuntime.LoadAverage;
    private readonly string _pressureAtStart = NativeRuntime.CpuPressure;

    private IEnumerable<string> Names => _workloads.Select(w => w.Name);
    private double VisionFlops => Flops.VisionEncoder(_config.VisionConfig, options.Batch);

    public void Run()
    {
        if (options.Sections.HasFlag(Sections.RetrievalEval))
        {
            // First, in a process that holds no BLIP-base model yet, so that its peak RSS is its own.
            string section = RetrievalEvalBench.Run(options);
            if (options.Sections == Sections.RetrievalEval)
            {
                PrintHeader();
                Console.WriteLine(section);
                return;
            }
            _details.Add(section);
        }
        if (options.Sections.HasFlag(Sections.CapFilt))
        {
            // Before the other sections' models: it builds its own captioner and filter and frees them.
            string section = CapFiltBench.Run(options);
            if ((options.Sections & ~Sections.RetrievalEval) == Sections.CapFilt)
            {
                PrintHeader();
                foreach (string d in _details) Console.WriteLine(d);
                Console.WriteLine(section);
                return;
            }
            _details.Add(section);
        }
        Memory("start (torch loaded)");
        foreach (var dtype in options.DTypes)
        {
            Console.Error.WriteLine($"building {dtype} model...");
            _workloads.Add(new Workload(_config, dtype, options, withCaptioner: options.Sections.HasFlag(Sections.Generation)));
            Memory($"{_workloads[^1].Name} model built");
        }
        var headers = new List<string> { "measurement" };
        headers.AddRange(Names);
        if (_workloads.Count == 2) headers.Add($"{_workloads[1].Name} vs {_workloads[0].Name}");
        _summary = new MarkdownTable([.. headers]);

        void Section(Sections section, string name, Action run)
        {
            if ((options.Sections & section) == 0) return;
            run();
            Memory($"after {name}"); // the section's own inputs are freed by now
        }
        Section(Sections.Gemm | Sections.Vision, "gemm + vision", GemmAndVision);
        Section(Sections.Itm, "itm", Itm);
        Section(Sections.Text, "text", Text);
        if (options.Sections.HasFlag(Sections.Generation)) Generation();
        Section(Sections.Kernels, "kernels", Kernels);
        Section(Sections.Ops, "ops", Ops);
        if (options.Sections.HasFlag(Sections.Stability)) Stability();
        if (options.Sections.HasFlag(Sections.Fixtures)) _details.Add(FixtureDeviation.Table());
        Print();
    }

    // ---------------------------------------------------------------------------------------------------
    // GEMM yardstick and vision encoder, interleaved so the fraction compares numbers of the same moment.

    private void GemmAndVision()
    {
        var v = _config.VisionConfig;
        long tokens = (long)options.Batch * (v.GridSize * v.GridSize + 1);
        int n = options.GemmSize;
        var cases = new List<BenchCase>();
        using var inputs = NewDisposeScope();
        foreach (var w in _workloads)
        {
            if (options.Sections.HasFlag(Sections.Gemm))
            {
                var a = randn(n, n).to_type(w.DType);
                var b = randn(n, n).to_type(w.DType);
                var c = zeros(n, n).to_type(w.DType);
                // Into a kept output: a fresh 16 MB result per call would churn the allocator the vision calls share.
                cases.Add(new($"gemm/{w.Name}", () => c.addmm_(a, b, beta: 0, alpha: 1)));
                var x = randn(tokens, v.HiddenSize).to_type(w.DType);
                var weight = (randn(v.IntermediateSize, v.HiddenSize) * 0.02).to_type(w.DType);
                var bias = zeros(v.IntermediateSize).to_type(w.DType);
                cases.Add(new($"linear/{w.Name}", () => nn.functional.linear(x, weight, bias)));
            }
            if (options.Sections.HasFlag(Sections.Vision))
                cases.Add(new($"vision/{w.Name}", w.Vision));
        }
        var r = Interleaved.Run(cases, options.Warmup, options.Reps, "gemm + vision");
        double gemmFlops = Flops.Gemm(n, n, n), linearFlops = Flops.Gemm(tokens, v.HiddenSize, v.IntermediateSize);

        if (options.Sections.HasFlag(Sections.Gemm))
        {
            Row($"GEMM {n}x{n}x{n} matmul, GFLOP/s", w => Fmt.Num(gemmFlops / r[$"gemm/{w}"].Median / 1e9),
                (a, b) => Fmt.Ratio(r[$"gemm/{a}"].MedianRatioTo(r[$"gemm/{b}"])));
            Row($"Linear {tokens}x{v.HiddenSize} -> {v.IntermediateSize} (ViT MLP fc1 shape), GFLOP/s",
                w => Fmt.Num(linearFlops / r[$"linear/{w}"].Median / 1e9),
                (a, b) => Fmt.Ratio(r[$"linear/{a}"].MedianRatioTo(r[$"linear/{b}"])));
        }
        if (!options.Sections.HasFlag(Sections.Vision)) return;
        Row($"Vision encoder, batch {options.Batch}, {v.ImageSize} px: median (min)",
            w => $"{Fmt.Sec(r[$"vision/{w}"].Median)} ({Fmt.Sec(r[$"vision/{w}"].Min)})",
            (a, b) => Fmt.Ratio(r[$"vision/{a}"].MedianRatioTo(r[$"vision/{b}"])));
        Row($"Vision encoder, GFLOP/s ({VisionFlops / 1e9:F1} GFLOP counted)",
            w => Fmt.Num(VisionFlops / r[$"vision/{w}"].Median / 1e9), null);
        if (options.Sections.HasFlag(Sections.Gemm))
        {
            Row("Vision GFLOP/s as a fraction of the GEMM's (same dtype, per-round median)",
                w => Fmt.Pct(Fraction(r[$"vision/{w}"], VisionFlops, r[$"gemm/{w}"], gemmFlops)), null);
            Row("Vision GFLOP/s as a fraction of the fc1-shape linear's",
                w => Fmt.Pct(Fraction(r[$"vision/{w}"], VisionFlops, r[$"linear/{w}"], linearFlops)), null);
        }
        Row("Minor page faults per vision call (median)", w => Fmt.Num(r[$"vision/{w}"].MedianFaults, "F0"), null);
        Row("Model weights, MiB", w => Fmt.MiB(WeightBytes(w) / 1048576.0), null);
    }

    private static double Fraction(Samples model, double modelFlops, Samples gemm, double gemmFlops) =>
        Samples.MedianOf(model.Seconds.Zip(gemm.Seconds, (tm, tg) => modelFlops / tm / (gemmFlops / tg)).ToList());

    // ---------------------------------------------------------------------------------------------------

    private void Itm()
    {
        var cases = new List<BenchCase>();
        foreach (var w in _workloads)
        {
            cases.Add(new($"itm-embeds/{w.Name}", w.ItmFromEmbeds));
            cases.Add(new($"itm-e2e/{w.Name}", w.ItmEndToEnd));
        }
        var r = Interleaved.Run(cases, options.Warmup, options.Reps, "itm");
        int imageTokens = _config.VisionConfig.GridSize * _config.VisionConfig.GridSize + 1;
        double flops = Flops.TextEncoder(_config.TextConfig, 1, options.TextLength, imageTokens);
        Row($"ITM from image states (image-grounded text encoder + itm_head, 1 image x 1 text of {options.TextLength} tokens)",
            w => Fmt.Sec(r[$"itm-embeds/{w}"].Median), (a, b) => Fmt.Ratio(r[$"itm-embeds/{a}"].MedianRatioTo(r[$"itm-embeds/{b}"])));
        Row($"  same, GFLOP/s ({flops / 1e9:F1} GFLOP counted; image K/V projections dominate)",
            w => Fmt.Num(flops / r[$"itm-embeds/{w}"].Median / 1e9), null);
        Row("ITM end to end (pixels -> vision -> ITM)",
            w => Fmt.Sec(r[$"itm-e2e/{w}"].Median), (a, b) => Fmt.Ratio(r[$"itm-e2e/{a}"].MedianRatioTo(r[$"itm-e2e/{b}"])));
    }

    private void Text()
    {
        var cases = _workloads.Select(w => new BenchCase($"text/{w.Name}", w.TextEmbeddings)).ToList();
        var r = Interleaved.Run(cases, options.Warmup, options.Reps, "text");
        double flops = Flops.TextEncoder(_config.TextConfig, options.TextBatch, options.TextLength, 0);
        Row($"Text embeddings (unimodal encoder + text_proj), batch {options.TextBatch} x {options.TextLength} tokens: texts/s",
            w => Fmt.Num(options.TextBatch / r[$"text/{w}"].Median, "F0"),
            (a, b) => Fmt.Ratio(r[$"text/{a}"].MedianRatioTo(r[$"text/{b}"])));
        Row($"  same, GFLOP/s ({flops / 1e9:F1} GFLOP per batch)", w => Fmt.Num(flops / r[$"text/{w}"].Median / 1e9), null);
    }

    // ---------------------------------------------------------------------------------------------------
    // Captioning from pixels, batch 1, exactly 20 new tokens, beam 3 and greedy, interleaved with the captioning
    // model's own vision encoder so that the caption / vision ratio compares numbers of the same rounds.
    private void Generation()
    {
        var cases = new List<BenchCase>();
        foreach (var w in _workloads)
        {
            cases.Add(new($"cap-vision/{w.Name}", w.CaptionVision));
            cases.Add(new($"beam3/{w.Name}", () => w.Caption(3)));
            cases.Add(new($"greedy/{w.Name}", () => w.Caption(1)));
        }
        var r = Interleaved.Run(cases, options.Warmup, options.Reps, "generation");
        double Ratio(string a, string b) => Samples.MedianOf(r[a].Seconds.Zip(r[b].Seconds, (x, y) => x / y).ToList());
        Row("Caption, beam 3, 20 new tokens, batch 1, from pixels: median (min)",
            w => $"{Fmt.Sec(r[$"beam3/{w}"].Median)} ({Fmt.Sec(r[$"beam3/{w}"].Min)})",
            (a, b) => Fmt.Ratio(r[$"beam3/{a}"].MedianRatioTo(r[$"beam3/{b}"])));
        Row("  beam-3 caption / vision encoder time (per-round median; goal <= 1.5)",
            w => Fmt.Num(Ratio($"beam3/{w}", $"cap-vision/{w}"), "F2"), null);
        Row("Caption, greedy, 20 new tokens, batch 1, from pixels: median (min)",
            w => $"{Fmt.Sec(r[$"greedy/{w}"].Median)} ({Fmt.Sec(r[$"greedy/{w}"].Min)})",
            (a, b) => Fmt.Ratio(r[$"greedy/{a}"].MedianRatioTo(r[$"greedy/{b}"])));
        Row("  greedy caption / vision encoder time (per-round median)",
            w => Fmt.Num(Ratio($"greedy/{w}", $"cap-vision/{w}"), "F2"), null);

        // Decoding reads every decoder weight once per step whatever the number of rows, so batching images
        // amortises it: the same ratio for 8 images captioned together (fewer rounds: each call is long).
        const int images = 8;
        var batched = new List<BenchCase>();
        foreach (var w in _workloads)
        {
            batched.Add(new($"cap-vision8/{w.Name}", () => w.CaptionVisionBatch(images)));
            batched.Add(new($"beam3x8/{w.Name}", () => w.CaptionBatch(images)));
        }
        var b8 = Interleaved.Run(batched, 1, Math.Max(2, options.Reps / 3), "generation, batch 8");
        Row($"Caption, beam 3, 20 new tokens, batch {images}: per image",
            w => Fmt.Sec(b8[$"beam3x8/{w}"].Median / images),
            (a, b) => Fmt.Ratio(b8[$"beam3x8/{a}"].MedianRatioTo(b8[$"beam3x8/{b}"])));
        Row($"  beam-3 caption / vision encoder time, batch {images} (per-round median)",
            w => Fmt.Num(Samples.MedianOf(b8[$"beam3x8/{w}"].Seconds.Zip(b8[$"cap-vision8/{w}"].Seconds, (x, y) => x / y).ToList()), "F2"), null);
        Memory("after generation");
    }

    // ---------------------------------------------------------------------------------------------------
    // Attention kernels and grad modes on the whole vision encoder: the before/after of the kernel choice.

    private void Kernels()
    {
        var variants = new (string Key, string Label, AttentionKernel Kernel, bool Pad)[]
        {
            ("Auto", "Auto (default): fused SDPA in fp32; explicit attention + tokens padded to a multiple of 8 in bf16", AttentionKernel.Auto, true),
            ("Before", "Before this change: fused SDPA, no padding (the earlier code)", AttentionKernel.Fused, false),
            ("Fused", "Fused SDPA, padded in bf16", AttentionKernel.Fused, true),
            ("Explicit", "Explicit attention (matmul, softmax, matmul in head groups), padded in bf16", AttentionKernel.Explicit, true),
            ("NoPad", "Auto attention without token padding", AttentionKernel.Auto, false),
        };
        var cases = new List<BenchCase>();
        foreach (var w in _workloads)
        {
            var vision = w.Model.vision_model;
            foreach (var (key, _, kernel, pad) in variants)
                cases.Add(new($"{key}/{w.Name}", () => WithSettings(vision, kernel, pad, w.Vision)));
            cases.Add(new($"no_grad/{w.Name}", () =>
            {
                using var notInference = inference_mode(false);
                using var noGrad = no_grad();
                w.Vision();
            }));
            cases.Add(new($"autograd/{w.Name}", () =>
            {
                using var notInference = inference_mode(false);
                using var grad = enable_grad();
                w.Vision();
            }));
        }
        var r = Interleaved.Run(cases, options.Warmup, options.Reps, "kernels");
        var table = new MarkdownTable(["vision encoder variant", .. Names.SelectMany(d => new[] { $"{d} median", $"{d}: Auto's speed-up over it", $"{d} page faults per call" })]);
        void Add(string variant, string label) => table.Add([label, .. Names.SelectMany(d =>
        {
            var s = r[$"{variant}/{d}"];
            return new[] { Fmt.Sec(s.Median), variant == "Auto" ? "" : Fmt.Ratio(s.MedianRatioTo(r[$"Auto/{d}"])), Fmt.Num(s.MedianFaults, "F0") };
        })]);
        foreach (var (key, label, _, _) in variants) Add(key, label);
        Add("no_grad", "Auto under no_grad instead of inference_mode");
        Add("autograd", "Auto with autograd recording (caller forgot no_grad)");
        _details.Add("### Vision encoder variants: attention kernel, token padding, grad mode (medians, same run)\n\n" + table);
    }

    private static void WithSettings(BlipVisionModel vision, AttentionKernel kernel, bool padTokens, Action body)
    {
        vision.SetAttentionKernel(kernel);
        vision.encoder.PadTokens = padTokens;
        try { body(); }
        finally
        {
            vision.SetAttentionKernel(AttentionKernel.Auto);
            vision.encoder.PadTokens = true;
        }
    }

    // ---------------------------------------------------------------------------------------------------
    // Where the time of one vision block goes: each op timed alone on realistic inputs.

    private void Ops()
    {
        var v = _config.VisionConfig;
        long b = options.Batch, t = v.GridSize * v.GridSize + 1, d = v.HiddenSize;
        int heads = v.NumAttentionHeads;
        long hd = d / heads;
        var rowsOf = new Dictionary<string, long>();
        string realRowsOnly = $"fc1 linear on the {t} real rows only";
        var opNames = new List<string>();
        var flops = new Dictionary<string, Func<long, double>>
        {
            ["qkv linear"] = rows => b * Flops.Gemm(rows, d, 3 * d),
            ["attention core (Auto)"] = rows => b * 2 * Flops.Gemm(rows, d, t),
            ["attention core, fused"] = rows => b * 2 * Flops.Gemm(rows, d, t),
            ["attention core, explicit"] = rows => b * 2 * Flops.Gemm(rows, d, t),
            ["projection linear"] = rows => b * Flops.Gemm(rows, d, d),
            ["fc1 linear"] = rows => b * Flops.Gemm(rows, d, v.IntermediateSize),
            [realRowsOnly] = _ => b * Flops.Gemm(t, d, v.IntermediateSize),
            ["fc2 linear"] = rows => b * Flops.Gemm(rows, v.IntermediateSize, d),
        };
        var cases = new List<BenchCase>();
        using var inputs = NewDisposeScope();
        foreach (var w in _workloads)
        {
            var vision = w.Model.vision_model;
            var block = vision.encoder.layers[0];
            var attn = block.self_attn;
            // The token count the encoder runs at: padded to a multiple of 8 in bfloat16 (BlipEncoder.PadTokens).
            long rows = w.DType == ScalarType.BFloat16 && vision.encoder.PadTokens ? (t + 7) / 8 * 8 : t;
            rowsOf[w.Name] = rows;
            Tensor x, n1, qkv, q, k, vv, ctx, merged, a, h, n2, n2Real, f1, g;
            using (inference_mode())
            {
                using var emb = vision.embeddings.forward(w.Pixels);               // (B, T, D)
                x = nn.functional.pad(emb, [0, 0, 0, rows - t]);                   // (B, T', D)
                n1 = block.layer_norm1.forward(x);
                qkv = attn.qkv.forward(n1);                                        // (B, T', 3D)
                var mixed = qkv.view(b, rows, 3, heads, hd).permute(2, 0, 3, 1, 4); // (3, B, nh, T', hd)
                (q, k, vv) = (mixed[0], mixed[1].narrow(2, 0, t), mixed[2].narrow(2, 0, t));
                ctx = attn.Attend(q, k, vv);                                       // (B, nh, T', hd)
                merged = ctx.transpose(1, 2).reshape(b, rows, d);                  // (B, T', D)
                a = attn.projection.forward(merged);
                h = x + a;
                n2 = block.layer_norm2.forward(h);
                n2Real = n2.narrow(1, 0, t).contiguous();                          // (B, T, D)
                f1 = block.mlp.fc1.forward(n2);                                    // (B, T', I)
                g = Activations.Apply(v.HiddenAct, f1);
            }
            var ops = new (string Name, Action Body)[]
            {
                ("layer_norm1", () => block.layer_norm1.forward(x)),
                ("qkv linear", () => attn.qkv.forward(n1)),
                ("split heads (views)", () => qkv.view(b, rows, 3, heads, hd).permute(2, 0, 3, 1, 4).select(0, 0)),
                ("attention core (Auto)", () => attn.Attend(q, k, vv)),
                ("attention core, fused", () => WithKernel(attn, AttentionKernel.Fused, () => attn.Attend(q, k, vv))),
                ("attention core, explicit", () => WithKernel(attn, AttentionKernel.Explicit, () => attn.Attend(q, k, vv))),
                ("merge heads (copy)", () => ctx.transpose(1, 2).reshape(b, rows, d)),
                ("projection linear", () => attn.projection.forward(merged)),
                ("residual add (attention)", () => x.add(a)),
                ("layer_norm2", () => block.layer_norm2.forward(h)),
                ("fc1 linear", () => block.mlp.fc1.forward(n2)),
                (realRowsOnly, () => block.mlp.fc1.forward(n2Real)),
                ($"activation ({v.HiddenAct})", () => Activations.Apply(v.HiddenAct, f1)),
                ("fc2 linear", () => block.mlp.fc2.forward(g)),
                ("residual add (MLP)", () => h.add(a)),
                ("whole block", () => block.Forward(x, t)),
                ("patch + position embeddings", () => vision.embeddings.forward(w.Pixels)),
                ("post_layernorm", () => vision.post_layernorm.forward(x)),
            };
            foreach (var (name, body) in ops)
            {
                if (!opNames.Contains(name)) opNames.Add(name);
                cases.Add(new($"{name}/{w.Name}", body));
            }
        }
        var r = Interleaved.Run(cases, options.Warmup, options.Reps * 3, "ops");
        double blockFlops = (VisionFlops - b * 2.0 * v.GridSize * v.GridSize * d * v.NumChannels * v.PatchSize * v.PatchSize) / v.NumHiddenLayers;
        string[] inBlock = ["layer_norm1", "qkv linear", "split heads (views)", "attention core (Auto)", "merge heads (copy)", "projection linear",
            "residual add (attention)", "layer_norm2", "fc1 linear", $"activation ({v.HiddenAct})", "fc2 linear", "residual add (MLP)"];
        var table = new MarkdownTable(["op of vision block 0", .. Names.Select(n => $"{n} ms"), .. Names.Select(n => $"{n} GFLOP/s"),
            .. Names.Select(n => $"{n} share of block"), .. Names.Select(n => $"{n} page faults")]);
        foreach (string op in opNames)
        {
            table.Add([op,
                .. Names.Select(n => Fmt.Num(r[$"{op}/{n}"].Median * 1000, "F2")),
                .. Names.Select(n => op == "whole block" ? Fmt.Num(blockFlops / r[$"{op}/{n}"].Median / 1e9)
                    : flops.TryGetValue(op, out var f) ? Fmt.Num(f(rowsOf[n]) / r[$"{op}/{n}"].Median / 1e9) : ""),
                .. Names.Select(n => inBlock.Contains(op) || op == "whole block" ? Fmt.Pct(r[$"{op}/{n}"].Median / r[$"whole block/{n}"].Median) : ""),
                .. Names.Select(n => Fmt.Num(r[$"{op}/{n}"].MedianFaults, "F0"))]);
        }
        table.Add(["sum of the block's ops (Auto attention)",
            .. Names.Select(n => Fmt.Num(inBlock.Sum(op => r[$"{op}/{n}"].Median) * 1000, "F2")),
            .. Names.Select(_ => ""),
            .. Names.Select(n => Fmt.Pct(inBlock.Sum(op => r[$"{op}/{n}"].Median) / r[$"whole block/{n}"].Median)),
            .. Names.Select(_ => "")]);
        string rowsNote = string.Join(", ", Names.Select(n => $"{n} {rowsOf[n]}"));
        _details.Add($"### One vision block, op by op (batch {b}; rows per image: {rowsNote}; GFLOP/s count real rows' work only for the whole block; " +
                     $"medians of {options.Reps * 3} interleaved rounds; {v.NumHiddenLayers} blocks per encoder)\n\n" + table);
    }

    private static void WithKernel(BlipAttention attention, AttentionKernel kernel, Action body)
    {
        var previous = attention.Kernel;
        attention.Kernel = kernel;
        try { body(); }
        finally { attention.Kernel = previous; }
    }

    // ---------------------------------------------------------------------------------------------------
    // Memory stability: many vision + ITM calls, one dispose scope each; live tensors and RSS must stay flat.

    private void Stability()
    {
        foreach (var w in _workloads) Stability(w);
    }

    private void Stability(Workload w)
    {
        int calls = options.StabilityCalls, every = Math.Max(1, calls / 10);
        var table = new MarkdownTable("calls", "live tensors", "VmRSS MiB", "VmHWM MiB", "s per call (last interval)");
        Console.Error.Write($"  stability ({w.Name}): {calls} calls");
        using var inference = inference_mode();
        Interleaved.Call(w.ItmEndToEnd); // first call outside the count: lazily created state, if any
        long live0 = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        double rss0 = NativeRuntime.RssMiB, rssAfterFirstInterval = double.NaN;
        table.Add("0", live0.ToString(), Fmt.MiB(rss0), Fmt.MiB(NativeRuntime.PeakRssMiB), "");
        double interval = 0;
        long live = live0;
        for (int i = 1; i <= calls; i++)
        {
            Interleaved.Progress($"  stability ({w.Name}): call {i}/{calls}   ");
            interval += Interleaved.Call(w.ItmEndToEnd).Seconds;
            if (i % every != 0 && i != calls) continue;
            live = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            double rss = NativeRuntime.RssMiB;
            if (double.IsNaN(rssAfterFirstInterval)) rssAfterFirstInterval = rss;
            table.Add(i.ToString(), live.ToString(), Fmt.MiB(rss), Fmt.MiB(NativeRuntime.PeakRssMiB), Fmt.Sec(interval / ((i - 1) % every + 1)));
            interval = 0;
        }
        Console.Error.WriteLine();
        double growth = NativeRuntime.RssMiB - rssAfterFirstInterval;
        string verdict = $"Live tensors {(live == live0 ? "flat" : $"CHANGED by {live - live0}")} over {calls} calls; " +
                         $"RSS {Fmt.Num(growth, "F0")} MiB from the first sample after warm-up to the last " +
                         $"({(growth <= 64 ? "flat" : "GROWING")}; glibc keeps some freed pages, so RSS plateaus rather than returning to the start).";
        _details.Add($"### Memory stability: {calls} calls of vision + ITM ({w.Name}, from pixels), one dispose scope each\n\n{table}\n{verdict}\n");
        Memory($"after stability ({w.Name})");
    }

    // ---------------------------------------------------------------------------------------------------

    private void Row(string name, Func<string, string> cell, Func<string, string, string>? ratio)
    {
        var cells = new List<string> { name };
        cells.AddRange(Names.Select(cell));
        if (_workloads.Count == 2) cells.Add(ratio?.Invoke(_workloads[0].Name, _workloads[1].Name) ?? "");
        _summary!.Add([.. cells]);
    }

    private double WeightBytes(string name)
    {
        var model = _workloads.Single(w => w.Name == name).Model;
        return model.parameters().Sum(p => (double)p.numel() * p.ElementSize);
    }

    private void Memory(string point)
    {
        _memory.Add(point, Fmt.MiB(NativeRuntime.RssMiB), Fmt.MiB(NativeRuntime.PeakRssMiB),
            DisposeScopeManager.Statistics.ThreadTotalLiveCount.ToString());
        NativeRuntime.ResetPeak();
    }

    private void Print()
    {
        PrintHeader();
        var v = _config.VisionConfig;
        Console.WriteLine($"- BLIP-base (BlipConfig defaults): ViT-B/{v.PatchSize} at {v.ImageSize} px ({v.GridSize * v.GridSize + 1} tokens), " +
                          $"text encoder {_config.TextConfig.NumHiddenLayers} x {_config.TextConfig.HiddenSize}; random weights (seed {options.Seed}); " +
                          $"inference_mode; {options.Reps} interleaved rounds after {options.Warmup} warm-up calls, medians");
        Console.WriteLine();
        Console.WriteLine(_summary);
        foreach (string d in _details) Console.WriteLine(d);
        Console.WriteLine("### Memory (process-wide: every dtype's model is loaded at once)\n");
        Console.WriteLine(_memory);
    }

    /// <summary>When, where and how the run was made; the command line.</summary>
    private void PrintHeader()
    {
        Console.WriteLine("## BlipSharp benchmark");
        Console.WriteLine();
        Console.WriteLine($"- {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; {NativeRuntime.CpuModel}, {Environment.ProcessorCount} logical CPUs" +
                          $" (avx512f {NativeRuntime.HasCpuFlag("avx512f")}, avx512_bf16 {NativeRuntime.HasCpuFlag("avx512_bf16")}), " +
                          $"{RuntimeInformation.OSDescription}, .NET {Environment.Version}, TorchSharp {typeof(torch).Assembly.GetName().Version}");
        Console.WriteLine($"- torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY={NativeRuntime.OmpWaitPolicy}, " +
                          $"allocator {(tunedMalloc ? "tuned (mallopt: mmap threshold 32 MB, trim threshold 1 GB)" : "glibc default")}");
        Console.WriteLine($"- **load average (1, 5, 15 min): {_loadAtStart} at start, {NativeRuntime.LoadAverage} at end; " +
                          $"CPU pressure (time some task waited for a CPU): {_pressureAtStart} at start, {NativeRuntime.CpuPressure} at end** " +
                          $"(on {Environment.ProcessorCount} CPUs this benchmark alone makes a load of about 1-2; more, or pressure above ~20%, means " +
                          "other processes competed: absolute times suffer, same-run ratios less)");
        string args = string.Join(' ', Environment.GetCommandLineArgs().Skip(1));
        Console.WriteLine($"- args: {(args.Length == 0 ? "(none: every section, defaults)" : args)}");
    }

    public void Dispose()
    {
        foreach (var w in _workloads) w.Dispose();
    }
}
