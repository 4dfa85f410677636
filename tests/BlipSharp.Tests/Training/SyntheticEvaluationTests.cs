using BlipSharp.Cli;
using BlipSharp.Training.Evaluation;
using Xunit;

namespace BlipSharp.Tests.Training;

/// <summary>How <see cref="SyntheticEvaluation"/> judges a caption, and how <c>blip evaluate-synth</c> reports bad input.</summary>
public sealed class SyntheticEvaluationTests
{
    private static readonly NamedObject RedCircle = new("red", "circle");
    private static readonly NamedObject BlueSquare = new("blue", "square");

    [Theory]
    [InlineData("a small red circle on the left", "red circle")]
    [InlineData("two shapes: a large red circle on the left and a blue square on the right", "red circle|blue square")]
    [InlineData("a red circle on a green background", "red circle")]
    [InlineData("A Red Circle.", "red circle")]
    [InlineData("red, circle", "red circle")] // punctuation splits words, it does not separate a colour from its shape
    [InlineData("a circle that is red", "")]
    [InlineData("a white circle", "")] // white is a background colour, never an object's
    [InlineData("", "")]
    public void NamedObjectsAreColourWordsRightBeforeShapeWords(string caption, string expected)
    {
        var named = SyntheticEvaluation.NamedObjects(caption).Select(o => o.ToString());
        Assert.Equal(expected.Split('|', StringSplitOptions.RemoveEmptyEntries), named);
    }

    [Fact]
    public void ACaptionIsCorrectWhenItNamesSomethingThereAndNothingElse()
    {
        IReadOnlyList<NamedObject> scene = [RedCircle, BlueSquare];
        Assert.True(SyntheticEvaluation.IsCorrect("a large red circle on the left", scene));
        Assert.True(SyntheticEvaluation.IsCorrect("a red circle and a blue square", scene));
        Assert.False(SyntheticEvaluation.IsCorrect("a red circle and a green square", scene)); // one object is not there
        Assert.False(SyntheticEvaluation.IsCorrect("a blue circle", scene));                  // attributes swapped
        Assert.False(SyntheticEvaluation.IsCorrect("two shapes on a gray background", scene)); // names nothing
    }

    [Fact]
    public void ColourShapeAndObjectAccuracyJudgeTheFirstNamedObject()
    {
        IReadOnlyList<NamedObject> scene = [RedCircle, BlueSquare];
        SyntheticCaption Judge(string caption) =>
            new("x", caption, scene, SyntheticEvaluation.NamedObjects(caption), SyntheticEvaluation.IsCorrect(caption, scene));
        SyntheticCaption[] captions =
        [
            Judge("a red circle on the left"),   // both right
            Judge("a red square on the left"),   // colour and shape each in the scene, not together
            Judge("a red star"),                 // colour only
            Judge("a green square"),             // shape only
            Judge("a green star and a red circle"), // the first named object counts: neither
            Judge("two shapes"),                 // names nothing
            Judge("a blue square and a red star"), // the first named object is there, the second is not
        ];
        var result = new SyntheticEvaluationResult(1, 1, 0, 0, 0, 1, captions.Count(c => c.Correct) / 7.0, captions);
        Assert.Equal(1 / 7.0, result.CaptionAccuracy, 12);
        Assert.Equal(4 / 7.0, result.ColourAccuracy, 12);
        Assert.Equal(4 / 7.0, result.ShapeAccuracy, 12);
        Assert.Equal(2 / 7.0, result.ObjectAccuracy, 12);
        Assert.Equal(0, new SyntheticEvaluationResult(0, 0, 0, 0, 0, 0, 0, []).ShapeAccuracy);
        Assert.Equal(0, new SyntheticEvaluationResult(0, 0, 0, 0, 0, 0, 0, []).ObjectAccuracy);
    }

    [Fact]
    public async Task EvaluateSynthNamesTheFolderThatIsNotARun()
    {
        string dir = Directory.CreateTempSubdirectory("blipsharp-evalsynth-").FullName;
        try
        {
            var output = new StringWriter();
            var error = new StringWriter();
            int code = await BlipCli.RunAsync(["evaluate-synth", "--run", dir, "--test", Path.Combine(dir, "test.json")], output, error);
            Assert.Equal(2, code);
            Assert.Contains(dir, error.ToString());
            Assert.Contains("not a run folder", error.ToString());

            code = await BlipCli.RunAsync(["evaluate-synth", "--run", dir, "--test", "t.json", "--beams", "0"], output, error);
            Assert.Equal(2, code);
            Assert.Contains("--beams must be at least 1", error.ToString());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
