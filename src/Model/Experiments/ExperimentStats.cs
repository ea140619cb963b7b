namespace PureFlux.Model.Experiments;

/// <summary>Median, minimum and maximum of a set of timings (seconds).</summary>
public sealed record Spread(double Median, double Min, double Max, int Count)
{
    public static Spread Of(IReadOnlyList<double> values)
    {
        if (values.Count == 0) throw new ArgumentException("Spread.Of: no values");
        return new Spread(ExperimentStats.Median(values), values.Min(), values.Max(), values.Count);
    }
}

/// <summary>A variant's time over the baseline's: the point estimate and its bootstrap 95% interval.</summary>
public sealed record RatioInterval(double Ratio, double Lo, double Hi);

/// <summary>
/// The statistics of an alternated A/B experiment. Runs alternate (A B A B …), so repetition i of a variant and of the
/// baseline ran next to each other and saw the same machine state: the ratio is taken per repetition (paired) and
/// summarised by its median, which one disturbed pair cannot move; the interval is the percentile bootstrap of that
/// median over the repetitions (resampled with replacement, <see cref="BootstrapSamples"/> times, seeded).
/// </summary>
public static class ExperimentStats
{
    public const int BootstrapSamples = 10_000;

    /// <summary>The median (mean of the two middle values for an even count).</summary>
    public static double Median(IReadOnlyList<double> values)
    {
        if (values.Count == 0) throw new ArgumentException("Median: no values");
        var sorted = values.OrderBy(v => v).ToArray();
        int n = sorted.Length;
        return n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    }

    /// <summary>
    /// The paired ratio variant[i] / baseline[i] over repetitions i: its median and the bootstrap 95% percentile interval
    /// of that median. Both lists hold one value per repetition, in repetition order.
    /// </summary>
    public static RatioInterval PairedRatio(IReadOnlyList<double> baseline, IReadOnlyList<double> variant, ulong seed = 1, int samples = BootstrapSamples)
    {
        if (baseline.Count != variant.Count) throw new ArgumentException($"PairedRatio: {baseline.Count} baseline runs but {variant.Count} variant runs");
        if (baseline.Count == 0) throw new ArgumentException("PairedRatio: no runs");
        if (baseline.Any(b => !(b > 0))) throw new ArgumentException("PairedRatio: a baseline time is not positive");
        var ratios = baseline.Zip(variant, (b, v) => v / b).ToArray();
        return Bootstrap(ratios, Median(ratios), seed, samples);
    }

    private static RatioInterval Bootstrap(double[] ratios, double point, ulong seed, int samples)
    {
        if (samples < 100) throw new ArgumentException($"bootstrap: {samples} samples; at least 100 are needed for a 95% interval");
        var rng = new Random(unchecked((int)(seed ^ (seed >> 32))));
        var medians = new double[samples];
        var draw = new double[ratios.Length];
        for (int s = 0; s < samples; s++)
        {
            for (int i = 0; i < draw.Length; i++) draw[i] = ratios[rng.Next(ratios.Length)];
            medians[s] = Median(draw);
        }
        Array.Sort(medians);
        return new RatioInterval(point, Percentile(medians, 0.025), Percentile(medians, 0.975));
    }

    /// <summary>The p-quantile of sorted values (linear interpolation between closest ranks, as numpy's default).</summary>
    public static double Percentile(double[] sorted, double p)
    {
        if (sorted.Length == 0) throw new ArgumentException("Percentile: no values");
        double pos = p * (sorted.Length - 1);
        int lo = (int)Math.Floor(pos), hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
    }
}
