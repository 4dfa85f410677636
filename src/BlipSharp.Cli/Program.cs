namespace BlipSharp.Cli;

internal static class Program
{
    private static Task<int> Main(string[] args) => BlipCli.RunAsync(args, Console.Out, Console.Error);
}
