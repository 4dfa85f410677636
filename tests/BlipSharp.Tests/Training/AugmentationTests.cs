using BlipSharp.Processing;
using BlipSharp.Training.Data;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Training;

public sealed class AugmentationTests
{
    /// <summary>5x4 test image; channel R reaches 0, G and B do not (so the reference's AutoContrast whitens them).</summary>
    private static readonly byte[] Small =
    [
        0, 104, 195, 50, 141, 232, 87, 178, 13, 124, 215, 50, 161, 252, 87, 198, 33, 124, 235, 70, 161, 16, 107, 198, 53, 144, 235, 90,
        181, 16, 127, 218, 53, 164, 255, 90, 201, 36, 127, 238, 73, 164, 19, 110, 201, 56, 147, 238, 93, 184, 19, 130, 221, 56, 167, 2,
        93, 204, 39, 130,
    ];

    private static RgbImage SmallImage() => RgbImage.Create(5, 4, Small);

    /// <summary>16x16 test image for the histogram ops.</summary>
    private static RgbImage BigImage()
    {
        var px = new byte[16 * 16 * 3];
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 16; x++)
                for (int c = 0; c < 3; c++)
                    px[(y * 16 + x) * 3 + c] = (byte)(((x * x + 3 * y + c * 50) * 7 + 5 * c) % 200 + 20 * c);
        return RgbImage.Create(16, 16, px);
    }

    // Expected outputs below were computed by BLIP's randaugment.py functions with NumPy 1.24 (cv2.calcHist/split
    // replaced by their NumPy equivalents).

    [Fact]
    public void AutoContrastReproducesTheReferenceIncludingItsUint8Wrap()
    {
        byte[] expected =
        [
            0, 255, 255, 53, 255, 255, 93, 255, 255, 132, 255, 255, 172, 255, 255, 212, 255, 255, 251, 255, 255, 17, 255, 255, 56, 255, 255,
            96, 255, 255, 136, 255, 255, 175, 255, 255, 215, 255, 255, 255, 255, 255, 20, 255, 255, 60, 255, 255, 99, 255, 255, 139, 255, 255,
            178, 255, 255, 218, 255, 255,
        ];
        Assert.Equal(expected, AugmentOps.AutoContrast(SmallImage()).Pixels.ToArray());
        var big = Convert.FromBase64String(AutoContrastBig);
        Assert.Equal(big, AugmentOps.AutoContrast(BigImage()).Pixels.ToArray());

        // The intended stretch maps each channel's [min, max] onto [0, 255].
        var pil = AugmentOps.AutoContrast(SmallImage(), AutoContrastVariant.Pil).Pixels.ToArray();
        for (int c = 0; c < 3; c++)
        {
            var channel = pil.Where((_, i) => i % 3 == c).ToArray();
            Assert.Equal(0, channel.Min());
            Assert.InRange(channel.Max(), 254, 255); // int(hi * scale + offset) can land a hair under 255, in PIL too
        }
    }

    [Fact]
    public void TableOpsMatchTheReference()
    {
        Assert.Equal(Convert.FromBase64String(EqualizeBig), AugmentOps.Equalize(BigImage()).Pixels.ToArray());
        Assert.Equal(
            [
                83, 114, 142, 125, 152, 180, 108, 136, 86, 145, 173, 123, 182, 210, 160, 114, 65, 92, 151, 102, 129, 91, 118, 146, 128, 155, 183,
                111, 139, 89, 148, 176, 126, 185, 213, 163, 117, 68, 95, 154, 105, 132, 94, 121, 149, 131, 158, 186, 114, 142, 92, 151, 179, 129,
                83, 34, 61, 120, 71, 98,
            ],
            AugmentOps.Color(SmallImage(), 0.3).Pixels.ToArray());
        Assert.Equal(
            [
                0, 85, 240, 0, 148, 255, 56, 211, 0, 119, 255, 0, 182, 255, 56, 245, 0, 119, 255, 27, 182, 0, 90, 245, 0, 153, 255, 61, 216, 0,
                124, 255, 0, 187, 255, 61, 250, 0, 124, 255, 32, 187, 0, 95, 250, 3, 158, 255, 66, 221, 0, 129, 255, 3, 192, 0, 66, 255, 0, 129,
            ],
            AugmentOps.Contrast(SmallImage(), 1.7).Pixels.ToArray());
        Assert.Equal(
            [
                0, 135, 253, 65, 183, 255, 113, 231, 16, 161, 255, 65, 209, 255, 113, 255, 42, 161, 255, 91, 209, 20, 139, 255, 68, 187, 255, 116,
                235, 20, 165, 255, 68, 213, 255, 116, 255, 46, 165, 255, 94, 213, 24, 143, 255, 72, 191, 255, 120, 239, 24, 169, 255, 72, 217, 2,
                120, 255, 50, 169,
            ],
            AugmentOps.Brightness(SmallImage(), 1.3).Pixels.ToArray());
        Assert.Equal(Small.Select(v => (byte)(v < 128 ? v : 255 - v)), AugmentOps.Solarize(SmallImage(), 128).Pixels.ToArray());
        Assert.Equal(Small.Select(v => (byte)(v & 0xC0)), AugmentOps.Posterize(SmallImage(), 2).Pixels.ToArray());
    }

    [Fact]
    public void BlipMagnitudeMapping()
    {
        // M = 5 of MAX_LEVEL 10: enhance factor exactly 1.0 (Brightness and Sharpness are no-ops), rotate 15 degrees,
        // shear 0.15, translate 5 pixels, solarize 128, posterize 2 bits.
        Assert.Equal(1.0, RandomAugment.ArgumentMagnitude(AugmentOp.Brightness, 5));
        Assert.Equal(1.0, RandomAugment.ArgumentMagnitude(AugmentOp.Sharpness, 5));
        Assert.Equal(15.0, RandomAugment.ArgumentMagnitude(AugmentOp.Rotate, 5));
        Assert.Equal(0.15, RandomAugment.ArgumentMagnitude(AugmentOp.ShearX, 5), 12);
        Assert.Equal(5.0, RandomAugment.ArgumentMagnitude(AugmentOp.TranslateY, 5));
        Assert.Equal(128, RandomAugment.ArgumentMagnitude(AugmentOp.Solarize, 5));
        Assert.Equal(2, RandomAugment.ArgumentMagnitude(AugmentOp.Posterize, 5));
        Assert.Equal(0.1, RandomAugment.ArgumentMagnitude(AugmentOp.Color, 0), 12);
        var img = BigImage();
        Assert.Equal(img.Pixels.ToArray(), AugmentOps.Brightness(img, 1.0).Pixels.ToArray());
        Assert.Equal(img.Pixels.ToArray(), AugmentOps.Sharpness(img, 1.0).Pixels.ToArray());
    }

    [Fact]
    public void OpChoiceAndSignsFollowTheReference()
    {
        var ra = new RandomAugment();
        var rng = new Random(7);
        var counts = new Dictionary<AugmentOp, int>();
        int applied = 0, total = 0, negativeRotations = 0, rotations = 0;
        for (int i = 0; i < 20000; i++)
        {
            var steps = ra.Sample(rng);
            Assert.Equal(2, steps.Count);
            foreach (var s in steps)
            {
                Assert.Contains(s.Op, RandomAugmentOptions.BlipOps);
                counts[s.Op] = counts.GetValueOrDefault(s.Op) + 1;
                total++;
                if (!s.Applied) continue;
                applied++;
                Assert.Equal(RandomAugment.ArgumentMagnitude(s.Op, 5), Math.Abs(s.Argument), 12);
                if (s.Op == AugmentOp.Rotate)
                {
                    rotations++;
                    if (s.Argument < 0) negativeRotations++;
                }
            }
        }
        Assert.Equal(10, counts.Count); // only the ten BLIP ops, each about a tenth of the draws
        Assert.All(counts.Values, c => Assert.InRange(c / (double)total, 0.09, 0.11));
        Assert.InRange(applied / (double)total, 0.48, 0.52);
        Assert.InRange(negativeRotations / (double)rotations, 0.45, 0.55);
    }

    [Fact]
    public void GeometricOpsMoveContentTheWayOpenCvDoes()
    {
        // A single white pixel at (10, 8) on black, 24x24.
        var px = new byte[24 * 24 * 3];
        int At(int x, int y) => (y * 24 + x) * 3;
        px[At(10, 8)] = px[At(10, 8) + 1] = px[At(10, 8) + 2] = 255;
        var img = RgbImage.Create(24, 24, px);

        var left = AugmentOps.TranslateX(img, 5); // x' = x - 5
        Assert.Equal((255, 255, 255), left[5, 8]);
        Assert.Equal((128, 128, 128), left[23, 8]); // uncovered: the reference's grey
        var up = AugmentOps.TranslateY(img, -3); // y' = y + 3
        Assert.Equal((255, 255, 255), up[10, 11]);
        var sheared = AugmentOps.ShearX(img, 0.25); // x' = x + 0.25 * y = 12
        Assert.Equal((255, 255, 255), sheared[12, 8]);
        var shearedY = AugmentOps.ShearY(img, 0.5); // y' = 0.5 * x + y = 13
        Assert.Equal((255, 255, 255), shearedY[10, 13]);
        // 90 degrees counter-clockwise about (12, 12): (10, 8) -> (8, 14).
        var rotated = AugmentOps.Rotate(img, 90);
        Assert.Equal((255, 255, 255), rotated[8, 14]);
        Assert.Equal((128, 128, 128), AugmentOps.Rotate(img, 45)[0, 0]);
    }

    [Fact]
    public void FlipMirrorsColumns()
    {
        var img = SmallImage();
        var flipped = AugmentOps.FlipHorizontal(img);
        for (int y = 0; y < img.Height; y++)
            for (int x = 0; x < img.Width; x++)
                Assert.Equal(img[x, y], flipped[img.Width - 1 - x, y]);
        Assert.Equal(img.Pixels.ToArray(), AugmentOps.FlipHorizontal(flipped).Pixels.ToArray());
    }

    [Fact]
    public void RandomResizedCropStaysWithinScaleAndRatioBounds()
    {
        var crop = new RandomResizedCrop(64);
        var rng = new Random(3);
        double minFrac = 1, maxFrac = 0;
        int fallbacks = 0;
        foreach (var (w, h) in new[] { (640, 480), (300, 300), (300, 500) })
        {
            // The box torchvision falls back to after 10 failed tries: centred, the ratio clamped to 3/4..4/3.
            double inRatio = w / (double)h;
            var fallback = inRatio < 0.75
                ? new CropBox(0, (h - (int)Math.Round(w / 0.75)) / 2, w, (int)Math.Round(w / 0.75))
                : new CropBox(0, 0, w, h);
            for (int i = 0; i < 2000; i++)
            {
                var box = crop.SampleBox(w, h, rng);
                Assert.InRange(box.Left, 0, w - box.Width);
                Assert.InRange(box.Top, 0, h - box.Height);
                if (box == fallback && inRatio < 0.75)
                {
                    fallbacks++;
                    continue;
                }
                double frac = box.Width * (double)box.Height / (w * h);
                // Rounding w and h to integers moves the area a little past the sampled fraction.
                double slack = (box.Width + box.Height + 1.0) / (w * h);
                Assert.InRange(frac, 0.5 - slack, 1.0 + slack);
                double ratio = box.Width / (double)box.Height;
                Assert.InRange(ratio, 0.75 * (1 - 2.0 / box.Height), 4.0 / 3.0 * (1 + 2.0 / box.Height));
                minFrac = Math.Min(minFrac, frac);
                maxFrac = Math.Max(maxFrac, frac);
            }
        }
        Assert.True(minFrac < 0.52 && maxFrac > 0.9, $"the sampled area fractions span {minFrac:F3}..{maxFrac:F3}");
        Assert.InRange(fallbacks, 1, 400); // a 300x500 image often fails all ten tries at large areas
    }

    [Fact]
    public void RandomResizedCropFallsBackToACentreCrop()
    {
        // A 1000x10 strip: no 3/4..4/3 box covering half of it fits in 10 rows, so after 10 tries torchvision centre-crops
        // at the largest allowed ratio.
        var crop = new RandomResizedCrop(32);
        var box = crop.SampleBox(1000, 10, new Random(1));
        Assert.Equal(new CropBox((1000 - 13) / 2, 0, 13, 10), box);
        var tall = crop.SampleBox(10, 1000, new Random(1));
        Assert.Equal(new CropBox(0, (1000 - 13) / 2, 10, 13), tall);
    }

    [Fact]
    public void TrainTransformIsDeterministicForASeedAndShapedLikeBlips()
    {
        var image = BigImage().Resize(97, 71);
        var transform = new BlipTrainTransform(new BlipTrainTransformOptions { ImageSize = 48 });
        using var a = transform.ToTensor(image, new Random(11));
        using var b = transform.ToTensor(image, new Random(11));
        using var c = transform.ToTensor(image, new Random(12));
        Assert.Equal(new long[] { 3, 48, 48 }, a.shape);
        Assert.Equal(ScalarType.Float32, a.dtype);
        Assert.True(a.allclose(b, 0, 0));
        Assert.False(a.allclose(c, 0, 0));
        // Normalised range: (0 - mean) / std .. (1 - mean) / std per channel.
        var mean = BlipImageProcessorOptions.OpenAIClipMean;
        var std = BlipImageProcessorOptions.OpenAIClipStd;
        for (int ch = 0; ch < 3; ch++)
        {
            using var plane = a[ch];
            Assert.True(plane.min().item<float>() >= (float)((0 - mean[ch]) / std[ch]) - 1e-6f);
            Assert.True(plane.max().item<float>() <= (float)((1 - mean[ch]) / std[ch]) + 1e-6f);
        }
    }

    [Fact]
    public void NormalisationIsTorchvisionsToTensorThenNormalize()
    {
        var gray = RgbImage.Create(2, 2, Enumerable.Repeat((byte)200, 12).ToArray());
        var t = new BlipEvalTransform(2);
        var values = new float[12];
        t.Apply(gray, new Random(0), values);
        for (int c = 0; c < 3; c++)
        {
            float expected = (200f / 255f - (float)BlipImageProcessorOptions.OpenAIClipMean[c]) / (float)BlipImageProcessorOptions.OpenAIClipStd[c];
            Assert.Equal(expected, values[c * 4]);
        }
    }

    [Fact]
    public void FlipProbabilityZeroNeverFlipsAndOneAlwaysDoes()
    {
        // An asymmetric image: left half red, right half blue; no crop randomness (scale 1, ratio fixed) and no RandAugment.
        var px = new byte[40 * 40 * 3];
        for (int y = 0; y < 40; y++)
            for (int x = 0; x < 40; x++)
                px[(y * 40 + x) * 3 + (x < 20 ? 0 : 2)] = 255;
        var img = RgbImage.Create(40, 40, px);
        var baseOptions = new BlipTrainTransformOptions { ImageSize = 40, MinScale = 1, MinRatio = 1, MaxRatio = 1, RandAugment = null };
        var never = new BlipTrainTransform(baseOptions with { FlipProbability = 0 });
        var always = new BlipTrainTransform(baseOptions with { FlipProbability = 1 });
        for (int seed = 0; seed < 20; seed++)
        {
            var n = never.Augment(img, new Random(seed), out var ni);
            var f = always.Augment(img, new Random(seed), out var fi);
            Assert.False(ni.Flipped);
            Assert.True(fi.Flipped);
            Assert.Equal((255, 0, 0), n[2, 20]);
            Assert.Equal((0, 0, 255), f[2, 20]);
        }
    }

    private const string AutoContrastBig =
        "AP//CP//I///UP//j///4P//Qv//t///Pf//1f//gP//PP//Cv//6v//3P//4P//Gv//I///Pv//a///qv//+///Xf//0v//WP//8P//m///V///Jf//Bf//9///+///Nf//Pv//Wf//hv//xf//Ff//eP//7f//c///C///tf//cv//QP//IP//Ef//Ff//UP//Wf//dP//of//4P//MP//k///B///jv//Jv//0P//jP//Wv//Ov//LP//MP//a///dP//j///vP//+///S///rv//Iv//qf//Qf//6///p///df//Vf//R///S///hv//j///qv//1///Ff//Zv//yf//Pf//xP//XP//Bv//wv//kP//cP//Yv//Zv//of//qv//xf//8v//MP//gf//5P//WP//3v//d///If//3f//q///i///ff//gf//vP//xf//4P//DP//S///nP//////c///+f//kv//PP//+P//xv//pv//mP//nP//1///4P//+///J///Zv//t///Gf//jv//FP//rP//V///E///4f//wf//s///t///8v//+///Ff//Qv//gf//0v//NP//qf//L///x///cv//Lv///P//3P//zv//0v//DP//Ff//MP//Xf//nP//7f//T///xP//Sv//4v//jP//Sf//F///9///6f//7f//J///MP//S///eP//t///B///av//3v//Zf///f//p///Y///Mf//Ef//A///B///Qv//S///Zv//k///0v//Iv//hf//+f//gP//GP//wv//fv//TP//LP//Hv//Iv//Xf//Zv//gf//rv//7f//Pf//oP//FP//m///M///3f//mf//Z///R///Of//Pf//eP//gf//nP//yf//B///WP//u///L///tf//Tv//+P//tP//gv//Yv//VP//WP//k///nP//t///5P//Iv//c///1f//Sv//0P//af//E///z///nf//ff//b///c///";

    private const string EqualizeBig =
        "AMmWCNGdI+yyUxzVlF0+36h9QwzKuYJdOwTG1Z51hE0yOQLFCdKe6bKF2aJ636h9G+SrI+yyPwjHcDnqrndT+MGSYSrf0ZpyWSLb77iKnmdHVyDaJe6zAsua8ruP+MGSNv/APwjHXSbcjVY3xo9oE9ynfkcs67SHdj8oCtOft4BcdD3vQQrIHeavDdakE9ynUxzVXSbcekMpp3BM36h9Lve8mWJBBM2ckls9Ju+0z5hxkFk8XyjdOAHEKfK5Lve8cDnqekMplF0+v4hh+MGSSxTRs3xWH+ixrHVSQgvJ6rOGqnNRfEUqVh/ZRg/OSxTRjVY3lF0+rndT16B2E9ynaDHmy5RrOwTGxI1nYCneA8ybwotml2A/czzuZC3jaDHmp3BMrndTxo9o8LmLLve8hk8z5q+AWSLb3aZ8fUYrHuew26R7sXpUj1g7gUowhk8zv4hhxo9o36h9C9SgSxTRoGlI/8iVdj8o9r+RmGFAOQLF9L2QyZJpqXJQnGVFoGlI16B236h9+MGSJ/C1aDHmuYJdGuOqkls9EdqmsntVVyDaD9il5K1+wYpltX5auYJd8LmL+MGSE9ynQwzKhk8z0ZpyNf6/rHVSLPW7ypNqdD3vK/S6/caT2aJ6zZZv0ZpyC9SgE9ynLve8YSrfoGlI67SHUhvUxI1nSRLQ5a5/kFk8SBHPGOGo8ruP6LGE67SHJ/C1Lve8SxTRfkcsuYJdBM2cbzjp3aZ8ZzDl/seUqnNRZi/kM/y9DdakAcqZBM2cQwzKSxTRaDHmmWJB0ZpyH+ixjFU29r+RhE0yGeKpwotmg0wxUBnSKfK5HOWuH+ixYSrfaDHmhk8zs3xW67SHOwTGpm9LEdqmnmdHNP2+26R7nWZGbTbnRg/ONwDDOwTGfkcshk8zoGlIy5RrBM2cWSLbvodgLPW7t4BcURrT9L2Qtn9bi1Q0ZC3jVR7YWSLbmWJBoGlIuYJd5q+AH+ixdj8o1Z51SRLQz5hxbjfoD9ilzpdwpW5JgUowcjvtdj8o";
}
