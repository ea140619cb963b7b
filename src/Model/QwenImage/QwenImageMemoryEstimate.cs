using PureFlux.Model.Engine;
using PureFlux.Model.Layers;
using PureFlux.Model.Snapshot;

namespace PureFlux.Model.QwenImage;

/// <summary>
/// What a Qwen-Image job needs, stage by stage, from configs and weight sizes: text encoding (the whole language model,
/// one prompt of ≤ 546 tokens at a time; the vision tower is never loaded), denoising (every transformer weight as it
/// will be held — as stored or quantized — plus one block's buffers for one sample at a time) and decoding (the VAE
/// decoder at full resolution). Deliberately generous: a job it lets through must not run out of memory halfway, and
/// the full-size model in BF16 (≈ 41 GB transformer, ≈ 16.6 GB encoder) is refused with the numbers on a smaller machine.
/// </summary>
internal static class QwenImageMemoryEstimate
{
    private const double F32 = 4;

    public static MemoryEstimate Estimate(QwenImageModel model, GenerationJob job, bool cfg)
    {
        var s = model.Snapshot;
        var tc = s.TransformerConfig;
        var te = s.TextEncoderConfig;
        var vc = s.VaeConfig;
        double width = job.Width ?? 1024, height = job.Height ?? 1024, batch = job.BatchSize;
        string request = FormattableString.Invariant($"--width {width} --height {height}{(batch > 1 ? $", {batch} images" : "")}");
        double encTokens = QwenImagePrompt.DropTokens + QwenImagePrompt.MaxSequenceLength, text = QwenImagePrompt.MaxSequenceLength;
        double imgTokens = Math.Floor(width / 16) * Math.Floor(height / 16);
        double seq = imgTokens + text;
        var stages = new List<MemoryStage>();

        double Bytes(WeightSource w, Func<string, bool> take, QuantMode quant) => w.Names.Where(take).Sum(n =>
        {
            var e = w.Entry(n);
            double elems = e.Shape.Count;
            bool matrix = e.Shape.Rank >= 2;
            bool stored = e.DType is DType.I8 or DType.I4 or DType.F8E4M3 or DType.F8E5M2;
            if (matrix && quant is QuantMode.Int8 or QuantMode.Fp8E4M3 or QuantMode.Fp8E5M2 && !stored) return elems * 1.05;
            if (matrix && quant == QuantMode.Int4 && !stored) return elems * 0.6;
            return (double)e.Bytes;
        });

        // 1. Text: the language model (no vision tower, no lm_head).
        {
            double weights = Bytes(s.TextEncoder, n => n.StartsWith("model.", StringComparison.Ordinal) && !n.StartsWith("model.visual", StringComparison.Ordinal), model.Quant);
            double h = te.HiddenSize, q = te.QueryWidth, kv = te.KeyValueWidth, inter = te.IntermediateSize;
            double act = F32 * encTokens * (4 * h + 2 * q + 2 * kv + 3 * inter) + F32 * te.NumAttentionHeads * encTokens * encTokens;
            stages.Add(new MemoryStage("text encoding", weights, act));
        }
        double conditioning = F32 * (cfg ? 2 : 1) * batch * text * tc.JointAttentionDim * (cfg && job.CfgMode == CfgMode.Batched ? 2 : 1);

        // 2. Denoising: the transformer, every block's modulation vectors, and one sample's block buffers.
        {
            double weights = Bytes(s.Transformer, _ => true, model.Quant);
            if (model.StreamsTransformerWeights)
            {
                // Streamed: the weights outside the blocks plus the block in use and the one read ahead are resident.
                double block0 = Bytes(s.Transformer, n => n.StartsWith("transformer_blocks.0.", StringComparison.Ordinal), model.Quant);
                double inBlocks = Bytes(s.Transformer, n => n.StartsWith("transformer_blocks.", StringComparison.Ordinal), model.Quant);
                weights = weights - inBlocks + 2 * block0;
            }
            double d = tc.Dim, f = tc.MlpHidden, rows = batch * (cfg && job.CfgMode == CfgMode.Batched ? 2 : 1);
            double block = F32 * seq * (7 * d + f) + F32 * 2 * seq * tc.AttentionHeadDim * 3;
            double mods = F32 * rows * tc.NumLayers * 12 * d;
            double latents = F32 * batch * imgTokens * tc.InChannels * 6;
            stages.Add(new MemoryStage("denoising", weights, conditioning + block + mods + latents, HostBytes: F32 * 6 * seq * tc.AttentionHeadDim));
        }

        // 3. Decoding: the VAE decoder at full size, one image at a time (F32 copies of the 3×3 kernel slices).
        {
            double weights = s.Vae.Names.Where(n => !n.StartsWith("encoder.", StringComparison.Ordinal)).Sum(n => F32 * s.Vae.Entry(n).Shape.Count);
            double c0 = vc.BaseDim * vc.DimMult[0], px = width * height;
            double act = F32 * px * c0 * 6 + F32 * px * 9 * c0;
            stages.Add(new MemoryStage("vae decode", weights, act + F32 * batch * 3 * px, HostBytes: F32 * batch * 3 * px * 2));
        }
        return new MemoryEstimate(request, stages)
        {
            LargestBufferElements = Math.Max(seq * tc.MlpHidden, width * height * vc.BaseDim * vc.DimMult[0] * 9),
            LargestBuffer = "largest of the MLP hidden buffer and the VAE's full-size convolution input",
            LargestHostArrayBytes = F32 * batch * 3 * width * height,
            LargestHostArray = "decoded images",
        };
    }
}
