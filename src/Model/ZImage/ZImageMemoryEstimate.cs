using PureFlux.Model.Engine;
using PureFlux.Model.Layers;
using PureFlux.Model.Snapshot;

namespace PureFlux.Model.ZImage;

/// <summary>
/// What a Z-Image job needs, stage by stage, from configs and weight sizes: text encoding (the encoder up to
/// hidden_states[−2]), denoising (transformer weights as they will be held — as stored, BF16 from FP32, or quantized — and
/// the widest block's buffers), decoding (the VAE at full resolution). Deliberately generous: a refusal must be right
/// before any work, and a job that is let through must not run out of memory halfway.
/// </summary>
internal static class ZImageMemoryEstimate
{
    private const double F32 = 4;

    public static MemoryEstimate Estimate(ZImageModel model, GenerationJob job, bool cfg)
    {
        var s = model.Snapshot;
        var tc = s.TransformerConfig;
        var te = s.TextEncoderConfig;
        var vc = s.VaeConfig;
        double width = job.Width ?? 1024, height = job.Height ?? 1024, batch = job.BatchSize;
        string request = FormattableString.Invariant($"--width {width} --height {height}{(batch > 1 ? $", {batch} images" : "")}");
        double text = ZImageModel.MaxTextTokens;
        double rows = batch * (cfg && job.CfgMode == CfgMode.Batched ? 2 : 1);
        double imgTokens = Math.Ceiling(Math.Floor(width / 16) * Math.Floor(height / 16) / 32) * 32;
        double seq = imgTokens + text + 32;
        var stages = new List<MemoryStage>();

        double Bytes(WeightSource w, Func<string, bool> take, bool asBf16, QuantMode quant) => w.Names.Where(take).Sum(n =>
        {
            var e = w.Entry(n);
            bool matrix = e.Shape.Rank >= 2;
            double elems = e.Shape.Count;
            if (matrix && quant is QuantMode.Int8 or QuantMode.Fp8E4M3 or QuantMode.Fp8E5M2) return elems * 1.05;
            if (matrix && quant == QuantMode.Int4) return elems * 0.6;
            if (matrix && asBf16 && e.DType == DType.F32) return elems * 2;
            return (double)e.Bytes;
        });

        // 1. Text: layers up to hidden_states[−2], one prompt at a time (≤ 512 tokens).
        {
            int needed = s.TextLayer;
            double weights = Bytes(s.TextEncoder, n => LayerOf(n) is not int l || l < needed, false, model.Quant);
            double h = te.HiddenSize, q = te.QueryWidth, kv = te.KeyValueWidth, inter = te.IntermediateSize;
            double act = F32 * text * (4 * h + 2 * q + 2 * kv + 3 * inter) + F32 * te.NumAttentionHeads * text * text;
            stages.Add(new MemoryStage("text encoding", weights, act));
        }
        double conditioning = F32 * (cfg ? 2 : 1) * batch * text * tc.CapFeatDim * (cfg && job.CfgMode == CfgMode.Batched ? 2 : 1);

        // 2. Denoising: the transformer, and one block's buffers over every row of the batch.
        {
            double weights = Bytes(s.Transformer, _ => true, model.TransformerAsBf16, model.Quant);
            double d = tc.Dim, f = tc.FfnHidden, r = rows * seq;
            double block = F32 * r * (6 * d + 2 * f) + F32 * 2 * seq * tc.HeadDim * 3;
            double latents = F32 * batch * imgTokens * tc.PatchChannels * 6;
            stages.Add(new MemoryStage("denoising", weights, conditioning + block + latents + F32 * r * d * 3, HostBytes: F32 * 6 * seq * tc.HeadDim * rows));
        }

        // 3. Decoding: the VAE decoder at full size, one image at a time.
        {
            double weights = Bytes(s.Vae, n => !n.StartsWith("encoder.", StringComparison.Ordinal), false, QuantMode.None);
            double c0 = vc.BlockOutChannels[0], px = width * height;
            double act = F32 * px * c0 * 5 + F32 * px * 9 * c0; // resnet buffers + the im2col-style conv scratch at full size
            stages.Add(new MemoryStage("vae decode", weights, act + F32 * batch * 3 * px, HostBytes: F32 * batch * 3 * px * 2));
        }
        return new MemoryEstimate(request, stages)
        {
            LargestBufferElements = Math.Max(rows * seq * tc.FfnHidden, width * height * vc.BlockOutChannels[0] * 9),
            LargestBuffer = "largest of the SwiGLU hidden buffer and the VAE's full-size convolution input",
            LargestHostArrayBytes = F32 * batch * 3 * width * height,
            LargestHostArray = "decoded images",
        };
    }

    private static int? LayerOf(string name)
    {
        const string p = "layers.";
        int at = name.IndexOf(p, StringComparison.Ordinal);
        if (at < 0) return null;
        int end = name.IndexOf('.', at + p.Length);
        return end > at + p.Length && int.TryParse(name.AsSpan(at + p.Length, end - at - p.Length), out int l) ? l : null;
    }
}
