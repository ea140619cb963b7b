using PureFlux.Model.Config;
using PureFlux.Model.Layers;

namespace PureFlux.Model.Vae;

/// <summary>
/// AutoencoderKLFlux2: decoder (post_quant_conv → conv_in → mid (resnet, attention, resnet) → up blocks →
/// GroupNorm+SiLU → conv_out) and encoder (conv_in → down blocks → mid → GroupNorm+SiLU → conv_out →
/// quant_conv), plus the latent batch-norm statistics used to (de)normalise packed latents.
/// Tensors are [C, H, W] (batch 1).
/// </summary>
public sealed class Flux2Vae : IDisposable
{
    private const float NormEps = 1e-6f;
    private readonly VaeConfig _d;
    private readonly List<IDisposable> _owned = new();
    private readonly Conv _postQuant, _decIn, _decOut, _quant, _encIn, _encOut;
    private readonly Norm _decNormOut, _encNormOut;
    private readonly Resnet[] _decMid, _encMid;
    private readonly AttentionBlock _decAttn, _encAttn;
    private readonly (Resnet[] Resnets, Conv? Upsample)[] _up;
    private readonly (Resnet[] Resnets, Conv? Downsample)[] _down;
    private readonly Tensor _bnMean, _bnVar;

    public Flux2Vae(VaeConfig d, WeightLoader load, bool withEncoder = true)
    {
        _d = d;
        if (d.DecoderBlockOutChannels is not null && !d.DecoderBlockOutChannels.SequenceEqual(d.BlockOutChannels))
            throw new ModelConfigException("vae/config.json: field 'decoder_block_out_channels' differs from block_out_channels, which is not supported");
        var ch = d.BlockOutChannels;
        int top = ch[^1], lat = d.LatentChannels;
        _bnMean = Own(load("bn.running_mean", d.PatchedChannels));
        _bnVar = Own(load("bn.running_var", d.PatchedChannels));

        _postQuant = new Conv(this, load, "post_quant_conv", lat, lat, 1);
        _decIn = new Conv(this, load, "decoder.conv_in", lat, top, 3);
        _decMid = [new Resnet(this, load, "decoder.mid_block.resnets.0", top, top, d.NormNumGroups), new Resnet(this, load, "decoder.mid_block.resnets.1", top, top, d.NormNumGroups)];
        _decAttn = new AttentionBlock(this, load, "decoder.mid_block.attentions.0", top, d.NormNumGroups);
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
            _quant = _encIn = _encOut = null!;
            _encNormOut = null!;
            _encMid = [];
            _encAttn = null!;
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
        _encAttn = new AttentionBlock(this, load, "encoder.mid_block.attentions.0", top, d.NormNumGroups);
        _encNormOut = new Norm(this, load, "encoder.conv_norm_out", top, d.NormNumGroups);
        _encOut = new Conv(this, load, "encoder.conv_out", top, 2 * lat, 3);
        _quant = new Conv(this, load, "quant_conv", 2 * lat, 2 * lat, 1);
    }

    public bool HasEncoder { get; }
    public VaeConfig Config => _d;
    public Tensor BatchNormMean => _bnMean;
    public Tensor BatchNormVar => _bnVar;

    private T Own<T>(T item) where T : IDisposable
    {
        _owned.Add(item);
        return item;
    }

    /// <summary>latent [latent_channels, h, w] → image [out_channels, 8h, 8w] (roughly in [-1, 1]).</summary>
    public Tensor Decode(Tensor latent, Action<string, Tensor>? trace = null)
    {
        var dev = latent.Device;
        Check.Rank("VAE decode", "latent", latent, 3);
        Check.That(latent.Shape[0] == _d.LatentChannels, "VAE decode", $"latent has {latent.Shape[0]} channels; expected {_d.LatentChannels}");
        var x = _postQuant.Run(latent);
        trace?.Invoke("dec.post_quant_conv", x);
        x = Replace(x, _decIn.Run(x));
        trace?.Invoke("dec.conv_in", x);
        x = Replace(x, _decMid[0].Run(x));
        trace?.Invoke("dec.mid.resnet0", x);
        _decAttn.RunInPlace(x);
        trace?.Invoke("dec.mid.attn0", x);
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

    /// <summary>image [in_channels, H, W] in [-1, 1] → latent mean [latent_channels, H/8, W/8].</summary>
    public Tensor EncodeMean(Tensor image, Action<string, Tensor>? trace = null)
    {
        if (!HasEncoder) throw new InvalidOperationException("this VAE was loaded without its encoder");
        var dev = image.Device;
        Check.Rank("VAE encode", "image", image, 3);
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
        _encAttn.RunInPlace(x);
        x = Replace(x, _encMid[1].Run(x));
        trace?.Invoke("enc.mid", x);
        x = Replace(x, _encNormOut.Run(x, silu: true));
        x = Replace(x, _encOut.Run(x));
        trace?.Invoke("enc.conv_out", x);
        x = Replace(x, _quant.Run(x));
        trace?.Invoke("enc.quant_conv", x);
        int h = x.Shape[1], w = x.Shape[2];
        var mean = Tensor.Empty(dev, DType.F32, _d.LatentChannels, h, w);
        x.Slice(0, _d.LatentChannels).CopyTo(mean);
        x.Dispose();
        return mean;
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

        public Conv(Flux2Vae vae, WeightLoader load, string p, int inC, int outC, int k)
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

        public Norm(Flux2Vae vae, WeightLoader load, string p, int c, int groups)
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

        public Resnet(Flux2Vae vae, WeightLoader load, string p, int inC, int outC, int groups)
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

        public AttentionBlock(Flux2Vae vae, WeightLoader load, string p, int c, int groups)
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
