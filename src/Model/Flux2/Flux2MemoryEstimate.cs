using System.Globalization;
using PureFlux.Model.Config;
using PureFlux.Model.Engine;
using PureFlux.Model.Image;
using PureFlux.Model.Layers;
using PureFlux.Model.Snapshot;
using PureFlux.Model.Text;

namespace PureFlux.Model.Flux2;

/// <summary>
/// The memory a FLUX.2 [klein] job needs, stage by stage, from the configs and the weight files alone (no compute):
/// text encoding (Qwen3 weights of the layers used + one prompt's activations), reference images (the VAE with its
/// encoder at each reference's size), denoising (transformer weights + the widest single-stream block's buffers at
/// batch × [text; image; references] tokens, with the flash-attention packing and the engine's latents), decoding
/// (the VAE decoder's resnets and upsamplers at every resolution, the largest conv input padded, the image batch and
/// its host copy). Every buffer is rounded up to the memory pool's size class. Mirrors the code in Flux2Transformer,
/// AutoencoderKL, Qwen3TextEncoder and GenerationEngine; keep them in step.
/// </summary>
internal static class Flux2MemoryEstimate
{
    private const double F32 = 4;

    public static MemoryEstimate Estimate(ModelSnapshot snapshot, QuantMode quant, int[] textLayers, GenerationJob job, bool cfg)
    {
        var tc = snapshot.TransformerConfig;
        var te = snapshot.TextEncoderConfig;
        var vc = snapshot.VaeConfig;
        var b = new Builder();

        // Sizes: the output, and each reference image after klein's preprocessing (area ≤ 1024², multiples of 16).
        var refs = job.ReferenceImages.Select(r => ReferenceSize(r.Width, r.Height)).ToArray();
        double width = job.Width ?? (refs.Length > 0 ? refs[0].W : 1024), height = job.Height ?? (refs.Length > 0 ? refs[0].H : 1024);
        double batch = job.BatchSize;
        string request = FormattableString.Invariant($"--width {width} --height {height}{(batch > 1 ? $", {batch} images" : "")}");

        bool loadQuant = quant != QuantMode.None && QuantizedSnapshot.StoredMode(snapshot) == QuantMode.None;
        double text = Qwen3Tokenizer.KleinMaxLength, joint = tc.JointAttentionDim;
        double imgTokens = Math.Floor(width / 16) * Math.Floor(height / 16);
        double refTokens = refs.Sum(r => (double)(r.W / 16) * (r.H / 16));
        double s = text + imgTokens + refTokens, c = vc.PatchedChannels;
        double prompts = job.PromptCount, rows = batch * (cfg && job.CfgMode == CfgMode.Batched ? 2 : 1);

        // 1. Text: the encoder's layers up to the last one used, one prompt at a time; the conditioning stays.
        {
            int needed = textLayers.Length == 0 ? te.NumHiddenLayers : textLayers.Max();
            double weights = Weights(snapshot.TextEncoder, loadQuant ? quant : QuantMode.None, name => LayerOf(name) is not int l || l < needed);
            double h = te.HiddenSize, q = te.QueryWidth, kv = te.KeyValueWidth, inter = te.IntermediateSize;
            double act = b.Device("text encoder activations", text * h, text * h, text * q, text * kv, text * kv, text * q, text * inter, text * inter, text * inter, text * h,
                2 * Math.Ceiling(text / 64) * 64 * kv, textLayers.Length * text * h, prompts * text * joint);
            b.Stage("text encoding", weights, act);
        }
        double conditioning = b.Device("text conditioning", batch * text * joint, cfg ? batch * text * joint : 0, cfg && job.CfgMode == CfgMode.Batched ? 2 * batch * text * joint : 0);

        // 2. Reference images: the whole VAE (encoder too), one image at a time.
        if (refs.Length > 0)
        {
            double vae = Weights(snapshot.Vae, QuantMode.None, _ => true);
            double encode = refs.Max(r => VaeEncoderPeak(b, vc, r.H, r.W));
            b.Stage("reference images", vae, conditioning + encode + b.Device("reference tokens", refTokens * c));
        }

        // 3. Denoising: transformer weights; the single-stream block at rows × S is the widest point.
        {
            double weights = Weights(snapshot.Transformer, loadQuant ? quant : QuantMode.None, _ => true, transformer: true);
            double d = tc.InnerDim, m = tc.MlpHiddenDim, hd = tc.AttentionHeadDim, heads = tc.NumAttentionHeads;
            double r = rows * s;
            double packed = Math.Ceiling(s / 64) * 64 * heads * (Math.Ceiling(hd / 16) * 16); // flash attention's packed K (and V), per sample
            b.Largest("single-stream block's fused projection", r * (3 * d + 2 * m));
            b.Largest("attention's packed keys", packed);
            double single = b.Device("single-stream block", r * d, r * d, r * (3 * d + 2 * m), r * d, r * d, r * d, r * (d + m), r * d, packed, packed,
                r * 2 * m, r * m, r * d);
            // With a batch the per-sample double-stream buffers are other size classes, cached beside the single block's.
            double doubleBlock = rows > 1 ? b.Device("double-stream block", s * d, s * d, s * d, s * d, s * d, imgTokens * 2 * m, imgTokens * m, imgTokens * d) : 0;
            double engine = b.Device("latents", batch * imgTokens * c, batch * imgTokens * c, batch * imgTokens * c,
                cfg ? rows * imgTokens * c : 0, cfg ? rows * imgTokens * c : 0, refTokens > 0 ? rows * (imgTokens + refTokens) * c : 0,
                s * hd, s * hd, rows * imgTokens * d);
            b.Host("RoPE tables", 2 * s * hd * F32 + s * 4 * 8);
            b.Host("initial noise", c * imgTokens * F32);
            b.Stage("denoising", weights, conditioning + single + doubleBlock + engine + b.Device("reference tokens", refTokens * c),
                2 * s * hd * F32 + s * 4 * 8);
        }

        // 4. Decoding: the VAE decoder one image at a time, the batch of images, and their host copy.
        {
            double vae = Weights(snapshot.Vae, QuantMode.None, _ => true);
            double hl = Math.Floor(height / 16) * 2, wl = Math.Floor(width / 16) * 2; // the VAE latent: 2× the packed grid
            double images = batch * 3 * height * width;
            b.Largest("decoded image batch", images);
            b.Host("decoded image batch (host copy)", images * F32);
            double act = b.Device("latents for the VAE", batch * vc.LatentChannels * hl * wl, c * hl * wl / 4, c * hl * wl / 4, images)
                + VaeDecoderPeak(b, vc, hl, wl);
            b.Stage("decoding", vae, act, images * F32 + batch * 3 * height * width);
        }
        return b.Build(request);
    }

    /// <summary>The size Flux2KleinPipeline gives a reference image: area-limited to 1024², then cropped to multiples of 16.</summary>
    private static (int W, int H) ReferenceSize(int w, int h)
    {
        if ((long)w * h > ReferenceImagePreprocessor.DefaultTargetArea)
            (w, h) = ReferenceImagePreprocessor.TargetAreaSize(w, h, ReferenceImagePreprocessor.DefaultTargetArea);
        return (w / 16 * 16, h / 16 * 16);
    }

    /// <summary>Resident bytes of a component's weights: as stored, or linear weights as int8/int4 when quantized at load.</summary>
    private static double Weights(WeightSource source, QuantMode quant, Func<string, bool> used, bool transformer = false)
    {
        double total = 0;
        foreach (var name in source.Names)
        {
            if (!used(name)) continue;
            var e = source.Entry(name);
            bool linear = e.Shape.Rank == 2 && name.EndsWith(".weight", StringComparison.Ordinal) && !name.Contains("embed_tokens", StringComparison.Ordinal)
                && !(transformer && (name.Contains("modulation", StringComparison.Ordinal) || name.StartsWith("time_guidance_embed", StringComparison.Ordinal) || name.StartsWith("norm_out", StringComparison.Ordinal)));
            if (quant == QuantMode.None || !linear) { total += e.Bytes; continue; }
            double n = e.Shape[0], k = e.Shape[1];
            total += quant != QuantMode.Int4 ? n * k + n * 4 : n * k / 2 + n * Math.Ceiling(k / 128) * 4; // int8, fp8: a byte each
        }
        return total;
    }

    private static int? LayerOf(string name)
    {
        const string prefix = "model.layers.";
        if (!name.StartsWith(prefix, StringComparison.Ordinal)) return null;
        int dot = name.IndexOf('.', prefix.Length);
        return dot > prefix.Length && int.TryParse(name.AsSpan(prefix.Length, dot - prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int l) ? l : null;
    }

    /// <summary>One ResnetBlock2D at h × w: input, norm1, conv1's padded input, conv1, norm2, conv2's padded input, output, shortcut.</summary>
    private static double Resnet(Builder b, double cin, double cout, double h, double w)
    {
        double p = h * w;
        b.Largest("VAE's padded conv input", Padded(cin, h, w));
        b.Largest("VAE activation", cout * p);
        return b.Device("VAE resnet", cin * p, cin * p, Padded(cin, h, w), cout * p, cout * p, Padded(cout, h, w), cout * p, cin != cout ? cout * p : 0);
    }

    /// <summary>The CPU conv's phase-split input: channels × (h + 2) rows × the row rounded up to whole vectors.</summary>
    private static double Padded(double channels, double h, double w) => channels * (h + 2) * (Math.Ceiling(w / 16) * 16 + 2);

    private static double MidBlock(Builder b, double top, double h, double w)
    {
        double n = h * w;
        double attention = b.Device("VAE mid-block attention", n * top, n * top, n * top, n * top, n * top, n * top,
            Math.Ceiling(n / 64) * 64 * (Math.Ceiling(top / 16) * 16), Math.Ceiling(n / 64) * 64 * (Math.Ceiling(top / 16) * 16));
        return Math.Max(Resnet(b, top, top, h, w), attention);
    }

    /// <summary>
    /// The decoder from latent h × w up to the image: every level's peak is summed, since the pool keeps each
    /// resolution's buffers for reuse while the next, 4× larger level runs.
    /// </summary>
    private static double VaeDecoderPeak(Builder b, VaeConfig vc, double h, double w)
    {
        var ch = vc.DecoderChannels;
        int top = ch[^1];
        double total = b.Device("VAE input", vc.LatentChannels * h * w, Padded(vc.LatentChannels, h, w), top * h * w) + MidBlock(b, top, h, w);
        double prev = top;
        for (int i = 0; i < ch.Length; i++)
        {
            double outC = ch[ch.Length - 1 - i];
            double level = 0;
            for (int j = 0; j <= vc.LayersPerBlock; j++) level = Math.Max(level, Resnet(b, j == 0 ? prev : outC, outC, h, w));
            if (i < ch.Length - 1)
            {
                double up = b.Device("VAE upsampler", outC * h * w, outC * 4 * h * w, Padded(outC, 2 * h, 2 * w), outC * 4 * h * w);
                b.Largest("VAE's padded conv input", Padded(outC, 2 * h, 2 * w));
                level = Math.Max(level, up);
                h *= 2;
                w *= 2;
            }
            total += level;
            prev = outC;
        }
        total += b.Device("VAE output", ch[0] * h * w, ch[0] * h * w, Padded(ch[0], h, w), vc.OutChannels * h * w);
        return total;
    }

    /// <summary>The encoder of one reference image of h × w pixels (down to h/8 × w/8), levels summed as in the decoder.</summary>
    private static double VaeEncoderPeak(Builder b, VaeConfig vc, double h, double w)
    {
        var ch = vc.BlockOutChannels;
        double total = b.Device("VAE encoder input", vc.InChannels * h * w, Padded(vc.InChannels, h, w), ch[0] * h * w);
        double prev = ch[0];
        for (int i = 0; i < ch.Length; i++)
        {
            double level = 0;
            for (int j = 0; j < vc.LayersPerBlock; j++) level = Math.Max(level, Resnet(b, j == 0 ? prev : ch[i], ch[i], h, w));
            if (i < ch.Length - 1)
            {
                level = Math.Max(level, b.Device("VAE downsampler", ch[i] * h * w, Padded(ch[i], h, w), ch[i] * h * w / 4));
                h = Math.Floor(h / 2);
                w = Math.Floor(w / 2);
            }
            total += level;
            prev = ch[i];
        }
        return total + MidBlock(b, ch[^1], h, w);
    }

    private sealed class Builder
    {
        private readonly List<MemoryStage> _stages = new();
        private double _largest, _largestHost;
        private string _largestName = "", _largestHostName = "";

        /// <summary>Device bytes of F32 buffers of these element counts, each rounded up to the pool's size class.</summary>
        public double Device(string what, params double[] elements)
        {
            double total = 0;
            foreach (var e in elements)
                if (e > 0) total += SizeClass(e * F32);
            _ = what;
            return total;
        }

        public void Largest(string what, double elements)
        {
            if (elements > _largest) (_largest, _largestName) = (elements, what);
        }

        public void Host(string what, double bytes)
        {
            if (bytes > _largestHost) (_largestHost, _largestHostName) = (bytes, what);
        }

        public void Stage(string name, double weights, double activations, double host = 0) => _stages.Add(new MemoryStage(name, weights, activations, host));

        public MemoryEstimate Build(string request) => new(request, _stages)
        {
            LargestBufferElements = _largest,
            LargestBuffer = _largestName,
            LargestHostArrayBytes = _largestHost,
            LargestHostArray = _largestHostName,
        };

        private static double SizeClass(double bytes) => bytes < 1L << 60 ? MemoryPool.SizeClass((long)Math.Ceiling(bytes)) : bytes * 1.5;
    }
}
