namespace PureFlux.Kernels;

/// <summary>
/// Register fragment layouts of the warp-level tensor-core instruction
/// <c>mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32</c>, written from the PTX ISA
/// ("Matrix Fragments for mma.m16n8k16 with floating point type"), plus the K permutation the CUDA kernels use
/// in shared memory. The kernels (GemmMma, FlashAttentionMma) compute every fragment index with these functions,
/// and tests/Kernels/CudaMmaFragmentTests.cs checks them on the host (coverage, and a CPU emulation of a warp tile
/// gathered exactly as the kernel gathers it), so the index logic is tested without a GPU.
/// <para>Notation: lane 0..31 of the warp, <c>g = lane / 4</c> ("groupID"), <c>t = lane % 4</c> ("threadID_in_group").</para>
/// <list type="bullet">
/// <item>A, 16×16 (M×K, row-major), 4 × .b32 per lane = 8 elements a0..a7, two per register, the lower-indexed one
/// in the low 16 bits. Register r holds a(2r), a(2r+1): row = g + 8·(r &amp; 1), cols k = 2·t + 8·(r / 2) + {0, 1}.
/// So reg0 = (g, 2t..2t+1), reg1 = (g+8, 2t..2t+1), reg2 = (g, 2t+8..2t+9), reg3 = (g+8, 2t+8..2t+9).</item>
/// <item>B, 16×8 (K×N, "col": each column's K values contiguous, which is W[N, K] row-major), 2 × .b32 = b0..b3.
/// Register r holds b(2r), b(2r+1): rows k = 2·t + 8·r + {0, 1}, col n = g.</item>
/// <item>C/D, 16×8 F32, 4 × .f32 = c0..c3: row = g + 8·(i / 2), col = 2·t + (i % 2).</item>
/// </list>
/// In all three a lane's K values come in pairs: "k-pair" p (0..7) means k = 2p, 2p+1 of the 16-wide step.
/// A register r holds k-pair <c>t + 4·(r / 2)</c>, B register r holds k-pair <c>t + 4·r</c>.
/// <para>
/// K permutation: the product sums over k, so any relabelling of k applied identically to A and B leaves D
/// unchanged. The kernels stage a 32-wide K tile per row as 16 words (bf16 pairs, word w = k 2w, 2w+1) and let
/// k-pair p of step s (s = 0, 1: the tile's two k16 steps) be word <see cref="SharedWord"/>(p, s) =
/// 4·(p mod 4) + 2·s + p / 4. Then lane t's four words of a row for both steps (k-pairs t and t+4, steps 0 and 1)
/// are words 4t..4t+3: one 128-bit shared-memory load per row gives both steps' fragments, and the
/// global→shared copy is a plain copy (no shuffling). Eight lanes of a 128-bit access phase (g = 2j, 2j+1 and
/// t = 0..3) then read two whole 64-byte rows: 32 distinct banks, conflict-free without padding.
/// </para>
/// </summary>
public static class MmaFragment
{
    /// <summary>Rows (M), cols (N) and depth (K) of one mma.m16n8k16.</summary>
    public const int M = 16, N = 8, K = 16;
    /// <summary>Elements per lane: A 8 (4 registers), B 4 (2 registers), C 4.</summary>
    public const int AElements = 8, BElements = 4, CElements = 4;
    /// <summary>K per staged tile (two k16 steps) and 32-bit words per row of it.</summary>
    public const int TileK = 32, TileWords = TileK / 2;

    /// <summary>Row (m) of A element <paramref name="e"/> (0..7) of <paramref name="lane"/>.</summary>
    public static int ARow(int lane, int e) => (lane >> 2) + 8 * ((e >> 1) & 1);
    /// <summary>Column (k, 0..15) of A element <paramref name="e"/> of <paramref name="lane"/>.</summary>
    public static int ACol(int lane, int e) => 2 * AKPair(lane, e >> 1) + (e & 1);
    /// <summary>k-pair (0..7) of A register <paramref name="r"/> (0..3).</summary>
    public static int AKPair(int lane, int r) => (lane & 3) + 4 * (r >> 1);

    /// <summary>Row (k, 0..15) of B element <paramref name="e"/> (0..3).</summary>
    public static int BRow(int lane, int e) => 2 * BKPair(lane, e >> 1) + (e & 1);
    /// <summary>Column (n, 0..7) of B element <paramref name="e"/>.</summary>
    public static int BCol(int lane, int e) => lane >> 2;
    /// <summary>k-pair (0..7) of B register <paramref name="r"/> (0..1).</summary>
    public static int BKPair(int lane, int r) => (lane & 3) + 4 * r;

    /// <summary>Row (m, 0..15) of accumulator element <paramref name="i"/> (0..3).</summary>
    public static int CRow(int lane, int i) => (lane >> 2) + 8 * (i >> 1);
    /// <summary>Column (n, 0..7) of accumulator element <paramref name="i"/>.</summary>
    public static int CCol(int lane, int i) => 2 * (lane & 3) + (i & 1);

    /// <summary>The word (0..15) of a staged 32-wide K row that holds k-pair <paramref name="kPair"/> of k16 step
    /// <paramref name="step"/> (0..1): 4·(p mod 4) + 2·step + p / 4 (see the class remarks).</summary>
    public static int SharedWord(int kPair, int step) => 4 * (kPair & 3) + 2 * step + (kPair >> 2);

    /// <summary>Which component (0..3 = X, Y, Z, W) of lane's 128-bit row load (words 4t..4t+3) holds k-pair
    /// <paramref name="kPair"/> of <paramref name="step"/>; valid when kPair mod 4 = t.</summary>
    public static int QuadComponent(int kPair, int step) => 2 * step + (kPair >> 2);

    /// <summary>The 128-bit quad (0..3) of a staged row a lane loads: words 4t..4t+3.</summary>
    public static int LaneQuad(int lane) => SharedWord(AKPair(lane, 0), 0) >> 2;

    // ---------------------------------------------------------------- FlashAttentionMma

    /// <summary>Where quad <paramref name="quad"/> (0..15) of a 128-wide staged Q/K row is stored: XOR 4 on odd rows,
    /// so the two rows one 128-bit access phase reads (g = 2j, 2j+1, rows 256 bytes apart) use different banks.</summary>
    public static int SwizzledQuad(int row, int quad) => quad ^ ((row & 1) << 2);

    /// <summary>
    /// P·V: P comes from the S accumulators (C layout of n8 tiles 2s, 2s+1 for k16 step s), so A register r of step s
    /// holds keys 16s + 8·(r / 2) + 2t + {0, 1}: key pair 8s + 4·(r / 2) + t. This is the key pair B register
    /// <paramref name="r"/> (0..1) of <paramref name="step"/> must hold for the same lane: B register r pairs with A's
    /// k-pairs t + 4r, i.e. key pair t + 4·(2·step + r).
    /// </summary>
    public static int TransposedKeyPair(int lane, int step, int r) => (lane & 3) + 4 * (2 * step + r);

    /// <summary>The word (0..31) of row d of the transposed V tile (64 keys = 32 key pairs per row) that holds key pair
    /// <paramref name="keyPair"/>: quad 2·(p mod 4) + p / 16 XOR (d mod 2), component (p / 4) mod 4. Lane t then finds its
    /// eight key pairs t + 4i (i = 2·step + r) as quads 2t, 2t + 1 (XOR d mod 2), components i mod 4.</summary>
    public static int TransposedWord(int keyPair, int d) =>
        4 * ((2 * (keyPair & 3) + (keyPair >> 4)) ^ (d & 1)) + ((keyPair >> 2) & 3);
}
