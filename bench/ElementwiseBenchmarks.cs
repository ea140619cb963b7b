using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace PureFlux.Bench;

/// <summary>
/// Memory-bound element-wise / norm ops on the managed CPU backend at FLUX.2 klein 4B shapes: 1536 tokens
/// (a 1024² image's 4096 latents would be 4096; 1536 is text + a 512² image), hidden 3072, 24 heads × 128,
/// MLP 9216. The GB/s column is bytes that must cross memory once (inputs read + outputs written) / mean time.
/// <c>dotnet run -c Release --project bench -- --filter '*Elementwise*'</c>
/// </summary>
[Config(typeof(GbPerSecondConfig))]
public class ElementwiseBenchmarks
{
    private const int S = 1536, D = 3072, Heads = 24, HeadDim = 128, Mlp = 9216;
    private Device _dev = null!;
    private Tensor _x = null!, _y = null!, _w = null!, _shift = null!, _scale = null!, _mlpIn = null!, _mlpOut = null!,
        _cos = null!, _sin = null!, _heads = null!;

    /// <summary>Bytes each benchmark moves (read + write), by method name.</summary>
    internal static readonly Dictionary<string, long> Bytes = new()
    {
        [nameof(RmsNorm_1536x3072)] = 2L * S * D * 4,
        [nameof(RmsNorm_PerHead_1536x24x128)] = 2L * S * D * 4,
        [nameof(LayerNormModulate_1536x3072)] = 2L * S * D * 4,
        [nameof(SwiGlu_1536x2x9216)] = 3L * S * Mlp * 4,
        [nameof(RopeInterleaved_1536x24x128)] = 2L * S * D * 4 + 2L * S * HeadDim * 4,
        [nameof(GatedResidual_1536x3072)] = 3L * S * D * 4,
    };

    [GlobalSetup]
    public void Setup()
    {
        _dev = new CpuDevice();
        var rng = new Random(0);
        Tensor Rand(params int[] dims)
        {
            var t = Tensor.Empty(_dev, DType.F32, dims);
            var span = t.AsSpan<float>();
            for (int i = 0; i < span.Length; i++) span[i] = (float)(rng.NextDouble() * 2 - 1);
            return t;
        }
        _x = Rand(S, D);
        _y = Rand(S, D);
        _w = Rand(D);
        _shift = Rand(D);
        _scale = Rand(D);
        _mlpIn = Rand(S, 2 * Mlp);
        _mlpOut = Rand(S, Mlp);
        _cos = Rand(S, HeadDim);
        _sin = Rand(S, HeadDim);
        _heads = Rand(S, Heads, HeadDim);
    }

    [Benchmark] public void RmsNorm_1536x3072() => RmsNorm.Forward(_x, _w, _y, 1e-6f);

    [Benchmark] public void RmsNorm_PerHead_1536x24x128() => RmsNorm.Forward(_x.Reshape(S, Heads, HeadDim), _w.Reshape(D).Slice(0, HeadDim), _heads, 1e-6f);

    [Benchmark] public void LayerNormModulate_1536x3072() => LayerNormModulate.Forward(_x, _shift, _scale, _y, 1e-6f);

    [Benchmark] public void SwiGlu_1536x2x9216() => SwiGlu.Forward(_mlpIn, _mlpOut);

    [Benchmark] public void RopeInterleaved_1536x24x128() => Rope.ApplyInterleaved(_x.Reshape(S, Heads, HeadDim), _cos, _sin, _heads);

    [Benchmark] public void GatedResidual_1536x3072() => GatedResidual.Forward(_y, _w, _x);

    [GlobalCleanup]
    public void Cleanup() => _dev.Dispose();
}

/// <summary>Adds a GB/s column (bytes from <see cref="ElementwiseBenchmarks.Bytes"/> / mean time).</summary>
public sealed class GbPerSecondConfig : ManualConfig
{
    public GbPerSecondConfig() => AddColumn(new GbPerSecondColumn());

    private sealed class GbPerSecondColumn : IColumn
    {
        public string Id => "GBps";
        public string ColumnName => "GB/s";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => 0;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => "bytes read + written once / mean time";
        public bool IsAvailable(Summary summary) => true;
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            var report = summary[benchmarkCase];
            if (report?.ResultStatistics is null) return "-";
            if (!ElementwiseBenchmarks.Bytes.TryGetValue(benchmarkCase.Descriptor.WorkloadMethod.Name, out long bytes)) return "-";
            return (bytes / report.ResultStatistics.Mean).ToString("F1"); // bytes per ns = GB/s
        }
    }
}
