using BlipSharp.Cli;
using BlipSharp.Tests.Training;

namespace BlipSharp.Tests;

/// <summary>
/// The test assembly's entry point (the test SDK's generated one is turned off): <c>dotnet BlipSharp.Tests.dll blip ARGS</c>
/// runs the <c>blip</c> command with the test tasks registered, so tests can run, kill and resume training in a child
/// process. The test runner never calls it.
/// </summary>
public static class TestHost
{
    public static async Task<int> Main(string[] args)
    {
        if (args.Length == 0 || args[0] != "blip")
        {
            await Console.Error.WriteLineAsync("usage: dotnet BlipSharp.Tests.dll blip <blip arguments>");
            return 2;
        }
        ContrastiveTestTask.Register();
        return await BlipCli.RunAsync(args[1..]);
    }
}
