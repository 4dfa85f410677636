namespace BlipSharp.Training.Synthetic;

/// <summary>Kinds of noisy text in the pretraining split.</summary>
public enum NoiseKind
{
    /// <summary>A true caption.</summary>
    None,

    /// <summary>A caption of the scene with one attribute of one object changed (colour, shape, size or position).</summary>
    WrongAttribute,

    /// <summary>A true caption of a different image.</summary>
    Unrelated,

    /// <summary>A camera or download file name ("IMG_2931.jpg").</summary>
    FileName,

    /// <summary>Advertising spam ("buy cheap watches online now").</summary>
    Spam,
}

/// <summary>Relative weights of the noise kinds among the noisy records.</summary>
/// <param name="WrongAttribute">Weight of <see cref="NoiseKind.WrongAttribute"/>.</param>
/// <param name="Unrelated">Weight of <see cref="NoiseKind.Unrelated"/>.</param>
/// <param name="FileName">Weight of <see cref="NoiseKind.FileName"/>.</param>
/// <param name="Spam">Weight of <see cref="NoiseKind.Spam"/>.</param>
public sealed record NoiseMix(double WrongAttribute = 1, double Unrelated = 1, double FileName = 1, double Spam = 1);

/// <summary>What <see cref="SyntheticWorld.Generate"/> writes. The defaults make about 4,900 64x64 images.</summary>
public sealed record SyntheticWorldOptions
{
    /// <summary>Seeds everything; the same seed and options give byte-identical files.</summary>
    public int Seed { get; init; }

    /// <summary>Image side in pixels (at least 16).</summary>
    public int ImageSize { get; init; } = 64;

    /// <summary>Chance that an image has a second object.</summary>
    public double TwoObjectProbability { get; init; } = 0.4;

    /// <summary>
    /// Images of the noisy web-style pretraining split (one text each). 6,000: with 2,000 the tiny recipe sees each image
    /// 12 times and its captioner learns shapes far less well (bench/RESULTS.md, "Fifth round").
    /// </summary>
    public int PretrainImages { get; init; } = 6000;

    /// <summary>Fraction of pretraining texts that are noisy (each record draws independently).</summary>
    public double NoiseFraction { get; init; } = 0.4;

    /// <summary>How the noisy texts divide among the kinds.</summary>
    public NoiseMix NoiseMix { get; init; } = new();

    /// <summary>Images of the clean "human-annotated" split, written COCO-Karpathy-train style.</summary>
    public int HumanImages { get; init; } = 200;

    /// <summary>Records (captions) per human-annotated image.</summary>
    public int HumanCaptionsPerImage { get; init; } = 2;

    /// <summary>Images of the clean validation split (COCO-Karpathy val style); 0 writes none.</summary>
    public int ValImages { get; init; } = 100;

    /// <summary>Images of the clean test split (COCO-Karpathy test style).</summary>
    public int TestImages { get; init; } = 200;

    /// <summary>True captions per validation or test image.</summary>
    public int EvalCaptionsPerImage { get; init; } = 5;

    /// <summary>Images with VQA questions; the last <see cref="VqaTestFraction"/> of them form the VQA test set.</summary>
    public int VqaImages { get; init; } = 200;

    /// <summary>Fraction of VQA images in the test set.</summary>
    public double VqaTestFraction { get; init; } = 0.2;

    /// <summary>Questions per VQA image (fewer when the scene offers fewer).</summary>
    public int QuestionsPerImage { get; init; } = 4;

    /// <summary>How many times each answer is listed (VQA lists one answer per annotator; 3 gives full VQA accuracy to a right answer).</summary>
    public int AnswerCopies { get; init; } = 3;

    /// <summary>
    /// Single-object images labelled with their shape (<c>classify.json</c>), on which the tiny recipe pretrains its ViT
    /// before BLIP pretraining, as BLIP starts from a ViT trained on ImageNet classes; 0 writes none.
    /// </summary>
    public int ClassifyImages { get; init; } = 2000;

    /// <summary>Image pairs of the NLVR2-style split (two images and two statements each); 0 writes none.</summary>
    public int NlvrPairs { get; init; } = 300;

    /// <summary>Fraction of NLVR pairs in the test set.</summary>
    public double NlvrTestFraction { get; init; } = 0.2;

    /// <summary>Video clips of the video-text retrieval test split (<c>video_test.jsonl</c>, frame folders in <c>videos/</c>); 0 writes none.</summary>
    public int VideoClips { get; init; } = 50;

    /// <summary>Frames per video clip.</summary>
    public int VideoFrames { get; init; } = 8;

    /// <summary>Also write the pretraining split as WebDataset shards (<c>.png</c> + <c>.json</c> per sample).</summary>
    public bool WriteShards { get; init; }

    /// <summary>Samples per shard.</summary>
    public int ShardSize { get; init; } = 1000;
}
