using System.Text.Json;
using BlipSharp.Training.Data;

namespace BlipSharp.Training.Evaluation.Vqa;

/// <summary>One question of an official VQA questions file.</summary>
/// <param name="QuestionId"><c>question_id</c>.</param>
/// <param name="ImageId"><c>image_id</c>.</param>
/// <param name="Question"><c>question</c>.</param>
public sealed record VqaQuestion(long QuestionId, long ImageId, string Question);

/// <summary>One human answer of an annotation.</summary>
/// <param name="Answer"><c>answer</c>, raw.</param>
/// <param name="AnswerId"><c>answer_id</c> (unique within its question).</param>
/// <param name="AnswerConfidence"><c>answer_confidence</c> (<c>yes</c>/<c>maybe</c>/<c>no</c> in VQA v2), when present.</param>
public sealed record VqaAnswer(string Answer, long AnswerId, string? AnswerConfidence);

/// <summary>One annotation of an official VQA annotations file.</summary>
/// <param name="QuestionId"><c>question_id</c>.</param>
/// <param name="ImageId"><c>image_id</c>.</param>
/// <param name="QuestionType"><c>question_type</c>.</param>
/// <param name="AnswerType"><c>answer_type</c>.</param>
/// <param name="MultipleChoiceAnswer"><c>multiple_choice_answer</c>, when present (not used for scoring).</param>
/// <param name="Answers"><c>answers</c>, in file order.</param>
public sealed record OfficialVqaAnnotation(long QuestionId, long ImageId, string QuestionType, string AnswerType, string? MultipleChoiceAnswer, IReadOnlyList<VqaAnswer> Answers);

/// <summary>One result of a VQA results file (what BLIP's <c>train_vqa.py</c> writes).</summary>
/// <param name="QuestionId"><c>question_id</c>.</param>
/// <param name="Answer"><c>answer</c>, raw.</param>
public sealed record VqaPrediction(long QuestionId, string Answer);

/// <summary>
/// Readers for the official VQA file formats (GT-Vision-Lab/VQA <c>vqa.py</c>): questions
/// <c>{"questions": [{question_id, image_id, question}]}</c>, annotations <c>{"annotations": [{question_id, image_id,
/// question_type, answer_type, multiple_choice_answer, answers: [{answer, answer_id, answer_confidence}]}]}</c> and
/// results <c>[{question_id, answer}]</c>. Every problem is a <see cref="DataFormatException"/> naming the file, the
/// record (index and, when known, question id) and the field. Other fields (<c>info</c>, <c>license</c>, ...) are ignored.
/// </summary>
public static class VqaFiles
{
    /// <summary>Reads a questions file.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The questions, in file order.</returns>
    /// <exception cref="DataFormatException">The file is missing, not JSON, or a record is malformed or repeats a question id.</exception>
    public static IReadOnlyList<VqaQuestion> ReadQuestions(string path)
    {
        using var doc = Parse(path);
        var list = new List<VqaQuestion>();
        var seen = new Dictionary<long, int>();
        int index = 0;
        foreach (var e in TopList(doc, path, "questions"))
        {
            var r = new RecordReader(path, "questions", index, e);
            long id = r.Id("question_id");
            var q = new VqaQuestion(id, r.Id("image_id"), r.String("question"));
            if (!seen.TryAdd(id, index)) r.Fail("question_id", $"repeats the question_id of record {seen[id]}");
            list.Add(q);
            index++;
        }
        return list;
    }

    /// <summary>Reads an annotations file.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The annotations, in file order.</returns>
    /// <exception cref="DataFormatException">The file is missing, not JSON, or a record is malformed, has no answers, repeats an answer_id or a question id.</exception>
    public static IReadOnlyList<OfficialVqaAnnotation> ReadAnnotations(string path)
    {
        using var doc = Parse(path);
        var list = new List<OfficialVqaAnnotation>();
        var seen = new Dictionary<long, int>();
        int index = 0;
        foreach (var e in TopList(doc, path, "annotations"))
        {
            var r = new RecordReader(path, "annotations", index, e);
            long id = r.Id("question_id");
            long imageId = r.Id("image_id");
            string questionType = r.String("question_type");
            string answerType = r.String("answer_type");
            string? mc = r.OptionalString("multiple_choice_answer");
            var answersElement = r.Field("answers", JsonValueKind.Array, "a list of answer objects");
            if (answersElement.GetArrayLength() == 0) r.Fail("answers", "is empty (VQA accuracy needs at least one human answer)");
            var answers = new List<VqaAnswer>();
            var answerIds = new Dictionary<long, int>();
            int j = 0;
            foreach (var a in answersElement.EnumerateArray())
            {
                string field = $"answers[{j}]";
                if (a.ValueKind != JsonValueKind.Object) r.Fail(field, $"must be an object, got {AnnotationReader.Describe(a)}");
                var ar = r.Nested(field, a);
                var answer = new VqaAnswer(ar.String("answer"), ar.Id("answer_id"), ar.OptionalString("answer_confidence"));
                // vqaEval leaves one answer out by dict equality; with unique answer_ids that is by position.
                if (!answerIds.TryAdd(answer.AnswerId, j)) r.Fail($"{field}.answer_id", $"repeats the answer_id {answer.AnswerId} of answers[{answerIds[answer.AnswerId]}]");
                answers.Add(answer);
                j++;
            }
            if (!seen.TryAdd(id, index)) r.Fail("question_id", $"repeats the question_id of record {seen[id]}");
            list.Add(new OfficialVqaAnnotation(id, imageId, questionType, answerType, mc, answers));
            index++;
        }
        return list;
    }

    /// <summary>Reads a results file: a JSON list of <c>{question_id, answer}</c>.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The predictions, in file order.</returns>
    /// <exception cref="DataFormatException">The file is missing, not a JSON list, or a record is malformed or repeats a question id.</exception>
    public static IReadOnlyList<VqaPrediction> ReadResults(string path)
    {
        using var doc = Parse(path);
        if (doc.RootElement.ValueKind != JsonValueKind.Array)
            throw new DataFormatException(new DataIssue(path, "file", $"expected a JSON list of {{question_id, answer}} results, got a {AnnotationReader.Kind(doc.RootElement)}"));
        var list = new List<VqaPrediction>();
        var seen = new Dictionary<long, int>();
        int index = 0;
        foreach (var e in doc.RootElement.EnumerateArray())
        {
            var r = new RecordReader(path, null, index, e);
            long id = r.Id("question_id");
            var p = new VqaPrediction(id, r.String("answer"));
            if (!seen.TryAdd(id, index)) r.Fail("question_id", $"repeats the question_id of record {seen[id]}");
            list.Add(p);
            index++;
        }
        return list;
    }

    /// <summary>
    /// Reads the three files, checks that they agree and scores the results (<c>VQA(ann, ques)</c>,
    /// <c>loadRes(res, ques)</c>, <c>VQAEval(n=2).evaluate()</c>). Every annotation's question must be in the questions
    /// file with the same image id; the results must cover exactly the annotated question ids (as <c>loadRes</c>
    /// asserts). Questions the annotations do not use are allowed.
    /// </summary>
    /// <param name="resultsPath">The results file.</param>
    /// <param name="questionsPath">The questions file.</param>
    /// <param name="annotationsPath">The annotations file.</param>
    /// <param name="version">Which reference version to reproduce.</param>
    /// <returns>The accuracy.</returns>
    /// <exception cref="DataFormatException">A file is malformed or the files disagree; the message names the file, the record and the field.</exception>
    public static VqaAccuracyResult Score(string resultsPath, string questionsPath, string annotationsPath, VqaEvalVersion version = VqaEvalVersion.Head)
    {
        var questions = ReadQuestions(questionsPath);
        var annotations = ReadAnnotations(annotationsPath);
        var results = ReadResults(resultsPath);
        if (annotations.Count == 0) throw new DataFormatException(new DataIssue(annotationsPath, "annotations", "is empty: nothing to score"));

        var questionById = new Dictionary<long, (VqaQuestion Question, int Index)>();
        for (int i = 0; i < questions.Count; i++) questionById[questions[i].QuestionId] = (questions[i], i);
        for (int i = 0; i < annotations.Count; i++)
        {
            var a = annotations[i];
            if (!questionById.TryGetValue(a.QuestionId, out var q))
                throw new DataFormatException(new DataIssue(annotationsPath, $"annotations record {i} (question_id {a.QuestionId})", $"field 'question_id': unknown question id, not in {questionsPath}"));
            if (q.Question.ImageId != a.ImageId)
                throw new DataFormatException(new DataIssue(annotationsPath, $"annotations record {i} (question_id {a.QuestionId})",
                    $"field 'image_id': {a.ImageId} is not the image of this question in {questionsPath} (questions record {q.Index}: image_id {q.Question.ImageId})"));
        }

        var annotated = annotations.Select(a => a.QuestionId).ToHashSet();
        var predictions = new Dictionary<long, string>();
        var extra = new List<(long Id, int Index)>();
        for (int i = 0; i < results.Count; i++)
        {
            if (annotated.Contains(results[i].QuestionId)) predictions[results[i].QuestionId] = results[i].Answer;
            else extra.Add((results[i].QuestionId, i));
        }
        var missing = annotations.Where(a => !predictions.ContainsKey(a.QuestionId)).Select(a => a.QuestionId).ToList();
        if (extra.Count > 0 || missing.Count > 0)
        {
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"{missing.Count} annotated question id(s) have no result ({List(missing.Select(m => m.ToString()))})");
            if (extra.Count > 0)
                parts.Add($"{extra.Count} result(s) have a question id that is not in {annotationsPath} ({List(extra.Select(x => $"record {x.Index}: question_id {x.Id}"))})");
            throw new DataFormatException(new DataIssue(resultsPath, extra.Count > 0 ? $"record {extra[0].Index}" : "file",
                "results must cover exactly the annotated question ids: " + string.Join("; ", parts)));
        }
        return VqaAccuracy.Evaluate(annotations, predictions, version);
    }

    private static string List(IEnumerable<string> items)
    {
        var all = items.ToList();
        return string.Join(", ", all.Take(10)) + (all.Count > 10 ? $", ... {all.Count - 10} more" : "");
    }

    private static JsonDocument Parse(string path)
    {
        if (!File.Exists(path))
            throw new DataFormatException(new DataIssue(path, "file", Directory.Exists(path) ? "is a directory, not a VQA file" : "does not exist"));
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException(new DataIssue(path, "file", $"cannot be read: {e.Message}"), e);
        }
        int start = bytes.Length >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF ? 3 : 0;
        try
        {
            return JsonDocument.Parse(bytes.AsMemory(start), new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            throw new DataFormatException(new DataIssue(path, e.LineNumber is long l ? $"line {l + 1}" : "file", $"not valid JSON: {e.Message}"), e);
        }
    }

    private static JsonElement.ArrayEnumerator TopList(JsonDocument doc, string path, string key)
    {
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
            throw new DataFormatException(new DataIssue(path, "file", $"expected a JSON object with a '{key}' list, got a {AnnotationReader.Kind(root)}"));
        if (!root.TryGetProperty(key, out var list))
            throw new DataFormatException(new DataIssue(path, "file", $"missing field '{key}'"));
        if (list.ValueKind != JsonValueKind.Array)
            throw new DataFormatException(new DataIssue(path, "file", $"field '{key}' must be a list, got {AnnotationReader.Describe(list)}"));
        return list.EnumerateArray();
    }

    /// <summary>Reads typed fields of one record; every failure names the file, the record index (and question id once known) and the field.</summary>
    private sealed class RecordReader
    {
        private readonly string _path;
        private readonly string? _list;
        private readonly int _index;
        private readonly JsonElement _element;
        private readonly string _prefix;
        private readonly RecordReader? _parent;
        private long? _questionId;

        public RecordReader(string path, string? list, int index, JsonElement element)
        {
            _path = path;
            _list = list;
            _index = index;
            _element = element;
            _prefix = "";
            if (element.ValueKind != JsonValueKind.Object)
                throw new DataFormatException(new DataIssue(path, Location, $"expected a JSON object, got {AnnotationReader.Describe(element)}"));
        }

        private RecordReader(RecordReader parent, string prefix, JsonElement element)
        {
            _path = parent._path;
            _list = parent._list;
            _index = parent._index;
            _element = element;
            _prefix = prefix + ".";
            _parent = parent;
        }

        private string Location
        {
            get
            {
                var root = _parent ?? this;
                string where = root._list is null ? $"record {root._index}" : $"{root._list} record {root._index}";
                return root._questionId is long id ? $"{where} (question_id {id})" : where;
            }
        }

        public RecordReader Nested(string field, JsonElement element) => new(this, field, element);

        public JsonElement Field(string name, JsonValueKind kind, string what)
        {
            if (!_element.TryGetProperty(name, out var v)) Fail(name, "is missing");
            if (v.ValueKind != kind) Fail(name, $"must be {what}, got {AnnotationReader.Describe(v)}");
            return v;
        }

        public string String(string name) => Field(name, JsonValueKind.String, "a string").GetString()!;

        public string? OptionalString(string name)
        {
            if (!_element.TryGetProperty(name, out var v)) return null;
            if (v.ValueKind != JsonValueKind.String) Fail(name, $"must be a string, got {AnnotationReader.Describe(v)}");
            return v.GetString();
        }

        public long Id(string name)
        {
            var v = Field(name, JsonValueKind.Number, "an integer");
            if (!v.TryGetInt64(out long id)) Fail(name, $"must be an integer, got {AnnotationReader.Describe(v)}");
            if (name == "question_id" && _parent is null) _questionId = id;
            return id;
        }

        [System.Diagnostics.CodeAnalysis.DoesNotReturn]
        public void Fail(string field, string reason) =>
            throw new DataFormatException(new DataIssue(_path, Location, $"field '{_prefix}{field}' {reason}"));
    }
}
