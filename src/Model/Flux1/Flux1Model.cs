using PureFlux.Model.Clip;
using PureFlux.Model.Engine;
using PureFlux.Model.Image;
using PureFlux.Model.Layers;
using PureFlux.Model.Pipeline;
using PureFlux.Model.Sampling;
using PureFlux.Model.Scheduler;
using PureFlux.Model.Snapshot;
using PureFlux.Model.T5;
using PureFlux.Model.Text;
using PureFlux.Model.Vae;

namespace PureFlux.Model.Flux1;

/// <summary>The FLUX.1 family: dev and schnell (diffusers' FluxPipeline, FluxImg2ImgPipeline) and Kontext (FluxKontextPipeline).</summary>
public sealed class Flux1Family : IModelFamily, IQuantizableFamily
{
    /// <summary>
    /// The linears <c>--quant</c> quantizes at load time, stored as int8/int4: the transformer's (not its timestep / guidance /
    /// pooled-text embedders and norm_out), CLIP's and T5's layer projections; embeddings, norms and the VAE are copied.
    /// </summary>
    public void Quantize(string source, QuantMode mode, string destination, Action<string>? log = null)
    {
        using var s = Flux1Snapshot.Open(source);
        QuantizedSnapshot.Write(s.Directory, QuantizedSnapshot.StoredMode(s.Transformer),
        [
            new QuantizableComponent("transformer", "diffusion_pytorch_model.safetensors", () => s.OpenWeights("transformer"),
                (load, _) => new Flux1Transformer(s.TransformerConfig, load, mode)),
            new QuantizableComponent("text_encoder", "model.safetensors", () => s.OpenWeights("text_encoder"),
                (load, _) => new ClipTextEncoder(s.ClipConfig, load, mode)),
            new QuantizableComponent("text_encoder_2", "model.safetensors", () => s.OpenWeights("text_encoder_2"),
                (load, _) => new T5Encoder(s.T5Config, load, mode, s.T5EmbeddingWeight)),
        ], mode, destination, log);
    }

    public string Name => "flux1";
    public IReadOnlyList<string> PipelineClasses => Flux1Snapshot.PipelineClasses;

    public IDiffusionModel Open(string directory, Device device, ModelOptions options)
    {
        var snapshot = Flux1Snapshot.Open(directory);
        try { return new Flux1Model(snapshot, device, options, ownsSnapshot: true); }
        catch { snapshot.Dispose(); throw; }
    }
}

/// <summary>
/// FLUX.1 on the engine, as diffusers' FluxPipeline / FluxKontextPipeline / FluxImg2ImgPipeline run it:
/// CLIP-L pooled vector [768] (77 tokens, no mask) + T5-XXL last hidden state [L, 4096] (L = 512 dev / Kontext, 256
/// schnell; no mask) → 16-channel latents packed as 2×2 patches [S, 64] with the channel slowest (c·4 + dy·2 + dx) →
/// the FLUX.1 transformer, which sees t/1000 and the guidance scale (dev / Kontext) → unpack, z / scaling_factor +
/// shift_factor → AutoencoderKL decode. Schedule: linspace(1, 1/N, N) with dynamic shift mu = calculate_shift(tokens)
/// (dev / Kontext) or static shift 1 (schnell). Guidance: <c>--guidance</c> is the embedded guidance (default 3.5);
/// classifier-free guidance is diffusers' true CFG (<c>--true-cfg S --negative-prompt ...</c>).
/// Kontext: one reference image, resized to the preferred Kontext resolution of nearest aspect ratio (floored to 16),
/// encoded to the VAE's mode and appended as tokens with ids (1, row, col); the output size is refit to
/// <see cref="KontextMaxArea"/> keeping the requested aspect ratio.
/// </summary>
public sealed class Flux1Model : IDiffusionModel, Bench.IStageFlopModel
{
    private static readonly IModelFamily FamilyInstance = new Flux1Family();
    /// <summary>FluxKontextPipeline's PREFERRED_KONTEXT_RESOLUTIONS (width, height).</summary>
    public static readonly IReadOnlyList<(int Width, int Height)> PreferredKontextResolutions =
    [
        (672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248), (880, 1184), (944, 1104), (1024, 1024),
        (1104, 944), (1184, 880), (1248, 832), (1328, 800), (1392, 752), (1456, 720), (1504, 688), (1568, 672),
    ];
    private const int Multiple = 16;

    private readonly Flux1Snapshot _snapshot;
    private readonly bool _ownsSnapshot;
    private readonly Device _device;
    private readonly QuantMode _quant;
    private readonly Dictionary<string, float[]> _promptCache = new();
    private Flux1Transformer? _transformer;
    private WeightSource? _transformerWeights;
    private readonly bool _ropeCache;
    private readonly bool _syncPerBlock;
    private readonly bool _populateWeights;
    private readonly double? _tokenMergeRatio;
    private AutoencoderKL? _vae;
    private ClipTokenizer? _clipTokenizer;
    private T5Tokenizer? _t5Tokenizer;
    private string? _clipIdentity, _t5Identity;

    public Flux1Model(Flux1Snapshot snapshot, Device device, ModelOptions? options = null, bool ownsSnapshot = false)
    {
        options ??= new ModelOptions();
        _snapshot = snapshot;
        _ownsSnapshot = ownsSnapshot;
        _device = device;
        _quant = options.Quant;
        _ropeCache = options.RopeCache;
        _syncPerBlock = options.SyncPerBlock;
        _populateWeights = options.PopulateWeights;
        _tokenMergeRatio = options.TokenMergeRatio;
        DiskCache = options.PromptCache;
        var stored = StoredQuant;
        if (stored != QuantMode.None && _quant != QuantMode.None && _quant != stored)
            throw new ArgumentException($"{snapshot.Directory}: weights are stored as {stored.Name()} (pureflux quantize); " +
                $"--quant {_quant.Name()} needs the unquantized snapshot (use --quant none or {stored.Name()} here)");
        if (options.TextLayers is not null)
            throw new ArgumentException("--text-layers applies to FLUX.2 klein; FLUX.1 conditions on T5's last hidden state and CLIP's pooled vector");
        if (options.GuidanceDistilled is not null)
            throw new ArgumentException("--guidance-distilled applies to FLUX.2 klein snapshots; FLUX.1 dev / Kontext embed the guidance scale (--guidance), schnell has none");
        if (snapshot.Kind != Flux1Kind.Kontext) options.RefuseKontextOptions($"FLUX.1 {snapshot.Kind.ToString().ToLowerInvariant()}");
        if (options.MaxArea is { } area)
        {
            // The refit output must stay a whole number of 16-pixel cells and within what the layout's int arithmetic holds.
            if (area < 256 || area > 1L << 30) throw new ArgumentException($"--max-area {area}: expected a pixel count in 256..{1L << 30} (diffusers' default 1048576 = 1024²)");
            KontextMaxArea = area;
        }
        if (options.ReferenceAutoResize is { } auto) KontextAutoResize = auto;
        bool schnell = snapshot.Kind == Flux1Kind.Schnell;
        Defaults = new ModelDefaults(Steps: schnell ? 4 : 28, Guidance: 1f, SamplerKind.Euler, GuidanceDistilled: true,
            TrueCfg: true, EmbeddedGuidance: snapshot.TransformerConfig.GuidanceEmbeds ? 3.5f : null);
    }

    public IModelFamily Family => FamilyInstance;
    public Device Device => _device;
    public Flux1Snapshot Snapshot => _snapshot;
    public ModelDefaults Defaults { get; }
    public QuantMode Quant => _quant == QuantMode.None ? StoredQuant : _quant;
    /// <summary>How <c>pureflux quantize</c> stored the weights (None for a released snapshot); stored integers load as they are.</summary>
    private QuantMode StoredQuant => QuantizedSnapshot.StoredMode(_snapshot.Transformer);
    public PromptCache? DiskCache { get; init; }

    /// <summary>Kontext's max_area (pixels) the output size is refit to; the pipeline's default 1024².</summary>
    public long KontextMaxArea { get; init; } = 1024 * 1024;
    /// <summary>Kontext's _auto_resize: the reference goes to the preferred resolution of nearest aspect ratio (default true).</summary>
    public bool KontextAutoResize { get; init; } = true;

    public ClipTokenizer ClipTokenizer => _clipTokenizer ??= _snapshot.LoadClipTokenizer();
    public T5Tokenizer T5Tokenizer => _t5Tokenizer ??= _snapshot.LoadT5Tokenizer();

    // ------------------------------------------------------------------ text

    /// <summary>Prompts → T5 embeddings [P, L, 4096] and CLIP pooled vectors [P, 768]; no mask (FLUX.1 attends to padding).</summary>
    public TextConditioning EncodeText(IReadOnlyList<string> prompts, StageTimer? timer)
    {
        var clipIds = prompts.Select(p => ClipTokenizer.EncodeForFlux(p)).ToArray();
        var t5Ids = prompts.Select(p => T5Tokenizer.EncodeForFlux(p, _snapshot.T5Length)).ToArray();
        var warnings = new List<string>();
        for (int i = 0; i < prompts.Count; i++)
            foreach (var w in new[] { clipIds[i].Warning, t5Ids[i].Warning })
                if (w is not null) warnings.Add(prompts.Count > 1 ? $"prompt {i + 1}: {w}" : w);
        bool cached = clipIds.All(t => IsCached(ClipKey(t.Ids), ClipDiskKey(t.Ids))) && t5Ids.All(t => IsCached(T5Key(t.Ids), T5DiskKey(t.Ids)));
        int len = _snapshot.T5Length, dim = _snapshot.T5Config.DModel, pdim = _snapshot.ClipConfig.HiddenSize;
        var embeds = Tensor.Empty(_device, DType.F32, prompts.Count, len, dim);
        var pooled = Tensor.Empty(_device, DType.F32, prompts.Count, pdim);
        try
        {
            using (timer?.Stage(cached ? "text encoding (cached)" : "text encoding"))
            {
                var pooledH = EncodeClip(clipIds.Select(t => t.Ids).ToArray(), warnings);
                for (int i = 0; i < prompts.Count; i++) pooled.Slice(i, 1).CopyFrom<float>(pooledH[i]);
                var t5H = EncodeT5(t5Ids.Select(t => t.Ids).ToArray(), warnings);
                for (int i = 0; i < prompts.Count; i++) embeds.Slice(i, 1).CopyFrom<float>(t5H[i]);
            }
        }
        catch
        {
            embeds.Dispose();
            pooled.Dispose();
            throw;
        }
        return new TextConditioning(embeds, pooled: pooled, warning: warnings.Count == 0 ? null : string.Join("; ", warnings.Distinct()));
    }

    private bool IsCached(string memoryKey, string? diskKey) =>
        _promptCache.ContainsKey(memoryKey) || (diskKey is not null && DiskCache is { } d && File.Exists(d.PathOf(diskKey)));

    private static string ClipKey(int[] ids) => "clip:" + string.Join(',', ids);
    private static string T5Key(int[] ids) => "t5:" + string.Join(',', ids);

    private string? ClipDiskKey(int[] ids) => DiskCache is null ? null :
        PromptCache.Key(_clipIdentity ??= PromptCache.EncoderIdentity(_snapshot.Directory, _snapshot.Clip, [0], _quant, family: "flux1-clip-pooled"), ids, Ones(ids.Length));

    private string? T5DiskKey(int[] ids) => DiskCache is null ? null :
        PromptCache.Key(_t5Identity ??= PromptCache.EncoderIdentity(_snapshot.Directory, _snapshot.T5, [0], _quant, family: "flux1-t5"), ids, Ones(ids.Length));

    private static int[] Ones(int n) => Enumerable.Repeat(1, n).ToArray();

    /// <summary>CLIP pooled vectors for each id row [77] (the encoder loads once for all rows that miss the caches).</summary>
    public float[][] EncodeClip(int[][] rows, List<string>? warnings = null, Action<string, Tensor>? trace = null)
    {
        int pdim = _snapshot.ClipConfig.HiddenSize;
        return Encode(rows, ClipKey, ClipDiskKey, 1, pdim, warnings, trace, () =>
        {
            var weights = _snapshot.OpenWeights("text_encoder");
            try { return (weights, new ClipTextEncoder(_snapshot.ClipConfig, weights.Loader(_device, _quant, _populateWeights), _quant)); }
            catch { weights.Dispose(); throw; }
        }, (enc, ids, tr) =>
        {
            using var output = ((ClipTextEncoder)enc).Encode(_device, ids, tr);
            return output.Pooled.ToFloatArray();
        });
    }

    /// <summary>T5 last hidden states [L·4096] for each id row [L] (the encoder loads once for all rows that miss the caches).</summary>
    public float[][] EncodeT5(int[][] rows, List<string>? warnings = null, Action<string, Tensor>? trace = null)
    {
        int dim = _snapshot.T5Config.DModel;
        return Encode(rows, T5Key, T5DiskKey, rows.Length == 0 ? 0 : rows[0].Length, dim, warnings, trace, () =>
        {
            var weights = _snapshot.OpenWeights("text_encoder_2");
            try { return (weights, new T5Encoder(_snapshot.T5Config, weights.Loader(_device, _quant, _populateWeights), _quant, _snapshot.T5EmbeddingWeight)); }
            catch { weights.Dispose(); throw; }
        }, (enc, ids, tr) =>
        {
            using var output = ((T5Encoder)enc).Encode(_device, ids, tr);
            return output.ToFloatArray();
        });
    }

    private float[][] Encode(int[][] rows, Func<int[], string> memoryKey, Func<int[], string?> diskKey, int tokens, int dim, List<string>? warnings,
        Action<string, Tensor>? trace, Func<(WeightSource, IDisposable)> load, Func<IDisposable, int[], Action<string, Tensor>?, float[]> run)
    {
        var result = new float[rows.Length][];
        WeightSource? weights = null;
        IDisposable? encoder = null;
        try
        {
            for (int i = 0; i < rows.Length; i++)
            {
                string key = memoryKey(rows[i]);
                if (trace is null && _promptCache.TryGetValue(key, out var hit)) { result[i] = hit; continue; }
                string? dk = trace is null ? diskKey(rows[i]) : null;
                if (dk is not null && DiskCache!.TryLoad(dk, tokens, dim) is { } stored)
                {
                    _promptCache[key] = result[i] = stored;
                    continue;
                }
                if (encoder is null) (weights, encoder) = load();
                var host = run(encoder, rows[i], trace);
                _promptCache[key] = result[i] = host;
                if (dk is not null && !DiskCache!.Store(dk, host, tokens, dim) && DiskCache.LastWriteError is { } err) warnings?.Add(err);
            }
        }
        finally
        {
            encoder?.Dispose();
            weights?.Dispose();
            _device.Pool.Trim();
        }
        return result;
    }

    /// <summary>
    /// Stage FLOPs for bench e2e: text = CLIP on 77 tokens + T5 on the padded <see cref="Flux1Snapshot.T5Length"/> (both
    /// run whole, whatever the prompt), one transformer pass on the size <see cref="Layout"/> gives (Kontext's refit, no
    /// reference image), the VAE decoder.
    /// </summary>
    public Bench.StageFlops Flops(string prompt, int width, int height)
    {
        var layout = Layout(width, height);
        int clipTokens = ClipTokenizer.EncodeForFlux(prompt).Ids.Length, t5Tokens = _snapshot.T5Length;
        return new Bench.StageFlops(t5Tokens, layout.Tokens,
            Bench.FlopModel.ClipEncode(_snapshot.ClipConfig, clipTokens) + Bench.FlopModel.T5Encode(_snapshot.T5Config, t5Tokens),
            Bench.FlopModel.Flux1Step(_snapshot.TransformerConfig, t5Tokens, layout.Tokens),
            Bench.FlopModel.VaeDecode(_snapshot.VaeConfig, 2 * layout.Rows, 2 * layout.Cols));
    }

    // ------------------------------------------------------------------ latents

    public MemoryEstimate EstimateMemory(GenerationJob job, bool cfg) => Flux1MemoryEstimate.Estimate(this, job, cfg);

    /// <summary>
    /// The layout for an output size (multiples of 16). Kontext refits it as FluxKontextPipeline does: w = round(√(max_area·w/h)),
    /// h = round(√(max_area·h/w)) (float64, round half to even), each floored to a multiple of 16 — up as well as down.
    /// </summary>
    public LatentLayout Layout(int width, int height)
    {
        if (width <= 0 || height <= 0 || width % Multiple != 0 || height % Multiple != 0)
            throw new ArgumentException($"image size {width}x{height}: width and height must be positive multiples of {Multiple}");
        if (_snapshot.Kind == Flux1Kind.Kontext) (width, height) = KontextOutputSize(width, height, KontextMaxArea);
        if (width < Multiple || height < Multiple) throw new ArgumentException($"image size {width}x{height}: smaller than one {Multiple}x{Multiple} latent patch");
        int rows = height / Multiple, cols = width / Multiple;
        if ((long)rows * cols * _snapshot.TransformerConfig.InChannels > int.MaxValue)
            throw new ArgumentException($"image size {width}x{height}: {(long)rows * cols} latent tokens is more than one buffer can hold");
        return new LatentLayout(width, height, rows, cols, _snapshot.TransformerConfig.InChannels);
    }

    /// <summary>FluxKontextPipeline's output size for a requested width × height and max_area.</summary>
    public static (int Width, int Height) KontextOutputSize(int width, int height, long maxArea)
    {
        double aspect = (double)width / height;
        int w = (int)Math.Round(Math.Sqrt(maxArea * aspect), MidpointRounding.ToEven);
        int h = (int)Math.Round(Math.Sqrt(maxArea / aspect), MidpointRounding.ToEven);
        return (w / Multiple * Multiple, h / Multiple * Multiple);
    }

    /// <summary>FluxKontextPipeline's reference size: the preferred resolution of nearest aspect ratio (first on ties) or the
    /// image's own size, floored to multiples of 16.</summary>
    public static (int Width, int Height) KontextReferenceSize(int width, int height, bool autoResize)
    {
        if (autoResize)
        {
            double aspect = (double)width / height;
            (width, height) = PreferredKontextResolutions.MinBy(r => Math.Abs(aspect - (double)r.Width / r.Height));
        }
        return (width / Multiple * Multiple, height / Multiple * Multiple);
    }

    private int LatentChannels => _snapshot.VaeConfig.LatentChannels;

    /// <summary>[C, 2r, 2c] → packed [r·c, 4C] with channel c at c·4 + dy·2 + dx (FluxPipeline._pack_latents).</summary>
    private void PackOne(Tensor chw, Tensor tokens, int rows, int cols)
    {
        using var patched = Tensor.Empty(_device, DType.F32, 4 * LatentChannels, rows, cols);
        Latents.Patchify(chw, patched);
        Latents.Pack(patched, tokens);
    }

    /// <summary>Packed [r·c, 4C] → [C, 2r, 2c] (FluxPipeline._unpack_latents).</summary>
    private void UnpackOne(Tensor tokens, Tensor chw, int rows, int cols)
    {
        using var patched = Tensor.Empty(_device, DType.F32, 4 * LatentChannels, rows, cols);
        Latents.Unpack(tokens, patched);
        Latents.Unpatchify(patched, chw);
    }

    /// <summary>Seeded noise: sample b is <see cref="GaussianNoise"/>(seed + b) filling [16, H/8, W/8] (NCHW, as diffusers draws it), then packed.</summary>
    public Tensor Noise(LatentLayout layout, int batch, ulong seed)
    {
        int c = LatentChannels;
        var packed = Tensor.Empty(_device, DType.F32, batch, layout.Tokens, layout.Channels);
        var noise = new float[c * 4 * layout.Tokens];
        using var chw = Tensor.Empty(_device, DType.F32, c, 2 * layout.Rows, 2 * layout.Cols);
        for (int b = 0; b < batch; b++)
        {
            new GaussianNoise(seed + (ulong)b).Fill(noise);
            chw.CopyFrom<float>(noise);
            PackOne(chw, packed.Slice(b, 1).Reshape(layout.Tokens, layout.Channels), layout.Rows, layout.Cols);
        }
        return packed;
    }

    /// <summary>noise [B, 16, H/8, W/8] → packed [B, S, 64].</summary>
    public Tensor PackNoise(LatentLayout layout, Tensor noise)
    {
        CheckUnpacked(layout, noise, "noise");
        int batch = noise.Shape[0], c = LatentChannels;
        var packed = Tensor.Empty(_device, DType.F32, batch, layout.Tokens, layout.Channels);
        for (int b = 0; b < batch; b++)
            PackOne(noise.Slice(b, 1).Reshape(c, 2 * layout.Rows, 2 * layout.Cols), packed.Slice(b, 1).Reshape(layout.Tokens, layout.Channels), layout.Rows, layout.Cols);
        return packed;
    }

    private void CheckUnpacked(LatentLayout layout, Tensor t, string what)
    {
        int c = LatentChannels;
        if (t.Rank != 4 || t.Shape[1] != c || t.Shape[2] != 2 * layout.Rows || t.Shape[3] != 2 * layout.Cols)
            throw new ArgumentException($"{what} has shape {t.Shape}; expected [B, {c}, {2 * layout.Rows}, {2 * layout.Cols}] for {layout.Width}x{layout.Height}");
    }

    // ------------------------------------------------------------------ images

    public AutoencoderKL Vae => _vae ??= new AutoencoderKL(_snapshot.VaeConfig, _snapshot.Vae.Loader(_device), withEncoder: SnapshotValidator.HasEncoder(_snapshot.Vae));

    private AutoencoderKL VaeWithEncoder => Vae.HasEncoder ? Vae
        : throw new SnapshotException($"{_snapshot.Vae.Name}: the VAE has no encoder weights (encoder.*), which image inputs need");

    /// <summary>RGB bytes → [3, H, W] in [−1, 1] (x/255·2 − 1, as VaeImageProcessor normalises), resized with Pillow's Lanczos first when the size differs.</summary>
    private Tensor Preprocess(RgbImage image, int width, int height, string name, Action<string, Tensor>? trace)
    {
        var resized = image.Width == width && image.Height == height ? image : LanczosResize.Resize(image, width, height);
        int plane = width * height;
        var chw = new float[3 * plane];
        for (int p = 0; p < plane; p++)
            for (int ch = 0; ch < 3; ch++)
                chw[ch * plane + p] = resized.Rgb[3 * p + ch] / 255f * 2f - 1f;
        if (trace is not null)
        {
            using var u8 = Tensor.FromSpan<float>(_device, resized.Rgb.Select(v => (float)v).ToArray(), new Shape(height, width, 3));
            trace($"{name}.resized_uint8", u8);
        }
        var t = Tensor.FromSpan<float>(_device, chw, new Shape(3, height, width));
        trace?.Invoke($"{name}.preprocessed", t);
        return t;
    }

    /// <summary>Kontext's reference image: one image → VAE mode → (z − shift)·scale → packed tokens with ids (1, row, col).</summary>
    public IImageConditioning EncodeImages(IReadOnlyList<RgbImage> images, StageTimer? timer, Action<string, Tensor>? trace = null)
    {
        if (_snapshot.Kind != Flux1Kind.Kontext)
            throw new NotSupportedException($"--ref-image: {_snapshot.Index.ClassName} takes no reference images; use a FLUX.1 Kontext snapshot (FluxKontextPipeline) to edit, or --init-image for image-to-image");
        if (images.Count != 1) throw new ArgumentException($"--ref-image: FLUX.1 Kontext takes one reference image; {images.Count} given");
        var img = images[0];
        var (w, h) = KontextReferenceSize(img.Width, img.Height, KontextAutoResize);
        if (w < Multiple || h < Multiple) throw new ArgumentException($"--ref-image: a {img.Width}x{img.Height} image is smaller than one {Multiple}x{Multiple} latent patch");
        var vae = VaeWithEncoder;
        using var pixels = Preprocess(img, w, h, "reference", trace);
        using var mean = vae.EncodeMean(pixels);
        vae.VaeOutputToLatents(mean, mean);
        trace?.Invoke("reference.image_latents", mean);
        int rows = h / Multiple, cols = w / Multiple;
        var tokens = Tensor.Empty(_device, DType.F32, rows * cols, 4 * LatentChannels);
        try { PackOne(mean, tokens, rows, cols); }
        catch { tokens.Dispose(); throw; }
        trace?.Invoke("reference.image_latents_packed", tokens);
        return new KontextReference(tokens, rows, cols);
    }

    /// <summary>Packed reference tokens [S_ref, 64] on a rows × cols grid.</summary>
    private sealed class KontextReference(Tensor tokens, int rows, int cols) : IImageConditioning
    {
        public Tensor Tokens { get; } = tokens;
        public int Rows { get; } = rows;
        public int Cols { get; } = cols;
        /// <summary>None: FluxKontextPipeline sizes the output from the request (default 1024²), not the reference.</summary>
        public (int Width, int Height)? SuggestedSize => null;
        public void Dispose() => Tokens.Dispose();
    }

    public Tensor EncodeInitImage(RgbImage image, LatentLayout layout, int batch, ulong seed, float sigma, Tensor? posteriorNoise, Tensor? noise,
        Action<string, Tensor>? trace = null)
    {
        if (posteriorNoise is not null) CheckUnpacked(layout, posteriorNoise, "posterior noise");
        if (noise is not null) CheckUnpacked(layout, noise, "noise");
        if (posteriorNoise is not null && posteriorNoise.Shape[0] != batch || noise is not null && noise.Shape[0] != batch)
            throw new ArgumentException($"image-to-image: given noise must have {batch} rows (prompts × images per prompt)");
        var vae = VaeWithEncoder;
        int c = LatentChannels, h = 2 * layout.Rows, w = 2 * layout.Cols, n = c * h * w;
        float[] mean, logvar;
        using (var pixels = Preprocess(image, layout.Width, layout.Height, "init_image", trace))
        using (var moments = vae.EncodeMoments(pixels))
        {
            var m = moments.ToFloatArray();
            mean = m[..n];
            logvar = m[n..];
        }
        // DiagonalGaussianDistribution: logvar clamped to [−30, 20], std = exp(0.5·logvar), sample = mean + std·ε (float32).
        var std = new float[n];
        for (int i = 0; i < n; i++) std[i] = MathF.Exp(0.5f * Math.Clamp(logvar[i], -30f, 20f));
        var packed = Tensor.Empty(_device, DType.F32, batch, layout.Tokens, layout.Channels);
        try
        {
            var eps = new float[n];
            var nz = new float[n];
            var z = new float[n];
            using var zT = Tensor.Empty(_device, DType.F32, c, h, w);
            using var noiseT = Tensor.Empty(_device, DType.F32, c, h, w);
            for (int b = 0; b < batch; b++)
            {
                var gen = new GaussianNoise(seed + (ulong)b);
                if (posteriorNoise is null) gen.Fill(eps);
                else posteriorNoise.Slice(b, 1).ToFloatArray().CopyTo(eps, 0);
                if (noise is null) gen.Fill(nz);
                else noise.Slice(b, 1).ToFloatArray().CopyTo(nz, 0);
                for (int i = 0; i < n; i++) z[i] = mean[i] + std[i] * eps[i];
                zT.CopyFrom<float>(z);
                vae.VaeOutputToLatents(zT, zT);
                if (b == 0) trace?.Invoke("img2img.image_latents", zT);
                // scale_noise: σ·noise + (1 − σ)·z, each product rounded, then the sum (torch's order).
                noiseT.CopyFrom<float>(nz);
                Elementwise.Combine(sigma, noiseT, 1f - sigma, zT, zT);
                PackOne(zT, packed.Slice(b, 1).Reshape(layout.Tokens, layout.Channels), layout.Rows, layout.Cols);
            }
        }
        catch { packed.Dispose(); throw; }
        trace?.Invoke("img2img.noised_latents_packed", packed);
        return packed;
    }

    // ------------------------------------------------------------------ sampler and denoiser

    /// <summary>The scheduler config's sampler with the pipeline's sigmas linspace(1, 1/N, N) and mu = calculate_shift(generated tokens).</summary>
    public ISampler CreateSampler(SamplerKind kind, int steps, LatentLayout layout, SamplerSettings? settings = null)
    {
        var sc = _snapshot.SchedulerConfig;
        settings ??= kind switch
        {
            SamplerKind.Euler => SamplerSettings.FromSchedulerConfig(sc),
            _ => new SamplerSettings { Kind = kind, NumTrainTimesteps = sc.NumTrainTimesteps, Shift = sc.Shift, UseDynamicShifting = sc.UseDynamicShifting && kind != SamplerKind.Heun, TimeShiftType = sc.TimeShiftType },
        };
        return Samplers.Create(settings, steps, settings.UseDynamicShifting || settings.Kind == SamplerKind.Euler ? FlowMatchEulerScheduler.CalculateShift(layout.Tokens, sc) : null);
    }

    public Flux1Transformer Transformer
    {
        get
        {
            if (_transformer is null)
            {
                _transformerWeights = _snapshot.OpenWeights("transformer");
                try { _transformer = new Flux1Transformer(_snapshot.TransformerConfig, _transformerWeights.Loader(_device, _quant, _populateWeights), _quant) { SyncPerBlock = _syncPerBlock, TokenMergeRatio = _tokenMergeRatio }; }
                catch { _transformerWeights.Dispose(); _transformerWeights = null; throw; }
                // Weights used in place from the mapping (CPU, no load-time quantization) that are more than half of this
                // machine's memory (the BF16 dev/schnell/Kontext transformer is 23.8 GB) are streamed: the next block is
                // read ahead while one computes, and each block's pages leave the resident set once it ran, so the peak
                // RSS holds about one block, not whatever the kernel kept.
                if (StreamsTransformerWeights) _transformer.Streaming = _transformerWeights.StreamingHooks;
            }
            return _transformer;
        }
    }

    /// <summary>Whether the transformer streams its weights block by block (see <see cref="Transformer"/>): used in place on the CPU and more than half of this machine's memory.</summary>
    internal bool StreamsTransformerWeights =>
        _snapshot.Transformer.StreamsOn(_device, _quant);

    public IDenoiser PrepareDenoiser(LatentLayout layout, int textLength, IImageConditioning? images) =>
        PrepareDenoiser(layout, textLength, images, Defaults.EmbeddedGuidance);

    public IDenoiser PrepareDenoiser(LatentLayout layout, int textLength, IImageConditioning? images, float? embeddedGuidance)
    {
        if (images is not null and not KontextReference) throw new ArgumentException("FLUX.1: conditioning images must come from this model's EncodeImages");
        var reference = images as KontextReference;
        var model = Transformer;
        float? guidance = model.Config.GuidanceEmbeds ? embeddedGuidance ?? Defaults.EmbeddedGuidance ?? 3.5f : null;
        return new Flux1Denoiser(model, layout, textLength, reference, guidance, _device, _ropeCache);
    }

    public IReadOnlySet<string> HonouredSwitches { get; } = new HashSet<string> { "rope-cache", "sync-per-block", "populate-weights", "tome" };

    /// <summary>The transformer with the pipeline's conventions: t/1000, the guidance scale, Kontext reference tokens appended and cut off.</summary>
    private sealed class Flux1Denoiser : IDenoiser
    {
        private readonly Flux1Transformer _model;
        private readonly KontextReference? _reference;
        private readonly float? _guidance;
        private Tensor _cos, _sin;
        private readonly int _textLength;
        private readonly LatentLayout _layout;
        private readonly Device _device;
        private readonly bool _cacheRope;
        private Tensor? _joint;

        public Flux1Denoiser(Flux1Transformer model, LatentLayout layout, int textLength, KontextReference? reference, float? guidance, Device device, bool cacheRope)
        {
            _model = model;
            _reference = reference;
            _guidance = guidance;
            _textLength = textLength;
            (_layout, _device, _cacheRope) = (layout, device, cacheRope);
            (_cos, _sin) = BuildRope();
        }

        /// <summary>cos, sin [S_text + S_image (+ S_reference), head_dim] on the device.</summary>
        private (Tensor Cos, Tensor Sin) BuildRope()
        {
            var (cos, sin) = _model.RopeTables(_textLength, _layout.Rows, _layout.Cols, _reference?.Rows ?? 0, _reference?.Cols ?? 0);
            int hd = _model.Config.AttentionHeadDim;
            return (Tensor.FromSpan<float>(_device, cos, new Shape(cos.Length / hd, hd)), Tensor.FromSpan<float>(_device, sin, new Shape(sin.Length / hd, hd)));
        }

        public void Predict(Tensor latents, TextConditioning text, float timestep, Tensor output, Action<string, Tensor>? trace = null)
        {
            if (text.Pooled is null) throw new ArgumentException("FLUX.1 text conditioning needs the pooled CLIP vector (TextConditioning.Pooled)");
            if (text.Length != _textLength) throw new ArgumentException($"FLUX.1 denoiser: text has {text.Length} tokens; it was prepared for {_textLength}");
            int batch = latents.Shape[0], s = latents.Shape[1], c = latents.Shape[2];
            if (!_cacheRope)
            {
                // rope-cache=off (an experiment): rebuilt and uploaded on every call.
                _cos.Dispose();
                _sin.Dispose();
                (_cos, _sin) = BuildRope();
            }
            Span<float> t = stackalloc float[batch];
            t.Fill(timestep / 1000f);
            Span<float> g = stackalloc float[_guidance is null ? 0 : batch];
            if (_guidance is float gv) g.Fill(gv);
            var hidden = latents;
            if (_reference is not null)
            {
                // [generated; reference] tokens per sample (cat along the sequence); the output keeps the first S.
                int sr = _reference.Tokens.Shape[0];
                if (_joint is null || _joint.Shape[0] != batch) { _joint?.Dispose(); _joint = Tensor.Empty(latents.Device, DType.F32, batch, s + sr, c); }
                for (int b = 0; b < batch; b++)
                {
                    var row = _joint.Slice(b, 1).Reshape(s + sr, c);
                    latents.Slice(b, 1).Reshape(s, c).CopyTo(row.Slice(0, s));
                    _reference.Tokens.CopyTo(row.Slice(s, sr));
                }
                hidden = _joint;
            }
            _model.Forward(hidden, text.Embeds, text.Pooled, t, g, _cos, _sin, output, trace, (_layout.Rows, _layout.Cols));
        }

        public void Dispose()
        {
            _cos.Dispose();
            _sin.Dispose();
            _joint?.Dispose();
        }
    }

    public void ReleaseDenoiser()
    {
        _transformer?.Dispose();
        _transformer = null;
        _transformerWeights?.Dispose();
        _transformerWeights = null;
    }

    // ------------------------------------------------------------------ decode

    /// <summary>Packed [B, S, 64] → latents [B, 16, H/8, W/8] → z / scale + shift → decoded images [B, 3, H, W].</summary>
    public Tensor Decode(Tensor latents, LatentLayout layout, Action<string, Tensor>? trace = null)
    {
        int batch = latents.Shape[0], c = LatentChannels, h = 2 * layout.Rows, w = 2 * layout.Cols;
        var vae = Vae;
        using var latent = Tensor.Empty(_device, DType.F32, batch, c, h, w);
        for (int b = 0; b < batch; b++)
            UnpackOne(latents.Slice(b, 1).Reshape(layout.Tokens, layout.Channels), latent.Slice(b, 1).Reshape(c, h, w), layout.Rows, layout.Cols);
        trace?.Invoke("final_latents", latent);
        using var input = Tensor.Empty(_device, DType.F32, batch, c, h, w);
        vae.LatentsToVaeInput(latent, input);
        trace?.Invoke("vae_input", input);
        var images = Tensor.Empty(_device, DType.F32, batch, 3, layout.Height, layout.Width);
        try
        {
            for (int b = 0; b < batch; b++)
            {
                using var one = vae.Decode(input.Slice(b, 1).Reshape(c, h, w), batch == 1 ? trace : null);
                one.CopyTo(images.Slice(b, 1));
            }
        }
        catch { images.Dispose(); throw; }
        return images;
    }

    public void Dispose()
    {
        ReleaseDenoiser();
        _vae?.Dispose();
        _vae = null;
        if (_ownsSnapshot) _snapshot.Dispose();
    }
}
