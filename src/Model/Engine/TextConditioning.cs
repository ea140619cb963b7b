namespace PureFlux.Model.Engine;

/// <summary>
/// Encoded prompts for a batch: embeddings [B, T, D] on the device, one row per sample (all rows padded to one T),
/// plus what a family's encoder may add (a mask [B, T] of 0/1 as F32, a pooled vector [B, P]). The engine only stacks
/// and repeats rows; what the tensors mean is the family's business.
/// </summary>
public sealed class TextConditioning : IDisposable
{
    public TextConditioning(Tensor embeds, Tensor? mask = null, Tensor? pooled = null, string? warning = null)
    {
        if (embeds.Rank != 3) throw new ArgumentException($"text conditioning: embeddings have shape {embeds.Shape}; expected [B, T, D]");
        if (mask is not null && (mask.Rank != 2 || mask.Shape[0] != embeds.Shape[0] || mask.Shape[1] != embeds.Shape[1]))
            throw new ArgumentException($"text conditioning: mask has shape {mask.Shape}; expected [{embeds.Shape[0]}, {embeds.Shape[1]}]");
        if (pooled is not null && (pooled.Rank != 2 || pooled.Shape[0] != embeds.Shape[0]))
            throw new ArgumentException($"text conditioning: pooled has shape {pooled.Shape}; expected [{embeds.Shape[0]}, P]");
        Embeds = embeds;
        Mask = mask;
        Pooled = pooled;
        Warning = warning;
    }

    /// <summary>[B, T, D].</summary>
    public Tensor Embeds { get; }
    /// <summary>[B, T] (1 = real token) or null when every token counts.</summary>
    public Tensor? Mask { get; }
    /// <summary>[B, P] or null.</summary>
    public Tensor? Pooled { get; }
    /// <summary>A tokenizer or cache warning to show the user, or null.</summary>
    public string? Warning { get; }

    public int Batch => Embeds.Shape[0];
    public int Length => Embeds.Shape[1];

    /// <summary>
    /// The same rows padded to <paramref name="length"/> tokens with zero embeddings and mask 0 (this instance itself when
    /// already that long). Only masked conditioning can be padded: the mask is what tells the family where each row ends.
    /// </summary>
    public TextConditioning PadTo(int length)
    {
        if (length == Length) return this;
        if (Mask is null || length < Length) throw new ArgumentException($"text conditioning: cannot pad {Embeds.Shape} to {length} tokens (needs a mask and a longer length)");
        int b = Batch, d = Embeds.Shape[2];
        var embeds = Tensor.Zeros(Embeds.Device, Embeds.DType, new Shape(b, length, d));
        var mask = Tensor.Zeros(Mask.Device, Mask.DType, new Shape(b, length));
        for (int i = 0; i < b; i++)
        {
            Embeds.Slice(i, 1).Reshape(Length, d).CopyTo(embeds.Slice(i, 1).Reshape(length, d).Slice(0, Length));
            Mask.Slice(i, 1).Reshape(Length).CopyTo(mask.Slice(i, 1).Reshape(length).Slice(0, Length));
        }
        Tensor? pooled = null;
        if (Pooled is not null)
        {
            pooled = Tensor.Empty(Pooled.Device, Pooled.DType, Pooled.Shape);
            Pooled.CopyTo(pooled);
        }
        return new TextConditioning(embeds, mask, pooled, Warning);
    }

    /// <summary>Rows in the given order (a row may repeat): prompt-major repetition is <c>[0, 0, 1, 1]</c>.</summary>
    public TextConditioning Select(IReadOnlyList<int> rows) => Gather([this], rows.Select(r => (0, r)).ToArray());

    /// <summary>All rows of <paramref name="parts"/> one after the other (e.g. [cond; uncond] for one batched CFG pass).</summary>
    public static TextConditioning Concat(params TextConditioning[] parts)
    {
        if (parts.Length == 0) throw new ArgumentException("text conditioning: nothing to concatenate");
        return Gather(parts, parts.SelectMany((p, i) => Enumerable.Range(0, p.Batch).Select(r => (i, r))).ToArray());
    }

    private static TextConditioning Gather(TextConditioning[] parts, (int Part, int Row)[] rows)
    {
        var first = parts[0];
        foreach (var p in parts)
            if (p.Length != first.Length || p.Embeds.Shape[2] != first.Embeds.Shape[2] || (p.Mask is null) != (first.Mask is null) || (p.Pooled is null) != (first.Pooled is null))
                throw new ArgumentException($"text conditioning: cannot stack {p.Embeds.Shape} with {first.Embeds.Shape} (lengths, widths and parts must agree)");
        Tensor? Take(Func<TextConditioning, Tensor?> pick)
        {
            var src = pick(first);
            if (src is null) return null;
            var dims = src.Shape.ToArray();
            dims[0] = rows.Length;
            var dst = Tensor.Empty(src.Device, src.DType, new Shape(dims));
            for (int i = 0; i < rows.Length; i++)
            {
                var (part, row) = rows[i];
                var from = pick(parts[part])!;
                if ((uint)row >= (uint)from.Shape[0]) throw new ArgumentOutOfRangeException(nameof(rows), $"text conditioning: row {row} of a batch of {from.Shape[0]}");
                from.Slice(row, 1).CopyTo(dst.Slice(i, 1));
            }
            return dst;
        }
        string? warning = string.Join("; ", parts.Select(p => p.Warning).Where(w => w is not null).Distinct());
        return new TextConditioning(Take(p => p.Embeds)!, Take(p => p.Mask), Take(p => p.Pooled), warning.Length == 0 ? null : warning);
    }

    public void Dispose()
    {
        Embeds.Dispose();
        Mask?.Dispose();
        Pooled?.Dispose();
    }
}
