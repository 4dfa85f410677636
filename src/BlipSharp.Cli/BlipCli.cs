using System.CommandLine;
using BlipSharp.Processing;

namespace BlipSharp.Cli;

/// <summary>The <c>blip</c> command: verbs, parsing and error reporting.</summary>
public static class BlipCli
{
    /// <summary>Exit code when every input succeeded.</summary>
    public const int Success = 0;

    /// <summary>Exit code when the run finished but some inputs (unreadable images) were skipped.</summary>
    public const int SomeInputsFailed = 1;

    /// <summary>Exit code for a usage error, a missing model or a bad option value.</summary>
    public const int UsageError = 2;

    /// <summary>Runs the command line with <paramref name="args"/>, writing results to <paramref name="output"/> and messages to <paramref name="error"/>.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error)
    {
        var parse = CreateRootCommand(output, error).Parse(args);
        // ProcessTerminationTimeout null: `pretrain` handles Ctrl+C and SIGTERM itself (it finishes the step and writes a
        // checkpoint, which can take longer than any fixed timeout); the other verbs simply end.
        var config = new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null };
        try
        {
            int code = await parse.InvokeAsync(config);
            return parse.Errors.Count > 0 ? UsageError : code;
        }
        catch (CliException e)
        {
            error.WriteLine($"blip: {e.Message}");
            return UsageError;
        }
        catch (Exception e) when (e is DirectoryNotFoundException or FileNotFoundException or Checkpoints.CheckpointFormatException
                                     or InvalidDataException or ImageDecodeException or ArgumentException or IOException or UnauthorizedAccessException
                                     or Training.Data.DataFormatException or Training.Training.TrainingConfigException or Training.Training.TrainingException)
        {
            error.WriteLine($"blip: {e.Message}");
            return UsageError;
        }
    }

    /// <summary>The <c>blip</c> command with every verb, not yet parsed (tests parse documented command lines with it).</summary>
    /// <param name="output">Where the verbs write results.</param>
    /// <param name="error">Where the verbs write messages.</param>
    internal static RootCommand CreateRootCommand(TextWriter output, TextWriter error)
    {
        var root = new RootCommand("BLIP for .NET: caption images, answer questions about them, match and embed images and texts; make training data and train.");
        root.Subcommands.Add(CaptionCommand.Create(output, error));
        root.Subcommands.Add(VqaCommand.Create(output, error));
        root.Subcommands.Add(MatchCommand.Create(output, error));
        root.Subcommands.Add(EmbedCommand.Create(output, error));
        root.Subcommands.Add(SynthCommand.Create(output, error));
        root.Subcommands.Add(PretrainCommand.Create(output, error));
        root.Subcommands.Add(FinetuneCommand.Create(output, error));
        root.Subcommands.Add(EvaluateCommand.Create(output, error));
        root.Subcommands.Add(EvaluateSynthCommand.Create(output, error));
        root.Subcommands.Add(CapFiltCommand.Create(output, error));
        root.Subcommands.Add(BootstrapCommand.Create(output, error));
        root.Subcommands.Add(ScoreCommand.Create(output, error));
        return root;
    }

    /// <summary>Runs the command line against the console.</summary>
    public static Task<int> RunAsync(string[] args) => RunAsync(args, Console.Out, Console.Error);
}
