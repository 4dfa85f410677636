using BlipSharp.Training.Evaluation.Captioning;
using Xunit;

namespace BlipSharp.Tests.Metrics;

/// <summary>
/// PTB cases beyond the fixture, from PTBLexer.flex's rules and CoreNLP's PTBTokenizerTest conventions, to guard
/// caption text the fixture does not contain (after -lowerCase and coco-caption's drop list).
/// </summary>
[Trait("Category", "Metrics")]
public sealed class PtbTokenizerTests
{
    [Theory]
    [InlineData("They don't want to go, can't they?", "they do n't want to go ca n't they")]
    [InlineData("I'm sure you'll see we've done it and they'd agree.", "i 'm sure you 'll see we 've done it and they 'd agree")]
    [InlineData("You're gonna wanna see this, gotta go.", "you 're gon na wan na see this got ta go")]
    [InlineData("It's 5 o'clock", "it 's 5 o'clock")]
    [InlineData("a 3 1/2 inch screw", "a 3\u00A01/2 inch screw")]
    [InlineData("the date 12/25/2010 and $3.50 or £5", "the date 12/25/2010 and $ 3.50 or # 5")]
    [InlineData("a sign reading \u201Copen\u201D and \u2018closed\u2019", "a sign reading open and closed")]
    [InlineData("a man -- or woman \u2014 standing", "a man or woman standing")]
    [InlineData("wait... what?! really!!", "wait what ?! really !!")]
    [InlineData("an 18-wheeler truck and a 2.5-inch pipe", "an 18-wheeler truck and a 2.5-inch pipe")]
    [InlineData("AT&T store near Dr. Who's house", "at&t store near dr. who 's house")]
    [InlineData("some rock 'n' roll", "some rock 'n' roll")]
    [InlineData("1,000 people at 10:30 a.m. on Jan. 5", "1,000 people at 10:30 a.m. on jan. 5")]
    [InlineData("visit www.example.com today", "visit www.example.com today")]
    [InlineData("a <b> tag & a cat/dog", "a <b> tag & a cat/dog")]
    [InlineData("Cafe\u0301s in Zürich", "cafe\u0301s in zürich")]
    public void TokenizesCaptionText(string caption, string expected) =>
        Assert.Equal(expected, new PtbTokenizer().Tokenize([caption])[0]);

    [Fact]
    public void LinesStayAlignedIncludingEmptyOnes()
    {
        var lines = new PtbTokenizer().Tokenize(["A dog.", "", "...", "two\nlines", "last one"]);
        Assert.Equal(["a dog", "", "", "two lines", "last one"], lines);
    }

    [Fact]
    public void RawLexerKeepsPtbEscapesBeforeTheDropList()
    {
        var tokens = PtbTokenizer.LexLines("(a) [b] {c} \"d\" e's")[0];
        Assert.Equal(["-LRB-", "a", "-RRB-", "-LSB-", "b", "-RSB-", "-LCB-", "c", "-RCB-", "``", "d", "''", "e", "'s"], tokens);
    }
}
