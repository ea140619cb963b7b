using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

public class ActivationTests
{
    // Element-wise fp32 ops: expf differs by a few ulp between TensorPrimitives, ILGPU and PyTorch.
    private const float Rtol = 1e-5f, Atol = 1e-6f;

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Silu_matches_golden(string backend)
    {
        var dev = Backends.Get(backend);
        using var x = Golden.Load(dev, "silu.x");
        using var y = new Guarded(dev, DType.F32, Golden.Dims("silu.out"));
        Silu.Forward(x, y);
        Compare.Close(Golden.F("silu.out"), y.ToFloatArray(), Rtol, Atol, $"silu on {backend}");
        y.AssertIntact($"silu on {backend}");
    }
}
