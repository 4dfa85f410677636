using System.Text;
using BlipSharp.Checkpoints;
using TorchSharp;
using BlipSharp.Tests.TestSupport;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Checkpoints;

public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-st-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void RoundTripsEveryDType()
    {
        string path = Path.Combine(_dir, "rt.safetensors");
        var tensors = new Dictionary<string, Tensor>
        {
            ["f32"] = tensor(new float[] { 1.5f, -2.25f, 3e-8f, 1e30f }).reshape(2, 2),
            ["f16"] = tensor(new float[] { 0.5f, -1.0f, 65504f }).to_type(ScalarType.Float16),
            ["bf16"] = tensor(new float[] { 0.5f, -1.0f, 3.0e38f }).to_type(ScalarType.BFloat16),
            ["i64"] = tensor(new long[] { long.MinValue, 0, long.MaxValue }),
            ["empty"] = zeros(0, 3),
        };
        SafeTensors.Save(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });
        var header = SafeTensors.ReadHeader(path);
        Assert.Equal("pt", header.Metadata["format"]);
        var loaded = SafeTensors.Load(path);
        Assert.Equal(tensors.Keys.Order(), loaded.Keys.Order());
        foreach (var (name, t) in tensors)
        {
            Assert.Equal(t.dtype, loaded[name].dtype);
            Assert.Equal(t.shape, loaded[name].shape);
            Assert.True(t.bytes.ToArray().SequenceEqual(loaded[name].bytes.ToArray()), name);
        }
        var asF32 = SafeTensors.Load(path, ScalarType.Float32);
        Assert.Equal(ScalarType.Float32, asF32["bf16"].dtype);
        Assert.Equal(ScalarType.Int64, asF32["i64"].dtype);
        Assert.Equal(65504f, asF32["f16"][2].ToSingle());
    }

    [Fact]
    public void ReadsFixtureModelWithItsRecordedKeys()
    {
        foreach (string dir in Fixtures.HfModelDirs())
        {
            var header = SafeTensors.ReadHeader(Path.Combine(dir, "model.safetensors"));
            using var cases = new FixtureCases(dir);
            var expected = cases.Json.GetProperty("saved_tensor_names").EnumerateArray().Select(e => e.GetString()!).Order(StringComparer.Ordinal);
            Assert.Equal(expected, header.Entries.Select(e => e.Name).Order(StringComparer.Ordinal));
        }
    }

    [Fact]
    public void TruncatedFileIsRejectedNamingTheTensor()
    {
        string good = Path.Combine(_dir, "good.safetensors");
        SafeTensors.Save(good, new Dictionary<string, Tensor> { ["a"] = ones(4), ["b"] = ones(8) });
        byte[] bytes = File.ReadAllBytes(good);
        string bad = Path.Combine(_dir, "truncated.safetensors");
        File.WriteAllBytes(bad, bytes[..^4]);
        var e = Assert.Throws<CheckpointFormatException>(() => SafeTensors.Load(bad));
        Assert.Contains("'b'", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void HeaderLengthBeyondFileIsRejected()
    {
        string bad = Path.Combine(_dir, "lying-length.safetensors");
        File.WriteAllBytes(bad, [.. BitConverter.GetBytes(1_000_000UL), .. "{}"u8.ToArray()]);
        var e = Assert.Throws<CheckpointFormatException>(() => SafeTensors.Load(bad));
        Assert.Contains("declares 1000000 bytes", e.Message);
    }

    [Theory]
    [InlineData("""{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}""", "needs 16 bytes")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", "overlap")]
    [InlineData("""{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}""", "unsupported dtype 'Q4'")]
    [InlineData("""{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}""", "non-negative")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2]}}""", "data_offsets")]
    [InlineData("""[1,2]""", "JSON object")]
    [InlineData("""{"w":""", "not valid JSON")]
    public void LyingHeaderIsRejected(string header, string expected)
    {
        string bad = Path.Combine(_dir, "lying.safetensors");
        byte[] json = Encoding.UTF8.GetBytes(header);
        File.WriteAllBytes(bad, [.. BitConverter.GetBytes((ulong)json.Length), .. json, .. new byte[16]]);
        var e = Assert.Throws<CheckpointFormatException>(() => SafeTensors.Load(bad));
        Assert.Contains(expected, e.Message);
        Assert.Contains(bad, e.Message);
    }

    [Fact]
    public void TinyFileIsRejected()
    {
        string bad = Path.Combine(_dir, "tiny.safetensors");
        File.WriteAllBytes(bad, [1, 2, 3]);
        Assert.Contains("too short", Assert.Throws<CheckpointFormatException>(() => SafeTensors.Load(bad)).Message);
    }
}
