using System.CommandLine;
using BlipSharp.Pipelines;

namespace BlipSharp.Cli;

/// <summary><c>blip embed</c>: normalised image and text embeddings as JSON lines, for search.</summary>
internal static class EmbedCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var common = new CommonOptions(ImageTextEmbedder.DefaultModel);
        var images = new Argument<string[]>("images") { Description = "Image files, folders or glob patterns.", Arity = ArgumentArity.ZeroOrMore };
        var texts = new Option<string[]>("--text", "-t") { Description = "A text to embed (repeatable).", AllowMultipleArgumentsPerToken = false };
        var command = new Command("embed", "Write L2-normalised image and text embeddings (ITC space) as JSON lines: {\"image\"|\"text\": ..., \"embedding\": [...]}.") { images, texts };
        common.AddTo(command);
        command.SetAction(result =>
        {
            var load = common.LoadOptions(result, error);
            var textList = result.GetValue(texts) ?? [];
            var files = ImageInputs.Expand(result.GetValue(images) ?? [], out var missing);
            foreach (var m in missing) error.WriteLine($"blip: no image found at '{m}'");
            if (files.Count == 0 && textList.Length == 0) throw new CliException("nothing to embed: give images and/or --text.");
            using var embedder = ImageTextEmbedder.FromPretrained(result.GetValue(common.Model)!, load);
            int failed = 0;
            using (var progress = new ProgressBar(error, files.Count, "images", ProgressBar.ShouldDraw(error)))
            {
                foreach (var batch in DecodedBatches.Read(files, result.GetValue(common.BatchSize), embedder.Processor.ImageProcessor))
                {
                    foreach (var (file, reason) in batch.Failures)
                    {
                        failed++;
                        error.WriteLine($"blip: skipped {file}: {reason}");
                        output.WriteLine(CommonOptions.ToJson(new { image = file, error = reason }));
                    }
                    if (batch.Images.Count > 0)
                    {
                        var vectors = embedder.EmbedImages(batch.Images);
                        for (int i = 0; i < vectors.Length; i++)
                            output.WriteLine(CommonOptions.ToJson(new { image = batch.Names[i], embedding = vectors[i] }));
                    }
                    progress.Advance(batch.Images.Count, batch.Failures.Count);
                }
            }
            if (textList.Length > 0)
            {
                var vectors = embedder.EmbedTexts(textList);
                for (int i = 0; i < vectors.Length; i++)
                    output.WriteLine(CommonOptions.ToJson(new { text = textList[i], embedding = vectors[i] }));
            }
            return failed + missing.Count > 0 ? BlipCli.SomeInputsFailed : BlipCli.Success;
        });
        return command;
    }
}
