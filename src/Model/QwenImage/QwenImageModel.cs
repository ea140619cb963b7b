using PureFlux.Model.Engine;
using PureFlux.Model.Guidance;
using PureFlux.Model.Image;
using PureFlux.Model.Layers;
using PureFlux.Model.Pipeline;
using PureFlux.Model.Sampling;
using PureFlux.Model.Scheduler;
using PureFlux.Model.Snapshot;
using PureFlux.Model.Text;

namespace PureFlux.Model.QwenImage;

/// <summary>The Qwen-Image family: diffusers' QwenImagePipeline (text-to-image) and QwenImageImg2ImgPipeline (--init-image).</summary>
public sealed class QwenImageFamily : IModelFamily, IQuantizableFamily
{
    /// <summary>
    /// The transformer's quantizable linears (the 60 blocks' and txt_in; img_in, the timestep MLP, norm_out and proj_out
    /// stay as stored, as with --quant) and the language model's linears as int8/int4, as Z-Image does.
    /// </summary>
    public void Quantize(string source, QuantMode mode, string destination, Action<string>? log = null)
    {
        using var s = QwenImageSnapshot.Open(source);
        QuantizedSnapshot.Write(s.Directory, QuantizedSnapshot.StoredMode(s.Transformer),
        [
            new QuantizableComponent("transformer", "diffusion_pytorch_model.safetensors", () => s.OpenWeights("transformer"),
                (load, _) => new QwenImageTransformer(s.TransformerConfig, load, mode)),
            new QuantizableComponent("text_encoder", "model.safetensors", () => s.OpenWeights("text_encoder"),
                (load, w) => s.CreateTextEncoder(QwenImageSnapshot.LanguageModelNames(w, load), mode)),
        ], mode, destination, log);
    }

    public string Name => "qwen-image";
    public IReadOnlyList<string> PipelineClasses { get; } = QwenImageSnapshot.PipelineClasses;

    public IDiffusionModel Open(string directory, Device device, ModelOptions options)
    {
        var snapshot = QwenImageSnapshot.Open(directory);
        try { return new QwenImageModel(snapshot, device, options, ownsSnapshot: true); }
        catch { snapshot.Dispose(); throw; }
    }
}

/// <summary>
/// Qwen-Image on the engine: the prompt in Qwen-Image's template through the Qwen2.5-VL language model (final-norm hidden
/// states, the first 34 rows dropped, <see cref="QwenImagePrompt"/>) → text [T, 3584] with a mask when rows differ in
/// length → 16-channel latents packed as 2×2 patches [S, 64] with the channel slowest → the Qwen-Image transformer, which
/// sees σ = timestep / 1000 → latents · std + mean → the causal-3D VAE decoder. True CFG is u + s(c − u) renormalised per
/// token to ‖c‖ (<see cref="GuidanceOptions.PerTokenNormRescale"/>), on when s &gt; 1 and a negative prompt is given
/// (the pipeline's true_cfg_scale, default 4.0; without a negative prompt it runs unguided). 50 steps by default.
/// </summary>
public sealed class QwenImageModel : IDiffusionModel, Bench.IStageFlopModel
{
    private static readonly IModelFamily FamilyInstance = new QwenImageFamily();
    private readonly QwenImageSnapshot _snapshot;
    private readonly bool _ownsSnapshot;
    private readonly Device _device;
    private readonly QuantMode _quant;
    private readonly bool _ropeCache;
    private readonly bool _syncPerBlock;
    private readonly bool _populateWeights;
    private readonly double? _tokenMergeRatio;
    private readonly Dictionary<string, float[]> _promptCache = new();
    private QwenImageTransformer? _transformer;
    private WeightSource? _transformerWeights;
    private QwenImageVae? _vae;
    private Qwen3Tokenizer? _tokenizer;
    private string? _encoderIdentity;

    public QwenImageModel(QwenImageSnapshot snapshot, Device device, ModelOptions? options = null, bool ownsSnapshot = false)
    {
        options ??= new ModelOptions();
        options.RefuseKontextOptions("Qwen-Image");
        _snapshot = snapshot;
        _ownsSnapshot = ownsSnapshot;
        _device = device;
        _quant = options.Quant;
        _ropeCache = options.RopeCache;
        _syncPerBlock = options.SyncPerBlock;
        _populateWeights = options.PopulateWeights;
        _tokenMergeRatio = options.TokenMergeRatio;
        DiskCache = options.PromptCache;
        int last = snapshot.TextEncoderConfig.NumHiddenLayers;
        if (options.TextLayers is { } layers && !(layers.Length == 1 && layers[0] == last))
            throw new ArgumentException($"--text-layers {string.Join(',', layers)}: Qwen-Image conditions on the final-norm hidden state of the last layer ({last}) only");
        if (options.GuidanceDistilled is not null)
            throw new ArgumentException("--guidance-distilled applies to FLUX.2 klein snapshots; Qwen-Image has no such switch");
        Defaults = new ModelDefaults(Steps: 50, Guidance: 4.0f, SamplerKind.Euler, GuidanceDistilled: false, CfgFormula: GuidanceFormula.UncondPlus)
        {
            PerTokenNormRescale = true,
            CfgNeedsNegativePrompt = true,
        };
    }

    public IModelFamily Family => FamilyInstance;
    public Device Device => _device;
    public QwenImageSnapshot Snapshot => _snapshot;
    public ModelDefaults Defaults { get; }
    public QuantMode Quant => _quant == QuantMode.None ? StoredQuant : _quant;
    private QuantMode StoredQuant => QuantizedSnapshot.StoredMode(_snapshot.Transformer);

    public Qwen3Tokenizer Tokenizer => _tokenizer ??= _snapshot.LoadTokenizer();
    public PromptCache? DiskCache { get; init; }

    // ------------------------------------------------------------------ text

    /// <summary>Prompts → [B, T, hidden] with mask [B, T]: each prompt's kept rows, zero rows after the shorter ones.</summary>
    public TextConditioning EncodeText(IReadOnlyList<string> prompts, StageTimer? timer)
    {
        var tokens = prompts.Select(p => QwenImagePrompt.Tokenize(Tokenizer, p)).ToArray();
        bool cached = tokens.All(t => _promptCache.ContainsKey(MemoryKey(t.Ids)) || (DiskCache is { } d && File.Exists(d.PathOf(DiskKey(t.Ids)))));
        int dim = _snapshot.TextEncoderConfig.HiddenSize, len = tokens.Max(t => t.Kept);
        var embeds = Tensor.Zeros(_device, DType.F32, new Shape(prompts.Count, len, dim));
        var maskH = new float[prompts.Count * len];
        var warnings = new List<string>();
        try
        {
            using (timer?.Stage(cached ? "text encoding (cached)" : "text encoding"))
                for (int i = 0; i < tokens.Length; i++)
                {
                    using var e = EncodePrompt(tokens[i].Ids, out var cacheWarning);
                    e.CopyTo(embeds.Slice(i, 1).Reshape(len, dim).Slice(0, tokens[i].Kept));
                    Array.Fill(maskH, 1f, i * len, tokens[i].Kept);
                    if (tokens[i].Warning is { } w) warnings.Add(prompts.Count > 1 ? $"prompt {i + 1}: {w}" : w);
                    if (cacheWarning is not null) warnings.Add(cacheWarning);
                }
        }
        catch { embeds.Dispose(); throw; }
        var mask = Tensor.FromSpan<float>(_device, maskH, new Shape(prompts.Count, len));
        return new TextConditioning(embeds, mask, warning: warnings.Count == 0 ? null : string.Join("; ", warnings.Distinct()));
    }

    /// <summary>
    /// Stage FLOPs for bench e2e: the formatted prompt's ids through every language-model layer, one transformer pass on
    /// its kept tokens (bench e2e counts a step's passes: two under true CFG, the negative prompt padded to the same length,
    /// so a negative prompt longer than the prompt is undercounted), the VAE decoder.
    /// </summary>
    public Bench.StageFlops Flops(string prompt, int width, int height)
    {
        var (ids, kept, _) = QwenImagePrompt.Tokenize(Tokenizer, prompt);
        int tokens = (height / 16) * (width / 16);
        var te = _snapshot.TextEncoderConfig;
        return new Bench.StageFlops(kept, tokens,
            Bench.FlopModel.TextEncoder(te, ids.Length, te.NumHiddenLayers),
            QwenImageFlops.TransformerPass(_snapshot.TransformerConfig, kept, tokens),
            QwenImageFlops.VaeDecode(_snapshot.VaeConfig, height / 8, width / 8));
    }

    private static string MemoryKey(int[] ids) => string.Join(',', ids);

    private string DiskKey(int[] ids) =>
        PromptCache.Key(_encoderIdentity ??= PromptCache.EncoderIdentity(_snapshot.Directory, _snapshot.TextEncoder, [_snapshot.TextEncoderConfig.NumHiddenLayers], _quant, family: "qwen-image"),
            ids, Enumerable.Repeat(1, ids.Length).ToArray());

    /// <summary>
    /// Real token ids of the formatted prompt [S] (S &gt; 34) → prompt_embeds [S − 34, hidden]: the final-norm hidden
    /// states without the first 34 rows.
    /// </summary>
    public Tensor EncodePrompt(int[] ids, out string? cacheWarning, Action<string, Tensor>? trace = null)
    {
        cacheWarning = null;
        int s = ids.Length - QwenImagePrompt.DropTokens, dim = _snapshot.TextEncoderConfig.HiddenSize;
        if (s <= 0) throw new ArgumentException($"text encoder: {ids.Length} token ids; Qwen-Image drops the first {QwenImagePrompt.DropTokens} (its template)");
        string key = MemoryKey(ids);
        if (trace is null && _promptCache.TryGetValue(key, out var hit)) return Tensor.FromSpan<float>(_device, hit, new Shape(s, dim));
        string? diskKey = trace is null && DiskCache is not null ? DiskKey(ids) : null;
        if (diskKey is not null && DiskCache!.TryLoad(diskKey, s, dim) is { } stored)
        {
            _promptCache[key] = stored;
            return Tensor.FromSpan<float>(_device, stored, new Shape(s, dim));
        }
        using var weights = _snapshot.OpenWeights("text_encoder");
        using var encoder = _snapshot.CreateTextEncoder(QwenImageSnapshot.TextEncoderLoader(weights, _device, _quant, _populateWeights), _quant);
        using var all = encoder.Encode(_device, ids, Enumerable.Repeat((byte)1, ids.Length).ToArray(), trace);
        var embeds = Tensor.Empty(_device, DType.F32, s, dim);
        all.Slice(QwenImagePrompt.DropTokens, s).CopyTo(embeds);
        var host = embeds.ToFloatArray();
        _promptCache[key] = host;
        if (diskKey is not null && !DiskCache!.Store(diskKey, host, s, dim)) cacheWarning = DiskCache.LastWriteError;
        return embeds;
    }

    // ------------------------------------------------------------------ latents

    public MemoryEstimate EstimateMemory(GenerationJob job, bool cfg) => QwenImageMemoryEstimate.Estimate(this, job, cfg);

    public LatentLayout Layout(int width, int height)
    {
        if (width <= 0 || height <= 0 || width % 16 != 0 || height % 16 != 0)
            throw new ArgumentException($"image size {width}x{height}: width and height must be positive multiples of 16");
        int rows = height / 16, cols = width / 16;
        const int max = QwenImageTransformerConfig.RopePositions;
        if (rows > max || cols > max)
            throw new ArgumentException($"image size {width}x{height}: a {rows}x{cols} token grid exceeds Qwen-Image's RoPE position range ({max} per axis)");
        long values = (long)rows * cols * _snapshot.TransformerConfig.InChannels;
        if (values > int.MaxValue) throw new ArgumentException($"image size {width}x{height}: {(long)rows * cols} latent tokens is more than one buffer can hold");
        return new LatentLayout(width, height, rows, cols, _snapshot.TransformerConfig.InChannels);
    }

    private int LatentChannels => _snapshot.VaeConfig.ZDim;

    /// <summary>[C, 2·rows, 2·cols] → packed [rows·cols, 4C] with index c·4 + dy·2 + dx (diffusers' _pack_latents).</summary>
    private void Pack(Tensor chw, Tensor packed, LatentLayout layout)
    {
        int c = LatentChannels;
        using var patched = Tensor.Empty(_device, DType.F32, 4 * c, layout.Rows, layout.Cols);
        Latents.Patchify(chw, patched);
        Latents.Pack(patched, packed);
    }

    /// <summary>Seeded noise: sample b is <see cref="GaussianNoise"/>(seed + b) filling [16, H/8, W/8] (as diffusers draws [1, 1, 16, H/8, W/8]), then packed.</summary>
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
            Pack(chw, packed.Slice(b, 1).Reshape(layout.Tokens, layout.Channels), layout);
        }
        return packed;
    }

    /// <summary>noise [B, 16, H/8, W/8] (or the pipeline's [B, 1, 16, H/8, W/8]) → packed [B, S, 64].</summary>
    public Tensor PackNoise(LatentLayout layout, Tensor noise)
    {
        int c = LatentChannels, h = 2 * layout.Rows, w = 2 * layout.Cols;
        bool ok = (noise.Rank == 4 && noise.Shape[1] == c && noise.Shape[2] == h && noise.Shape[3] == w)
                  || (noise.Rank == 5 && noise.Shape[1] == 1 && noise.Shape[2] == c && noise.Shape[3] == h && noise.Shape[4] == w);
        if (!ok) throw new ArgumentException($"noise has shape {noise.Shape}; expected [B, {c}, {h}, {w}] (or [B, 1, {c}, {h}, {w}]) for {layout.Width}x{layout.Height}");
        int batch = noise.Shape[0];
        var packed = Tensor.Empty(_device, DType.F32, batch, layout.Tokens, layout.Channels);
        for (int b = 0; b < batch; b++)
            Pack(noise.Slice(b, 1).Reshape(c, h, w), packed.Slice(b, 1).Reshape(layout.Tokens, layout.Channels), layout);
        return packed;
    }

    public IImageConditioning EncodeImages(IReadOnlyList<RgbImage> images, StageTimer? timer, Action<string, Tensor>? trace = null) =>
        throw new NotSupportedException("Qwen-Image text-to-image takes no reference images (--ref-image); image editing (Qwen-Image-Edit) is not supported; --init-image runs image-to-image");

    /// <summary>
    /// The init image as the VAE takes it, [3, H, W] in [−1, 1], used instead of resizing and normalising
    /// <see cref="GenerationJob.InitImage"/> when set (owned by the caller). The golden sets give the pipeline a float
    /// image that 8-bit RGB cannot hold.
    /// </summary>
    public Tensor? PreprocessedInitImage { get; set; }

    /// <summary>RGB bytes → [3, H, W] in [−1, 1] (x/255·2 − 1, as VaeImageProcessor normalises), resized with Pillow's Lanczos first when the size differs.</summary>
    private Tensor Preprocess(RgbImage image, int width, int height)
    {
        var resized = image.Width == width && image.Height == height ? image : LanczosResize.Resize(image, width, height);
        int plane = width * height;
        var chw = new float[3 * plane];
        for (int p = 0; p < plane; p++)
            for (int ch = 0; ch < 3; ch++)
                chw[ch * plane + p] = resized.Rgb[3 * p + ch] / 255f * 2f - 1f;
        return Tensor.FromSpan<float>(_device, chw, new Shape(3, height, width));
    }

    /// <summary>
    /// QwenImageImg2ImgPipeline's start latents: the image at the output size → VAE moments → per image b, from the
    /// generator seeded seed + b, ε (posterior sample z = mean + std·ε) then the noise → (z − latents_mean) · (1/latents_std)
    /// → σ·noise + (1 − σ)·z → packed [B, S, 64]. Given ε / noise are [B, 16, h, w] (or the pipeline's 5-D [B, 16, 1, h, w] /
    /// [B, 1, 16, h, w]: the same order for one frame). Traces img2img.image_latents and img2img.noisy_latents [16, h, w] of image 0.
    /// </summary>
    public Tensor EncodeInitImage(RgbImage image, LatentLayout layout, int batch, ulong seed, float sigma, Tensor? posteriorNoise, Tensor? noise,
        Action<string, Tensor>? trace = null)
    {
        int c = LatentChannels, h = 2 * layout.Rows, w = 2 * layout.Cols, n = c * h * w;
        foreach (var (given, what) in new[] { (posteriorNoise, "posterior noise"), (noise, "noise") })
            if (given is not null && (given.Shape[0] != batch || given.Shape.Count != (long)batch * n))
                throw new ArgumentException($"image-to-image: {what} has shape {given.Shape}; expected [{batch}, {c}, {h}, {w}] for {batch} image(s) of {layout.Width}x{layout.Height}");
        if (PreprocessedInitImage is { } pre && !(pre.Shape.Count == 3L * layout.Width * layout.Height && pre.Shape[pre.Rank - 1] == layout.Width))
            throw new ArgumentException($"image-to-image: the preprocessed init image has shape {pre.Shape}; expected [3, {layout.Height}, {layout.Width}]");
        var vae = VaeWithEncoder;
        float[] mean, std;
        using (var own = PreprocessedInitImage is null ? Preprocess(image, layout.Width, layout.Height) : null)
        {
            var pixels = own ?? PreprocessedInitImage!.Reshape(3, layout.Height, layout.Width);
            trace?.Invoke("init_image.preprocessed", pixels);
            using var moments = vae.EncodeMoments(pixels);
            var m = moments.ToFloatArray();
            mean = m[..n];
            // DiagonalGaussianDistribution: logvar clamped to [−30, 20], std = exp(0.5·logvar) in float32.
            std = m[n..].Select(v => MathF.Exp(0.5f * Math.Clamp(v, -30f, 20f))).ToArray();
        }
        var packed = Tensor.Empty(_device, DType.F32, batch, layout.Tokens, layout.Channels);
        try
        {
            var eps = new float[n];
            var nz = new float[n];
            using var zT = Tensor.Empty(_device, DType.F32, c, h, w);
            using var noiseT = Tensor.Empty(_device, DType.F32, c, h, w);
            for (int b = 0; b < batch; b++)
            {
                var gen = new GaussianNoise(seed + (ulong)b);
                if (posteriorNoise is null) gen.Fill(eps);
                else posteriorNoise.Slice(b, 1).ToFloatArray().CopyTo(eps, 0);
                if (noise is null) gen.Fill(nz);
                else noise.Slice(b, 1).ToFloatArray().CopyTo(nz, 0);
                zT.CopyFrom<float>(ImageLatents(_snapshot.VaeConfig, mean, std, eps, h * w));
                if (b == 0) trace?.Invoke("img2img.image_latents", zT);
                // scale_noise: σ·noise + (1 − σ)·z, each product rounded, then the sum (torch's order).
                noiseT.CopyFrom<float>(nz);
                Elementwise.Combine(sigma, noiseT, 1f - sigma, zT, zT);
                if (b == 0) trace?.Invoke("img2img.noisy_latents", zT);
                Pack(zT, packed.Slice(b, 1).Reshape(layout.Tokens, layout.Channels), layout);
            }
        }
        catch { packed.Dispose(); throw; }
        return packed;
    }

    /// <summary>
    /// img2img's image latents [16, pixels] (float32 as torch): the posterior sample z = mean + std·ε, then
    /// (z − latents_mean) · (1 / latents_std) per channel.
    /// </summary>
    public static float[] ImageLatents(QwenImageVaeConfig c, float[] mean, float[] std, float[] eps, int pixels)
    {
        var y = new float[mean.Length];
        for (int ch = 0; ch < c.ZDim; ch++)
        {
            float inv = 1f / c.LatentsStd[ch];
            for (int i = 0; i < pixels; i++)
            {
                int at = ch * pixels + i;
                float z = mean[at] + std[at] * eps[at];
                y[at] = (z - c.LatentsMean[ch]) * inv;
            }
        }
        return y;
    }

    // ------------------------------------------------------------------ sampler and denoiser

    /// <summary>
    /// The scheduler config's Euler with the pipeline's custom sigmas linspace(1, 1/N, N), mu from the packed token count
    /// (H/16)(W/16) on the line through (base_image_seq_len, base_shift) and (max_image_seq_len, max_shift), and the
    /// config's shift_terminal stretch; the other samplers with the same dynamic shift.
    /// </summary>
    public ISampler CreateSampler(SamplerKind kind, int steps, LatentLayout layout, SamplerSettings? settings = null)
    {
        var sc = _snapshot.SchedulerConfig;
        settings ??= kind switch
        {
            SamplerKind.Euler => SamplerSettings.FromSchedulerConfig(sc),
            _ => SamplerSettings.ForKlein(sc, kind),
        };
        return Samplers.Create(settings, steps, settings.UseDynamicShifting ? CalculateShift(layout.Tokens, sc) : null);
    }

    /// <summary>diffusers' calculate_shift (float64): mu = tokens · m + b through (base_image_seq_len, base_shift), (max_image_seq_len, max_shift).</summary>
    public static double CalculateShift(int tokens, Config.SchedulerConfig sc)
    {
        double baseLen = sc.BaseImageSeqLen, maxLen = sc.MaxImageSeqLen, baseShift = sc.BaseShift ?? 0.5, maxShift = sc.MaxShift ?? 1.15;
        double m = (maxShift - baseShift) / (maxLen - baseLen);
        double b = baseShift - m * baseLen;
        return tokens * m + b;
    }

    public QwenImageTransformer Transformer
    {
        get
        {
            if (_transformer is null)
            {
                _transformerWeights = _snapshot.OpenWeights("transformer");
                _transformer = new QwenImageTransformer(_snapshot.TransformerConfig, _transformerWeights.Loader(_device, _quant, _populateWeights), _quant) { CacheRope = _ropeCache, SyncPerBlock = _syncPerBlock, TokenMergeRatio = _tokenMergeRatio };
                // As FLUX.1 does: weights used in place that exceed half the memory (the 20.4 GB int8 transformer of a
                // quantized snapshot, the 40.9 GB BF16 one) stream block by block — next block read ahead, finished one
                // dropped from the resident set.
                if (StreamsTransformerWeights) _transformer.Streaming = _transformerWeights.StreamingHooks;
            }
            return _transformer;
        }
    }

    /// <summary>Whether the transformer streams its weights block by block: used in place on the CPU and more than half of this machine's memory.</summary>
    internal bool StreamsTransformerWeights =>
        _snapshot.Transformer.StreamsOn(_device, _quant);

    public IDenoiser PrepareDenoiser(LatentLayout layout, int textLength, IImageConditioning? images)
    {
        if (images is not null) throw new ArgumentException("Qwen-Image: conditioning images are not supported");
        return new QwenImageDenoiser(Transformer, layout);
    }

    /// <summary>The transformer with the pipeline's convention: it sees timestep / 1000 (float32) and predicts the flow velocity.</summary>
    public IReadOnlySet<string> HonouredSwitches { get; } = new HashSet<string> { "rope-cache", "sync-per-block", "populate-weights", "tome" };

    private sealed class QwenImageDenoiser(QwenImageTransformer model, LatentLayout layout) : IDenoiser
    {
        public void Predict(Tensor latents, TextConditioning text, float timestep, Tensor output, Action<string, Tensor>? trace = null)
        {
            int batch = latents.Shape[0];
            Span<float> t = stackalloc float[batch];
            t.Fill(timestep / 1000f);
            model.Forward(latents, layout.Rows, layout.Cols, text.Embeds, text.Mask, t, output);
        }

        public void Dispose() { }
    }

    public void ReleaseDenoiser()
    {
        _transformer?.Dispose();
        _transformer = null;
        _transformerWeights?.Dispose();
        _transformerWeights = null;
    }

    // ------------------------------------------------------------------ decode

    /// <summary>The VAE (the decoder, and the encoder once image-to-image has asked for it).</summary>
    public QwenImageVae Vae => _vae ??= new QwenImageVae(_snapshot.VaeConfig, _snapshot.Vae.Loader(_device), withEncoder: false);

    private QwenImageVae VaeWithEncoder
    {
        get
        {
            if (_vae is { HasEncoder: true }) return _vae;
            if (!_snapshot.Vae.Names.Any(n => n.StartsWith("encoder.", StringComparison.Ordinal)))
                throw new SnapshotException($"{_snapshot.Vae.Name}: the VAE has no encoder weights (encoder.*), which --init-image needs");
            _vae?.Dispose();
            return _vae = new QwenImageVae(_snapshot.VaeConfig, _snapshot.Vae.Loader(_device), withEncoder: true);
        }
    }

    /// <summary>Packed latents [S, 64] → [16, h, w] (the inverse of the packing).</summary>
    public void Unpack(Tensor packed, Tensor chw, LatentLayout layout)
    {
        using var patched = Tensor.Empty(_device, DType.F32, 4 * LatentChannels, layout.Rows, layout.Cols);
        Latents.Unpack(packed, patched);
        Latents.Unpatchify(patched, chw);
    }

    /// <summary>Latents [16, h, w] → what the pipeline hands the decoder: z / (1/std) + mean per channel, in float32 as torch rounds it.</summary>
    public float[] LatentsToVaeInput(float[] z, int pixels)
    {
        var c = _snapshot.VaeConfig;
        var y = new float[z.Length];
        for (int ch = 0; ch < c.ZDim; ch++)
        {
            float invStd = 1f / c.LatentsStd[ch], mean = c.LatentsMean[ch];
            for (int i = 0; i < pixels; i++)
            {
                float v = z[ch * pixels + i] / invStd;
                y[ch * pixels + i] = v + mean;
            }
        }
        return y;
    }

    /// <summary>Packed latents [B, S, 64] → unpacked, denormalised → decoded images [B, 3, H, W] in [−1, 1].</summary>
    public Tensor Decode(Tensor latents, LatentLayout layout, Action<string, Tensor>? trace = null)
    {
        int batch = latents.Shape[0], c = LatentChannels, h = 2 * layout.Rows, w = 2 * layout.Cols;
        var vae = Vae;
        var images = Tensor.Empty(_device, DType.F32, batch, 3, layout.Height, layout.Width);
        try
        {
            using var latent = Tensor.Empty(_device, DType.F32, c, h, w);
            for (int b = 0; b < batch; b++)
            {
                Unpack(latents.Slice(b, 1).Reshape(layout.Tokens, layout.Channels), latent, layout);
                if (batch == 1) trace?.Invoke("final_latents_unpacked", latent);
                latent.CopyFrom<float>(LatentsToVaeInput(latent.ToFloatArray(), h * w));
                if (batch == 1) trace?.Invoke("vae_input", latent);
                using var one = vae.Decode(latent, batch == 1 ? trace : null);
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
