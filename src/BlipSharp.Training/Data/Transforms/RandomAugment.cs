using BlipSharp.Processing;

namespace BlipSharp.Training.Data;

/// <summary>The operations of BLIP's <c>RandomAugment</c> (its <c>func_dict</c>).</summary>
public enum AugmentOp
{
    /// <summary>No change.</summary>
    Identity,

    /// <summary><see cref="AugmentOps.AutoContrast"/>.</summary>
    AutoContrast,

    /// <summary><see cref="AugmentOps.Equalize"/>.</summary>
    Equalize,

    /// <summary><see cref="AugmentOps.Rotate"/> by ±(m/10)·30 degrees.</summary>
    Rotate,

    /// <summary><see cref="AugmentOps.Solarize"/> at int((m/10)·256).</summary>
    Solarize,

    /// <summary><see cref="AugmentOps.Color"/> with factor (m/10)·1.8 + 0.1.</summary>
    Color,

    /// <summary><see cref="AugmentOps.Contrast"/> with factor (m/10)·1.8 + 0.1.</summary>
    Contrast,

    /// <summary><see cref="AugmentOps.Brightness"/> with factor (m/10)·1.8 + 0.1.</summary>
    Brightness,

    /// <summary><see cref="AugmentOps.Sharpness"/> with factor (m/10)·1.8 + 0.1.</summary>
    Sharpness,

    /// <summary><see cref="AugmentOps.ShearX"/> by ±(m/10)·0.3.</summary>
    ShearX,

    /// <summary><see cref="AugmentOps.ShearY"/> by ±(m/10)·0.3.</summary>
    ShearY,

    /// <summary><see cref="AugmentOps.TranslateX"/> by ±(m/10)·10 pixels.</summary>
    TranslateX,

    /// <summary><see cref="AugmentOps.TranslateY"/> by ±(m/10)·10 pixels.</summary>
    TranslateY,

    /// <summary><see cref="AugmentOps.Posterize"/> to int((m/10)·4) bits.</summary>
    Posterize,
}

/// <summary>One drawn step of <see cref="RandomAugment"/>: the op, whether its coin said apply, and its argument (sign included).</summary>
/// <param name="Op">The operation.</param>
/// <param name="Applied">False when the op was drawn but skipped (probability 0.5 each).</param>
/// <param name="Argument">The factor, angle, offset, threshold or bit count the op runs with; 0 for ops without one.</param>
public readonly record struct AugmentStep(AugmentOp Op, bool Applied, double Argument);

/// <summary>Settings of <see cref="RandomAugment"/>; the defaults are BLIP's <c>RandomAugment(2, 5, isPIL=True, augs=[...])</c>.</summary>
public sealed record RandomAugmentOptions
{
    /// <summary>The ten ops BLIP's train transform lists.</summary>
    public static IReadOnlyList<AugmentOp> BlipOps { get; } =
    [
        AugmentOp.Identity, AugmentOp.AutoContrast, AugmentOp.Brightness, AugmentOp.Sharpness, AugmentOp.Equalize,
        AugmentOp.ShearX, AugmentOp.ShearY, AugmentOp.TranslateX, AugmentOp.TranslateY, AugmentOp.Rotate,
    ];

    /// <summary><c>N</c>: ops drawn per image, uniformly with replacement.</summary>
    public int NumOps { get; init; } = 2;

    /// <summary><c>M</c>: the magnitude on the reference's 0..10 scale (<c>MAX_LEVEL = 10</c>).</summary>
    public double Magnitude { get; init; } = 5;

    /// <summary>The ops to draw from (<c>augs</c>).</summary>
    public IReadOnlyList<AugmentOp> Ops { get; init; } = BlipOps;

    /// <summary>The probability each drawn op is applied (the reference's fixed 0.5).</summary>
    public double Probability { get; init; } = 0.5;

    /// <summary>
    /// Reproduce the reference's AutoContrast exactly (default) or the intended stretch. The reference whitens every
    /// channel whose minimum is above 0, which recolours objects (a purple disc on a red-brown background turns
    /// blue): with captions that name colours, such as the synthetic world's, prefer <see cref="AutoContrastVariant.Pil"/>
    /// or leave AutoContrast out of <see cref="Ops"/>.
    /// </summary>
    public AutoContrastVariant AutoContrast { get; init; } = AutoContrastVariant.Reference;

    /// <summary>Grey level for pixels uncovered by rotate, shear and translate (<c>replace_value</c>).</summary>
    public byte Fill { get; init; } = AugmentOps.ReferenceFill;
}

/// <summary>
/// BLIP's <c>RandomAugment</c> (<c>transform/randaugment.py</c>): draw <see cref="RandomAugmentOptions.NumOps"/> ops
/// uniformly with replacement, then for each, in order, skip it when a uniform draw exceeds 0.5, else map the
/// magnitude to its argument (drawing a sign for rotate, shear and translate) and apply it. Random numbers are
/// drawn in the reference's order. At BLIP's magnitude 5 the enhance factor is exactly 1.0, so Brightness and
/// Sharpness change nothing; rotations are ±15°, shears ±0.15, translations ±5 pixels whatever the image size.
/// An instance is immutable and thread-safe.
/// </summary>
public sealed class RandomAugment
{
    private const double MaxLevel = 10;

    /// <summary>Creates the augmenter.</summary>
    /// <param name="options">Settings; BLIP's when null.</param>
    public RandomAugment(RandomAugmentOptions? options = null)
    {
        options ??= new RandomAugmentOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.NumOps);
        if (options.Ops is not { Count: > 0 }) throw new ArgumentException("RandomAugment needs at least one op", nameof(options));
        if (!(options.Magnitude >= 0 && options.Magnitude <= MaxLevel)) throw new ArgumentOutOfRangeException(nameof(options), options.Magnitude, "magnitude must be within 0..10");
        Options = options;
    }

    /// <summary>The settings.</summary>
    public RandomAugmentOptions Options { get; }

    /// <summary>The reference's <c>arg_dict[op](level)</c> without the random sign: the argument's size for an op.</summary>
    /// <param name="op">The op.</param>
    /// <param name="magnitude">Level on the 0..10 scale.</param>
    public static double ArgumentMagnitude(AugmentOp op, double magnitude) => op switch
    {
        AugmentOp.Rotate => magnitude / MaxLevel * 30,
        AugmentOp.Solarize => (int)(magnitude / MaxLevel * 256),
        AugmentOp.Color or AugmentOp.Contrast or AugmentOp.Brightness or AugmentOp.Sharpness => magnitude / MaxLevel * 1.8 + 0.1,
        AugmentOp.ShearX or AugmentOp.ShearY => magnitude / MaxLevel * 0.3,
        AugmentOp.TranslateX or AugmentOp.TranslateY => magnitude / MaxLevel * 10.0,
        AugmentOp.Posterize => (int)(magnitude / MaxLevel * 4),
        _ => 0,
    };

    /// <summary>Draws the steps for one image, consuming random numbers in the reference's order.</summary>
    /// <param name="random">The random source.</param>
    public IReadOnlyList<AugmentStep> Sample(Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        var ops = new AugmentOp[Options.NumOps];
        for (int i = 0; i < ops.Length; i++) ops[i] = Options.Ops[random.Next(Options.Ops.Count)];
        var steps = new AugmentStep[ops.Length];
        for (int i = 0; i < ops.Length; i++)
        {
            var op = ops[i];
            if (random.NextDouble() > Options.Probability)
            {
                steps[i] = new AugmentStep(op, false, 0);
                continue;
            }
            double arg = ArgumentMagnitude(op, Options.Magnitude);
            switch (op)
            {
                case AugmentOp.Rotate:
                    if (random.NextDouble() < 0.5) arg = -arg;
                    break;
                case AugmentOp.ShearX or AugmentOp.ShearY or AugmentOp.TranslateX or AugmentOp.TranslateY:
                    if (random.NextDouble() > 0.5) arg = -arg;
                    break;
            }
            steps[i] = new AugmentStep(op, true, arg);
        }
        return steps;
    }

    /// <summary>Draws steps and applies them.</summary>
    /// <param name="image">The image.</param>
    /// <param name="random">The random source.</param>
    public RgbImage Apply(RgbImage image, Random random) => Apply(image, Sample(random));

    /// <summary>Applies steps already drawn (skipped steps do nothing).</summary>
    /// <param name="image">The image.</param>
    /// <param name="steps">From <see cref="Sample"/>.</param>
    public RgbImage Apply(RgbImage image, IEnumerable<AugmentStep> steps)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(steps);
        foreach (var step in steps)
        {
            if (step.Applied) image = ApplyOne(image, step.Op, step.Argument);
        }
        return image;
    }

    private RgbImage ApplyOne(RgbImage image, AugmentOp op, double arg) => op switch
    {
        AugmentOp.Identity => image,
        AugmentOp.AutoContrast => AugmentOps.AutoContrast(image, Options.AutoContrast),
        AugmentOp.Equalize => AugmentOps.Equalize(image),
        AugmentOp.Rotate => AugmentOps.Rotate(image, arg, Options.Fill),
        AugmentOp.Solarize => AugmentOps.Solarize(image, (int)arg),
        AugmentOp.Color => AugmentOps.Color(image, arg),
        AugmentOp.Contrast => AugmentOps.Contrast(image, arg),
        AugmentOp.Brightness => AugmentOps.Brightness(image, arg),
        AugmentOp.Sharpness => AugmentOps.Sharpness(image, arg),
        AugmentOp.ShearX => AugmentOps.ShearX(image, arg, Options.Fill),
        AugmentOp.ShearY => AugmentOps.ShearY(image, arg, Options.Fill),
        AugmentOp.TranslateX => AugmentOps.TranslateX(image, arg, Options.Fill),
        AugmentOp.TranslateY => AugmentOps.TranslateY(image, arg, Options.Fill),
        AugmentOp.Posterize => AugmentOps.Posterize(image, (int)arg),
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "unknown augment op"),
    };
}
