using System.Collections.Concurrent;
using TorchSharp;

namespace BlipSharp;

/// <summary>
/// TorchSharp <see cref="Scalar"/>s that live for the whole process, for the constants of hot paths. A C# number passed
/// where TorchSharp takes a <see cref="Scalar"/> becomes a temporary <see cref="Scalar"/> whose native handle the call
/// reads and which nothing keeps alive during the native call: a garbage collection started by another thread (image
/// decoding, data loading) can finalize it mid-call, and the op reads freed memory ("toDouble" errors, or a wrong
/// value). A cached <see cref="Scalar"/> is never collected.
/// </summary>
internal static class KeptScalars
{
    private static readonly ConcurrentDictionary<double, Scalar> Doubles = new();
    private static readonly ConcurrentDictionary<float, Scalar> Floats = new();
    private static readonly ConcurrentDictionary<long, Scalar> Longs = new();
    private static readonly Scalar False = false.ToScalar();

    /// <summary>A kept scalar of a double value.</summary>
    public static Scalar Of(double value) => Doubles.GetOrAdd(value, v => v.ToScalar());

    /// <summary>A kept scalar of a float value.</summary>
    public static Scalar Of(float value) => Floats.GetOrAdd(value, v => v.ToScalar());

    /// <summary>A kept scalar of an integer value.</summary>
    public static Scalar Of(long value) => Longs.GetOrAdd(value, v => v.ToScalar());

    /// <summary>The kept scalar <c>false</c>.</summary>
    public static Scalar OfFalse => False;
}
