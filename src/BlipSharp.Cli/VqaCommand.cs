using System.CommandLine;
using BlipSharp.Pipelines;

namespace BlipSharp.Cli;

/// <summary><c>blip vqa IMG "question"</c>: answers by generation, or ranks <c>--candidates</c>.</summary>
internal static class VqaCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var common = new CommonOptions(QuestionAnswerer.DefaultModel);
        var image = new Argument<string>("image") { Description = "The image file." };
        var question = new Argument<string>("question") { Description = "The question, e.g. \"how many dogs are there?\"" };
        var candidates = new Option<string[]>("--candidates", "-c") { Description = "Rank these answers by likelihood instead of generating one.", AllowMultipleArgumentsPerToken = true };
        var candidatesFile = new Option<string?>("--candidates-file") { Description = "Rank the answers listed in this file, one per line (e.g. VQA's answer list)." };
        var topK = new Option<int>("--top-k-candidates") { Description = "Candidates kept by the first-token filter before full scoring (BLIP: 128).", DefaultValueFactory = _ => 128 };
        var gen = new GenerationArguments(defaultBeams: 3, defaultMinLength: 1, defaultMaxLength: 10);
        var command = new Command("vqa", "Answer a question about an image.") { image, question, candidates, candidatesFile, topK };
        common.AddTo(command);
        gen.AddTo(command);
        command.SetAction(result =>
        {
            var load = common.LoadOptions(result, error);
            string file = result.GetValue(image)!;
            string q = result.GetValue(question)!;
            bool json = result.GetValue(common.Json);
            var list = (result.GetValue(candidates) ?? []).ToList();
            if (result.GetValue(candidatesFile) is string path)
            {
                if (!File.Exists(path)) throw new CliException($"candidates file not found: {path}");
                list.AddRange(File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0));
            }
            var generation = gen.Options(result);
            GenerationArguments.Validate(generation);
            using var answerer = QuestionAnswerer.FromPretrained(result.GetValue(common.Model)!, load);
            if (list.Count > 0)
            {
                var ranked = answerer.RankAnswers(file, q, list, result.GetValue(topK));
                if (json)
                {
                    output.WriteLine(CommonOptions.ToJson(new
                    {
                        image = file,
                        question = q,
                        answer = ranked[0].Text,
                        ranking = ranked.Select(r => new { answer = r.Text, log_likelihood = r.LogLikelihood, first_token_probability = r.FirstTokenProbability }),
                    }));
                }
                else
                {
                    output.WriteLine($"{file}: {q}");
                    foreach (var r in ranked) output.WriteLine($"  {r.Text}  (log-likelihood {r.LogLikelihood:F3})");
                }
                return BlipCli.Success;
            }
            var answer = answerer.Answer(file, q, new AnswerOptions { Generation = generation });
            if (json)
                output.WriteLine(CommonOptions.ToJson(new { image = file, question = q, answer = answer.Text, ids = answer.TokenIds, score = answer.Score }));
            else
                output.WriteLine($"{file}: {q} -> {answer.Text}");
            return BlipCli.Success;
        });
        return command;
    }
}
