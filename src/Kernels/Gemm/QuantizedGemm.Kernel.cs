using ILGPU;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class QuantizedGemm
{
    private const int TileM = Gemm.TileM, TileN = Gemm.TileN, TileK = Gemm.TileK, GroupSide = Gemm.GroupSide;

    private static void LinearIlgpu(IlgpuDevice device, Tensor x, QuantizedTensor w, Tensor? bias, Tensor y, int m, int n, int k)
    {
        var kernel = device.Kernel(static a => a.LoadStreamKernel<ArrayView<float>, ArrayView<byte>, ArrayView<float>, int, int,
            ArrayView<float>, int, ArrayView<float>, int, int, int>(TiledKernel));
        int side = Gemm.GroupSideFor(device), tile = 4 * side;
        var grid = new Index2D((n + tile - 1) / tile, (m + tile - 1) / tile);
        kernel(new KernelConfig(grid, new Index2D(side, side)), x.AsView<float>(), w.Data.AsView<byte>(), w.Scales.AsView<float>(),
            KindOf(w.Data.DType), w.GroupSize, bias is null ? y.AsView<float>() : bias.AsView<float>(), bias is null ? 0 : 1,
            y.AsView<float>(), m, n, k);
    }

    /// <summary>Weight kinds of the tile kernel: int8 and int4 are scaled as they are staged, FP8 per column at the store.</summary>
    private const int KindInt8 = 0, KindInt4 = 1, KindE4M3 = 2, KindE5M2 = 3;

    private static int KindOf(DType t) => t switch { DType.I4 => KindInt4, DType.F8E4M3 => KindE4M3, DType.F8E5M2 => KindE5M2, _ => KindInt8 };

    /// <summary>Weight element (row, col): int8 sign-extended from its byte, int4 from its nibble, times its scale; FP8
    /// decoded from its code (unscaled).</summary>
    private static float LoadWeight(ArrayView<byte> data, ArrayView<float> scales, int kind, int groupSize, int k, int row, int col)
    {
        long i = (long)row * k + col;
        if (kind == KindE4M3) return E4M3ToFloat(data[i]);
        if (kind == KindE5M2) return Gemm.HalfBitsToFloat((uint)data[i] << 8); // E5M2 = the upper byte of a half
        if (kind == KindInt4)
        {
            int b = data[i >> 1];
            int v = ((i & 1) == 0 ? b : b >> 4) & 0xF;
            if (v >= 8) v -= 16;
            return v * scales[(long)row * (k / groupSize) + col / groupSize];
        }
        int q = data[i];
        if (q >= 128) q -= 256;
        return q * scales[row];
    }

    /// <summary>E4M3 code → float by bit manipulation; subnormals computed explicitly (GPUs may flush float denormals).</summary>
    private static float E4M3ToFloat(uint code)
    {
        uint exponent = (code >> 3) & 0xFu, mantissa = code & 7u;
        float value;
        if ((code & 0x7Fu) == 0x7Fu) value = float.NaN;
        else if (exponent == 0) value = mantissa * 0.001953125f; // mantissa · 2^-9
        else value = Interop.IntAsFloat(((exponent + 120u) << 23) | (mantissa << 20));
        return (code & 0x80u) != 0 ? -value : value;
    }

    /// <summary>The 64×64 shared-memory tile kernel of <see cref="Gemm"/> with the weight dequantized while staging it.</summary>
    [IlgpuKernel(explicitlyGrouped: true)]
    private static void TiledKernel(ArrayView<float> x, ArrayView<byte> data, ArrayView<float> scales, int kind, int groupSize,
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
                int gm = m0 + r, gn = n0 + r, gk = k0 + kk;
                tileA[kk * tile + r] = gm < m && gk < k ? x[(long)gm * k + gk] : 0f;
                tileB[kk * tile + r] = gn < n && gk < k ? LoadWeight(data, scales, kind, groupSize, k, gn, gk) : 0f;
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
        Store(y, bias, hasBias, scales, kind, m, n, row0 + 0, col0 + 0, c00);
        Store(y, bias, hasBias, scales, kind, m, n, row0 + 0, col0 + 1 * side, c01);
        Store(y, bias, hasBias, scales, kind, m, n, row0 + 0, col0 + 2 * side, c02);
        Store(y, bias, hasBias, scales, kind, m, n, row0 + 0, col0 + 3 * side, c03);
        Store(y, bias, hasBias, scales, kind, m, n, row0 + 1 * side, col0 + 0, c10);
        Store(y, bias, hasBias, scales, kind, m, n, row0 + 1 * side, col0 + 1 * side, c11);
        Store(y, bias, hasBias, scales, kind, m, n, row0 + 1 * side, col0 + 2 * side, c12);
        Store(y, bias, hasBias, scales, kind, m, n, row0 + 1 * side, col0 + 3 * side, c13);
        Store(y, bias, hasBias, scales, kind, m, n, row0 + 2 * side, col0 + 0, c20);
        Store(y, bias, hasBias, scales, kind, m, n, row0 + 2 * side, col0 + 1 * side, c21);
        Store(y, bias, hasBias, scales, kind, m, n, row0 + 2 * side, col0 + 2 * side, c22);
        Store(y, bias, hasBias, scales, kind, m, n, row0 + 2 * side, col0 + 3 * side, c23);
        Store(y, bias, hasBias, scales, kind, m, n, row0 + 3 * side, col0 + 0, c30);
        Store(y, bias, hasBias, scales, kind, m, n, row0 + 3 * side, col0 + 1 * side, c31);
        Store(y, bias, hasBias, scales, kind, m, n, row0 + 3 * side, col0 + 2 * side, c32);
        Store(y, bias, hasBias, scales, kind, m, n, row0 + 3 * side, col0 + 3 * side, c33);
    }

    private static void Store(ArrayView<float> y, ArrayView<float> bias, int hasBias, ArrayView<float> scales, int kind, int m, int n, int row, int col, float value)
    {
        if (row < m && col < n)
            y[(long)row * n + col] = (kind >= KindE4M3 ? value * scales[col] : value) + (hasBias != 0 ? bias[col] : 0f);
    }
}
