using System.CommandLine;
using BlipSharp.Pipelines;

namespace BlipSharp.Cli;

/// <summary><c>blip match IMG "text"...</c>: ITM probability and ITC cosine of an image with each text.</summary>
internal static class MatchCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var common = new CommonOptions(ImageTextMatcher.DefaultModel);
        var image = new Argument<string>("image") { Description = "The image file." };
        var texts = new Argument<string[]>("texts") { Description = "Texts to match against the image.", Arity = ArgumentArity.OneOrMore };
        var command = new Command("match", "Score how well texts describe an image (ITM probability and ITC cosine).") { image, texts };
        common.AddTo(command);
        command.SetAction(result =>
        {
            var load = common.LoadOptions(result, error);
            string file = result.GetValue(image)!;
            var list = result.GetValue(texts)!;
            bool json = result.GetValue(common.Json);
            using var matcher = ImageTextMatcher.FromPretrained(result.GetValue(common.Model)!, load);
            var scores = matcher.Match([(ImageSource)file], list);
            for (int t = 0; t < list.Length; t++)
            {
                float itm = scores.MatchProbability[0][t], itc = scores.Cosine[0][t];
                output.WriteLine(json
                    ? CommonOptions.ToJson(new { image = file, text = list[t], itm_probability = itm, itc_cosine = itc })
                    : $"{itm:F4}  {itc,7:F4}  {list[t]}");
            }
            return BlipCli.Success;
        });
        return command;
    }
}
