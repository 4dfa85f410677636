using System.Text.Json;
using BlipSharp.Checkpoints;
using BlipSharp.Tests.TestSupport;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Checkpoints;

/// <summary>
/// The original-BLIP fixtures: every <c>.pth</c> in a case folder (written by torch 1.13's torch.save) must load
/// with exactly the keys, order, shapes and dtypes of <c>state_dict_listing.json</c>, and hold the same values as
/// the folder's <c>model.safetensors</c> copy, tied entries included.
/// </summary>
[Trait("Category", "Parity")]
public sealed class TorchCheckpointFixtureTests
{
    private static IEnumerable<(string Case, string Pth)> Checkpoints()
    {
        var found = Directory.GetDirectories(Fixtures.BlipOriginalDir)
            .OrderBy(d => d, StringComparer.Ordinal)
            .SelectMany(d => Directory.GetFiles(d, "*.pth").Order(StringComparer.Ordinal).Select(f => (Path.GetFileName(d), f)))
            .ToList();
        if (found.Count == 0) throw new InvalidOperationException($"no *.pth file in any case folder of {Fixtures.BlipOriginalDir}");
        return found;
    }

    private static ScalarType ParseDType(string name) => name switch
    {
        "float32" => ScalarType.Float32,
        "float16" => ScalarType.Float16,
        "bfloat16" => ScalarType.BFloat16,
        "float64" => ScalarType.Float64,
        "int64" => ScalarType.Int64,
        "int32" => ScalarType.Int32,
        "uint8" => ScalarType.Byte,
        "bool" => ScalarType.Bool,
        _ => throw new ArgumentException($"unknown dtype '{name}' in state_dict_listing.json"),
    };

    [Fact]
    public void EveryListedKeyLoadsWithItsShapeAndDType()
    {
        using var listing = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Fixtures.BlipOriginalDir, "state_dict_listing.json")));
        foreach (var (caseName, pth) in Checkpoints())
        {
            Assert.True(listing.RootElement.TryGetProperty(caseName, out var entries), $"state_dict_listing.json has no '{caseName}' for {pth}");

            // BLIP's layout: torch.save({'model': state_dict}); the weights are found without naming the key.
            var root = Assert.IsType<Dictionary<string, object?>>(TorchCheckpoint.Load(pth));
            Assert.Contains("model", root.Keys);
            DisposeAll(root);

            var sd = TorchCheckpoint.LoadStateDict(pth);
            try
            {
                var expected = entries.EnumerateArray().ToList();
                Assert.Equal(expected.Select(e => e.GetProperty("key").GetString()!), sd.Keys);
                foreach (var e in expected)
                {
                    string key = e.GetProperty("key").GetString()!;
                    long[] shape = e.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
                    Assert.True(shape.SequenceEqual(sd[key].shape), $"{pth}: '{key}' has shape [{string.Join(", ", sd[key].shape)}], listing says [{string.Join(", ", shape)}]");
                    Assert.True(ParseDType(e.GetProperty("dtype").GetString()!) == sd[key].dtype, $"{pth}: '{key}' is {sd[key].dtype}, listing says {e.GetProperty("dtype")}");
                }
            }
            finally
            {
                foreach (var t in sd.Values) t.Dispose();
            }
        }
    }

    [Fact]
    public void ValuesEqualTheSafetensorsCopyTiedEntriesIncluded()
    {
        int compared = 0;
        foreach (var (caseName, pth) in Checkpoints())
        {
            string st = Path.Combine(Path.GetDirectoryName(pth)!, "model.safetensors");
            if (!File.Exists(st)) continue;
            var header = SafeTensors.ReadHeader(st);
            var order = JsonSerializer.Deserialize<string[]>(header.Metadata["state_dict_order"])!;
            var aliases = header.Metadata.TryGetValue("tied_aliases", out var json)
                ? JsonSerializer.Deserialize<Dictionary<string, string>>(json)!
                : new Dictionary<string, string>();
            var reference = SafeTensors.Load(st);
            var sd = TorchCheckpoint.LoadStateDict(pth, key: "model");
            try
            {
                Assert.Equal(order, sd.Keys);
                foreach (var (key, expected) in reference)
                {
                    Assert.True(sd.ContainsKey(key), $"{pth} lacks '{key}' of {st}");
                    AssertBitwiseEqual(expected, sd[key], $"{caseName}: '{key}'");
                }
                foreach (var (alias, target) in aliases)
                {
                    AssertBitwiseEqual(reference[target], sd[alias], $"{caseName}: tied '{alias}' (= '{target}')");
                    // torch.save kept one storage for both names; so does the reader.
                    using (no_grad()) sd[target].add_(1);
                    Assert.True(sd[alias].eq(sd[target]).all().ToBoolean() && !sd[alias].eq(reference[target]).all().ToBoolean(),
                        $"{caseName}: '{alias}' does not share storage with '{target}'");
                    using (no_grad()) sd[target].copy_(reference[target]);
                }
                Assert.Equal(order.Length, reference.Count + aliases.Count);
                compared++;
            }
            finally
            {
                foreach (var t in sd.Values) t.Dispose();
                foreach (var t in reference.Values) t.Dispose();
            }
        }
        Assert.True(compared > 0, $"no case folder of {Fixtures.BlipOriginalDir} has both a .pth and a model.safetensors to compare");
    }

    private static void AssertBitwiseEqual(Tensor expected, Tensor actual, string what)
    {
        Assert.True(expected.dtype == actual.dtype, $"{what}: dtype {actual.dtype}, expected {expected.dtype}");
        Assert.True(expected.shape.SequenceEqual(actual.shape), $"{what}: shape [{string.Join(", ", actual.shape)}], expected [{string.Join(", ", expected.shape)}]");
        using var e = expected.contiguous();
        using var a = actual.contiguous();
        Assert.True(e.bytes.SequenceEqual(a.bytes), $"{what}: values differ from the safetensors copy");
    }

    private static void DisposeAll(object? o)
    {
        switch (o)
        {
            case Tensor t: t.Dispose(); break;
            case Dictionary<string, object?> d: foreach (var v in d.Values) DisposeAll(v); break;
            case List<object?> l: foreach (var v in l) DisposeAll(v); break;
            case object?[] a: foreach (var v in a) DisposeAll(v); break;
        }
    }
}
