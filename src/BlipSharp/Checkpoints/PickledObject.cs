namespace BlipSharp.Checkpoints;

/// <summary>
/// A plain Python object from a checkpoint, kept as data: its class name and its attributes (<c>__dict__</c>).
/// Only allow-listed configuration classes become one (today <c>argparse.Namespace</c>, which training scripts
/// save next to the weights); no Python code is run to create it.
/// </summary>
public sealed class PickledObject
{
    internal PickledObject(string className) => ClassName = className;

    /// <summary>The Python class as <c>module.name</c>, e.g. <c>argparse.Namespace</c>.</summary>
    public string ClassName { get; }

    /// <summary>The object's attributes in file order, with values of the same types as <see cref="TorchCheckpoint.Load"/> returns.</summary>
    public IReadOnlyDictionary<string, object?> Attributes => MutableAttributes;

    internal Dictionary<string, object?> MutableAttributes { get; } = new(StringComparer.Ordinal);

    /// <inheritdoc/>
    public override string ToString() => $"{ClassName}({string.Join(", ", MutableAttributes.Keys)})";
}
