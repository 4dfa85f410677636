using System.CommandLine;
using System.Globalization;
using BlipSharp.Training.Data;
using BlipSharp.Training.Evaluation.Captioning;

namespace BlipSharp.Cli;

/// <summary>
/// <c>blip score captions --results R.json --annotations A.json</c>: COCO caption evaluation (BLEU-1..4, ROUGE-L,
/// CIDEr-D) of a results file against a COCO-format annotation file (<see cref="CaptionEvaluator"/>).
/// </summary>
internal static class ScoreCaptionsCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var results = new Option<string>("--results", "-r") { Description = "Results file: [{\"image_id\": ..., \"caption\": ...}, ...] (BLIP writes this).", Required = true };
        var annotations = new Option<string>("--annotations", "-a") { Description = "COCO caption annotation file: {\"images\": [{\"id\"}], \"annotations\": [{\"image_id\", \"caption\"}]}.", Required = true };
        var tokenizer = new Option<string>("--tokenizer") { Description = "ptb (COCO's PTBTokenizer step, default) or simple (lowercase, punctuation to spaces).", DefaultValueFactory = _ => "ptb" };
        var json = new Option<bool>("--json") { Description = "Print the corpus scores as one JSON object." };
        var perImage = new Option<string?>("--per-image") { Description = "Write every image's scores, BLEU counts and tokenised captions to this JSON file." };
        var command = new Command("captions", "COCO caption evaluation: BLEU-1..4, ROUGE-L and CIDEr-D of the results' images (METEOR and SPICE are not computed).")
        {
            results, annotations, tokenizer, json, perImage,
        };
        command.SetAction(result =>
        {
            var kind = result.GetValue(tokenizer)?.ToLowerInvariant() switch
            {
                "ptb" => CaptionTokenization.Ptb,
                "simple" => CaptionTokenization.Simple,
                var other => throw new CliException($"--tokenizer must be ptb or simple, got '{other}'."),
            };
            CaptionEvaluationResult scores;
            try
            {
                scores = CaptionEvaluator.Evaluate(CocoCaptionFiles.Read(result.GetValue(results)!, result.GetValue(annotations)!), kind);
            }
            catch (DataFormatException e)
            {
                throw new CliException(e.Message);
            }
            var c = scores.Corpus;
            if (result.GetValue(perImage) is string perImagePath)
            {
                File.WriteAllText(perImagePath, CommonOptions.ToJson(scores.Images.Select(i => new Dictionary<string, object>
                {
                    ["image_id"] = i.ImageId,
                    ["Bleu_1"] = i.Scores.Bleu1, ["Bleu_2"] = i.Scores.Bleu2, ["Bleu_3"] = i.Scores.Bleu3, ["Bleu_4"] = i.Scores.Bleu4,
                    ["ROUGE_L"] = i.Scores.RougeL, ["CIDEr"] = i.Scores.Cider,
                    ["bleu_stats"] = new { testlen = i.BleuStats.TestLength, closest_reflen = i.BleuStats.ReferenceLength, guess = i.BleuStats.Guess, correct = i.BleuStats.Correct },
                    ["candidate_tokenized"] = i.CandidateTokenized,
                    ["references_tokenized"] = i.ReferencesTokenized,
                })));
            }
            if (result.GetValue(json))
            {
                output.WriteLine(CommonOptions.ToJson(new Dictionary<string, object>
                {
                    ["images"] = scores.Images.Count,
                    ["tokenizer"] = kind.ToString().ToLowerInvariant(),
                    ["Bleu_1"] = c.Bleu1, ["Bleu_2"] = c.Bleu2, ["Bleu_3"] = c.Bleu3, ["Bleu_4"] = c.Bleu4,
                    ["ROUGE_L"] = c.RougeL, ["CIDEr"] = c.Cider,
                }));
                return BlipCli.Success;
            }
            output.WriteLine($"{scores.Images.Count} images, {kind.ToString().ToLowerInvariant()} tokenizer");
            foreach (var (name, value) in new[] { ("Bleu_1", c.Bleu1), ("Bleu_2", c.Bleu2), ("Bleu_3", c.Bleu3), ("Bleu_4", c.Bleu4), ("ROUGE_L", c.RougeL), ("CIDEr", c.Cider) })
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name,-8} {value:F6}"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"(COCO's raw values; papers, BLIP's included, print them x100: CIDEr {100 * c.Cider:F1}, BLEU-4 {100 * c.Bleu4:F1})"));
            return BlipCli.Success;
        });
        return command;
    }
}
