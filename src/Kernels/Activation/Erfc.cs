using ILGPU.Algorithms;

namespace PureFlux.Kernels;

/// <summary>
/// Complementary error function for float32, usable from CPU code and ILGPU kernels alike.
/// Chebyshev-fitted form erfc(z) ≈ t·exp(−z² + P(t)), t = 1/(1 + z/2), z ≥ 0, with fractional error below 1.2e-7
/// everywhere (coefficients from Numerical Recipes, "erfcc", §6.2). A relative bound on erfc (not only an absolute
/// one on erf, as Abramowitz–Stegun 7.1.26) keeps exact GELU accurate in its negative tail, where
/// gelu(x) = x/2 · erfc(|x|/√2) is tiny.
/// </summary>
public static class Erfc
{
    internal const float P0 = -1.26551223f, P1 = 1.00002368f, P2 = 0.37409196f, P3 = 0.09678418f, P4 = -0.18628806f,
        P5 = 0.27886807f, P6 = -1.13520398f, P7 = 1.48851587f, P8 = -0.82215223f, P9 = 0.17087277f;

    /// <summary>The exponent −z² + P(t) for z ≥ 0 and t = 1/(1 + z/2): erfc(z) = t · exp(this).</summary>
    public static float Exponent(float z, float t) =>
        -z * z + (P0 + t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * (P5 + t * (P6 + t * (P7 + t * (P8 + t * P9)))))))));

    /// <summary>erfc(z) for z ≥ 0 (ILGPU-safe: XMath.Exp).</summary>
    public static float OfNonNegative(float z)
    {
        float t = 1f / (1f + 0.5f * z);
        return t * XMath.Exp(Exponent(z, t));
    }

    /// <summary>erfc(x) for any x (erfc(−x) = 2 − erfc(x)).</summary>
    public static float Of(float x)
    {
        float e = OfNonNegative(XMath.Abs(x));
        return x >= 0f ? e : 2f - e;
    }

    /// <summary>erf(x) = 1 − erfc(x).</summary>
    public static float Erf(float x) => 1f - Of(x);
}
