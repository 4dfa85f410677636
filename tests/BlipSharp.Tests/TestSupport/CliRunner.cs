using BlipSharp.Cli;

namespace BlipSharp.Tests.TestSupport;

/// <summary>Runs the <c>blip</c> command line in-process and captures what it prints.</summary>
public static class CliRunner
{
    /// <summary>The exit code, standard output and standard error of <c>blip ARGS</c>.</summary>
    public static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = BlipCli.RunAsync(args, output, error).GetAwaiter().GetResult();
        return (code, output.ToString(), error.ToString());
    }
}
