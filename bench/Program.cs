using BenchmarkDotNet.Running;

namespace PureFlux.Bench;

/// <summary>
/// Operator benchmarks at FLUX.2 klein 4B / Qwen3-4B shapes.
/// <c>dotnet run -c Release --project bench -- --filter '*Gemm*'</c> (BenchmarkDotNet's own options apply).
/// <c>dotnet run -c Release --project bench -- peak</c>: the machine's reference line (<see cref="PeakBenchmarks"/>).
/// <c>dotnet run -c Release --project bench -- quick gemm|attention|conv</c>: plain timed runs printing GFLOP/s
/// (minutes instead of BenchmarkDotNet's much longer statistics); quick gemm adds OpenBLAS sgemm in the same process
/// (with the best OPENBLAS_CORETYPE, unless --keep-coretype) and our f32 / OpenBLAS ratio.
/// <c>dotnet run -c Release --project bench -- gemm [reps] [MxKxN ...]</c>: GEMM at FLUX.2's small M (<see cref="GemmQuickBench.RunSmallM"/>).
/// <c>dotnet run -c Release --project bench -- conv-ab FLAG [reps] [shape index ...]</c>: A/B of a Conv2d experiment switch (<see cref="ConvQuickBench.RunAB"/>).
/// <c>dotnet run -c Release --project bench -- cuda</c>: tensor-core vs SIMT GEMM on a CUDA device (<see cref="CudaBench"/>).
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args is ["peak", ..]) return PeakBenchmarks.Run(args[1..]);
        if (args is ["cuda", ..]) return CudaBench.Run(Console.Out);
        if (args is ["quick", var what, ..])
        {
            switch (what)
            {
                case "gemm":
                    if (!args.Contains("--keep-coretype") && OpenBlas.RerunWithBestCoreType(args) is { } code) return code; // OpenBLAS row
                    GemmQuickBench.Run(args[2..].Where(a => a != "--keep-coretype").ToArray());
                    return 0;
                case "attention": AttentionQuickBench.Run(); return 0;
                case "conv": ConvQuickBench.Run(); return 0;
                default: Console.Error.WriteLine($"error: quick '{what}': expected gemm, attention or conv"); return 2;
            }
        }
        if (args is ["conv-ab", ..]) { ConvQuickBench.RunAB(args[1..]); return 0; }
        if (args is ["gemm-ab", ..]) { GemmQuickBench.RunAB(args[1..]); return 0; }
        if (args is ["gemm", ..]) { GemmQuickBench.RunSmallM(args[1..]); return 0; }
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}
