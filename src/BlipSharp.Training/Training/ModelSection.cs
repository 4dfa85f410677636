using System.Text.Json.Nodes;

namespace BlipSharp.Training.Training;

/// <summary>Reads values of a recipe's <c>model</c> and <c>evaluation</c> sections, which each task interprets itself.</summary>
internal static class ModelSection
{
    /// <summary>The value of <c>model.KEY</c> (or <c>PREFIX.KEY</c>), or <paramref name="fallback"/> when absent or null.</summary>
    /// <exception cref="TrainingConfigException">The value has the wrong type; the message names the key.</exception>
    public static T Read<T>(JsonObject section, string key, T fallback, string prefix = "model")
    {
        var node = section[key];
        if (node is null) return fallback;
        try
        {
            return node.GetValue<T>();
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw new TrainingConfigException(prefix + "." + key, $"has a value of the wrong type (got {node.ToJsonString()})");
        }
    }
}
