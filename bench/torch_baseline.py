#!/usr/bin/env python3
"""PyTorch reference numbers for bench/CudaBenchmarks.cs, same shapes, one GPU call each:
  torch.matmul in BF16 (x[M,K] @ W[N,K]^T, FP32 accumulation inside cuBLAS) at M = 512, 1536, 4608 and
  (K, N) = (3072, 3072), (3072, 27648), (12288, 3072); also with x in FP32 converted to BF16 per call (what
  GemmMma does while staging) and TF32 FP32 matmul for the SIMT comparison;
  scaled_dot_product_attention (BF16, non-causal, head_dim 128, 24 heads: FLUX.2 klein 4B) at S = 512, 1536, 4608.
Prints TFLOP/s (median of timed runs, CUDA events). Usage: python3 bench/torch_baseline.py  (needs torch + CUDA).
"""
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("torch not installed")
    sys.exit(0)

if not torch.cuda.is_available():
    print("no CUDA device")
    sys.exit(0)

TOKENS = [512, 1536, 4608]
PROJECTIONS = [(3072, 3072), (3072, 27648), (12288, 3072)]
HEADS, HEAD_DIM = 24, 128


def time_ms(fn, min_runs=5, max_runs=50, budget_ms=300.0):
    fn()
    torch.cuda.synchronize()
    times = []
    total = 0.0
    while len(times) < min_runs or (len(times) < max_runs and total < budget_ms):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        t = start.elapsed_time(end)
        times.append(t)
        total += t
    times.sort()
    return times[len(times) // 2]


def main():
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    print(f"{'M':>6} {'K':>6} {'N':>6} {'bf16 TFLOP/s':>13} {'f32->bf16 TFLOP/s':>18} {'tf32 TFLOP/s':>13}")
    for k, n in PROJECTIONS:
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
        w32 = w.float()
        for m in TOKENS:
            x32 = torch.randn(m, k, device="cuda", dtype=torch.float32)
            x = x32.to(torch.bfloat16)
            flops = 2.0 * m * n * k
            bf16 = time_ms(lambda: torch.matmul(x, w.t()))
            conv = time_ms(lambda: torch.matmul(x32.to(torch.bfloat16), w.t()).float())
            torch.backends.cuda.matmul.allow_tf32 = True
            tf32 = time_ms(lambda: torch.matmul(x32, w32.t()))
            torch.backends.cuda.matmul.allow_tf32 = False
            print(f"{m:>6} {k:>6} {n:>6} {flops / bf16 / 1e9:>13.1f} {flops / conv / 1e9:>18.1f} {flops / tf32 / 1e9:>13.1f}")
            del x32, x
        del w, w32
    print()
    print(f"scaled_dot_product_attention, bf16, non-causal, {HEADS} heads x {HEAD_DIM}")
    print(f"{'S':>6} {'TFLOP/s':>9} {'ms':>8}")
    for s in TOKENS:
        q, k, v = (torch.randn(1, HEADS, s, HEAD_DIM, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        flops = 4.0 * HEADS * s * s * HEAD_DIM  # Q·Kᵀ and P·V
        ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v))
        print(f"{s:>6} {flops / ms / 1e9:>9.1f} {ms:>8.3f}")


if __name__ == "__main__":
    main()
