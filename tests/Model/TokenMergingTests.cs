using PureFlux.Model.Engine;
using PureFlux.Model.Layers;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>Token merging (the experiment switch <c>tome</c>): the matching, the plan's groups, and klein end to end.</summary>
public class TokenMergingTests
{
    [Fact]
    public void Merge_count_is_the_ratio_of_the_tokens_capped_at_the_sources()
    {
        Assert.Equal(128, TokenMerging.MergeCount(0.5, 16, 16));
        Assert.Equal(192, TokenMerging.MergeCount(0.75, 16, 16));
        Assert.Equal(192, TokenMerging.MergeCount(0.9, 16, 16)); // a 2×2 stride keeps one token in four
        Assert.Equal(0, TokenMerging.MergeCount(0, 16, 16));
        // A 3×3 grid: destinations (0,0), (0,2), (2,0), (2,2); five sources.
        Assert.Equal([0, 2, 6, 8], TokenMerging.Destinations(3, 3));
        Assert.Equal(5, TokenMerging.MergeCount(0.99, 3, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenMerging.MergeCount(1, 4, 4));
    }

    [Fact]
    public void Match_merges_the_most_similar_sources_into_their_best_destination()
    {
        // 2×4 grid: destinations 0 and 2; sources 1, 3, 4, 5, 6, 7.
        var seen = (Src: Array.Empty<int>(), Dst: Array.Empty<int>());
        float[] Similarity(int[] src, int[] dst)
        {
            seen = (src, dst);
            // Rows = sources 1, 3, 4, 5, 6, 7; columns = destinations 0, 2.
            return [0.9f, 0.1f,   // 1 → 0 (0.9)
                    0.2f, 0.95f,  // 3 → 2 (0.95)
                    0.5f, 0.4f,   // 4 → 0 (0.5)
                    0.3f, 0.3f,   // 5 → 0 on a tie (lower index), 0.3
                    0.1f, 0.8f,   // 6 → 2 (0.8)
                    0.6f, 0.6f];  // 7 → 0, 0.6
        }
        var target = TokenMerging.Match(2, 4, 3, Similarity);
        Assert.Equal([1, 3, 4, 5, 6, 7], seen.Src);
        Assert.Equal([0, 2], seen.Dst);
        // The three best scores: 3 (0.95), 1 (0.9), 6 (0.8).
        Assert.Equal([0, 0, 2, 2, 4, 5, 2, 7], target);
        Assert.Equal(Enumerable.Range(0, 8), TokenMerging.Match(2, 4, 0, (_, _) => throw new InvalidOperationException("no matching at r = 0")));
    }

    /// <summary>The plan on every backend: keys built so that the matching is known, then the merged rows, the unmerge and the RoPE rows.</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Plan_groups_text_kept_merged_and_trailing_rows(string backend)
    {
        var dev = Backends.Get(backend);
        const int text = 2, rows = 2, cols = 2, extra = 1, seq = text + rows * cols + extra, d = 4;
        // Image tokens 0..3 on a 2×2 grid: destination 0; sources 1, 2, 3. Token 2 points the same way as 0, token 1 is
        // orthogonal, token 3 opposite: at ratio 0.25 (r = 1) only 2 merges, into 0.
        float[] keys = [1, 0, 0, 0,   0, 1, 0, 0,   2, 0, 0, 0,   -1, 0, 0, 0];
        using var tk = Tensor.FromArray(dev, keys, rows * cols, d);
        var cosHost = Enumerable.Range(0, seq * 2).Select(i => (float)i).ToArray();
        using var cos = Tensor.FromArray(dev, cosHost, seq, 2);
        using var sin = Tensor.FromArray(dev, cosHost.Select(v => -v).ToArray(), seq, 2);
        using var plan = TokenMerging.Plan(tk, rows, cols, 0.25, text, seq, cos, sin);
        Assert.Equal(1, plan.MergedTokens);
        Assert.Equal(seq, plan.Rows);
        Assert.Equal(seq - 1, plan.MergedRows);
        // Rows: text 0, 1; image 2 (dst, + image token 2 = row 4), 3, 5; trailing 6.
        Assert.Equal([0, 1, 2, 4, 5, 6, 7], plan.Merge.HostOffsets);
        Assert.Equal([0, 1, 2, 4, 3, 5, 6], plan.Merge.HostMembers);
        Assert.Equal([0, 1, 2, 3, 2, 4, 5], plan.Unmerge.HostMembers);
        // The kept rows' positions: the merged token's row (4) is gone; every other row keeps its own.
        Assert.Equal(new[] { 0, 1, 2, 3, 5, 6 }.SelectMany(r => new[] { 2f * r, 2f * r + 1 }), plan.Cos.ToFloatArray());
        Assert.Equal(new[] { 0, 1, 2, 3, 5, 6 }.SelectMany(r => new[] { -2f * r, -2f * r - 1 }), plan.Sin.ToFloatArray());
    }

    private static readonly GenerationJob Job = new() { Prompts = ["a red fox"], Width = 64, Height = 64, Steps = 2, Seed = 3 };

    private static float[] Generate(string backend, double? ratio)
    {
        var dev = Backends.Get(backend);
        using var model = ModelFamilies.Open(TinySnapshot.Dir, dev, new ModelOptions { TokenMergeRatio = ratio });
        Assert.Contains("tome", model.HonouredSwitches);
        return GenerationEngine.Run(model, Job).Decoded;
    }

    /// <summary>Ratio 0 runs the whole merge path (plan, gathers, merged RoPE rows) with nothing merged: the identity, bit for bit.</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Klein_at_ratio_zero_is_the_identity_and_merging_changes_the_image_a_little(string backend)
    {
        var baseline = Generate(backend, null);
        Assert.Equal(baseline, Generate(backend, 0));
        var merged = Generate(backend, 0.5);
        double diff = 0, norm = 0;
        for (int i = 0; i < baseline.Length; i++)
        {
            Assert.True(float.IsFinite(merged[i]), $"tome 0.5 on {backend}: non-finite output at {i}");
            diff += Math.Pow(merged[i] - baseline[i], 2);
            norm += Math.Pow(baseline[i], 2);
        }
        double rel = Math.Sqrt(diff / norm);
        // Half the 16 image tokens merged in every single block: the image moves, but stays the same image (tiny random model).
        Assert.InRange(rel, 1e-4, 0.5);
    }

    /// <summary>
    /// FLUX.1 Kontext (tiny, random): the same switch with reference tokens after the generated ones, which stay unmerged.
    /// Ratio 0 is the identity bit for bit; 0.5 changes the output a little.
    /// </summary>
    [Fact]
    public void Flux1_kontext_at_ratio_zero_is_the_identity_and_merging_moves_the_image_a_little()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"pureflux-tome-flux1-{Guid.NewGuid():N}");
        try
        {
            PureFlux.Model.Flux1.Flux1RandomSnapshot.Write(dir, PureFlux.Model.Flux1.Flux1Preset.TinyKontext, 7);
            var rgb = new byte[64 * 64 * 3];
            for (int i = 0; i < rgb.Length; i++) rgb[i] = (byte)(i * 7 % 251);
            var job = new GenerationJob { Prompts = ["make it red"], ReferenceImages = [new PureFlux.Model.Image.RgbImage(rgb, 64, 64)], Width = 64, Height = 64, Steps = 2 };
            float[] Run(double? ratio)
            {
                using var cpu = new CpuDevice(2);
                using var model = ModelFamilies.Open(dir, cpu, new ModelOptions { TokenMergeRatio = ratio, MaxArea = 64 * 64, ReferenceAutoResize = false });
                Assert.Contains("tome", model.HonouredSwitches);
                return GenerationEngine.Run(model, job).Decoded;
            }
            var baseline = Run(null);
            Assert.Equal(baseline, Run(0));
            var merged = Run(0.5);
            double diff = 0, norm = 0;
            for (int i = 0; i < baseline.Length; i++)
            {
                diff += Math.Pow(merged[i] - baseline[i], 2);
                norm += Math.Pow(baseline[i], 2);
            }
            Assert.InRange(Math.Sqrt(diff / norm), 1e-4, 0.5);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// Qwen-Image (tiny, random): every block dual-stream, so only the image stream merges (after the first block, which
    /// gives the keys), with a padded text prompt so the attention's key mask is cut to the merged length. Ratio 0 is the
    /// identity bit for bit on every backend; 0.5 moves the image a little.
    /// </summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Qwen_image_at_ratio_zero_is_the_identity_and_merging_moves_the_image_a_little(string backend) =>
        IdentityAtZeroAndSmallMove(backend, TinyFamilySnapshots.QwenImage,
            new GenerationJob { Prompts = ["a red fox", "a much longer prompt about a small red fox in the snow"], Width = 48, Height = 48, Steps = 2, Seed = 3 });

    [Fact]
    public void Qwen_image_at_one_step_gives_a_finite_image()
    {
        // Its scheduler's shift_terminal stretch divided 0 by 0 at one step (σ NaN, the NonFiniteGuard refused the job).
        using var cpu = new CpuDevice(2);
        using var model = ModelFamilies.Open(TinyFamilySnapshots.QwenImage, cpu, new ModelOptions());
        var image = GenerationEngine.Run(model, new GenerationJob { Prompts = ["a red fox"], Width = 32, Height = 32, Steps = 1, Seed = 3 }).Decoded;
        Assert.All(image, v => Assert.True(float.IsFinite(v)));
    }

    /// <summary>
    /// Z-Image (tiny, random): two prompts of different lengths, so the unified sequence holds two ragged items with pad
    /// rows; each item merges its own image tokens in the main layers after the first. Ratio 0 is the identity bit for
    /// bit on every backend; 0.5 moves the images a little.
    /// </summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Zimage_at_ratio_zero_is_the_identity_and_merging_moves_the_image_a_little(string backend) =>
        IdentityAtZeroAndSmallMove(backend, TinyFamilySnapshots.ZImage,
            new GenerationJob { Prompts = ["a red fox", "a much longer prompt about a small red fox in the snow"], Width = 48, Height = 48, Steps = 1, Seed = 3 });

    /// <summary>A family's tiny snapshot under <paramref name="job"/>: tome ratio 0 gives the unmerged image bit for bit,
    /// 0.5 a finite one within 1e-4..0.5 relative RMS of it.</summary>
    private static void IdentityAtZeroAndSmallMove(string backend, string dir, GenerationJob job)
    {
        float[] Run(double? ratio)
        {
            var dev = Backends.Get(backend); // shared per backend: not disposed here
            using var model = ModelFamilies.Open(dir, dev, new ModelOptions { TokenMergeRatio = ratio });
            Assert.Contains("tome", model.HonouredSwitches);
            return GenerationEngine.Run(model, job).Decoded;
        }
        var baseline = Run(null);
        Assert.Equal(baseline, Run(0));
        var merged = Run(0.5);
        double diff = 0, norm = 0;
        for (int i = 0; i < baseline.Length; i++)
        {
            Assert.True(float.IsFinite(merged[i]), $"tome 0.5 on {backend}: non-finite output at {i}");
            diff += Math.Pow(merged[i] - baseline[i], 2);
            norm += Math.Pow(baseline[i], 2);
        }
        Assert.InRange(Math.Sqrt(diff / norm), 1e-4, 0.5);
    }

}
