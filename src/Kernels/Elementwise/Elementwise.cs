namespace PureFlux.Kernels;

/// <summary>
/// Plain F32 element-wise and data-movement ops: add, axpy, scale, add a scalar, column copies (splitting fused QKV projections,
/// concatenating along channels) and 2-D transpose. Outputs may alias inputs where noted.
/// </summary>
public static partial class Elementwise
{
    /// <summary>y = a + b. a, b, y: F32, same shape; y may alias a or b.</summary>
    public static void Add(Tensor a, Tensor b, Tensor y)
    {
        const string op = nameof(Elementwise) + "." + nameof(Add);
        CheckF32(op, ("a", a), ("b", b), ("y", y));
        Check.SameShape(op, "a", a, "b", b);
        Check.SameShape(op, "a", a, "y", y);
        if (a.Count == 0) return;
        using var profile = OpProfile.Start(op, a);
        switch (Check.SameDevice(op, a, b, y))
        {
            case CpuDevice cpu:
                Chunked(cpu, a.Count, (s, n) => TensorPrimitives.Add(Span(a, s, n), Span(b, s, n), Span(y, s, n)));
                break;
            case IlgpuDevice gpu: AddIlgpu(gpu, a, b, y); break;
        }
    }

    /// <summary>y = a · b (element-wise). a, b, y: F32, same shape; y may alias a or b.</summary>
    public static void Multiply(Tensor a, Tensor b, Tensor y)
    {
        const string op = nameof(Elementwise) + "." + nameof(Multiply);
        CheckF32(op, ("a", a), ("b", b), ("y", y));
        Check.SameShape(op, "a", a, "b", b);
        Check.SameShape(op, "a", a, "y", y);
        if (a.Count == 0) return;
        using var profile = OpProfile.Start(op, a);
        switch (Check.SameDevice(op, a, b, y))
        {
            case CpuDevice cpu:
                Chunked(cpu, a.Count, (s, n) => TensorPrimitives.Multiply(Span(a, s, n), Span(b, s, n), Span(y, s, n)));
                break;
            case IlgpuDevice gpu: MultiplyIlgpu(gpu, a, b, y); break;
        }
    }

    /// <summary>y += alpha · x. x, y: F32, same shape.</summary>
    public static void Axpy(float alpha, Tensor x, Tensor y)
    {
        const string op = nameof(Elementwise) + "." + nameof(Axpy);
        CheckF32(op, ("x", x), ("y", y));
        Check.SameShape(op, "x", x, "y", y);
        if (x.Count == 0) return;
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, y))
        {
            case CpuDevice cpu:
                Chunked(cpu, x.Count, (s, n) => TensorPrimitives.FusedMultiplyAdd(Span(x, s, n), alpha, Span(y, s, n), Span(y, s, n)));
                break;
            case IlgpuDevice gpu: AxpyIlgpu(gpu, alpha, x, y); break;
        }
    }

    /// <summary>y = s · x. x, y: F32, same shape; y may alias x.</summary>
    public static void Scale(Tensor x, float s, Tensor y)
    {
        const string op = nameof(Elementwise) + "." + nameof(Scale);
        CheckF32(op, ("x", x), ("y", y));
        Check.SameShape(op, "x", x, "y", y);
        if (x.Count == 0) return;
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, y))
        {
            case CpuDevice cpu:
                Chunked(cpu, x.Count, (st, n) => TensorPrimitives.Multiply(Span(x, st, n), s, Span(y, st, n)));
                break;
            case IlgpuDevice gpu: ScaleIlgpu(gpu, x, s, y); break;
        }
    }

    /// <summary>y = x + c (one float32 add per element; x − s is the same operation with c = −s). x, y: F32, same shape; y may alias x.</summary>
    public static void AddScalar(Tensor x, float c, Tensor y)
    {
        const string op = nameof(Elementwise) + "." + nameof(AddScalar);
        CheckF32(op, ("x", x), ("y", y));
        Check.SameShape(op, "x", x, "y", y);
        if (x.Count == 0) return;
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, y))
        {
            case CpuDevice cpu:
                Chunked(cpu, x.Count, (st, n) => TensorPrimitives.Add(Span(x, st, n), c, Span(y, st, n)));
                break;
            case IlgpuDevice gpu: AddScalarIlgpu(gpu, x, c, y); break;
        }
    }

    /// <summary>dst = src[:, colStart : colStart + W]. src: F32 [R, C], dst: F32 [R, W] (any leading dims, flattened
    /// to R rows; the row counts must match).</summary>
    public static void CopyColumns(Tensor src, int colStart, Tensor dst)
    {
        const string op = nameof(Elementwise) + "." + nameof(CopyColumns);
        var (rows, c, w) = CheckColumns(op, src, dst, colStart, "src", "dst");
        if (rows == 0 || w == 0) return;
        using var profile = OpProfile.Start(op, src);
        switch (Check.SameDevice(op, src, dst))
        {
            case CpuDevice cpu: ColumnsCpu(cpu, src, c, colStart, dst, w, 0, w, rows); break;
            case IlgpuDevice gpu: CopyColumnsIlgpu(gpu, src, c, colStart, dst, w, rows); break;
        }
    }

    /// <summary>dst[:, colStart : colStart + W] = src. src: F32 [R, W], dst: F32 [R, C] (leading dims flattened; the
    /// row counts must match). The other columns of dst are left as they are.</summary>
    public static void WriteColumns(Tensor src, Tensor dst, int colStart)
    {
        const string op = nameof(Elementwise) + "." + nameof(WriteColumns);
        var (rows, c, w) = CheckColumns(op, dst, src, colStart, "dst", "src");
        if (rows == 0 || w == 0) return;
        using var profile = OpProfile.Start(op, src);
        switch (Check.SameDevice(op, src, dst))
        {
            case CpuDevice cpu: ColumnsCpu(cpu, src, w, 0, dst, c, colStart, w, rows); break;
            case IlgpuDevice gpu: WriteColumnsIlgpu(gpu, src, w, dst, c, colStart, rows); break;
        }
    }

    /// <summary>y = xᵀ. x: F32 [R, C], y: F32 [C, R]; y must not alias x.</summary>
    public static void Transpose2d(Tensor x, Tensor y)
    {
        const string op = nameof(Elementwise) + "." + nameof(Transpose2d);
        CheckF32(op, ("x", x), ("y", y));
        Check.Rank(op, "x", x, 2);
        int r = x.Shape[0], c = x.Shape[1];
        Check.Shape(op, "y", y, c, r);
        Check.That(!(x.Buffer == y.Buffer && x.ByteOffset < y.ByteOffset + y.ByteCount && y.ByteOffset < x.ByteOffset + x.ByteCount),
            op, "y overlaps x; a transpose cannot run in place");
        if (x.Count == 0) return;
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, y))
        {
            case CpuDevice cpu: TransposeCpu(cpu, x, y, r, c); break;
            case IlgpuDevice gpu: TransposeIlgpu(gpu, x, y, r, c); break;
        }
    }

    private static void CheckF32(string op, params (string Arg, Tensor T)[] tensors)
    {
        foreach (var (arg, t) in tensors) Check.DType(op, arg, t, DType.F32);
    }

    /// <summary>Checks a column copy between <paramref name="wide"/> [R, C] and <paramref name="narrow"/> [R, W].</summary>
    private static (long Rows, int C, int W) CheckColumns(string op, Tensor wide, Tensor narrow, int colStart, string wideArg, string narrowArg)
    {
        CheckF32(op, (wideArg, wide), (narrowArg, narrow));
        Check.That(wide.Rank >= 1 && narrow.Rank >= 1, op, $"{wideArg} {wide.Shape} and {narrowArg} {narrow.Shape} must be [R, C] and [R, W]");
        int c = wide.Shape.Last, w = narrow.Shape.Last;
        Check.That(wide.Shape.Rows == narrow.Shape.Rows, op,
            $"{wideArg} has shape {wide.Shape} ({wide.Shape.Rows} rows) but {narrowArg} has shape {narrow.Shape} ({narrow.Shape.Rows} rows); expected equal row counts");
        Check.That(colStart >= 0 && (long)colStart + w <= c, op,
            $"columns [{colStart}, {(long)colStart + w}) of {wideArg} {wide.Shape} are out of range (it has {c} columns)");
        return (wide.Shape.Rows, c, w);
    }

    private static unsafe Span<float> Span(Tensor t, long start, long count) => new((float*)t.Pointer + start, (int)count);

    /// <summary>Runs <paramref name="body"/>(start, count) over [0, total) in 16-aligned parts, one per thread when large.</summary>
    private static void Chunked(CpuDevice device, long total, Action<long, long> body)
    {
        if (total < RowParallel.MinParallelElements || device.Threads == 1)
        {
            for (long s = 0; s < total; s += int.MaxValue & ~15) body(s, Math.Min(int.MaxValue & ~15, total - s));
            return;
        }
        Parallel.For(0, device.Threads, device.ParallelOptions, p =>
        {
            var (start, len) = Partition.Range(total, p, device.Threads, 16);
            for (long s = start; s < start + len; s += int.MaxValue & ~15) body(s, Math.Min(int.MaxValue & ~15, start + len - s));
        });
    }

    /// <summary>dst[r, dstCol + j] = src[r, srcCol + j] for j &lt; width.</summary>
    private static unsafe void ColumnsCpu(CpuDevice device, Tensor src, int srcStride, int srcCol, Tensor dst, int dstStride, int dstCol, int width, long rows)
    {
        float* ps = (float*)src.Pointer, pd = (float*)dst.Pointer;
        RowParallel.For(device, rows, width, (first, count) =>
        {
            for (long r = first; r < first + count; r++)
                new ReadOnlySpan<float>(ps + r * srcStride + srcCol, width).CopyTo(new Span<float>(pd + r * dstStride + dstCol, width));
        });
    }

    /// <summary>Cache-blocked transpose: 32×32 tiles, so both the reads and the writes touch few cache lines.</summary>
    private static unsafe void TransposeCpu(CpuDevice device, Tensor x, Tensor y, int r, int c)
    {
        const int tile = 32;
        float* px = (float*)x.Pointer, py = (float*)y.Pointer;
        long rowBlocks = (r + tile - 1) / tile;
        RowParallel.For(device, rowBlocks, (long)tile * c, (first, count) =>
        {
            for (long rb = first; rb < first + count; rb++)
            {
                int r0 = (int)rb * tile, r1 = Math.Min(r, r0 + tile);
                for (int c0 = 0; c0 < c; c0 += tile)
                {
                    int c1 = Math.Min(c, c0 + tile);
                    for (int i = r0; i < r1; i++)
                    {
                        float* srcRow = px + (long)i * c;
                        for (int j = c0; j < c1; j++) py[(long)j * r + i] = srcRow[j];
                    }
                }
            }
        });
    }
}
