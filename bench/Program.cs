using BenchmarkDotNet.Running;

namespace PureFlux.Bench;

/// <summary>
/// Operator benchmarks at FLUX.2 klein 4B / Qwen3-4B shapes.
/// <c>dotnet run -c Release --project bench -- --filter '*Gemm*'</c> (BenchmarkDotNet's own options apply).
/// </summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
