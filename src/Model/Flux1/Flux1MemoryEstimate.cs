using PureFlux.Model.Engine;
using PureFlux.Model.Layers;
using PureFlux.Model.Snapshot;

namespace PureFlux.Model.Flux1;

/// <summary>
/// What a FLUX.1 job holds, stage by stage (the encoders are released before the transformer loads, the transformer
/// before the VAE): CLIP, then T5 over L tokens; the transformer with one block's buffers over every row; the VAE at full size.
/// </summary>
internal static class Flux1MemoryEstimate
{
    private const double F32 = 4;

    public static MemoryEstimate Estimate(Flux1Model model, GenerationJob job, bool cfg)
    {
        var s = model.Snapshot;
        var tc = s.TransformerConfig;
        var vc = s.VaeConfig;
        double width = job.Width ?? 1024, height = job.Height ?? 1024, batch = job.BatchSize;
        string request = FormattableString.Invariant($"--width {width} --height {height}{(batch > 1 ? $", {batch} images" : "")}");
        double text = s.T5Length;
        double rows = batch * (cfg && job.CfgMode == CfgMode.Batched ? 2 : 1);
        double imgTokens = Math.Floor(width / 16) * Math.Floor(height / 16);
        double refTokens = job.ReferenceImages.Count > 0 ? 1568.0 * 672 / 256 : 0; // the largest preferred Kontext resolution
        double seq = imgTokens + refTokens + text;
        var quant = model.Quant;
        var stages = new List<MemoryStage>();

        static double Bytes(WeightSource w, QuantMode quant) => w.Names.Sum(n =>
        {
            var e = w.Entry(n);
            bool matrix = e.Shape.Rank >= 2;
            double elems = e.Shape.Count;
            if (matrix && e.DType is DType.I8 or DType.I4 or DType.F8E4M3 or DType.F8E5M2) return (double)e.Bytes;
            if (matrix && quant is QuantMode.Int8 or QuantMode.Fp8E4M3 or QuantMode.Fp8E5M2) return elems * 1.05;
            if (matrix && quant == QuantMode.Int4) return elems * 0.6;
            return (double)e.Bytes;
        });

        var t5 = s.T5Config;
        double t5Act = F32 * text * (4 * t5.DModel + 3 * t5.DFf) + F32 * t5.NumHeads * text * text * 2;
        stages.Add(new MemoryStage("text encoding (CLIP)", Bytes(s.Clip, quant), F32 * 77 * s.ClipConfig.IntermediateSize * 4));
        stages.Add(new MemoryStage("text encoding (T5)", Bytes(s.T5, quant), t5Act));

        double conditioning = F32 * (cfg ? 2 : 1) * batch * text * t5.DModel * (cfg && job.CfgMode == CfgMode.Batched ? 2 : 1);
        double d = tc.InnerDim, f = tc.MlpHiddenDim, r = rows * seq;
        double block = F32 * r * (6 * d + 2 * f);
        double latents = F32 * batch * (imgTokens + refTokens) * tc.InChannels * 6;
        // Streamed weights (larger than half the memory, used in place) hold the block in use and the one read ahead, plus
        // the weights outside the blocks; the rest stays in the page cache or on disk, not in the resident set.
        double transformerWeights = Bytes(s.Transformer, quant);
        if (model.StreamsTransformerWeights)
        {
            var w = s.Transformer;
            double BlockBytes(string prefix) => w.Names.Where(n => n.StartsWith(prefix, StringComparison.Ordinal)).Sum(n => (double)w.Entry(n).Bytes);
            double doubleBlock = tc.NumLayers > 0 ? BlockBytes("transformer_blocks.0.") : 0, singleBlock = tc.NumSingleLayers > 0 ? BlockBytes("single_transformer_blocks.0.") : 0;
            double inBlocks = tc.NumLayers * doubleBlock + tc.NumSingleLayers * singleBlock;
            transformerWeights = transformerWeights - inBlocks + 2 * Math.Max(doubleBlock, singleBlock);
        }
        stages.Add(new MemoryStage("denoising", transformerWeights, conditioning + block + latents, HostBytes: F32 * 2 * seq * tc.AttentionHeadDim));

        double vaeWeights = Bytes(s.Vae, QuantMode.None);
        double c0 = vc.BlockOutChannels[0], px = width * height;
        stages.Add(new MemoryStage("vae decode", vaeWeights, F32 * px * c0 * 14 + F32 * batch * 3 * px, HostBytes: F32 * batch * 3 * px * 2));
        return new MemoryEstimate(request, stages)
        {
            LargestBufferElements = Math.Max(r * (d + f), px * c0 * 9),
            LargestBuffer = "largest of the single blocks' cat(attention, MLP) buffer and the VAE's full-size convolution input",
            LargestHostArrayBytes = F32 * batch * 3 * px,
            LargestHostArray = "decoded images",
        };
    }
}
