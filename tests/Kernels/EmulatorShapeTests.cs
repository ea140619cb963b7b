namespace PureFlux.Tests.Kernels;

/// <summary>
/// The ILGPU CPU accelerator with other group shapes (<c>--device ilgpu-cpu:WxN</c>; CI's serial emulator pass runs the
/// extra pipeline goldens at 2x2): the kernels with group reductions, shared-memory tiles and barriers give the managed
/// CPU's numbers there too, rows and tiles not multiples of the group included.
/// </summary>
public class EmulatorShapeTests
{
    private static float[] Run(Device dev, Func<Device, Tensor> op)
    {
        using var t = op(dev);
        return t.ToFloatArray();
    }

    private static Tensor Input(Device dev, int seed, params int[] dims) =>
        Tensor.FromSpan<float>(dev, HostData.Random((int)new Shape(dims).Count, seed), new Shape(dims));

    public static TheoryData<string, string> Cases()
    {
        var d = new TheoryData<string, string>();
        foreach (var shape in new[] { "2x2", "8x1" })
            foreach (var op in new[] { "rmsnorm", "layernorm-modulate", "softmax", "linear", "attention" })
                d.Add(shape, op);
        return d;
    }

    private static Tensor Op(Device dev, string op)
    {
        switch (op)
        {
            case "rmsnorm":
            {
                using var x = Input(dev, 1, 7, 37); using var w = Input(dev, 2, 37);
                var y = Tensor.Empty(dev, DType.F32, new Shape(7, 37));
                RmsNorm.Forward(x, w, y, 1e-6f);
                return y;
            }
            case "layernorm-modulate":
            {
                using var x = Input(dev, 3, 5, 70); using var shift = Input(dev, 4, 70); using var scale = Input(dev, 5, 70);
                var y = Tensor.Empty(dev, DType.F32, new Shape(5, 70));
                LayerNormModulate.Forward(x, shift, scale, y, 1e-6f);
                return y;
            }
            case "softmax":
            {
                using var x = Input(dev, 6, 9, 300);
                var y = Tensor.Empty(dev, DType.F32, new Shape(9, 300));
                Softmax.Forward(x, y);
                return y;
            }
            case "linear":
            {
                using var x = Input(dev, 7, 33, 45); using var w = Input(dev, 8, 19, 45); using var b = Input(dev, 9, 19);
                var y = Tensor.Empty(dev, DType.F32, new Shape(33, 19));
                Gemm.Linear(x, w, b, y);
                return y;
            }
            default:
            {
                using var q = Input(dev, 10, 1, 41, 2, 16); using var k = Input(dev, 11, 1, 41, 2, 16); using var v = Input(dev, 12, 1, 41, 2, 16);
                var o = Tensor.Empty(dev, DType.F32, new Shape(1, 41, 2, 16));
                Attention.Forward(q, k, v, o);
                return o;
            }
        }
    }

    [Theory, MemberData(nameof(Cases))]
    public void Kernels_match_the_managed_cpu_on_another_group_shape(string shape, string op)
    {
        using var emu = Devices.Open($"ilgpu-cpu:{shape}");
        using var cpu = new CpuDevice();
        var expected = Run(cpu, d => Op(d, op));
        var actual = Run(emu, d => Op(d, op));
        Assert.Equal(expected.Length, actual.Length);
        double maxRef = expected.Max(v => Math.Abs((double)v)), maxDiff = 0;
        for (int i = 0; i < expected.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs((double)actual[i] - expected[i]));
        Assert.True(maxDiff <= 1e-5 * Math.Max(1, maxRef), $"{op} on ilgpu-cpu:{shape}: max |diff| {maxDiff:g3} (max |ref| {maxRef:g3})");
    }
}
