namespace PureFlux.Runtime;

/// <summary>An immutable row-major tensor shape, e.g. [B, S, H*D].</summary>
public sealed class Shape : IEquatable<Shape>
{
    private readonly int[] _dims;

    public Shape(params int[] dims)
    {
        foreach (var d in dims)
            if (d < 0) throw new ArgumentException($"shape {Format(dims)} has a negative dimension");
        _dims = (int[])dims.Clone();
        long n = 1;
        foreach (var d in dims) n *= d;
        Count = n;
    }

    public static Shape Of(params int[] dims) => new(dims);

    public int Rank => _dims.Length;
    /// <summary>Number of elements.</summary>
    public long Count { get; }
    public int this[int axis] => _dims[axis < 0 ? _dims.Length + axis : axis];
    public ReadOnlySpan<int> Dims => _dims;
    /// <summary>Last dimension (the contiguous one).</summary>
    public int Last => _dims.Length == 0 ? 1 : _dims[^1];
    /// <summary>Product of all dimensions but the last: the number of rows of a row-major view.</summary>
    public long Rows => _dims.Length == 0 ? 1 : Count / Math.Max(1, Last);

    public int[] ToArray() => (int[])_dims.Clone();

    public bool Equals(Shape? other) => other is not null && _dims.AsSpan().SequenceEqual(other._dims);
    public override bool Equals(object? obj) => obj is Shape s && Equals(s);
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var d in _dims) h.Add(d);
        return h.ToHashCode();
    }

    public override string ToString() => Format(_dims);
    public static string Format(ReadOnlySpan<int> dims) => "[" + string.Join(", ", dims.ToArray()) + "]";
}
