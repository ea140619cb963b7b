namespace PureFlux.Kernels;

/// <summary>Splits work between CPU threads.</summary>
public static class Partition
{
    /// <summary>The [start, start+length) share of <paramref name="total"/> items for part <paramref name="part"/> of
    /// <paramref name="parts"/>, with boundaries rounded to multiples of <paramref name="align"/>.</summary>
    public static (long Start, long Length) Range(long total, int part, int parts, int align = 1)
    {
        long chunk = (total + parts - 1) / parts;
        chunk = (chunk + align - 1) / align * align;
        long start = Math.Min(total, chunk * part);
        long end = Math.Min(total, start + chunk);
        return (start, end - start);
    }
}
