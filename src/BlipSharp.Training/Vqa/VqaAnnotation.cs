using System.Text.Json;
using BlipSharp.Training.Data;

namespace BlipSharp.Training.Vqa;

/// <summary>Where a VQA annotation comes from, as BLIP's <c>dataset</c> field names it.</summary>
public enum VqaSource
{
    /// <summary><c>"vqa"</c>: VQA v2, several annotator answers per question.</summary>
    Vqa,

    /// <summary><c>"vg"</c>: Visual Genome QA, one answer per question.</summary>
    VisualGenome,
}

/// <summary>
/// One question of BLIP's VQA annotation files (<c>vqa_train.json</c>, <c>vqa_val.json</c>, <c>vg_qa.json</c>,
/// <c>vqa_test.json</c>): <c>{"question_id", "question", "answer", "image", "dataset"}</c>.
/// </summary>
/// <param name="QuestionId">The <c>question_id</c> as written (a number's digits or a string); null when absent (BLIP's training split never reads it).</param>
/// <param name="Question">The raw question (<see cref="TextCleaning.PreQuestion"/> is applied when batching).</param>
/// <param name="Answers">The answers: every annotator's answer of a VQA item (repeats included), the one answer of a Visual Genome item; empty for test items without answers.</param>
/// <param name="Image">The image path relative to the dataset's image root.</param>
/// <param name="Source">The <c>dataset</c> field.</param>
public sealed record VqaAnnotation(string? QuestionId, string Question, IReadOnlyList<string> Answers, string Image, VqaSource Source);

/// <summary>Which fields a VQA annotation file must have, as BLIP's <c>vqa_dataset</c> splits read them.</summary>
public enum VqaSplit
{
    /// <summary>Training (<c>vqa_train.json</c>, <c>vqa_val.json</c>, <c>vg_qa.json</c>): <c>answer</c> is required.</summary>
    Train,

    /// <summary>Test (<c>vqa_test.json</c>): <c>question_id</c> is required, <c>answer</c> optional.</summary>
    Test,
}

/// <summary>
/// Reads BLIP's VQA annotation files: a JSON list of records. A VQA item's <c>answer</c> is a list of strings (the
/// annotators' answers), a Visual Genome item's a single string (BLIP wraps it as <c>[ann['answer']]</c>; a list there, or
/// a string for a VQA item, which BLIP would iterate character by character, is refused). Every problem is a
/// <see cref="DataFormatException"/> naming the file, the record index and the field.
/// </summary>
public static class VqaAnnotationReader
{
    /// <summary>Reads every record of <paramref name="path"/>.</summary>
    /// <param name="path">A JSON file holding a list of annotation records.</param>
    /// <param name="split">Which fields are required.</param>
    public static IReadOnlyList<VqaAnnotation> Read(string path, VqaSplit split = VqaSplit.Train)
    {
        var doc = VqaJsonFile.Parse(path, "an annotation file");
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Array)
                throw new DataFormatException(new DataIssue(path, "file", $"expected a JSON list of VQA records, got {Describe(doc.RootElement)}"));
            var result = new List<VqaAnnotation>(doc.RootElement.GetArrayLength());
            int index = 0;
            foreach (var element in doc.RootElement.EnumerateArray())
            {
                result.Add(Parse(element, split, path, index));
                index++;
            }
            return result;
        }
    }

    /// <summary>Parses one record; <paramref name="path"/> and <paramref name="index"/> are named in errors.</summary>
    /// <param name="element">The JSON object.</param>
    /// <param name="split">Which fields are required.</param>
    /// <param name="path">The file it came from.</param>
    /// <param name="index">Its index in the file's list.</param>
    public static VqaAnnotation Parse(JsonElement element, VqaSplit split, string path, int index)
    {
        string location = $"record {index}";
        DataFormatException Error(string reason) => new(new DataIssue(path, location, reason));
        if (element.ValueKind != JsonValueKind.Object) throw Error($"expected a JSON object, got {Describe(element)}");

        string RequiredString(string field)
        {
            if (!element.TryGetProperty(field, out var v)) throw Error($"missing field '{field}'");
            if (v.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(v.GetString()))
                throw Error($"field '{field}' must be a non-empty string, got {Describe(v)}");
            return v.GetString()!;
        }

        string dataset = RequiredString("dataset");
        var source = dataset switch
        {
            "vqa" => VqaSource.Vqa,
            "vg" => VqaSource.VisualGenome,
            _ => throw Error($"field 'dataset' must be \"vqa\" or \"vg\", got \"{dataset}\""),
        };
        string question = RequiredString("question");
        string image = RequiredString("image");

        string? questionId = null;
        if (element.TryGetProperty("question_id", out var id))
        {
            questionId = id.ValueKind switch
            {
                JsonValueKind.Number => id.GetRawText(),
                JsonValueKind.String when !string.IsNullOrEmpty(id.GetString()) => id.GetString(),
                _ => throw Error($"field 'question_id' must be a number or a non-empty string, got {Describe(id)}"),
            };
        }
        else if (split == VqaSplit.Test)
        {
            throw Error("missing field 'question_id'");
        }

        IReadOnlyList<string> answers = [];
        if (element.TryGetProperty("answer", out var answer))
            answers = source == VqaSource.Vqa ? AnswerList(answer, Error) : [AnswerString(answer, Error)];
        else if (split == VqaSplit.Train)
            throw Error("missing field 'answer'");
        return new VqaAnnotation(questionId, question, answers, image, source);
    }

    private static IReadOnlyList<string> AnswerList(JsonElement v, Func<string, DataFormatException> error)
    {
        if (v.ValueKind != JsonValueKind.Array)
            throw error($"field 'answer' of a \"vqa\" record must be a list of strings (the annotators' answers), got {Describe(v)}");
        var list = new List<string>(v.GetArrayLength());
        foreach (var item in v.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
                throw error($"field 'answer' must be a list of strings, but item {list.Count} is {Describe(item)}");
            list.Add(item.GetString()!);
        }
        if (list.Count == 0) throw error("field 'answer' is an empty list");
        return list;
    }

    private static string AnswerString(JsonElement v, Func<string, DataFormatException> error)
    {
        if (v.ValueKind != JsonValueKind.String)
            throw error($"field 'answer' of a \"vg\" record must be a string (its one answer), got {Describe(v)}");
        return v.GetString()!;
    }

    private static string Describe(JsonElement v) => AnnotationReader.Describe(v);
}

/// <summary>
/// Reads BLIP's <c>answer_list.json</c>: a JSON list of the candidate answer strings that rank inference chooses from
/// (VQA v2: the 3,128 most frequent training answers). Every problem is a <see cref="DataFormatException"/> naming the
/// file and the item.
/// </summary>
public static class VqaAnswerList
{
    /// <summary>Reads the list, in file order.</summary>
    /// <param name="path">The JSON file.</param>
    /// <exception cref="DataFormatException">The file is missing, not a JSON list, empty, or an item is not a non-empty string or repeats an earlier one.</exception>
    public static IReadOnlyList<string> Read(string path)
    {
        var doc = VqaJsonFile.Parse(path, "an answer list");
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Array)
                throw new DataFormatException(new DataIssue(path, "file", $"expected a JSON list of answer strings, got {AnnotationReader.Describe(doc.RootElement)}"));
            var list = new List<string>(doc.RootElement.GetArrayLength());
            var seen = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var item in doc.RootElement.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(item.GetString()))
                    throw new DataFormatException(new DataIssue(path, $"item {list.Count}", $"must be a non-empty string, got {AnnotationReader.Describe(item)}"));
                string answer = item.GetString()!;
                if (!seen.TryAdd(answer, list.Count))
                    throw new DataFormatException(new DataIssue(path, $"item {list.Count}", $"repeats the answer \"{answer}\" of item {seen[answer]}"));
                list.Add(answer);
            }
            if (list.Count == 0) throw new DataFormatException(new DataIssue(path, "file", "is an empty list: there is no answer to rank"));
            return list;
        }
    }
}

/// <summary>Opens a VQA JSON file with errors that name it: missing, a folder, or not valid JSON (with the line).</summary>
internal static class VqaJsonFile
{
    /// <summary>The parsed document (the caller disposes it).</summary>
    /// <param name="path">The file.</param>
    /// <param name="kind">What the file should be, for the folder error, e.g. "an answer list".</param>
    public static JsonDocument Parse(string path, string kind)
    {
        if (!File.Exists(path))
            throw new DataFormatException(new DataIssue(path, "file", Directory.Exists(path) ? $"is a directory, not {kind}" : "does not exist"));
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new DataFormatException(new DataIssue(path, e.LineNumber is long l ? $"line {l + 1}" : "file", $"not valid JSON: {e.Message}"), e);
        }
    }
}
