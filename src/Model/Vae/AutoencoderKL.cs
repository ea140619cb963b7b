using PureFlux.Model.Config;
using PureFlux.Model.Layers;

namespace PureFlux.Model.Vae;

/// <summary>
/// diffusers AutoencoderKL and AutoencoderKLFlux2 — the same network, parameterised by <see cref="VaeConfig"/>:
/// decoder ([post_quant_conv] → conv_in → mid (resnet, [attention], resnet) → up blocks → GroupNorm+SiLU → conv_out)
/// and encoder (conv_in → down blocks → mid → GroupNorm+SiLU → conv_out → [quant_conv]); the bracketed parts follow
/// use_post_quant_conv / mid_block_add_attention / use_quant_conv (FLUX.2 has both quant convs; FLUX.1 and Z-Image
/// neither). What sits between the VAE and the denoiser differs by kind: AutoencoderKL pipelines scale and shift
/// (<see cref="LatentsToVaeInput"/>, <see cref="VaeOutputToLatents"/>), FLUX.2 normalises with the batch-norm
/// statistics (<see cref="Flux2Stats"/>). Tensors are [C, H, W] (batch 1).
/// </summary>
public sealed class AutoencoderKL : IDisposable
{
    private const float NormEps = 1e-6f;
    private readonly VaeConfig _d;
    private readonly List<IDisposable> _owned = new();
    private readonly Conv _decIn, _decOut, _encIn, _encOut;
    private readonly Conv? _postQuant, _quant;
    private readonly Norm _decNormOut, _encNormOut;
    private readonly Resnet[] _decMid, _encMid;
    private readonly AttentionBlock? _decAttn, _encAttn;
    private readonly (Resnet[] Resnets, Conv? Upsample)[] _up;
    private readonly (Resnet[] Resnets, Conv? Downsample)[] _down;

    /// <param name="withEncoder">false loads the decoder alone (decoding needs no encoder weights; a VAE file may lack them).</param>
    public AutoencoderKL(VaeConfig d, WeightLoader load, bool withEncoder = true)
    {
        _d = d;
        if (d.DecoderBlockOutChannels is not null && !d.DecoderBlockOutChannels.SequenceEqual(d.BlockOutChannels))
            throw new ModelConfigException("vae/config.json: field 'decoder_block_out_channels' differs from block_out_channels, which is not supported");
        var ch = d.BlockOutChannels;
        int top = ch[^1], lat = d.LatentChannels;
        if (d.Kind == VaeKind.AutoencoderKLFlux2)
            Flux2Stats = new Flux2LatentStats(Own(load("bn.running_mean", d.PatchedChannels)), Own(load("bn.running_var", d.PatchedChannels)), (float)d.BatchNormEps);

        _postQuant = d.UsePostQuantConv ? new Conv(this, load, "post_quant_conv", lat, lat, 1) : null;
        _decIn = new Conv(this, load, "decoder.conv_in", lat, top, 3);
        _decMid = [new Resnet(this, load, "decoder.mid_block.resnets.0", top, top, d.NormNumGroups), new Resnet(this, load, "decoder.mid_block.resnets.1", top, top, d.NormNumGroups)];
        _decAttn = d.MidBlockAddAttention ? new AttentionBlock(this, load, "decoder.mid_block.attentions.0", top, d.NormNumGroups) : null;
        var rev = ch.Reverse().ToArray();
        _up = new (Resnet[], Conv?)[rev.Length];
        int prev = top;
        for (int i = 0; i < rev.Length; i++)
        {
            int outC = rev[i];
            var res = new Resnet[d.LayersPerBlock + 1];
            for (int j = 0; j < res.Length; j++)
                res[j] = new Resnet(this, load, $"decoder.up_blocks.{i}.resnets.{j}", j == 0 ? prev : outC, outC, d.NormNumGroups);
            Conv? ups = i < rev.Length - 1 ? new Conv(this, load, $"decoder.up_blocks.{i}.upsamplers.0.conv", outC, outC, 3) : null;
            _up[i] = (res, ups);
            prev = outC;
        }
        _decNormOut = new Norm(this, load, "decoder.conv_norm_out", ch[0], d.NormNumGroups);
        _decOut = new Conv(this, load, "decoder.conv_out", ch[0], d.OutChannels, 3);

        HasEncoder = withEncoder;
        if (!withEncoder)
        {
            _encIn = _encOut = null!;
            _encNormOut = null!;
            _encMid = [];
            _down = [];
            return;
        }
        _encIn = new Conv(this, load, "encoder.conv_in", d.InChannels, ch[0], 3);
        _down = new (Resnet[], Conv?)[ch.Length];
        prev = ch[0];
        for (int i = 0; i < ch.Length; i++)
        {
            int outC = ch[i];
            var res = new Resnet[d.LayersPerBlock];
            for (int j = 0; j < res.Length; j++)
                res[j] = new Resnet(this, load, $"encoder.down_blocks.{i}.resnets.{j}", j == 0 ? prev : outC, outC, d.NormNumGroups);
            Conv? down = i < ch.Length - 1 ? new Conv(this, load, $"encoder.down_blocks.{i}.downsamplers.0.conv", outC, outC, 3) : null;
            _down[i] = (res, down);
            prev = outC;
        }
        _encMid = [new Resnet(this, load, "encoder.mid_block.resnets.0", top, top, d.NormNumGroups), new Resnet(this, load, "encoder.mid_block.resnets.1", top, top, d.NormNumGroups)];
        _encAttn = d.MidBlockAddAttention ? new AttentionBlock(this, load, "encoder.mid_block.attentions.0", top, d.NormNumGroups) : null;
        _encNormOut = new Norm(this, load, "encoder.conv_norm_out", top, d.NormNumGroups);
        _encOut = new Conv(this, load, "encoder.conv_out", top, 2 * lat, 3);
        _quant = d.UseQuantConv ? new Conv(this, load, "quant_conv", 2 * lat, 2 * lat, 1) : null;
    }

    public bool HasEncoder { get; }
    public VaeConfig Config => _d;

    /// <summary>FLUX.2's latent batch-norm statistics; null for AutoencoderKL, which has none.</summary>
    public Flux2LatentStats? Flux2Stats { get; }

    private T Own<T>(T item) where T : IDisposable
    {
        _owned.Add(item);
        return item;
    }

    /// <summary>
    /// VAE input [latent_channels, h, w] (the denoiser's latents already mapped: <see cref="LatentsToVaeInput"/> or
    /// FLUX.2's de-normalisation) → image [out_channels, 8h, 8w] (roughly in [−1, 1]).
    /// </summary>
    public Tensor Decode(Tensor latent, Action<string, Tensor>? trace = null)
    {
        var dev = latent.Device;
        Check.Rank("VAE decode", "latent", latent, 3);
        Check.That(latent.Shape[0] == _d.LatentChannels, "VAE decode", $"latent has {latent.Shape[0]} channels; expected {_d.LatentChannels}");
        Tensor x;
        if (_postQuant is null) x = _decIn.Run(latent);
        else
        {
            using var pq = _postQuant.Run(latent);
            trace?.Invoke("dec.post_quant_conv", pq);
            x = _decIn.Run(pq);
        }
        trace?.Invoke("dec.conv_in", x);
        x = Replace(x, _decMid[0].Run(x));
        trace?.Invoke("dec.mid.resnet0", x);
        if (_decAttn is not null)
        {
            _decAttn.RunInPlace(x);
            trace?.Invoke("dec.mid.attn0", x);
        }
        x = Replace(x, _decMid[1].Run(x));
        trace?.Invoke("dec.mid", x);
        for (int i = 0; i < _up.Length; i++)
        {
            var (res, ups) = _up[i];
            for (int j = 0; j < res.Length; j++)
            {
                x = Replace(x, res[j].Run(x));
                if (j == 0) trace?.Invoke($"dec.up.{i}.resnet0", x);
            }
            if (ups is not null)
            {
                using var big = Tensor.Empty(dev, DType.F32, x.Shape[0], 2 * x.Shape[1], 2 * x.Shape[2]);
                Upsample.Nearest2x(x, big);
                x = Replace(x, ups.Run(big));
            }
            trace?.Invoke($"dec.up.{i}", x);
        }
        x = Replace(x, _decNormOut.Run(x, silu: true));
        trace?.Invoke("dec.conv_norm_out_silu", x);
        x = Replace(x, _decOut.Run(x));
        trace?.Invoke("dec.output", x);
        return x;
    }

    /// <summary>
    /// image [in_channels, H, W] in [−1, 1] → the posterior's moments [2·latent_channels, H/8, W/8]: mean in the first
    /// latent_channels rows, log-variance (not yet clamped to [−30, 20] as diffusers' distribution does) in the rest.
    /// </summary>
    public Tensor EncodeMoments(Tensor image, Action<string, Tensor>? trace = null)
    {
        if (!HasEncoder) throw new InvalidOperationException("this VAE was loaded without its encoder");
        Check.Rank("VAE encode", "image", image, 3);
        Check.That(image.Shape[0] == _d.InChannels, "VAE encode", $"image has {image.Shape[0]} channels; expected {_d.InChannels}");
        var x = _encIn.Run(image);
        trace?.Invoke("enc.conv_in", x);
        for (int i = 0; i < _down.Length; i++)
        {
            var (res, down) = _down[i];
            foreach (var r in res) x = Replace(x, r.Run(x));
            if (down is not null) x = Replace(x, down.Run(x, stride: 2, pad: new Conv2dPadding(0, 1, 0, 1)));
            trace?.Invoke($"enc.down.{i}", x);
        }
        x = Replace(x, _encMid[0].Run(x));
        _encAttn?.RunInPlace(x);
        x = Replace(x, _encMid[1].Run(x));
        trace?.Invoke("enc.mid", x);
        x = Replace(x, _encNormOut.Run(x, silu: true));
        x = Replace(x, _encOut.Run(x));
        trace?.Invoke("enc.conv_out", x);
        if (_quant is not null)
        {
            x = Replace(x, _quant.Run(x));
            trace?.Invoke("enc.quant_conv", x);
        }
        return x;
    }

    /// <summary>image [in_channels, H, W] in [−1, 1] → the posterior's mean (= its mode) [latent_channels, H/8, W/8].</summary>
    public Tensor EncodeMean(Tensor image, Action<string, Tensor>? trace = null)
    {
        using var moments = EncodeMoments(image, trace);
        var mean = Tensor.Empty(image.Device, DType.F32, _d.LatentChannels, moments.Shape[1], moments.Shape[2]);
        moments.Slice(0, _d.LatentChannels).CopyTo(mean);
        return mean;
    }

    /// <summary>
    /// AutoencoderKL pipelines' decode side, on the device: vaeInput = latents / scaling_factor + shift_factor
    /// (a true division, then the add, rounded like torch's float32). Any shape; vaeInput may alias latents.
    /// </summary>
    public void LatentsToVaeInput(Tensor latents, Tensor vaeInput)
    {
        RequireScaling(nameof(LatentsToVaeInput));
        Elementwise.Divide(latents, (float)_d.ScalingFactor, vaeInput);
        if (_d.ShiftFactor is double shift) Elementwise.AddScalar(vaeInput, (float)shift, vaeInput);
    }

    /// <summary>
    /// AutoencoderKL pipelines' encode side (image-to-image, references), on the device: latents = (mode − shift_factor)
    /// · scaling_factor, with mode = <see cref="EncodeMean"/>'s result. Any shape; latents may alias mode.
    /// </summary>
    public void VaeOutputToLatents(Tensor mode, Tensor latents)
    {
        RequireScaling(nameof(VaeOutputToLatents));
        var shifted = mode;
        // x − s and x + (−s) are the same IEEE operation, so the subtraction is an add of the negated shift.
        if (_d.ShiftFactor is double shift) { Elementwise.AddScalar(mode, -(float)shift, latents); shifted = latents; }
        Elementwise.Scale(shifted, (float)_d.ScalingFactor, latents);
    }

    private void RequireScaling(string what)
    {
        if (_d.Kind != VaeKind.AutoencoderKL)
            throw new InvalidOperationException($"{what}: {_d.Kind} latents are not scaled and shifted; FLUX.2 normalises them with {nameof(Flux2Stats)}");
    }

    private static Tensor Replace(Tensor old, Tensor next)
    {
        old.Dispose();
        return next;
    }

    public void Dispose()
    {
        foreach (var o in _owned) o.Dispose();
    }

    private sealed class Conv
    {
        private readonly Tensor _w, _b;
        private readonly int _out, _k;

        public Conv(AutoencoderKL vae, WeightLoader load, string p, int inC, int outC, int k)
        {
            _w = vae.Own(load(p + ".weight", outC, inC, k, k));
            _b = vae.Own(load(p + ".bias", outC));
            _out = outC;
            _k = k;
        }

        public Tensor Run(Tensor x, int stride = 1, Conv2dPadding? pad = null)
        {
            var p = pad ?? (_k == 3 ? new Conv2dPadding(1, 1, 1, 1) : new Conv2dPadding(0, 0, 0, 0));
            int h = (x.Shape[1] + p.Top + p.Bottom - _k) / stride + 1;
            int w = (x.Shape[2] + p.Left + p.Right - _k) / stride + 1;
            var y = Tensor.Empty(x.Device, DType.F32, _out, h, w);
            Conv2d.Forward(x, _w, _b, y, stride, p);
            return y;
        }
    }

    private sealed class Norm
    {
        private readonly Tensor _w, _b;
        private readonly int _groups;

        public Norm(AutoencoderKL vae, WeightLoader load, string p, int c, int groups)
        {
            _w = vae.Own(load(p + ".weight", c));
            _b = vae.Own(load(p + ".bias", c));
            _groups = groups;
        }

        public Tensor Run(Tensor x, bool silu)
        {
            var y = Tensor.Empty(x.Device, DType.F32, x.Shape);
            GroupNorm.Forward(x, _w, _b, y, _groups, NormEps, silu);
            return y;
        }
    }

    /// <summary>ResnetBlock2D: norm1 → SiLU → conv1 → norm2 → SiLU → conv2, plus the (1×1-projected) input.</summary>
    private sealed class Resnet
    {
        private readonly Norm _n1, _n2;
        private readonly Conv _c1, _c2;
        private readonly Conv? _shortcut;

        public Resnet(AutoencoderKL vae, WeightLoader load, string p, int inC, int outC, int groups)
        {
            _n1 = new Norm(vae, load, p + ".norm1", inC, groups);
            _c1 = new Conv(vae, load, p + ".conv1", inC, outC, 3);
            _n2 = new Norm(vae, load, p + ".norm2", outC, groups);
            _c2 = new Conv(vae, load, p + ".conv2", outC, outC, 3);
            if (inC != outC) _shortcut = new Conv(vae, load, p + ".conv_shortcut", inC, outC, 1);
        }

        public Tensor Run(Tensor x)
        {
            using var h1 = _n1.Run(x, silu: true);
            using var c1 = _c1.Run(h1);
            using var h2 = _n2.Run(c1, silu: true);
            var y = _c2.Run(h2);
            if (_shortcut is null) Elementwise.Add(y, x, y);
            else
            {
                using var s = _shortcut.Run(x);
                Elementwise.Add(y, s, y);
            }
            return y;
        }
    }

    /// <summary>Mid-block self-attention over pixels: one head with head_dim = channels, residual added.</summary>
    private sealed class AttentionBlock
    {
        private readonly Norm _norm;
        private readonly Linear _q, _k, _v, _out;
        private readonly int _c;

        public AttentionBlock(AutoencoderKL vae, WeightLoader load, string p, int c, int groups)
        {
            _c = c;
            _norm = new Norm(vae, load, p + ".group_norm", c, groups);
            _q = vae.Own(new Linear(load, p + ".to_q", c, c, bias: true));
            _k = vae.Own(new Linear(load, p + ".to_k", c, c, bias: true));
            _v = vae.Own(new Linear(load, p + ".to_v", c, c, bias: true));
            _out = vae.Own(new Linear(load, p + ".to_out.0", c, c, bias: true));
        }

        public void RunInPlace(Tensor x)
        {
            var dev = x.Device;
            int n = x.Shape[1] * x.Shape[2];
            using var h = _norm.Run(x, silu: false);
            using var tokens = Tensor.Empty(dev, DType.F32, n, _c);
            Elementwise.Transpose2d(h.Reshape(_c, n), tokens);
            using var q = _q.Forward(tokens);
            using var k = _k.Forward(tokens);
            using var v = _v.Forward(tokens);
            using var o = Tensor.Empty(dev, DType.F32, n, 1, _c);
            Attention.Forward(q.Reshape(n, 1, _c), k.Reshape(n, 1, _c), v.Reshape(n, 1, _c), o);
            _out.Forward(o.Reshape(n, _c), tokens);
            using var back = Tensor.Empty(dev, DType.F32, _c, n);
            Elementwise.Transpose2d(tokens, back);
            Elementwise.Add(x.Reshape(_c, n), back, x.Reshape(_c, n));
        }
    }
}
