namespace PureFlux.Tests.Kernels;

/// <summary>
/// The mma.m16n8k16 fragment mapping (<see cref="MmaFragment"/>) the tensor-core kernels index with, tested on the
/// host (no GPU needed): spot values transcribed from the PTX ISA's fragment figures, exact once-only coverage of
/// A, B and C, the K permutation of the staged tiles, and a lane-by-lane CPU emulation of GemmMma's algorithm
/// (staging with zero padding, 128-bit fragment loads, register assembly, mma semantics, epilogue) against a
/// direct matrix product at sizes that are not multiples of the tiles.
/// </summary>
public class CudaMmaFragmentTests
{
    /// <summary>From the PTX ISA figures for m16n8k16 (.f16/.bf16): lane 5 is groupID 1, threadID_in_group 1.</summary>
    [Fact]
    public void Layout_matches_the_ptx_isa_figures()
    {
        const int lane = 5;
        (int, int)[] a = [(1, 2), (1, 3), (9, 2), (9, 3), (1, 10), (1, 11), (9, 10), (9, 11)];
        for (int e = 0; e < 8; e++) Assert.Equal(a[e], (MmaFragment.ARow(lane, e), MmaFragment.ACol(lane, e)));
        (int, int)[] b = [(2, 1), (3, 1), (10, 1), (11, 1)]; // (k, n)
        for (int e = 0; e < 4; e++) Assert.Equal(b[e], (MmaFragment.BRow(lane, e), MmaFragment.BCol(lane, e)));
        (int, int)[] c = [(1, 2), (1, 3), (9, 2), (9, 3)];
        for (int i = 0; i < 4; i++) Assert.Equal(c[i], (MmaFragment.CRow(lane, i), MmaFragment.CCol(lane, i)));
        // lane 30: groupID 7, threadID_in_group 2
        Assert.Equal((15, 13), (MmaFragment.ARow(30, 7), MmaFragment.ACol(30, 7)));
        Assert.Equal((13, 7), (MmaFragment.BRow(30, 3), MmaFragment.BCol(30, 3)));
        Assert.Equal((15, 5), (MmaFragment.CRow(30, 3), MmaFragment.CCol(30, 3)));
    }

    [Fact]
    public void Fragments_cover_each_element_exactly_once()
    {
        AssertCoversOnce(MmaFragment.M, MmaFragment.K, MmaFragment.AElements, MmaFragment.ARow, MmaFragment.ACol, "A");
        AssertCoversOnce(MmaFragment.K, MmaFragment.N, MmaFragment.BElements, MmaFragment.BRow, MmaFragment.BCol, "B");
        AssertCoversOnce(MmaFragment.M, MmaFragment.N, MmaFragment.CElements, MmaFragment.CRow, MmaFragment.CCol, "C");
    }

    private static void AssertCoversOnce(int rows, int cols, int perLane, Func<int, int, int> row, Func<int, int, int> col, string what)
    {
        var seen = new int[rows, cols];
        for (int lane = 0; lane < 32; lane++)
            for (int e = 0; e < perLane; e++)
            {
                int r = row(lane, e), c = col(lane, e);
                Assert.InRange(r, 0, rows - 1);
                Assert.InRange(c, 0, cols - 1);
                seen[r, c]++;
            }
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                Assert.True(seen[r, c] == 1, $"{what}[{r}, {c}] held by {seen[r, c]} lane elements, expected 1");
    }

    [Fact]
    public void Registers_hold_consecutive_k_pairs_low_element_first()
    {
        for (int lane = 0; lane < 32; lane++)
        {
            for (int r = 0; r < 4; r++)
            {
                Assert.Equal(MmaFragment.ARow(lane, 2 * r), MmaFragment.ARow(lane, 2 * r + 1));
                Assert.Equal(2 * MmaFragment.AKPair(lane, r), MmaFragment.ACol(lane, 2 * r));
                Assert.Equal(2 * MmaFragment.AKPair(lane, r) + 1, MmaFragment.ACol(lane, 2 * r + 1));
            }
            for (int r = 0; r < 2; r++)
            {
                Assert.Equal(2 * MmaFragment.BKPair(lane, r), MmaFragment.BRow(lane, 2 * r));
                Assert.Equal(2 * MmaFragment.BKPair(lane, r) + 1, MmaFragment.BRow(lane, 2 * r + 1));
            }
        }
    }

    /// <summary>Every word of a staged 32-wide K row is used by exactly one (k-pair, step), and each lane finds all
    /// its A and B k-pairs of both steps inside its own 128-bit quad, at the component <see cref="MmaFragment.QuadComponent"/> says.</summary>
    [Fact]
    public void K_permutation_is_a_bijection_within_each_lanes_quad()
    {
        var used = new int[MmaFragment.TileWords];
        for (int step = 0; step < 2; step++)
            for (int p = 0; p < 8; p++) used[MmaFragment.SharedWord(p, step)]++;
        Assert.All(used, u => Assert.Equal(1, u));
        for (int lane = 0; lane < 32; lane++)
        {
            int quad = MmaFragment.LaneQuad(lane);
            for (int step = 0; step < 2; step++)
            {
                for (int r = 0; r < 4; r++)
                {
                    int p = MmaFragment.AKPair(lane, r);
                    Assert.Equal(4 * quad + MmaFragment.QuadComponent(p, step), MmaFragment.SharedWord(p, step));
                }
                for (int r = 0; r < 2; r++)
                {
                    int p = MmaFragment.BKPair(lane, r);
                    Assert.Equal(4 * quad + MmaFragment.QuadComponent(p, step), MmaFragment.SharedWord(p, step));
                }
            }
        }
    }

    /// <summary>
    /// GemmMma's algorithm emulated lane by lane on the host with the same index functions: 128×128 block tiles,
    /// 8 warps of 64×32, K tiles of 32 staged as 16 words per row (zero outside M/N/K), each lane reading its
    /// 128-bit quad of rows g and g+8 (A) and column g (B), registers assembled per <see cref="MmaFragment.QuadComponent"/>,
    /// the mma evaluated with the ISA layout, results stored per CRow/CCol. Inputs are small integers, so every
    /// product and sum is exact and the result must equal the direct product bit for bit.
    /// </summary>
    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(130, 67, 77)]
    [InlineData(129, 257, 96)]
    [InlineData(37, 9, 200)]
    public void Emulated_warp_algorithm_matches_direct_product(int m, int n, int k)
    {
        var rng = new Random(m * 7919 + n * 31 + k);
        var x = new float[m * k];
        var w = new float[n * k];
        for (int i = 0; i < x.Length; i++) x[i] = rng.Next(-8, 9);
        for (int i = 0; i < w.Length; i++) w[i] = rng.Next(-8, 9);
        var y = new float[m * n];
        Array.Fill(y, float.NaN);
        EmulateGemmMma(x, w, y, m, n, k);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float expected = 0;
                for (int kk = 0; kk < k; kk++) expected += x[i * k + kk] * w[j * k + kk];
                Assert.True(expected == y[i * n + j], $"y[{i}, {j}] = {y[i * n + j]}, expected {expected} (m={m}, n={n}, k={k})");
            }
    }

    private static void EmulateGemmMma(float[] x, float[] w, float[] y, int m, int n, int k)
    {
        const int bm = 128, bn = 128, quads = 4;
        for (int m0 = 0; m0 < m; m0 += bm)
            for (int n0 = 0; n0 < n; n0 += bn)
            {
                var acc = new float[8, 32, 4, 4, 4]; // [warp][lane][mt][nt][i]
                for (int k0 = 0; k0 < k; k0 += MmaFragment.TileK)
                {
                    // staging: row r, word w = (k0 + 2w, k0 + 2w + 1), zero outside the matrix (a plain copy)
                    var tileA = new (float Lo, float Hi)[bm * quads * 4];
                    var tileB = new (float Lo, float Hi)[bn * quads * 4];
                    for (int r = 0; r < bm; r++)
                        for (int word = 0; word < MmaFragment.TileWords; word++)
                        {
                            tileA[r * 16 + word] = (At(x, m0 + r, k0 + 2 * word, m, k), At(x, m0 + r, k0 + 2 * word + 1, m, k));
                            tileB[r * 16 + word] = (At(w, n0 + r, k0 + 2 * word, n, k), At(w, n0 + r, k0 + 2 * word + 1, n, k));
                        }
                    for (int warp = 0; warp < 8; warp++)
                    {
                        int wm0 = (warp & 1) * 64, wn0 = (warp >> 1) * 32;
                        for (int step = 0; step < 2; step++)
                            for (int mt = 0; mt < 4; mt++)
                                for (int nt = 0; nt < 4; nt++)
                                {
                                    // what each lane passes to the mma, gathered as the kernel does
                                    var aRegs = new (float Lo, float Hi)[32, 4];
                                    var bRegs = new (float Lo, float Hi)[32, 2];
                                    for (int lane = 0; lane < 32; lane++)
                                    {
                                        int quad = MmaFragment.LaneQuad(lane);
                                        for (int r = 0; r < 4; r++)
                                        {
                                            int row = wm0 + mt * 16 + MmaFragment.ARow(lane, 2 * r);
                                            aRegs[lane, r] = tileA[row * 16 + 4 * quad + MmaFragment.QuadComponent(MmaFragment.AKPair(lane, r), step)];
                                        }
                                        for (int r = 0; r < 2; r++)
                                        {
                                            int col = wn0 + nt * 8 + MmaFragment.BCol(lane, 2 * r);
                                            bRegs[lane, r] = tileB[col * 16 + 4 * quad + MmaFragment.QuadComponent(MmaFragment.BKPair(lane, r), step)];
                                        }
                                    }
                                    // the hardware: A/B/C as the ISA lays them out over the lanes
                                    var a = new float[16, 16];
                                    var b = new float[16, 8];
                                    for (int lane = 0; lane < 32; lane++)
                                    {
                                        for (int e = 0; e < 8; e++)
                                            a[MmaFragment.ARow(lane, e), MmaFragment.ACol(lane, e)] = (e & 1) == 0 ? aRegs[lane, e >> 1].Lo : aRegs[lane, e >> 1].Hi;
                                        for (int e = 0; e < 4; e++)
                                            b[MmaFragment.BRow(lane, e), MmaFragment.BCol(lane, e)] = (e & 1) == 0 ? bRegs[lane, e >> 1].Lo : bRegs[lane, e >> 1].Hi;
                                    }
                                    for (int lane = 0; lane < 32; lane++)
                                        for (int i = 0; i < 4; i++)
                                        {
                                            int r = MmaFragment.CRow(lane, i), c = MmaFragment.CCol(lane, i);
                                            float dot = 0;
                                            for (int kk = 0; kk < 16; kk++) dot += a[r, kk] * b[kk, c];
                                            acc[warp, lane, mt, nt, i] += dot;
                                        }
                                }
                    }
                }
                // epilogue, as the kernel's Store calls
                for (int warp = 0; warp < 8; warp++)
                {
                    int wm0 = (warp & 1) * 64, wn0 = (warp >> 1) * 32;
                    for (int lane = 0; lane < 32; lane++)
                        for (int mt = 0; mt < 4; mt++)
                            for (int nt = 0; nt < 4; nt++)
                                for (int i = 0; i < 4; i++)
                                {
                                    int row = m0 + wm0 + mt * 16 + MmaFragment.CRow(lane, i);
                                    int col = n0 + wn0 + nt * 8 + MmaFragment.CCol(lane, i);
                                    if (row < m && col < n) y[row * n + col] = acc[warp, lane, mt, nt, i];
                                }
                }
            }
    }

    /// <summary>FlashAttentionMma's transposed V tile: every (d, key pair) has its own word, and the word the
    /// kernel's P·V fragment load reads (quad (2t + step/2) XOR (d mod 2), component 2·(step mod 2) + r) is the one
    /// holding the key pair the P fragment (S accumulators) puts opposite it.</summary>
    [Fact]
    public void Transposed_v_words_match_the_p_fragments()
    {
        for (int d = 0; d < 2; d++)
        {
            var used = new int[32];
            for (int pair = 0; pair < 32; pair++) used[MmaFragment.TransposedWord(pair, d)]++;
            Assert.All(used, u => Assert.Equal(1, u));
        }
        for (int lane = 0; lane < 32; lane++)
            for (int d = 0; d < 2; d++)
                for (int step = 0; step < 4; step++)
                    for (int r = 0; r < 2; r++)
                    {
                        int t = lane & 3;
                        int kernelWord = 4 * ((2 * t + (step >> 1)) ^ (d & 1)) + 2 * (step & 1) + r;
                        Assert.Equal(MmaFragment.TransposedWord(MmaFragment.TransposedKeyPair(lane, step, r), d), kernelWord);
                    }
    }

    /// <summary>
    /// One warp of FlashAttentionMma emulated lane by lane (16 query rows × 64 keys, head dim 128): S = Q·Kᵀ from
    /// swizzled staged rows (quad 4j + t, components as the generator emits them), then P·V with P's A registers
    /// packed from the S accumulators exactly as the kernel does and V read from the transposed tile. Small-integer
    /// data: both products must be exact.
    /// </summary>
    [Fact]
    public void Emulated_attention_warp_products_match_direct_products()
    {
        const int rows = 16, keys = 64, d = 128;
        var rng = new Random(5);
        var q = new float[rows, d];
        var k = new float[keys, d];
        var v = new float[keys, d];
        for (int i = 0; i < rows; i++) for (int c = 0; c < d; c++) q[i, c] = rng.Next(-3, 4);
        for (int j = 0; j < keys; j++) for (int c = 0; c < d; c++) { k[j, c] = rng.Next(-3, 4); v[j, c] = rng.Next(-3, 4); }
        // staging: Q/K rows as 16 quads of 4 words (word = d pair), stored at SwizzledQuad; Vᵀ rows of 32 words
        (float Lo, float Hi)[] Stage(float[,] m, int n)
        {
            var s = new (float, float)[n * 64];
            for (int row = 0; row < n; row++)
                for (int quad = 0; quad < 16; quad++)
                    for (int c = 0; c < 4; c++)
                    {
                        int word = 4 * quad + c;
                        s[(row * 16 + MmaFragment.SwizzledQuad(row, quad)) * 4 + c] = (m[row, 2 * word], m[row, 2 * word + 1]);
                    }
            return s;
        }
        var sq = Stage(q, rows);
        var sk = Stage(k, keys);
        var vt = new (float Lo, float Hi)[d * 32];
        for (int c = 0; c < d; c++)
            for (int pair = 0; pair < 32; pair++) vt[c * 32 + MmaFragment.TransposedWord(pair, c)] = (v[2 * pair, c], v[2 * pair + 1, c]);

        var sAcc = new float[32, 8, 4]; // [lane][n8 tile][i]
        for (int j = 0; j < 4; j++)
            for (int half = 0; half < 2; half++)
                for (int nt = 0; nt < 8; nt++)
                {
                    var aRegs = new (float Lo, float Hi)[32, 4];
                    var bRegs = new (float Lo, float Hi)[32, 2];
                    for (int lane = 0; lane < 32; lane++)
                    {
                        int g = lane >> 2, t = lane & 3;
                        int swz = MmaFragment.SwizzledQuad(g, 0);
                        (float, float) Comp(int row, int c) => sq[(row * 16 + ((4 * j + t) ^ swz)) * 4 + c];
                        aRegs[lane, 0] = Comp(g, 2 * half); aRegs[lane, 1] = Comp(g + 8, 2 * half);
                        aRegs[lane, 2] = Comp(g, 2 * half + 1); aRegs[lane, 3] = Comp(g + 8, 2 * half + 1);
                        int key = nt * 8 + g;
                        bRegs[lane, 0] = sk[(key * 16 + ((4 * j + t) ^ swz)) * 4 + 2 * half];
                        bRegs[lane, 1] = sk[(key * 16 + ((4 * j + t) ^ swz)) * 4 + 2 * half + 1];
                    }
                    Mma(aRegs, bRegs, (lane, i, value) => sAcc[lane, nt, i] += value);
                }
        for (int lane = 0; lane < 32; lane++)
            for (int nt = 0; nt < 8; nt++)
                for (int i = 0; i < 4; i++)
                {
                    int row = MmaFragment.CRow(lane, i), key = nt * 8 + MmaFragment.CCol(lane, i);
                    float expected = 0;
                    for (int c = 0; c < d; c++) expected += q[row, c] * k[key, c];
                    Assert.True(expected == sAcc[lane, nt, i], $"S[{row}, {key}] = {sAcc[lane, nt, i]}, expected {expected}");
                }

        // P·V with P = S (any values will do for the index check)
        var oAcc = new float[32, 16, 4];
        for (int step = 0; step < 4; step++)
            for (int nt = 0; nt < 16; nt++)
            {
                var aRegs = new (float Lo, float Hi)[32, 4];
                var bRegs = new (float Lo, float Hi)[32, 2];
                for (int lane = 0; lane < 32; lane++)
                {
                    int g = lane >> 2, t = lane & 3;
                    int lo = 2 * step, hi = 2 * step + 1; // S tiles giving keys 16·step .. +15
                    aRegs[lane, 0] = (sAcc[lane, lo, 0], sAcc[lane, lo, 1]);
                    aRegs[lane, 1] = (sAcc[lane, lo, 2], sAcc[lane, lo, 3]);
                    aRegs[lane, 2] = (sAcc[lane, hi, 0], sAcc[lane, hi, 1]);
                    aRegs[lane, 3] = (sAcc[lane, hi, 2], sAcc[lane, hi, 3]);
                    int col = nt * 8 + g;
                    int quad = (2 * t + (step >> 1)) ^ (g & 1);
                    bRegs[lane, 0] = vt[col * 32 + 4 * quad + 2 * (step & 1)];
                    bRegs[lane, 1] = vt[col * 32 + 4 * quad + 2 * (step & 1) + 1];
                }
                Mma(aRegs, bRegs, (lane, i, value) => oAcc[lane, nt, i] += value);
            }
        var sFull = new float[rows, keys];
        for (int lane = 0; lane < 32; lane++)
            for (int nt = 0; nt < 8; nt++)
                for (int i = 0; i < 4; i++) sFull[MmaFragment.CRow(lane, i), nt * 8 + MmaFragment.CCol(lane, i)] = sAcc[lane, nt, i];
        for (int lane = 0; lane < 32; lane++)
            for (int nt = 0; nt < 16; nt++)
                for (int i = 0; i < 4; i++)
                {
                    int row = MmaFragment.CRow(lane, i), col = nt * 8 + MmaFragment.CCol(lane, i);
                    float expected = 0;
                    for (int j = 0; j < keys; j++) expected += sFull[row, j] * v[j, col];
                    Assert.True(expected == oAcc[lane, nt, i], $"O[{row}, {col}] = {oAcc[lane, nt, i]}, expected {expected}");
                }
    }

    /// <summary>One mma.m16n8k16 as the hardware reads the lanes' registers (ISA layout); reports D − C per lane element.</summary>
    private static void Mma((float Lo, float Hi)[,] aRegs, (float Lo, float Hi)[,] bRegs, Action<int, int, float> add)
    {
        var a = new float[16, 16];
        var b = new float[16, 8];
        for (int lane = 0; lane < 32; lane++)
        {
            for (int e = 0; e < 8; e++)
                a[MmaFragment.ARow(lane, e), MmaFragment.ACol(lane, e)] = (e & 1) == 0 ? aRegs[lane, e >> 1].Lo : aRegs[lane, e >> 1].Hi;
            for (int e = 0; e < 4; e++)
                b[MmaFragment.BRow(lane, e), MmaFragment.BCol(lane, e)] = (e & 1) == 0 ? bRegs[lane, e >> 1].Lo : bRegs[lane, e >> 1].Hi;
        }
        for (int lane = 0; lane < 32; lane++)
            for (int i = 0; i < 4; i++)
            {
                int r = MmaFragment.CRow(lane, i), c = MmaFragment.CCol(lane, i);
                float dot = 0;
                for (int kk = 0; kk < 16; kk++) dot += a[r, kk] * b[kk, c];
                add(lane, i, dot);
            }
    }

    private static float At(float[] a, int row, int col, int rows, int cols) => row < rows && col < cols ? a[row * cols + col] : 0f;
}
