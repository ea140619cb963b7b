namespace PureFlux.Model.Bench;

/// <summary>How far one tensor is from a reference: max |a − r| and ‖a − r‖₂ / ‖r‖₂ (relative RMS error).</summary>
public readonly record struct TensorError(double MaxAbs, double RelativeRms);

/// <summary>A quantized run compared with the unquantized reference (same seed, prompt, size, steps).</summary>
public sealed record QualityResult(string Mode, string Reference, TensorError[] Steps, double ImagePsnrDb, double ImageMaxAbs);

/// <summary>
/// Comparison math for quantized runs against a reference run: per-step latent error, PSNR of the 8-bit
/// RGB images and max abs error of the decoded float images.
/// </summary>
public static class QualityReport
{
    /// <summary>Error of <paramref name="test"/> against <paramref name="reference"/> (same length; accumulated in double).
    /// A zero reference with a nonzero difference gives an infinite relative error; both zero gives 0.</summary>
    public static TensorError Compare(ReadOnlySpan<float> reference, ReadOnlySpan<float> test)
    {
        if (reference.Length != test.Length)
            throw new ArgumentException($"QualityReport.Compare: reference has {reference.Length} values, test has {test.Length}");
        double maxAbs = 0, diff2 = 0, ref2 = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            double r = reference[i], d = test[i] - r;
            maxAbs = Math.Max(maxAbs, Math.Abs(d));
            diff2 += d * d;
            ref2 += r * r;
        }
        if (double.IsNaN(diff2)) return new TensorError(double.NaN, double.NaN);
        double rel = diff2 == 0 ? 0 : ref2 == 0 ? double.PositiveInfinity : Math.Sqrt(diff2 / ref2);
        return new TensorError(maxAbs, rel);
    }

    /// <summary>PSNR in dB of 8-bit images: 10·log10(255² / MSE) over all channels; +∞ when identical.</summary>
    public static double Psnr(ReadOnlySpan<byte> reference, ReadOnlySpan<byte> test)
    {
        if (reference.Length != test.Length)
            throw new ArgumentException($"QualityReport.Psnr: reference has {reference.Length} bytes, test has {test.Length}");
        if (reference.Length == 0) throw new ArgumentException("QualityReport.Psnr: the images are empty");
        double sum = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            double d = test[i] - reference[i];
            sum += d * d;
        }
        double mse = sum / reference.Length;
        return mse == 0 ? double.PositiveInfinity : 10.0 * Math.Log10(255.0 * 255.0 / mse);
    }

    /// <summary>Builds the comparison of one run with the reference run.</summary>
    public static QualityResult Of(string mode, string reference, IReadOnlyList<float[]> refSteps, IReadOnlyList<float[]> steps,
        float[] refImage, float[] image, byte[] refRgb, byte[] rgb)
    {
        if (refSteps.Count != steps.Count)
            throw new ArgumentException($"QualityReport: reference has {refSteps.Count} steps, {mode} has {steps.Count}");
        var perStep = refSteps.Zip(steps, (r, t) => Compare(r, t)).ToArray();
        return new QualityResult(mode, reference, perStep, Psnr(refRgb, rgb), Compare(refImage, image).MaxAbs);
    }
}
