namespace PureFlux.Tests.Support;

/// <summary>Tolerance checks that report the worst element.</summary>
public static class Compare
{
    /// <summary>
    /// Asserts |actual − expected| ≤ atol + rtol·|expected| element-wise. NaN/Inf in actual always fail.
    /// </summary>
    public static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float rtol, float atol, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} values, expected {expected.Length}");
        int worst = -1;
        double worstExcess = 0, maxAbs = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            double d = Math.Abs(a - e);
            if (!double.IsFinite(a) && !(double.IsNaN(e) && double.IsNaN(a)) && a != e) { worst = i; worstExcess = double.PositiveInfinity; break; }
            maxAbs = Math.Max(maxAbs, d);
            double excess = d - (atol + rtol * Math.Abs(e));
            if (excess > worstExcess) { worstExcess = excess; worst = i; }
        }
        if (worst >= 0)
            Assert.Fail($"{what}: element {worst} is {actual[worst]}, expected {expected[worst]} (|diff| {Math.Abs(actual[worst] - expected[worst]):g3} > {atol:g2} + {rtol:g2}·|expected|); max |diff| {maxAbs:g3}");
    }

    /// <summary>Max |a − b| relative to max |b| (the "relative to the tensor's max magnitude" metric).</summary>
    public static double RelMaxError(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual)
    {
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs((double)actual[i] - expected[i]));
            maxRef = Math.Max(maxRef, Math.Abs((double)expected[i]));
        }
        return maxRef == 0 ? maxDiff : maxDiff / maxRef;
    }
}
