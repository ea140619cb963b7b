using PureFlux.Model.Layers;

namespace PureFlux.Model.QwenImage;

/// <summary>
/// AutoencoderKLQwenImage (a Wan-2.1-style causal 3D VAE) on a single image, batch 1, maps [C, H, W]. For one frame every
/// causal 3×3×3 convolution (time padded with two zero frames in front) is the 2D 3×3 convolution with the last temporal
/// kernel slice <c>weight[:, :, 2]</c>, and the resamplers' time convolutions are skipped (the first frame never runs
/// them), so the whole VAE is 2D here. Norms are RMS norms over the channels: x / ‖x‖₂ · √C · γ (no mean, no bias).
/// Decoder: post_quant_conv → conv_in → mid (res, single-head attention over pixels, res) → up levels (res ×
/// (num_res_blocks + 1), then nearest 2× + 3×3 conv halving the channels on all but the last) → norm, SiLU, conv_out →
/// clamp(−1, 1). Encoder: conv_in → per level res × num_res_blocks (+ pad right/bottom, 3×3 stride-2 conv) → mid →
/// norm, SiLU, conv_out (2·z) → quant_conv → (mean, logvar). Facts from diffusers' autoencoder_kl_qwenimage.py @ 58eb52c0.
/// </summary>
public sealed class QwenImageVae : IDisposable
{
    private readonly QwenImageVaeConfig _c;
    private readonly List<IDisposable> _owned = [];
    private readonly Conv _postQuant, _decIn, _decOut;
    private readonly Mid _decMid;
    private readonly (Res[] Resnets, Conv? Upsample)[] _up;
    private readonly Tensor _decNormOut;
    private readonly Conv? _encIn, _encOut, _quant;
    private readonly Mid? _encMid;
    private readonly Tensor? _encNormOut;
    private readonly List<(Res? Res, Conv? Down)> _down = [];

    public QwenImageVae(QwenImageVaeConfig c, WeightLoader load, bool withEncoder = true)
    {
        _c = c;
        int z = c.ZDim, levels = c.DimMult.Length;
        _postQuant = new Conv(this, load, "post_quant_conv", z, z, 1, causal3d: true);
        // Decoder channels: base · [mult[-1], mult reversed...].
        var dims = new[] { c.DimMult[^1] }.Concat(c.DimMult.Reverse()).Select(m => c.BaseDim * m).ToArray();
        _decIn = new Conv(this, load, "decoder.conv_in", z, dims[0], 3, causal3d: true);
        _decMid = new Mid(this, load, "decoder.mid_block", dims[0]);
        _up = new (Res[], Conv?)[levels];
        for (int i = 0; i < levels; i++)
        {
            int inDim = i > 0 ? dims[i] / 2 : dims[i], outDim = dims[i + 1];
            var res = new Res[c.NumResBlocks + 1];
            for (int r = 0; r < res.Length; r++) res[r] = new Res(this, load, $"decoder.up_blocks.{i}.resnets.{r}", r == 0 ? inDim : outDim, outDim);
            Conv? up = i != levels - 1 ? new Conv(this, load, $"decoder.up_blocks.{i}.upsamplers.0.resample.1", outDim, outDim / 2, 3, causal3d: false) : null;
            _up[i] = (res, up);
        }
        int last = dims[^1];
        _decNormOut = Own(load("decoder.norm_out.gamma", last, 1, 1, 1));
        _decOut = new Conv(this, load, "decoder.conv_out", last, c.InputChannels, 3, causal3d: true);
        HasEncoder = withEncoder;
        if (!withEncoder) return;

        var edims = new[] { 1 }.Concat(c.DimMult).Select(m => c.BaseDim * m).ToArray();
        _encIn = new Conv(this, load, "encoder.conv_in", c.InputChannels, edims[0], 3, causal3d: true);
        int block = 0;
        for (int i = 0; i < levels; i++)
        {
            int inDim = edims[i], outDim = edims[i + 1];
            for (int r = 0; r < c.NumResBlocks; r++, inDim = outDim)
                _down.Add((new Res(this, load, $"encoder.down_blocks.{block++}", inDim, outDim), null));
            if (i != levels - 1) _down.Add((null, new Conv(this, load, $"encoder.down_blocks.{block++}.resample.1", outDim, outDim, 3, causal3d: false)));
        }
        _encMid = new Mid(this, load, "encoder.mid_block", edims[^1]);
        _encNormOut = Own(load("encoder.norm_out.gamma", edims[^1], 1, 1, 1));
        _encOut = new Conv(this, load, "encoder.conv_out", edims[^1], 2 * z, 3, causal3d: true);
        _quant = new Conv(this, load, "quant_conv", 2 * z, 2 * z, 1, causal3d: true);
    }

    public QwenImageVaeConfig Config => _c;
    public bool HasEncoder { get; }

    private T Own<T>(T d) where T : IDisposable { _owned.Add(d); return d; }

    /// <summary>
    /// Latents as the pipeline hands them to the decoder (z · std + mean), [z, h, w] → image [3, 8h, 8w] clamped to
    /// [−1, 1]. <paramref name="trace"/> gets the golden set's dec.* names.
    /// </summary>
    public Tensor Decode(Tensor latent, Action<string, Tensor>? trace = null)
    {
        using var pq = _postQuant.Run(latent);
        trace?.Invoke("dec.post_quant_conv", pq);
        var x = _decIn.Run(pq);
        trace?.Invoke("dec.conv_in", x);
        x = Replace(x, _decMid.Run(x, trace, "dec.mid"));
        trace?.Invoke("dec.mid", x);
        for (int i = 0; i < _up.Length; i++)
        {
            var (res, up) = _up[i];
            for (int r = 0; r < res.Length; r++)
            {
                x = Replace(x, res[r].Run(x));
                if (r == 0) trace?.Invoke($"dec.up.{i}.resnet0", x);
            }
            if (up is not null)
            {
                using (var big = Tensor.Empty(x.Device, DType.F32, x.Shape[0], 2 * x.Shape[1], 2 * x.Shape[2]))
                {
                    Upsample.Nearest2x(x, big);
                    x = Replace(x, up.Run(big));
                }
                trace?.Invoke($"dec.up.{i}.upsampler", x);
            }
            trace?.Invoke($"dec.up.{i}", x);
        }
        RmsNormChannels(x, _decNormOut, x);
        trace?.Invoke("dec.norm_out", x);
        Silu.Forward(x, x);
        var y = _decOut.Run(x);
        x.Dispose();
        trace?.Invoke("dec.conv_out", y);
        // The clamp to [−1, 1] on the host: 3·H·W values once per image.
        var px = y.ToFloatArray();
        for (int i = 0; i < px.Length; i++) px[i] = Math.Clamp(px[i], -1f, 1f);
        y.CopyFrom<float>(px);
        trace?.Invoke("dec.output", y);
        return y;
    }

    /// <summary>Image [3, H, W] in [−1, 1] → moments [2z, H/8, W/8] (mean = channels 0..z−1, logvar = z..2z−1, unclamped).</summary>
    public Tensor EncodeMoments(Tensor image, Action<string, Tensor>? trace = null)
    {
        if (!HasEncoder) throw new InvalidOperationException("QwenImageVae: loaded without the encoder");
        var x = _encIn!.Run(image);
        trace?.Invoke("enc.conv_in", x);
        for (int i = 0; i < _down.Count; i++)
        {
            var (res, down) = _down[i];
            x = Replace(x, res is not null ? res.Run(x) : down!.Run(x, stride: 2, pad: new Conv2dPadding(0, 1, 0, 1)));
            trace?.Invoke($"enc.down.{i}", x);
        }
        x = Replace(x, _encMid!.Run(x, null, "enc.mid"));
        trace?.Invoke("enc.mid", x);
        RmsNormChannels(x, _encNormOut!, x);
        trace?.Invoke("enc.norm_out", x);
        Silu.Forward(x, x);
        x = Replace(x, _encOut!.Run(x));
        trace?.Invoke("enc.conv_out", x);
        x = Replace(x, _quant!.Run(x));
        trace?.Invoke("enc.quant_conv", x);
        return x;
    }

    /// <summary>Disposes <paramref name="old"/> and returns <paramref name="next"/>.</summary>
    private static Tensor Replace(Tensor old, Tensor next)
    {
        old.Dispose();
        return next;
    }

    /// <summary>
    /// y = x / ‖x‖₂ · √C · γ over the channel axis of x [C, H, W] (diffusers' F.normalize · scale · gamma), as an RMSNorm
    /// over channels of the transposed map: x · rsqrt(mean(x²) + ε) · γ with ε = 1e-24 / C (F.normalize's clamp of the
    /// norm at 1e-12). y may alias x.
    /// </summary>
    internal static void RmsNormChannels(Tensor x, Tensor gamma, Tensor y)
    {
        int c = x.Shape[0], n = x.Shape[1] * x.Shape[2];
        using var t = Tensor.Empty(x.Device, DType.F32, n, c);
        Elementwise.Transpose2d(x.Reshape(c, n), t);
        RmsNorm.Forward(t, gamma.Reshape(c), t, 1e-24f / c);
        Elementwise.Transpose2d(t, y.Reshape(c, n));
    }

    public void Dispose()
    {
        foreach (var o in _owned) o.Dispose();
    }

    /// <summary>A 2D convolution; a causal 3D one's weight [O, I, 3, 3, 3] contributes its last temporal slice only.</summary>
    private sealed class Conv
    {
        private readonly Tensor _w, _b;
        private readonly int _out, _k;

        public Conv(QwenImageVae vae, WeightLoader load, string p, int inC, int outC, int k, bool causal3d)
        {
            if (causal3d)
            {
                using var w5 = load(p + ".weight", outC, inC, k, k, k);
                var all = w5.ToFloatArray();
                int plane = k * k;
                var last = new float[outC * inC * plane];
                for (int oi = 0; oi < outC * inC; oi++)
                    Array.Copy(all, (long)oi * k * plane + (k - 1) * plane, last, (long)oi * plane, plane);
                _w = vae.Own(Tensor.FromSpan<float>(w5.Device, last, new Shape(outC, inC, k, k)));
            }
            else _w = vae.Own(load(p + ".weight", outC, inC, k, k));
            _b = vae.Own(load(p + ".bias", outC));
            _out = outC;
            _k = k;
        }

        public Tensor Run(Tensor x, int stride = 1, Conv2dPadding? pad = null)
        {
            var p = pad ?? (_k == 3 ? Conv2dPadding.Same(1) : Conv2dPadding.None);
            int h = (x.Shape[1] + p.Top + p.Bottom - _k) / stride + 1;
            int w = (x.Shape[2] + p.Left + p.Right - _k) / stride + 1;
            var y = Tensor.Empty(x.Device, DType.F32, _out, h, w);
            Conv2d.Forward(x, _w, _b, y, stride, p);
            return y;
        }
    }

    /// <summary>Residual block: shortcut(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))), shortcut a 1×1 conv when channels change.</summary>
    private sealed class Res
    {
        private readonly Tensor _n1, _n2;
        private readonly Conv _c1, _c2;
        private readonly Conv? _shortcut;

        public Res(QwenImageVae vae, WeightLoader load, string p, int inC, int outC)
        {
            _n1 = vae.Own(load(p + ".norm1.gamma", inC, 1, 1, 1));
            _c1 = new Conv(vae, load, p + ".conv1", inC, outC, 3, causal3d: true);
            _n2 = vae.Own(load(p + ".norm2.gamma", outC, 1, 1, 1));
            _c2 = new Conv(vae, load, p + ".conv2", outC, outC, 3, causal3d: true);
            if (inC != outC) _shortcut = new Conv(vae, load, p + ".conv_shortcut", inC, outC, 1, causal3d: true);
        }

        public Tensor Run(Tensor x)
        {
            Tensor h1 = Tensor.Empty(x.Device, DType.F32, x.Shape);
            RmsNormChannels(x, _n1, h1);
            Silu.Forward(h1, h1);
            var c1 = _c1.Run(h1);
            h1.Dispose();
            RmsNormChannels(c1, _n2, c1);
            Silu.Forward(c1, c1);
            var y = _c2.Run(c1);
            c1.Dispose();
            if (_shortcut is null) Elementwise.Add(y, x, y);
            else
            {
                using var s = _shortcut.Run(x);
                Elementwise.Add(y, s, y);
            }
            return y;
        }
    }

    /// <summary>Mid block: res → single-head attention over the pixels (RMS norm, 1×1 conv to (q, k, v), 1×1 projection, residual) → res.</summary>
    private sealed class Mid
    {
        private readonly Res _r0, _r1;
        private readonly Tensor _norm;
        private readonly Conv _qkv, _proj;
        private readonly int _c;

        public Mid(QwenImageVae vae, WeightLoader load, string p, int c)
        {
            _c = c;
            _r0 = new Res(vae, load, p + ".resnets.0", c, c);
            _norm = vae.Own(load(p + ".attentions.0.norm.gamma", c, 1, 1));
            _qkv = new Conv(vae, load, p + ".attentions.0.to_qkv", c, 3 * c, 1, causal3d: false);
            _proj = new Conv(vae, load, p + ".attentions.0.proj", c, c, 1, causal3d: false);
            _r1 = new Res(vae, load, p + ".resnets.1", c, c);
        }

        public Tensor Run(Tensor x, Action<string, Tensor>? trace, string name)
        {
            var dev = x.Device;
            var y = _r0.Run(x);
            trace?.Invoke(name + ".resnet0", y);
            int h = y.Shape[1], w = y.Shape[2], n = h * w;
            using (var normed = Tensor.Empty(dev, DType.F32, y.Shape))
            {
                RmsNormChannels(y, _norm, normed);
                using var qkv = _qkv.Run(normed);
                var flat = qkv.Reshape(3 * _c, n);
                using var q = Tensor.Empty(dev, DType.F32, n, 1, _c);
                using var k = Tensor.Empty(dev, DType.F32, n, 1, _c);
                using var v = Tensor.Empty(dev, DType.F32, n, 1, _c);
                Elementwise.Transpose2d(flat.Slice(0, _c), q.Reshape(n, _c));
                Elementwise.Transpose2d(flat.Slice(_c, _c), k.Reshape(n, _c));
                Elementwise.Transpose2d(flat.Slice(2 * _c, _c), v.Reshape(n, _c));
                using var o = Tensor.Empty(dev, DType.F32, n, 1, _c);
                Attention.Forward(q, k, v, o);
                Elementwise.Transpose2d(o.Reshape(n, _c), normed.Reshape(_c, n));
                using var projected = _proj.Run(normed);
                Elementwise.Add(y, projected, y);
            }
            trace?.Invoke(name + ".attn0", y);
            return Replace(y, _r1.Run(y));
        }
    }
}
