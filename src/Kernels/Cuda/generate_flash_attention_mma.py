#!/usr/bin/env python3
"""Writes FlashAttentionMma.Kernel.cs (ILGPU does not unroll loops, so the per-warp mma grids are emitted unrolled).
Run: python3 src/Kernels/Cuda/generate_flash_attention_mma.py"""
import os

D = 128                 # head dim
ROWS = 64               # query rows per block: 4 warps x 16
KEYS = 64               # keys per tile
THREADS = 128
DQ = D // 8             # Word4 quads per Q/K row: 16
KJ = D // 32            # k32 groups over d: 4 (k16 steps 2j, 2j+1)
SNT = KEYS // 8         # S n8 tiles: 8
ONT = D // 8            # O n8 tiles: 16
PSTEPS = KEYS // 16     # P·V k16 steps: 4
VQ = KEYS // 8          # Word4 per Vt row (64 keys = 32 pair-words = 8 quads)
COMP = "XYZW"

def stage_rows(ind, view, addr_expr, rows_valid):
    """Q or K rows (64 x 128 F32) -> sQK[row][quad ^ swizzle] as BF16 pairs; 8 units of (row, quad) per thread."""
    o = []
    for l in range(ROWS * DQ // THREADS):
        o += [
            "{",
            f"    int row = (tid >> 4) + {l * THREADS // DQ}, quad = tid & 15;",
            "    float e0 = 0f, e1 = 0f, e2 = 0f, e3 = 0f, e4 = 0f, e5 = 0f, e6 = 0f, e7 = 0f;",
            f"    if ({rows_valid})",
            "    {",
            f"        long address = {addr_expr} + quad * 32L;",
            "        LoadGlobal4(address, out e0, out e1, out e2, out e3);",
            "        LoadGlobal4(address + 16L, out e4, out e5, out e6, out e7);",
            "    }",
            f"    {view}[row * {DQ} + MmaFragment.SwizzledQuad(row, quad)] = new Word4 {{ X = PackBf16(e0, e1), Y = PackBf16(e2, e3), Z = PackBf16(e4, e5), W = PackBf16(e6, e7) }};",
            "}",
        ]
    return [ind + s for s in o]

def stage_v(ind):
    """V tile (64 keys x 128 F32) -> sVt[d][...] transposed: word of key pair p at Word4 (2(p&3) + (p>>4)) ^ (d&1), component (p>>2)&3."""
    o = []
    for l in range(KEYS // 2 * D // 4 // THREADS):
        o += [
            "{",
            f"    int pair = (tid >> 5) + {l * THREADS // 32}, dq = tid & 31, key = kt0 + 2 * pair;",
            "    float a0 = 0f, a1 = 0f, a2 = 0f, a3 = 0f, b0 = 0f, b1 = 0f, b2 = 0f, b3 = 0f;",
            "    if (key < p.Sk) LoadGlobal4(vAddress + (((long)key * p.Hkv + kvHead) * 128L + dq * 4) * 4L, out a0, out a1, out a2, out a3);",
            "    if (key + 1 < p.Sk) LoadGlobal4(vAddress + (((long)(key + 1) * p.Hkv + kvHead) * 128L + dq * 4) * 4L, out b0, out b1, out b2, out b3);",
        ]
        for i in range(4):
            o.append(f"    sVtWords[(dq * 4 + {i}) * {VQ * 4} + MmaFragment.TransposedWord(pair, dq * 4 + {i})] = PackBf16(a{i}, b{i});")
        o.append("}")
    return [ind + s for s in o]

def body():
    I = "        "
    o = [
        "    /// <summary>FA2-style attention forward, head dim 128, BF16 mma.m16n8k16 with FP32 accumulation. CUDA only (inline PTX).</summary>",
        "    [IlgpuKernel(explicitlyGrouped: true)]",
        "    private static void Bf16Kernel(long qAddress, long kAddress, long vAddress, ArrayView<float> o, KernelParams p)",
        "    {",
        f"        var sQK = SharedMemory.Allocate<Word4>({ROWS * DQ}); // Q rows, then each K tile: [row][quad ^ ((row & 1) << 2)]",
        f"        var sVt = SharedMemory.Allocate<Word4>({D * VQ}); // Vᵀ tile: [d][key-pair quad ^ (d & 1)]",
        "        var sVtWords = sVt.Cast<uint>();",
        "        int tid = Group.IdxX, lane = tid & 31, warp = tid >> 5;",
        f"        int q0 = Grid.IdxX * {ROWS}, head = Grid.IdxY, kvHead = head / p.Group;",
        "        int g = MmaFragment.ARow(lane, 0), t = MmaFragment.LaneQuad(lane);",
        "        int swizzle = MmaFragment.SwizzledQuad(g, 0); // = SwizzledQuad(row, q) ^ q for every row of parity g (rows g, g + 8, 8nt + g)",
        "        // Q (64 rows of this head) -> shared -> this warp's 16 rows as A fragments for all 8 k16 steps over d",
    ]
    o += stage_rows(I, "sQK", "qAddress + (((long)(q0 + row) * p.Hq + head) * 128L) * 4L", "q0 + row < p.Sq")
    o.append(I + "Group.Barrier();")
    for j in range(KJ):
        o.append(I + f"Word4 q{j}Lo = sQK[(warp * 16 + g) * {DQ} + (({4*j} + t) ^ swizzle)], q{j}Hi = sQK[(warp * 16 + g + 8) * {DQ} + (({4*j} + t) ^ swizzle)];")
    o.append(I + "Group.Barrier();")
    for nt in range(ONT):
        o.append(I + "Ref<float> " + ", ".join(f"o{nt}_{i} = 0f" for i in range(4)) + ";")
    o.append(I + "float maxLo = float.NegativeInfinity, maxHi = float.NegativeInfinity, sumLo = 0f, sumHi = 0f; // rows g, g + 8; sums per lane (reduced at the end)")
    o += [
        I + f"for (int kt0 = 0; kt0 < p.Sk; kt0 += {KEYS})",
        I + "{",
    ]
    J = I + "    "
    o += stage_rows(J, "sQK", "kAddress + (((long)(kt0 + row) * p.Hkv + kvHead) * 128L) * 4L", "kt0 + row < p.Sk")
    o += stage_v(J)
    o.append(J + "Group.Barrier();")
    o.append(J + "// S = Q·Kᵀ for 16 rows × 64 keys: 8 n8 tiles × 8 k16 steps")
    for nt in range(SNT):
        o.append(J + "Ref<float> " + ", ".join(f"s{nt}_{i} = 0f" for i in range(4)) + ";")
    for j in range(KJ):
        o.append(J + "{")
        for half in range(2):
            c0, c1 = COMP[2*half], COMP[2*half+1]
            o.append(J + f"    Input<uint> fa{half}0 = q{j}Lo.{c0}, fa{half}1 = q{j}Hi.{c0}, fa{half}2 = q{j}Lo.{c1}, fa{half}3 = q{j}Hi.{c1};")
        for nt in range(SNT):
            o.append(J + f"    {{ Word4 kb = sQK[({nt * 8} + g) * {DQ} + (({4*j} + t) ^ swizzle)];")
            for half in range(2):
                c0, c1 = COMP[2*half], COMP[2*half+1]
                acc = ", ".join(f"ref s{nt}_{i}" for i in range(4))
                o.append(J + f"      Input<uint> fb{half}0 = kb.{c0}, fb{half}1 = kb.{c1};")
                o.append(J + f"      CudaAsm.EmitRef(MmaBf16, {acc}, ref fa{half}0, ref fa{half}1, ref fa{half}2, ref fa{half}3, ref fb{half}0, ref fb{half}1);")
            o.append(J + "    }")
        o.append(J + "}")
    o.append(J + "// scale to log2 units and mask keys past the end (only the last tile has any)")
    o.append(J + "float tileMaxLo = float.NegativeInfinity, tileMaxHi = float.NegativeInfinity;")
    for nt in range(SNT):
        for i in range(4):
            o.append(J + f"float l{nt}_{i} = kt0 + {nt * 8} + MmaFragment.CCol(lane, {i}) < p.Sk ? s{nt}_{i}.Value * p.ScaleLog2 : float.NegativeInfinity;")
        o.append(J + f"tileMaxLo = Max(tileMaxLo, Max(l{nt}_0, l{nt}_1)); tileMaxHi = Max(tileMaxHi, Max(l{nt}_2, l{nt}_3));")
    o += [
        J + "// the four lanes of a quad (t = 0..3) share rows g, g + 8",
        J + "tileMaxLo = Max(tileMaxLo, Warp.ShuffleXor(tileMaxLo, 1)); tileMaxLo = Max(tileMaxLo, Warp.ShuffleXor(tileMaxLo, 2));",
        J + "tileMaxHi = Max(tileMaxHi, Warp.ShuffleXor(tileMaxHi, 1)); tileMaxHi = Max(tileMaxHi, Warp.ShuffleXor(tileMaxHi, 2));",
        J + "float newMaxLo = Max(maxLo, tileMaxLo), newMaxHi = Max(maxHi, tileMaxHi); // finite: every tile has a valid key",
        J + "float alphaLo = Exp2(maxLo - newMaxLo), alphaHi = Exp2(maxHi - newMaxHi); // 0 on the first tile (−∞)",
        J + "maxLo = newMaxLo; maxHi = newMaxHi;",
    ]
    for nt in range(SNT):
        o.append(J + f"float p{nt}_0 = Exp2(l{nt}_0 - maxLo), p{nt}_1 = Exp2(l{nt}_1 - maxLo), p{nt}_2 = Exp2(l{nt}_2 - maxHi), p{nt}_3 = Exp2(l{nt}_3 - maxHi);")
    o.append(J + "sumLo = sumLo * alphaLo + " + " + ".join(f"p{nt}_0 + p{nt}_1" for nt in range(SNT)) + ";")
    o.append(J + "sumHi = sumHi * alphaHi + " + " + ".join(f"p{nt}_2 + p{nt}_3" for nt in range(SNT)) + ";")
    for nt in range(ONT):
        o.append(J + f"o{nt}_0.Value *= alphaLo; o{nt}_1.Value *= alphaLo; o{nt}_2.Value *= alphaHi; o{nt}_3.Value *= alphaHi;")
    o.append(J + "// O += P·V: P's accumulator layout is the A layout of the next mma (keys 16s..16s+15 = S tiles 2s, 2s+1)")
    for s in range(PSTEPS):
        a, b = 2 * s, 2 * s + 1
        o.append(J + "{")
        o.append(J + f"    Input<uint> pa0 = PackBf16(p{a}_0, p{a}_1), pa1 = PackBf16(p{a}_2, p{a}_3), pa2 = PackBf16(p{b}_0, p{b}_1), pa3 = PackBf16(p{b}_2, p{b}_3);")
        for nt in range(ONT):
            c0, c1 = COMP[2 * (s & 1)], COMP[2 * (s & 1) + 1]
            acc = ", ".join(f"ref o{nt}_{i}" for i in range(4))
            o.append(J + f"    {{ Word4 vb = sVt[({nt * 8} + g) * {VQ} + ((2 * t + {s >> 1}) ^ (g & 1))];")
            o.append(J + f"      Input<uint> vb0 = vb.{c0}, vb1 = vb.{c1};")
            o.append(J + f"      CudaAsm.EmitRef(MmaBf16, {acc}, ref pa0, ref pa1, ref pa2, ref pa3, ref vb0, ref vb1); }}")
        o.append(J + "}")
    o.append(J + "Group.Barrier(); // the tile buffers are rewritten next iteration")
    o.append(I + "}")
    o += [
        I + "sumLo += Warp.ShuffleXor(sumLo, 1); sumLo += Warp.ShuffleXor(sumLo, 2);",
        I + "sumHi += Warp.ShuffleXor(sumHi, 1); sumHi += Warp.ShuffleXor(sumHi, 2);",
        I + "float invLo = 1f / sumLo, invHi = 1f / sumHi;",
        I + "int rowLo = q0 + warp * 16 + MmaFragment.CRow(lane, 0), rowHi = q0 + warp * 16 + MmaFragment.CRow(lane, 2);",
        I + "long outLo = ((long)rowLo * p.Hq + head) * 128L, outHi = ((long)rowHi * p.Hq + head) * 128L;",
    ]
    for nt in range(ONT):
        o.append(I + f"if (rowLo < p.Sq) {{ o[outLo + {nt * 8} + MmaFragment.CCol(lane, 0)] = o{nt}_0.Value * invLo; o[outLo + {nt * 8} + MmaFragment.CCol(lane, 1)] = o{nt}_1.Value * invLo; }}")
        o.append(I + f"if (rowHi < p.Sq) {{ o[outHi + {nt * 8} + MmaFragment.CCol(lane, 2)] = o{nt}_2.Value * invHi; o[outHi + {nt * 8} + MmaFragment.CCol(lane, 3)] = o{nt}_3.Value * invHi; }}")
    o.append("    }")
    return o

out = [
    "// <auto-generated> by src/Kernels/Cuda/generate_flash_attention_mma.py — edit the generator, not this file. </auto-generated>",
    "using ILGPU;",
    "using ILGPU.Runtime;",
    "using ILGPU.Runtime.Cuda;",
    "using static PureFlux.Kernels.GemmMma;",
    "",
    "namespace PureFlux.Kernels;",
    "",
    "public static partial class FlashAttentionMma",
    "{",
] + body() + ["}"]
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "FlashAttentionMma.Kernel.cs")
with open(path, "w") as f:
    f.write("\n".join(out) + "\n")
print(path)
