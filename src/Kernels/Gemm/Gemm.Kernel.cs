using ILGPU;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class Gemm
{
    /// <summary>Weight element kinds the kernels read: F32 from a float view, F16/BF16 as raw ushort bits.</summary>
    internal const int WeightF32 = 0, WeightF16 = 1, WeightBf16 = 2;
    /// <summary>B layouts: 0 = weight [N, K] (Linear), 1 = b [K, N] (MatMul).</summary>
    internal const int LayoutNK = 0, LayoutKN = 1;

    /// <summary>Output tile per group (TileM × TileN) at the full group side, K slice staged in shared memory per step, threads per group side.</summary>
    internal const int TileM = 64, TileN = 64, TileK = 16, GroupSide = 16;

    private static void LinearIlgpu(IlgpuDevice device, Tensor x, Tensor weight, Tensor? bias, Tensor y, int m, int n, int k) =>
        LaunchTiled(device, x, weight, bias, y, m, n, k, LayoutNK);

    private static void MatMulIlgpu(IlgpuDevice device, Tensor a, Tensor b, Tensor c, int m, int n, int k) =>
        LaunchTiled(device, a, b, null, c, m, n, k, LayoutKN);

    /// <summary>Group side for the tiled kernels: 16 (256 threads, 64×64 tile) where the device allows it, else the
    /// largest power of two whose square fits (ILGPU's CPU accelerator allows 16 threads per group: side 4).</summary>
    internal static int GroupSideFor(IlgpuDevice device)
    {
        int side = GroupSide;
        while (side > 1 && side * side > device.Accelerator.MaxNumThreadsPerGroup) side /= 2;
        return side;
    }

    private static int WeightKind(DType t) => t switch { DType.F16 => WeightF16, DType.BF16 => WeightBf16, _ => WeightF32 };

    private static void LaunchTiled(IlgpuDevice device, Tensor x, Tensor w, Tensor? bias, Tensor y, int m, int n, int k, int layout)
    {
        var kernel = device.Kernel(static a => a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<ushort>, int, int,
            ArrayView<float>, int, ArrayView<float>, int, int, int>(TiledKernel));
        var (wf, wb) = WeightViews(w);
        int side = Gemm.GroupSideFor(device), tile = 4 * side;
        var grid = new Index2D((n + tile - 1) / tile, (m + tile - 1) / tile);
        kernel(new KernelConfig(grid, new Index2D(side, side)), x.AsView<float>(), wf, wb, WeightKind(w.DType), layout,
            bias is null ? y.AsView<float>() : bias.AsView<float>(), bias is null ? 0 : 1, y.AsView<float>(), m, n, k);
    }

    /// <summary>Ladder step 0 on ILGPU: one thread per output, K loop from global memory.</summary>
    private static void LaunchNaive(IlgpuDevice device, Tensor x, Tensor w, Tensor? bias, Tensor y, int m, int n, int k)
    {
        var kernel = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index2D, ArrayView<float>, ArrayView<float>, ArrayView<ushort>, int,
            ArrayView<float>, int, ArrayView<float>, int, int>(NaiveKernel));
        var (wf, wb) = WeightViews(w);
        kernel(new Index2D(n, m), x.AsView<float>(), wf, wb, WeightKind(w.DType),
            bias is null ? y.AsView<float>() : bias.AsView<float>(), bias is null ? 0 : 1, y.AsView<float>(), n, k);
    }

    /// <summary>The weight as (float view, ushort view); the one its dtype does not use is a never-read alias.</summary>
    private static (ArrayView<float> F32, ArrayView<ushort> Bits) WeightViews(Tensor w) =>
        w.DType == DType.F32
            ? (w.AsView<float>(), w.AsView<float>().Cast<ushort>())
            : (w.AsView<ushort>().Cast<float>(), w.AsView<ushort>());

    /// <summary>One weight element as float (F16/BF16 decoded from bits, so every backend works).</summary>
    internal static float LoadWeight(ArrayView<float> f32, ArrayView<ushort> bits, int kind, long i)
    {
        if (kind == WeightF32) return f32[i];
        uint h = bits[i];
        if (kind == WeightBf16) return Interop.IntAsFloat(h << 16);
        return HalfBitsToFloat(h);
    }

    /// <summary>IEEE half → float by bit manipulation; subnormals computed explicitly (GPUs may flush float denormals).</summary>
    internal static float HalfBitsToFloat(uint h)
    {
        uint sign = (h & 0x8000u) << 16;
        uint exponent = (h >> 10) & 0x1Fu;
        uint mantissa = h & 0x3FFu;
        if (exponent == 0)
        {
            float sub = mantissa * 5.9604645e-8f; // mantissa · 2^-24
            return sign != 0 ? -sub : sub;
        }
        uint bits = exponent == 0x1Fu ? 0x7F800000u | (mantissa << 13) : ((exponent + 112u) << 23) | (mantissa << 13);
        return Interop.IntAsFloat(bits | sign);
    }

    [IlgpuKernel]
    private static void NaiveKernel(Index2D index, ArrayView<float> x, ArrayView<float> wF32, ArrayView<ushort> wBits, int wKind,
        ArrayView<float> bias, int hasBias, ArrayView<float> y, int n, int k)
    {
        int col = index.X, row = index.Y;
        float acc = hasBias != 0 ? bias[col] : 0f;
        long xBase = (long)row * k, wBase = (long)col * k;
        for (int kk = 0; kk < k; kk++)
            acc += x[xBase + kk] * LoadWeight(wF32, wBits, wKind, wBase + kk);
        y[(long)row * n + col] = acc;
    }

    /// <summary>
    /// 64×64 output tile per 16×16 group (16×16 per 4×4 group where groups are small); each thread owns a 4×4 register
    /// tile at rows ty + 16i, columns tx + 16j
    /// (stride-16 so neighbouring threads read neighbouring shared-memory words and write neighbouring outputs).
    /// Each K step stages A[64×16] and B[16×64] in shared memory, zero-padded at the edges.
    /// </summary>
    [IlgpuKernel(explicitlyGrouped: true)]
    private static void TiledKernel(ArrayView<float> x, ArrayView<float> wF32, ArrayView<ushort> wBits, int wKind, int layout,
        ArrayView<float> bias, int hasBias, ArrayView<float> y, int m, int n, int k)
    {
        var tileA = SharedMemory.Allocate<float>(TileK * TileM); // [kk][row]
        var tileB = SharedMemory.Allocate<float>(TileK * TileN); // [kk][col]
        // Group side g (16 on GPUs, less where groups are small): tile (4g)×(4g), thread (tx, ty) owns rows ty + g·i, cols tx + g·j.
        int side = Group.DimX, tile = 4 * side, threads = side * side;
        int tx = Group.IdxX, ty = Group.IdxY;
        int tid = ty * side + tx;
        int m0 = Grid.IdxY * tile, n0 = Grid.IdxX * tile;
        float c00 = 0f, c01 = 0f, c02 = 0f, c03 = 0f, c10 = 0f, c11 = 0f, c12 = 0f, c13 = 0f, c20 = 0f, c21 = 0f, c22 = 0f, c23 = 0f, c30 = 0f, c31 = 0f, c32 = 0f, c33 = 0f;
        for (int k0 = 0; k0 < k; k0 += TileK)
        {
            for (int l = 0; l < tile * TileK / threads; l++)
            {
                int idx = tid + l * threads;
                int r = idx / TileK, kk = idx % TileK;
                int gm = m0 + r, gk = k0 + kk;
                tileA[kk * tile + r] = gm < m && gk < k ? x[(long)gm * k + gk] : 0f;
                int gn, c;
                if (layout == LayoutNK) { c = idx / TileK; kk = idx % TileK; }
                else { kk = idx / tile; c = idx % tile; }
                gn = n0 + c;
                gk = k0 + kk;
                float v = 0f;
                if (gn < n && gk < k)
                    v = LoadWeight(wF32, wBits, wKind, layout == LayoutNK ? (long)gn * k + gk : (long)gk * n + gn);
                tileB[kk * tile + c] = v;
            }
            Group.Barrier();
            for (int kk = 0; kk < TileK; kk++)
            {
                float a0 = tileA[kk * tile + ty], a1 = tileA[kk * tile + ty + 1 * side], a2 = tileA[kk * tile + ty + 2 * side], a3 = tileA[kk * tile + ty + 3 * side];
                float b0 = tileB[kk * tile + tx], b1 = tileB[kk * tile + tx + 1 * side], b2 = tileB[kk * tile + tx + 2 * side], b3 = tileB[kk * tile + tx + 3 * side];
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }
            Group.Barrier();
        }
        int row0 = m0 + ty, col0 = n0 + tx;
        Store(y, bias, hasBias, m, n, row0 + 0, col0 + 0, c00);
        Store(y, bias, hasBias, m, n, row0 + 0, col0 + 1 * side, c01);
        Store(y, bias, hasBias, m, n, row0 + 0, col0 + 2 * side, c02);
        Store(y, bias, hasBias, m, n, row0 + 0, col0 + 3 * side, c03);
        Store(y, bias, hasBias, m, n, row0 + 1 * side, col0 + 0, c10);
        Store(y, bias, hasBias, m, n, row0 + 1 * side, col0 + 1 * side, c11);
        Store(y, bias, hasBias, m, n, row0 + 1 * side, col0 + 2 * side, c12);
        Store(y, bias, hasBias, m, n, row0 + 1 * side, col0 + 3 * side, c13);
        Store(y, bias, hasBias, m, n, row0 + 2 * side, col0 + 0, c20);
        Store(y, bias, hasBias, m, n, row0 + 2 * side, col0 + 1 * side, c21);
        Store(y, bias, hasBias, m, n, row0 + 2 * side, col0 + 2 * side, c22);
        Store(y, bias, hasBias, m, n, row0 + 2 * side, col0 + 3 * side, c23);
        Store(y, bias, hasBias, m, n, row0 + 3 * side, col0 + 0, c30);
        Store(y, bias, hasBias, m, n, row0 + 3 * side, col0 + 1 * side, c31);
        Store(y, bias, hasBias, m, n, row0 + 3 * side, col0 + 2 * side, c32);
        Store(y, bias, hasBias, m, n, row0 + 3 * side, col0 + 3 * side, c33);
    }

    private static void Store(ArrayView<float> y, ArrayView<float> bias, int hasBias, int m, int n, int row, int col, float value)
    {
        if (row < m && col < n)
            y[(long)row * n + col] = value + (hasBias != 0 ? bias[col] : 0f);
    }
}
