using PureFlux.Model.Layers;

namespace PureFlux.Tests.Support;

/// <summary>The tiny golden FLUX.2 klein model (tests/golden/model) and its forward-pass reference files.</summary>
public static class GoldenModel
{
    public static string ModelDir => Path.Combine(Golden.Dir, "model");

    private static readonly Dictionary<string, SafetensorsFile> Files = new();

    public static SafetensorsFile File(string relative)
    {
        lock (Files)
        {
            if (!Files.TryGetValue(relative, out var f))
                Files[relative] = f = SafetensorsFile.Open(Path.Combine(Golden.Dir, relative));
            return f;
        }
    }

    /// <summary>Loads weights of one component onto a device, checking shapes like the real loader does.</summary>
    public static WeightLoader Loader(Device dev, string weightsFile) => (name, shape) =>
    {
        var f = File(weightsFile);
        var e = f.Entry(name);
        Assert.True(e.Shape.Dims.SequenceEqual(shape), $"{weightsFile}: {name} has shape {e.Shape}, expected {Shape.Format(shape)}");
        return f.Load(name, dev);
    };

    /// <summary>Collects a trace callback's tensors as float arrays.</summary>
    public sealed class Trace
    {
        public Dictionary<string, float[]> Values { get; } = new();
        public void Record(string name, Tensor t) => Values[name] = t.ToFloatArray();
    }

    /// <summary>Asserts max|a−b| / max|b| ≤ tol for a traced tensor against the golden of the same name.</summary>
    public static void AssertClose(SafetensorsFile golden, Trace trace, string traceName, string goldenName, double tol, string where)
    {
        Assert.True(trace.Values.TryGetValue(traceName, out var actual), $"{where}: '{traceName}' was not traced");
        var expected = golden.ReadFloats(goldenName);
        Assert.True(expected.Length == actual!.Length, $"{where}: {traceName} has {actual.Length} values, golden {goldenName} {expected.Length}");
        double err = Compare.RelMaxError(expected, actual);
        Assert.True(err <= tol, $"{where}: {traceName} vs golden {goldenName}: max|diff|/max|ref| = {err:g3} > {tol:g2}");
    }
}
