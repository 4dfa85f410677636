using System.Text.Json;
using System.Text.Json.Nodes;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Evaluation.Vqa;

namespace BlipSharp.Tests.Metrics;

/// <summary>
/// <c>vqa_golden.json</c> of the metrics fixture folder (<see cref="Fixtures.MetricsDir"/>), and official-format
/// questions / annotations / results files written from it, as the fixture's generator fed <c>vqaEvalDemo.py</c>.
/// </summary>
public sealed class VqaGolden
{
    public static string PathOf => System.IO.Path.Combine(Fixtures.MetricsDir, "vqa_golden.json");

    public JsonElement Root { get; }
    public IReadOnlyList<JsonElement> Items { get; }

    private VqaGolden(JsonElement root)
    {
        Root = root;
        Items = root.GetProperty("items").EnumerateArray().ToList();
        if (Items.Count == 0) throw new InvalidOperationException($"{PathOf} has no items");
    }

    /// <summary>Loads the fixture; a missing file is a failure (never a skip).</summary>
    public static VqaGolden Load()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(PathOf));
        return new VqaGolden(doc.RootElement.Clone());
    }

    public static long Id(JsonElement item) => item.GetProperty("question_id").GetInt64();

    public static string[] Strings(JsonElement list) => list.EnumerateArray().Select(e => e.GetString()!).ToArray();

    /// <summary>The item's annotation; GT answer j has answer_id j + 1, as in the fixture's generator.</summary>
    public static OfficialVqaAnnotation Annotation(JsonElement item) => new(
        Id(item), ImageId(item), item.GetProperty("question_type").GetString()!, item.GetProperty("answer_type").GetString()!, null,
        Strings(item.GetProperty("gt_answers")).Select((a, j) => new VqaAnswer(a, j + 1, "yes")).ToList());

    /// <summary>A synthetic image id per question (the fixture stores none): one image for every two questions.</summary>
    public static long ImageId(JsonElement item) => 500000 + Id(item) / 2;

    /// <summary>The expected block (<c>expected</c> or <c>expected_pre2021</c>).</summary>
    public JsonElement Expected(VqaEvalVersion version) => Root.GetProperty(version == VqaEvalVersion.Head ? "expected" : "expected_pre2021");

    /// <summary>The per-item result fields of a version (top level for HEAD, <c>pre2021</c> for the older one).</summary>
    public static JsonElement ItemResult(JsonElement item, VqaEvalVersion version) => version == VqaEvalVersion.Head ? item : item.GetProperty("pre2021");

    /// <summary>Writes questions.json, annotations.json and results.json into <paramref name="dir"/>; returns their paths.</summary>
    public (string Results, string Questions, string Annotations) WriteOfficialFiles(string dir)
    {
        Directory.CreateDirectory(dir);
        var questions = new JsonArray();
        var annotations = new JsonArray();
        var results = new JsonArray();
        foreach (var item in Items)
        {
            long id = Id(item);
            questions.Add(new JsonObject { ["question_id"] = id, ["image_id"] = ImageId(item), ["question"] = item.GetProperty("question").GetString() });
            var answers = new JsonArray();
            string[] gts = Strings(item.GetProperty("gt_answers"));
            for (int j = 0; j < gts.Length; j++)
                answers.Add(new JsonObject { ["answer"] = gts[j], ["answer_confidence"] = "yes", ["answer_id"] = j + 1 });
            annotations.Add(new JsonObject
            {
                ["question_id"] = id, ["image_id"] = ImageId(item), ["question_type"] = item.GetProperty("question_type").GetString(),
                ["answer_type"] = item.GetProperty("answer_type").GetString(), ["multiple_choice_answer"] = gts[0], ["answers"] = answers,
            });
            results.Add(new JsonObject { ["question_id"] = id, ["answer"] = item.GetProperty("prediction").GetString() });
        }
        var paths = (Path.Combine(dir, "results.json"), Path.Combine(dir, "questions.json"), Path.Combine(dir, "annotations.json"));
        File.WriteAllText(paths.Item1, results.ToJsonString());
        File.WriteAllText(paths.Item2, new JsonObject { ["info"] = new JsonObject(), ["task_type"] = "Open-Ended", ["data_type"] = "mscoco", ["questions"] = questions }.ToJsonString());
        File.WriteAllText(paths.Item3, new JsonObject { ["info"] = new JsonObject(), ["data_type"] = "mscoco", ["annotations"] = annotations }.ToJsonString());
        return paths;
    }
}
