namespace PureFlux.Runtime;

/// <summary>Argument checks for operator entry points; messages name the op, the argument and the expectation.</summary>
public static class Check
{
    public static void DType(string op, string arg, Tensor t, params DType[] allowed)
    {
        if (Array.IndexOf(allowed, t.DType) < 0)
            throw new ArgumentException($"{op}: {arg} ({t.Name ?? "unnamed"}) has dtype {t.DType}; expected {string.Join(" or ", allowed)}");
    }

    public static void Shape(string op, string arg, Tensor t, params int[] dims)
    {
        if (!t.Shape.Dims.SequenceEqual(dims))
            throw new ArgumentException($"{op}: {arg} ({t.Name ?? "unnamed"}) has shape {t.Shape}; expected {Runtime.Shape.Format(dims)}");
    }

    public static void Rank(string op, string arg, Tensor t, int rank)
    {
        if (t.Rank != rank)
            throw new ArgumentException($"{op}: {arg} ({t.Name ?? "unnamed"}) has shape {t.Shape}; expected rank {rank}");
    }

    public static void Count(string op, string arg, Tensor t, long count)
    {
        if (t.Count != count)
            throw new ArgumentException($"{op}: {arg} ({t.Name ?? "unnamed"}) has shape {t.Shape} ({t.Count} elements); expected {count} elements");
    }

    public static void SameShape(string op, string argA, Tensor a, string argB, Tensor b)
    {
        if (!a.Shape.Equals(b.Shape))
            throw new ArgumentException($"{op}: {argB} has shape {b.Shape}; expected the shape of {argA} {a.Shape}");
    }

    public static void LastDim(string op, string arg, Tensor t, int expected)
    {
        if (t.Shape.Last != expected)
            throw new ArgumentException($"{op}: {arg} ({t.Name ?? "unnamed"}) has shape {t.Shape}; expected last dimension {expected}");
    }

    /// <summary>All tensors on one device; returns it.</summary>
    public static Device SameDevice(string op, Tensor first, params Tensor?[] rest)
    {
        foreach (var t in rest)
            if (t is not null && t.Device != first.Device)
                throw new ArgumentException($"{op}: {t.Name ?? "an argument"} is on {t.Device.Id} but {first.Name ?? "the first argument"} is on {first.Device.Id}");
        return first.Device;
    }

    public static void That(bool condition, string op, string message)
    {
        if (!condition) throw new ArgumentException($"{op}: {message}");
    }
}
