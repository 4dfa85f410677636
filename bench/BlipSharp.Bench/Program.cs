using BlipSharp.Bench;
using TorchSharp;

BenchOptions options;
try
{
    options = BenchOptions.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    Console.Error.WriteLine(BenchOptions.Usage);
    return 2;
}
if (options.Help)
{
    Console.WriteLine(BenchOptions.Usage);
    return 0;
}

// OMP_WAIT_POLICY is already PASSIVE here (NativeRuntime's module initializer); the allocator must be tuned
// before torch allocates anything.
bool tunedMalloc = options.TunedMalloc && NativeRuntime.TuneAllocator();
torch.set_num_threads(options.Threads);
using var bench = new Benchmark(options, tunedMalloc);
bench.Run();
return 0;
