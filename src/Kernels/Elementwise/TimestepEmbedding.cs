using System.Collections.Concurrent;

namespace PureFlux.Kernels;

/// <summary>
/// Sinusoidal timestep embedding as diffusers' <c>get_timestep_embedding</c> with flip_sin_to_cos=True and
/// downscale_freq_shift=0 (FLUX.2: dim 256): half = dim/2, freq[i] = exp(−ln(10000)·i/half),
/// y[n] = cat(cos(t[n]·freq), sin(t[n]·freq)). t: F32 [N]; y: F32 [N, dim], dim even.
/// </summary>
public static partial class TimestepEmbedding
{
    private static readonly ConcurrentDictionary<int, float[]> FrequencyTables = new();

    /// <summary>
    /// The experiment switch <c>timestep-freq-cache</c>: true (the engine's behaviour) computes each frequency table once
    /// per process; false recomputes it on every call, as implementations without the cache do. Process-wide, because
    /// every family's timestep embedding (device kernel or host sinusoid) reads <see cref="Frequencies"/>; the values are
    /// identical either way.
    /// </summary>
    public static bool CacheFrequencies { get; set; } = true;

    public static void Forward(Tensor t, Tensor y)
    {
        const string op = nameof(TimestepEmbedding);
        Check.DType(op, "t", t, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        Check.Rank(op, "t", t, 1);
        Check.Rank(op, "y", y, 2);
        int n = t.Shape[0], dim = y.Shape[1];
        Check.That(y.Shape[0] == n, op, $"y has shape {y.Shape}; expected [{n}, dim] (one row per timestep of t {t.Shape})");
        Check.That(dim > 0 && dim % 2 == 0, op, $"y has shape {y.Shape}; expected an even, positive embedding dim");
        if (n == 0) return;
        float[] freqs = Frequencies(dim / 2);
        using var profile = OpProfile.Start(op, t);
        switch (Check.SameDevice(op, t, y))
        {
            case CpuDevice: ForwardCpu(t, y, freqs); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, t, y, freqs); break;
        }
    }

    /// <summary>
    /// freq[i] in float32, rounded step by step as PyTorch computes it: (float)(−ln 10000) · i, then / half, then
    /// exp. Arguments reach 1000 rad, so one ulp in a frequency moves the output by ~6e-5: matching PyTorch's
    /// float32 steps matters more than a more exact frequency.
    /// </summary>
    public static float[] Frequencies(int half) => CacheFrequencies ? FrequencyTables.GetOrAdd(half, ComputeFrequencies) : ComputeFrequencies(half);

    private static float[] ComputeFrequencies(int half)
    {
        var f = new float[half];
        float negLogPeriod = (float)-Math.Log(10000.0);
        for (int i = 0; i < half; i++)
        {
            float exponent = negLogPeriod * i / half;
            f[i] = (float)Math.Exp(exponent);
        }
        return f;
    }

    private static void ForwardCpu(Tensor t, Tensor y, float[] freqs)
    {
        // N·dim is tiny (1 × 256 per step): scalar code; cos/sin of the float32 argument in double, rounded once.
        var ts = t.AsSpan<float>();
        var dst = y.AsSpan<float>();
        int half = freqs.Length, dim = 2 * half;
        for (int n = 0; n < ts.Length; n++)
        {
            for (int i = 0; i < half; i++)
            {
                float arg = ts[n] * freqs[i];
                dst[n * dim + i] = (float)Math.Cos(arg);
                dst[n * dim + half + i] = (float)Math.Sin(arg);
            }
        }
    }
}
