using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace BlipSharp.Training.Training;

/// <summary>
/// Reads training recipes: a JSON file, then <c>key=value</c> overrides with dotted keys
/// (<c>train.lr=1e-4</c>, <c>data.train_files=["a.json","b.json"]</c>, <c>output.dir=runs/x</c>). Unknown keys and
/// values of the wrong type are errors that name the key; the <c>model</c> section is left to the task.
/// </summary>
public static class TrainingConfigLoader
{
    /// <summary>The JSON settings of recipes: snake_case keys and enum values, unknown keys refused.</summary>
    public static JsonSerializerOptions JsonOptions { get; } = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower, allowIntegerValues: false) },
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        WriteIndented = true,
    };

    /// <summary>Reads <paramref name="path"/>, applies <paramref name="overrides"/> in order and validates.</summary>
    /// <param name="path">A recipe file.</param>
    /// <param name="overrides"><c>key=value</c> strings; a value that is not JSON is taken as a string.</param>
    public static TrainingConfig Load(string path, IEnumerable<string>? overrides = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"training config not found: {path}", path);
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new TrainingConfigException($"{path}: not valid JSON: {e.Message}", e);
        }
        if (node is not JsonObject root) throw new TrainingConfigException($"{path}: a training config must be a JSON object");
        return FromJson(root, overrides);
    }

    /// <summary>Applies <paramref name="overrides"/> to a copy of <paramref name="json"/>, checks every key, deserializes and validates.</summary>
    /// <param name="json">The recipe as JSON.</param>
    /// <param name="overrides"><c>key=value</c> strings.</param>
    public static TrainingConfig FromJson(JsonObject json, IEnumerable<string>? overrides = null)
    {
        var root = (JsonObject)json.DeepClone();
        foreach (string o in overrides ?? []) Apply(root, o);
        CheckKeys(root, typeof(TrainingConfig), "");
        TrainingConfig config;
        try
        {
            config = root.Deserialize<TrainingConfig>(JsonOptions) ?? throw new TrainingConfigException("the training config is null");
        }
        catch (JsonException e)
        {
            string key = KeyOf(e.Path);
            throw new TrainingConfigException(key, $"has a value of the wrong type ({Describe(root, key)}): expected {Expected(key)}");
        }
        config.Validate();
        return config;
    }

    /// <summary>The resolved recipe as JSON: every key, defaults filled in (what is saved next to checkpoints).</summary>
    /// <param name="config">The recipe.</param>
    public static JsonObject ToJson(TrainingConfig config) => (JsonObject)JsonSerializer.SerializeToNode(config, JsonOptions)!;

    /// <summary>The resolved recipe as indented JSON text.</summary>
    /// <param name="config">The recipe.</param>
    public static string ToJsonText(TrainingConfig config) => ToJson(config).ToJsonString(JsonOptions);

    /// <summary>Sets one dotted key: <c>train.lr=1e-4</c>. Objects on the way are created.</summary>
    /// <param name="root">The recipe.</param>
    /// <param name="assignment"><c>key=value</c>.</param>
    public static void Apply(JsonObject root, string assignment)
    {
        int eq = assignment.IndexOf('=', StringComparison.Ordinal);
        if (eq <= 0) throw new TrainingConfigException($"override '{assignment}' must look like key=value, e.g. train.lr=1e-4");
        string key = assignment[..eq].Trim();
        string text = assignment[(eq + 1)..];
        string[] parts = key.Split('.');
        if (parts.Any(p => p.Length == 0)) throw new TrainingConfigException($"override '{assignment}': '{key}' is not a dotted key");
        JsonNode? value;
        try
        {
            value = JsonNode.Parse(text);
        }
        catch (JsonException)
        {
            value = JsonValue.Create(text); // a bare word or path: a string
        }
        JsonObject obj = root;
        for (int i = 0; i < parts.Length - 1; i++)
        {
            var next = obj[parts[i]];
            if (next is null)
            {
                next = new JsonObject();
                obj[parts[i]] = next;
            }
            if (next is not JsonObject nextObject)
                throw new TrainingConfigException(string.Join('.', parts[..(i + 1)]), $"is not a section, cannot set {key}");
            obj = nextObject;
        }
        obj[parts[^1]] = value;
    }

    private static void CheckKeys(JsonObject node, Type type, string prefix)
    {
        var properties = Properties(type);
        foreach (var (name, child) in node)
        {
            string key = prefix + name;
            if (!properties.TryGetValue(name, out var property))
            {
                string? near = Closest(name, properties.Keys);
                string hint = near is null ? "" : $"; did you mean '{prefix}{near}'?";
                throw new TrainingConfigException(key, $"is not a known key (known in {(prefix.Length == 0 ? "the top level" : prefix.TrimEnd('.'))}: {string.Join(", ", properties.Keys)}){hint}");
            }
            if (IsSection(property.PropertyType))
            {
                if (child is not JsonObject section) throw new TrainingConfigException(key, $"must be an object (got {child?.ToJsonString() ?? "null"})");
                CheckKeys(section, property.PropertyType, key + ".");
            }
        }
    }

    private static bool IsSection(Type t) => t.IsClass && t != typeof(string) && t.Namespace == typeof(TrainingConfig).Namespace;

    private static Dictionary<string, PropertyInfo> Properties(Type type) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite && p.GetCustomAttribute<JsonIgnoreAttribute>() is null)
            .ToDictionary(p => JsonOptions.PropertyNamingPolicy!.ConvertName(p.Name), StringComparer.Ordinal);

    private static string KeyOf(string? path)
    {
        // "$.train.lr" or "$['train']['lr']" or "$.data.train_files[0]"
        if (string.IsNullOrEmpty(path)) return "";
        string p = path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : path.TrimStart('$');
        p = p.Replace("['", ".", StringComparison.Ordinal).Replace("']", "", StringComparison.Ordinal).TrimStart('.');
        int bracket = p.IndexOf('[', StringComparison.Ordinal);
        return bracket >= 0 ? p[..bracket] : p;
    }

    private static string Describe(JsonObject root, string key)
    {
        JsonNode? node = root;
        foreach (string part in key.Split('.'))
            node = node is JsonObject o ? o[part] : null;
        return "got " + (node?.ToJsonString() ?? "null");
    }

    private static string Expected(string key)
    {
        Type type = typeof(TrainingConfig);
        PropertyInfo? property = null;
        foreach (string part in key.Split('.'))
        {
            if (!Properties(type).TryGetValue(part, out property)) return "another type";
            type = property.PropertyType;
        }
        var t = Nullable.GetUnderlyingType(type) ?? type;
        string nullable = Nullable.GetUnderlyingType(type) is not null || (property is not null && new NullabilityInfoContext().Create(property).WriteState == NullabilityState.Nullable) ? " or null" : "";
        string what = t switch
        {
            _ when t == typeof(int) || t == typeof(long) => "an integer",
            _ when t == typeof(double) => "a number",
            _ when t == typeof(bool) => "true or false",
            _ when t == typeof(string) => "a string",
            _ when t.IsEnum => "one of " + string.Join(", ", EnumNames(t)),
            _ when t == typeof(IReadOnlyList<string>) => "a list of strings",
            _ when t == typeof(IReadOnlyList<double>) => "a list of numbers",
            _ => "an object",
        };
        return what + nullable;
    }

    private static IEnumerable<string> EnumNames(Type t) =>
        t.GetFields(BindingFlags.Public | BindingFlags.Static).Select(f =>
            f.GetCustomAttribute<JsonStringEnumMemberNameAttribute>()?.Name ?? JsonNamingPolicy.SnakeCaseLower.ConvertName(f.Name));

    private static string? Closest(string name, IEnumerable<string> candidates)
    {
        string? best = null;
        int bestDistance = int.MaxValue;
        foreach (string c in candidates)
        {
            int d = Distance(name, c);
            if (d < bestDistance)
            {
                bestDistance = d;
                best = c;
            }
        }
        return bestDistance <= Math.Max(2, name.Length / 3) ? best : null;
    }

    private static int Distance(string a, string b)
    {
        var row = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) row[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
    }
}
