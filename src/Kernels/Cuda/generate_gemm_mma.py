#!/usr/bin/env python3
"""Writes GemmMma.Kernel.cs: ILGPU 1.5.3 does not unroll loops, so the tensor-core GEMM's per-warp 4x4 grid of
mma.m16n8k16 (64 accumulators), its fragment loads and its staging copies are emitted here, unrolled.
Run: python3 src/Kernels/Cuda/generate_gemm_mma.py  (rewrites the .cs next to this script)."""
import os

THREADS = 256          # 8 warps
BM, BN, BK = 128, 128, 32
WM, WN = 64, 32        # warp tile: warps laid out 2 (M) x 4 (N)
MT, NT = WM // 16, WN // 8   # 4 m16 tiles x 4 n8 tiles per warp
QUADS = BK // 8        # 128-bit quads (8 bf16) per staged row: 4
STAGE = BM * QUADS     # Word4 per operand per stage (128 rows x 4): 512
CHUNKS = BM * QUADS // THREADS  # 128-bit chunks per thread per operand: 2
COMP = "XYZW"

def load_tile(ind, k0):
    """Global -> registers for one K tile: per thread CHUNKS chunks of A (8 floats -> 4 bf16x2 words) and of W."""
    o = []
    for l in range(CHUNKS):
        o += [
            f"{{",
            f"    int gRow = m0 + stageRow + {l * THREADS // QUADS}, gk = {k0} + stageK;",
            f"    float e0 = 0f, e1 = 0f, e2 = 0f, e3 = 0f, e4 = 0f, e5 = 0f, e6 = 0f, e7 = 0f;",
            f"    if (gRow < m && (vectorLoads & VectorX) != 0 && gk + 8 <= k)",
            f"    {{",
            f"        // two 128-bit read-only loads (x rows are 16-byte aligned: checked on the host)",
            f"        long address = xAddress + ((long)gRow * k + gk) * 4L;",
            f"        LoadGlobal4(address, out e0, out e1, out e2, out e3);",
            f"        LoadGlobal4(address + 16L, out e4, out e5, out e6, out e7);",
            f"    }}",
            f"    else if (gRow < m)",
            f"    {{",
            f"        long row = (long)gRow * k;",
        ]
        for e in range(8):
            o.append(f"        if (gk + {e} < k) e{e} = x[row + gk + {e}];")
        o += [
            f"    }}",
        ]
        for w in range(4):
            o.append(f"    sa{l}{w} = PackBf16(e{2*w}, e{2*w+1});")
        o += [
            f"}}",
            f"{{",
            f"    int gCol = n0 + stageRow + {l * THREADS // QUADS}, gk = {k0} + stageK;",
            f"    if (gCol < n && (vectorLoads & VectorW) != 0 && gk + 8 <= k)",
            f"        LoadGlobal4Bits(wAddress + ((long)gCol * k + gk) * 2L, out sb{l}0, out sb{l}1, out sb{l}2, out sb{l}3);",
            f"    else if (gCol < n)",
            f"    {{",
            f"        long row = (long)gCol * k;",
            f"        uint h0 = 0u, h1 = 0u, h2 = 0u, h3 = 0u, h4 = 0u, h5 = 0u, h6 = 0u, h7 = 0u;",
        ]
        for e in range(8):
            o.append(f"        if (gk + {e} < k) h{e} = w[row + gk + {e}];")
        o += [f"        sb{l}{w} = h{2*w} | (h{2*w+1} << 16);" for w in range(4)]
        o += [f"    }}", f"}}"]
    return [ind + s for s in o]

def store_tile(ind, stage):
    o = []
    for l in range(CHUNKS):
        at = f"{stage} + (stageRow + {l * THREADS // QUADS}) * {QUADS} + stageQuad"
        o.append(f"tileA[{at}] = new Word4 {{ X = sa{l}0, Y = sa{l}1, Z = sa{l}2, W = sa{l}3 }};")
        o.append(f"tileB[{at}] = new Word4 {{ X = sb{l}0, Y = sb{l}1, Z = sb{l}2, W = sb{l}3 }};")
    return [ind + s for s in o]

def staging_decl(ind):
    names = [f"s{op}{l}{w}" for op in "ab" for l in range(CHUNKS) for w in range(4)]
    return [ind + "uint " + ", ".join(n + " = 0u" for n in names) + ";"]

def compute(ind, stage, mma):
    o = [f"// fragments for both k16 steps of the tile: one 128-bit load per A row (g, g+8 of each m16 tile) and per B column"]
    for mt in range(MT):
        o.append(f"Word4 a{mt}Lo = tileA[{stage} + aLane + {mt * 16 * QUADS}], a{mt}Hi = tileA[{stage} + aLane + {(mt * 16 + 8) * QUADS}];")
    for nt in range(NT):
        o.append(f"Word4 b{nt} = tileB[{stage} + bLane + {nt * 8 * QUADS}];")
    for s in range(2):
        o.append(f"// k16 step {s}: A register r = component 2*{s} + r/2 of row (r odd ? g+8 : g); B register r = component 2*{s} + r")
        for mt in range(MT):
            # MmaFragment.QuadComponent(AKPair(lane, r), s) = 2s + r/2 ; rows: ARow(lane, 2r) = g + 8*(r & 1)
            regs = [f"a{mt}{'Hi' if r & 1 else 'Lo'}.{COMP[2*s + (r >> 1)]}" for r in range(4)]
            o.append(f"{{ Input<uint> fa0 = {regs[0]}, fa1 = {regs[1]}, fa2 = {regs[2]}, fa3 = {regs[3]};")
            for nt in range(NT):
                b = [f"b{nt}.{COMP[2*s + r]}" for r in range(2)]
                acc = ", ".join(f"ref c{mt}{nt}{i}" for i in range(4))
                o.append(f"  Input<uint> fb{nt}0 = {b[0]}, fb{nt}1 = {b[1]};")
                o.append(f"  CudaAsm.EmitRef({mma}, {acc}, ref fa0, ref fa1, ref fa2, ref fa3, ref fb{nt}0, ref fb{nt}1);")
            o.append("}")
    return [ind + s for s in o]

def kernel(name, mma, doc):
    I = "        "
    o = [
        f"    /// <summary>{doc}</summary>",
        f"    [IlgpuKernel(explicitlyGrouped: true)]",
        f"    private static void {name}(long xAddress, long wAddress, ArrayView<float> x, ArrayView<ushort> w,",
        f"        ArrayView<float> bias, int hasBias, ArrayView<float> y, int m, int n, int k, int vectorLoads)",
        f"    {{",
        f"        var tileA = SharedMemory.Allocate<Word4>(2 * {STAGE}); // [stage][row 0..127][quad 0..3] x[m0 + row, k0 + 8 quad ..]",
        f"        var tileB = SharedMemory.Allocate<Word4>(2 * {STAGE}); // [stage][col 0..127][quad 0..3] W[n0 + col, k0 + 8 quad ..]",
        f"        int tid = Group.IdxX, lane = tid & 31, warp = tid >> 5;",
        f"        int m0 = Grid.IdxY * {BM}, n0 = Grid.IdxX * {BN};",
        f"        int wm0 = (warp & 1) * {WM}, wn0 = (warp >> 1) * {WN}; // warp tile origin in the block tile",
        f"        // staging copy: thread owns rows stageRow + {THREADS // QUADS}·l (l < {CHUNKS}), quad stageQuad (k0 + 8·quad .. +7)",
        f"        int stageRow = tid >> 2, stageQuad = tid & 3, stageK = 8 * stageQuad;",
        f"        // fragment loads (MmaFragment): A rows ARow(lane, 0) = g and ARow(lane, 2) = g + 8 of each m16 tile, B column BCol = g;",
        f"        // every lane reads quad LaneQuad(lane) = t of its rows (words 4t..4t+3 = k-pairs t, t+4 of steps 0, 1)",
        f"        int aLane = (wm0 + MmaFragment.ARow(lane, 0)) * {QUADS} + MmaFragment.LaneQuad(lane);",
        f"        int bLane = (wn0 + MmaFragment.BCol(lane, 0)) * {QUADS} + MmaFragment.LaneQuad(lane);",
        f"        // accumulators c[mt][nt][i]: m16 tile mt, n8 tile nt, element i (MmaFragment.CRow/CCol)",
    ]
    for mt in range(MT):
        for nt in range(NT):
            o.append(I + "Ref<float> " + ", ".join(f"c{mt}{nt}{i} = 0f" for i in range(4)) + ";")
    o.append(I + f"int tiles = (k + {BK - 1}) / {BK};")
    o.append(I + "{")
    o += staging_decl(I + "    ")
    o += load_tile(I + "    ", "0")
    o += store_tile(I + "    ", "0")
    o.append(I + "}")
    o.append(I + "Group.Barrier();")
    o += [
        I + "for (int kt = 0; kt < tiles; kt++)",
        I + "{",
        I + f"    int current = (kt & 1) * {STAGE}, next = {STAGE} - current;",
        I + "    bool more = kt + 1 < tiles;",
    ]
    o += staging_decl(I + "    ")
    o.append(I + "    if (more) // issue the next tile's global loads before the math so their latency overlaps it")
    o.append(I + "    {")
    o += load_tile(I + "        ", f"(kt + 1) * {BK}")
    o.append(I + "    }")
    o.append(I + "    {")
    o += compute(I + "        ", "current", mma)
    o.append(I + "    }")
    o.append(I + "    if (more)")
    o.append(I + "    {")
    o += store_tile(I + "        ", "next")
    o.append(I + "    }")
    o.append(I + "    Group.Barrier(); // stage `next` complete; stage `current` free for the tile after")
    o.append(I + "}")
    o.append(I + "float biasScale = hasBias != 0 ? 1f : 0f;")
    for mt in range(MT):
        for nt in range(NT):
            for i in range(4):
                o.append(I + f"Store(y, bias, biasScale, m, n, m0 + wm0 + {mt * 16} + MmaFragment.CRow(lane, {i}), n0 + wn0 + {nt * 8} + MmaFragment.CCol(lane, {i}), c{mt}{nt}{i}.Value);")
    o.append("    }")
    return o

out = [
    "// <auto-generated> by src/Kernels/Cuda/generate_gemm_mma.py — edit the generator, not this file. </auto-generated>",
    "using ILGPU;",
    "using ILGPU.Runtime;",
    "using ILGPU.Runtime.Cuda;",
    "",
    "namespace PureFlux.Kernels;",
    "",
    "public static partial class GemmMma",
    "{",
]
out += kernel("Bf16Kernel", "MmaBf16",
              "y = x·Wᵀ (+ bias) with W BF16: x rounded to BF16 while staging, mma.m16n8k16 BF16×BF16→F32. CUDA only (inline PTX).")
out.append("")
f16 = kernel("F16Kernel", "MmaF16",
             "y = x·Wᵀ (+ bias) with W F16: x rounded to F16 while staging, mma.m16n8k16 F16×F16→F32. CUDA only (inline PTX).")
f16 = [s.replace("PackBf16(", "PackF16(") for s in f16]
out += f16
out.append("}")
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "GemmMma.Kernel.cs")
with open(path, "w") as f:
    f.write("\n".join(out) + "\n")
print(path)
