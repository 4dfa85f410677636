using System.CommandLine;

namespace BlipSharp.Cli;

/// <summary>
/// <c>blip score captions|vqa ...</c>: scores a results file against its annotations with the reference evaluation
/// code's metrics (COCO caption evaluation; the official VQA evaluation). No model is loaded.
/// </summary>
internal static class ScoreCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var command = new Command("score", "Score a results file against its annotations: captions (BLEU, ROUGE-L, CIDEr-D) or VQA answers (VQA accuracy).");
        // One line per metric family; each subcommand lives in its own file.
        command.Subcommands.Add(ScoreCaptionsCommand.Create(output, error));
        command.Subcommands.Add(ScoreVqaCommand.Create(output, error));
        return command;
    }
}
