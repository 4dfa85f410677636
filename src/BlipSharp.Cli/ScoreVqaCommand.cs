using System.CommandLine;
using System.Globalization;
using BlipSharp.Training.Data;
using BlipSharp.Training.Evaluation.Vqa;

namespace BlipSharp.Cli;

/// <summary>
/// <c>blip score vqa --results R.json --questions Q.json --annotations A.json [--pre2021] [--json]</c>: VQA accuracy of a
/// results file (what BLIP's <c>train_vqa.py</c> writes) exactly as the official GT-Vision-Lab/VQA evaluation computes
/// it (<see cref="VqaFiles.Score"/>): overall, per answer type and per question type.
/// </summary>
internal static class ScoreVqaCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var results = new Option<string>("--results", "-r") { Description = "Results: a JSON list of {question_id, answer}.", Required = true };
        var questions = new Option<string>("--questions", "-q") { Description = "Official VQA questions file: {\"questions\": [{question_id, image_id, question}]}.", Required = true };
        var annotations = new Option<string>("--annotations", "-a")
        {
            Description = "Official VQA annotations file: {\"annotations\": [{question_id, image_id, question_type, answer_type, answers: [{answer, answer_id}]}]}.",
            Required = true,
        };
        var pre2021 = new Option<bool>("--pre2021") { Description = "Reproduce vqaEval.py as it was before 2021 (the copy in LAVIS) instead of its current version." };
        var json = new Option<bool>("--json") { Description = "Print the scores as one JSON object." };
        var command = new Command("vqa", "VQA accuracy of a results file, as the official VQA evaluation (vqaEval.py) computes it.")
        {
            results, questions, annotations, pre2021, json,
        };
        command.SetAction(result =>
        {
            var version = result.GetValue(pre2021) ? VqaEvalVersion.Pre2021 : VqaEvalVersion.Head;
            VqaAccuracyResult scores;
            try
            {
                scores = VqaFiles.Score(result.GetValue(results)!, result.GetValue(questions)!, result.GetValue(annotations)!, version);
            }
            catch (DataFormatException e)
            {
                throw new CliException(e.Message);
            }
            string versionName = version == VqaEvalVersion.Head ? "head" : "pre2021";
            if (result.GetValue(json))
            {
                output.WriteLine(CommonOptions.ToJson(new
                {
                    version = versionName,
                    questions = scores.Questions.Count,
                    overall = scores.Overall,
                    per_answer_type = scores.PerAnswerType,
                    per_question_type = scores.PerQuestionType,
                }));
                return BlipCli.Success;
            }
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"VQA accuracy ({scores.Questions.Count} questions, vqaEval.py {(version == VqaEvalVersion.Head ? "current" : "pre-2021")}): {scores.Overall:0.00}"));
            Print(output, "per answer type", scores.PerAnswerType);
            Print(output, "per question type", scores.PerQuestionType);
            return BlipCli.Success;
        });
        return command;
    }

    private static void Print(TextWriter output, string title, IReadOnlyDictionary<string, double> values)
    {
        output.WriteLine($"{title}:");
        int width = values.Keys.Max(k => k.Length);
        foreach (var (name, value) in values.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {name.PadRight(width)}  {value,6:0.00}"));
    }
}
