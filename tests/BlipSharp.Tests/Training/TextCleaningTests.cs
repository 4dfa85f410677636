using BlipSharp.Training.Data;
using Xunit;

namespace BlipSharp.Tests.Training;

public sealed class TextCleaningTests
{
    /// <summary>Expected values produced by BLIP's own <c>pre_caption</c> (data/utils.py) under CPython 3.</summary>
    [Theory]
    [InlineData("A man riding a wave on top of a surfboard.", 50, "a man riding a wave on top of a surfboard")]
    [InlineData("  Two dogs (one brown) play: fetch!!  ", 50, "two dogs one brown play fetch")]
    [InlineData("A \"quoted\" word; and ~tilde~ #hash *star*", 50, "a quoted word and tilde hash star")]
    [InlineData("Tabs\tand\t\tnewlines\n\nend\n", 50, "tabs\tand newlines end")]
    [InlineData("one two three four five six", 3, "one two three")]
    [InlineData("it's a dog's life, isn't it? yes-no/maybe", 50, "it's a dog's life, isn't it? yes-no/maybe")]
    [InlineData("ÉCOLE Straße İstanbul ΟΔΟΣ", 50, "école straße i\u0307stanbul οδος")]
    [InlineData("word.word", 50, "word word")]
    [InlineData("a\u00a0\u00a0b \u2003c", 50, "a b c")]
    [InlineData("x \u001c y", 50, "x y")]
    [InlineData("...", 50, "")]
    [InlineData("ends with newline \n", 50, "ends with newline")]
    [InlineData(" a  b  c  d ", 2, "a b")]
    public void PreCaptionMatchesBlip(string caption, int maxWords, string expected) =>
        Assert.Equal(expected, TextCleaning.PreCaption(caption, maxWords));

    [Theory]
    [InlineData("What color is the CAR?", 50, "what color is the car?")]
    [InlineData("Is this (really) a cat?!  ", 50, "is this really a cat?")]
    [InlineData("how many...people are there", 50, "how manypeople are there")]
    [InlineData("a b c d e", 3, "a b c")]
    public void PreQuestionMatchesBlip(string question, int maxWords, string expected) =>
        Assert.Equal(expected, TextCleaning.PreQuestion(question, maxWords));

    [Theory]
    [InlineData("a red circle on the left", "a red circle on the right")]
    [InlineData("Left and RIGHT, leftover rights", "Right and LEFT, leftover rights")]
    [InlineData("a star at the top", "a star at the top")]
    public void SwapLeftRightSwapsWholeWordsOnly(string caption, string expected) =>
        Assert.Equal(expected, TextCleaning.SwapLeftRight(caption));
}
