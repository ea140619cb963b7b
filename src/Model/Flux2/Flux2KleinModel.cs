using PureFlux.Model.Config;
using PureFlux.Model.Engine;
using PureFlux.Model.Image;
using PureFlux.Model.Layers;
using PureFlux.Model.Pipeline;
using PureFlux.Model.Qwen3;
using PureFlux.Model.Sampling;
using PureFlux.Model.Scheduler;
using PureFlux.Model.Snapshot;
using PureFlux.Model.Text;
using PureFlux.Model.Vae;

namespace PureFlux.Model.Flux2;

/// <summary>The FLUX.2 [klein] family (distilled 4B/9B and the undistilled base models): diffusers' Flux2KleinPipeline.</summary>
public sealed class Flux2KleinFamily : IModelFamily, IQuantizableFamily
{
    public void Quantize(string source, QuantMode mode, string destination, Action<string>? log = null)
    {
        using var snapshot = ModelSnapshot.Open(source);
        QuantizedSnapshot.Write(snapshot, mode, destination, log);
    }

    public string Name => "flux2-klein";
    public IReadOnlyList<string> PipelineClasses { get; } = ["Flux2KleinPipeline"];

    public IDiffusionModel Open(string directory, Device device, ModelOptions options)
    {
        var snapshot = ModelSnapshot.Open(directory);
        try { return new Flux2KleinModel(snapshot, device, options, ownsSnapshot: true); }
        catch { snapshot.Dispose(); throw; }
    }
}

/// <summary>
/// FLUX.2 [klein] on the engine: Qwen3 prompt embedding (chat template, hidden states of <see cref="TextLayers"/>
/// stacked) → packed 128-channel latents (2×2 patches of the 32-channel VAE latent, batch-norm normalised) → the FLUX.2
/// transformer with reference-image tokens appended (T = 10, 20, …) → VAE decode. Components load when first needed
/// and the text encoder is released after encoding, so the peak stays near the largest single component.
/// </summary>
public sealed class Flux2KleinModel : IDiffusionModel, Bench.IStageFlopModel
{
    private static readonly IModelFamily FamilyInstance = new Flux2KleinFamily();
    private readonly ModelSnapshot _snapshot;
    private readonly bool _ownsSnapshot;
    private readonly Device _device;
    private readonly QuantMode _quant;
    private readonly bool _ropeCache;
    private readonly bool _syncPerBlock;
    private readonly bool _populateWeights;
    private readonly bool _fusedQkv;
    private readonly double? _tokenMergeRatio;
    private readonly Dictionary<string, float[]> _promptCache = new();
    private Flux2Transformer? _transformer;
    private WeightSource? _transformerWeights;
    private AutoencoderKL? _vae;
    private Qwen3Tokenizer? _tokenizer;
    private string? _encoderIdentity;

    public Flux2KleinModel(ModelSnapshot snapshot, Device device, ModelOptions? options = null, bool ownsSnapshot = false)
    {
        options ??= new ModelOptions();
        options.RefuseKontextOptions("FLUX.2 klein");
        _snapshot = snapshot;
        _ownsSnapshot = ownsSnapshot;
        _device = device;
        _quant = options.Quant;
        _ropeCache = options.RopeCache;
        _syncPerBlock = options.SyncPerBlock;
        _populateWeights = options.PopulateWeights;
        _fusedQkv = options.FusedQkv;
        _tokenMergeRatio = options.TokenMergeRatio;
        DiskCache = options.PromptCache;
        var stored = QuantizedSnapshot.StoredMode(snapshot);
        if (stored != QuantMode.None && _quant != QuantMode.None && _quant != stored)
            throw new ArgumentException($"{snapshot.Directory}: weights are stored as {stored.Name()} (pureflux quantize); " +
                $"--quant {_quant.Name()} needs the BF16 snapshot (use --quant none or {stored.Name()} here)");
        var te = snapshot.TextEncoderConfig;
        // A bad --text-layers is a usage error (ArgumentException); configs that cannot work with klein's defaults are bad data.
        bool given = options.TextLayers is not null;
        TextLayers = options.TextLayers ?? DefaultTextLayers(te.NumHiddenLayers);
        if (TextLayers.Length == 0 || TextLayers.Any(l => l < 1 || l > te.NumHiddenLayers))
            throw given
                ? new ArgumentException($"--text-layers {string.Join(',', TextLayers)}: each layer must be in 1..{te.NumHiddenLayers} (the text encoder's hidden states after that many layers)")
                : new ModelConfigException($"{Path.Combine(snapshot.Directory, "text_encoder", "config.json")}: field 'num_hidden_layers' is {te.NumHiddenLayers}; klein stacks the hidden states after layers L/4, L/2, 3L/4, so it needs at least 4");
        long joint = (long)TextLayers.Length * te.HiddenSize;
        if (snapshot.TransformerConfig.JointAttentionDim != joint)
        {
            string what = $"transformer/config.json joint_attention_dim {snapshot.TransformerConfig.JointAttentionDim} does not match " +
                $"{TextLayers.Length} text-encoder layers ({string.Join(',', TextLayers)}) × text_encoder/config.json hidden_size {te.HiddenSize} = {joint}";
            throw given ? new ArgumentException($"--text-layers {string.Join(',', TextLayers)}: {what}") : new ModelConfigException($"{snapshot.Directory}: {what}");
        }
        Defaults = (options.GuidanceDistilled ?? snapshot.Index.IsDistilled)
            ? new ModelDefaults(Steps: 4, Guidance: 1f, SamplerKind.Euler, GuidanceDistilled: true)
            : new ModelDefaults(Steps: 50, Guidance: 4f, SamplerKind.Euler, GuidanceDistilled: false);
    }

    public IModelFamily Family => FamilyInstance;
    public Device Device => _device;
    public ModelSnapshot Snapshot => _snapshot;
    public ModelDefaults Defaults { get; }
    public QuantMode Quant => _quant == QuantMode.None ? QuantizedSnapshot.StoredMode(_snapshot) : _quant;

    /// <summary>Text-encoder hidden states stacked on channels (diffusers' text_encoder_out_layers): klein uses (9, 18, 27) of 36.</summary>
    public int[] TextLayers { get; }

    /// <summary>klein's default layers for an encoder of <paramref name="layers"/> layers: L/4, L/2, 3L/4 ((9, 18, 27) for 36).</summary>
    public static int[] DefaultTextLayers(int layers) => [layers / 4, layers / 2, 3 * layers / 4];

    public Qwen3Tokenizer Tokenizer => _tokenizer ??= _snapshot.LoadTokenizer();

    /// <summary>Encoded prompts on disk (null: memory only). A repeated prompt then skips the text encoder across processes too.</summary>
    public PromptCache? DiskCache { get; init; }

    /// <summary>A warning from the last <see cref="EncodePrompt"/> (e.g. the disk cache was not writable), or null.</summary>
    public string? CacheWarning { get; private set; }

    // ------------------------------------------------------------------ text

    public TextConditioning EncodeText(IReadOnlyList<string> prompts, StageTimer? timer)
    {
        var tokens = prompts.Select(p => Tokenizer.EncodeForKlein(p, allowEmpty: true)).ToArray(); // empty prompts are refused by GenerationJob.Validate; "" is CFG's default negative
        bool cached = tokens.All(t => IsPromptCached(t.Ids, t.AttentionMask));
        var warnings = new List<string>();
        int len = tokens[0].Length, dim = _snapshot.TransformerConfig.JointAttentionDim;
        var embeds = Tensor.Empty(_device, DType.F32, prompts.Count, len, dim);
        try
        {
            using (timer?.Stage(cached ? "text encoding (cached)" : "text encoding"))
                for (int i = 0; i < tokens.Length; i++)
                {
                    using var e = EncodePrompt(tokens[i].Ids, tokens[i].AttentionMask);
                    e.CopyTo(embeds.Slice(i, 1));
                    if (tokens[i].Warning is { } w) warnings.Add(prompts.Count > 1 ? $"prompt {i + 1}: {w}" : w);
                    if (CacheWarning is { } cw) warnings.Add(cw);
                }
        }
        catch { embeds.Dispose(); throw; }
        return new TextConditioning(embeds, warning: warnings.Count == 0 ? null : string.Join("; ", warnings.Distinct()));
    }

    /// <summary>Whether <see cref="EncodePrompt"/> would be answered from the memory or disk cache.</summary>
    public bool IsPromptCached(int[] ids, int[] mask) =>
        _promptCache.ContainsKey(MemoryKey(ids, mask))
        || (DiskCache is { } disk && File.Exists(disk.PathOf(DiskKey(ids, mask))));

    private static string MemoryKey(int[] ids, int[] mask) => string.Join(',', ids) + "|" + string.Join("", mask);

    private string DiskKey(int[] ids, int[] mask) =>
        PromptCache.Key(_encoderIdentity ??= PromptCache.EncoderIdentity(_snapshot, TextLayers, _quant), ids, mask);

    /// <summary>Prompt ids [S] and mask → prompt_embeds [S, joint_dim] on the device. Repeated prompts hit a cache.</summary>
    public Tensor EncodePrompt(int[] ids, int[] mask, Action<string, Tensor>? trace = null)
    {
        string key = MemoryKey(ids, mask);
        int s = ids.Length, dim = _snapshot.TransformerConfig.JointAttentionDim;
        CacheWarning = null;
        if (trace is null && _promptCache.TryGetValue(key, out var cached))
            return Tensor.FromSpan<float>(_device, cached, new Shape(s, dim));
        string? diskKey = trace is null && DiskCache is not null ? DiskKey(ids, mask) : null;
        if (diskKey is not null && DiskCache!.TryLoad(diskKey, s, dim) is { } stored)
        {
            _promptCache[key] = stored;
            return Tensor.FromSpan<float>(_device, stored, new Shape(s, dim));
        }
        // A private mapping of the encoder's weights: released with the encoder, before the transformer is paged in.
        using var weights = _snapshot.OpenWeights("text_encoder");
        using var encoder = new Qwen3TextEncoder(_snapshot.TextEncoderConfig, weights.Loader(_device, _quant, _populateWeights), TextLayers, _quant);
        var embeds = encoder.Encode(_device, ids, mask.Select(m => (byte)m).ToArray(), trace);
        var host = embeds.ToFloatArray();
        _promptCache[key] = host;
        if (diskKey is not null && !DiskCache!.Store(diskKey, host, s, dim)) CacheWarning = DiskCache.LastWriteError;
        return embeds;
    }

    /// <summary>Stage FLOPs for bench e2e: the padded 512-token prompt through the layers klein runs, one transformer pass, the VAE decoder.</summary>
    public Bench.StageFlops Flops(string prompt, int width, int height)
    {
        var tokens = Tokenizer.EncodeForKlein(prompt);
        var (lh, lw) = FlowMatchEulerScheduler.PackedLatentSize(width, height);
        return new Bench.StageFlops(tokens.Length, lh * lw,
            Bench.FlopModel.TextEncoder(_snapshot.TextEncoderConfig, tokens.Length, TextLayers.Max()),
            Bench.FlopModel.TransformerStep(_snapshot.TransformerConfig, tokens.Length, lh * lw),
            Bench.FlopModel.VaeDecode(_snapshot.VaeConfig, 2 * lh, 2 * lw));
    }

    // ------------------------------------------------------------------ latents

    public MemoryEstimate EstimateMemory(GenerationJob job, bool cfg) => Flux2MemoryEstimate.Estimate(_snapshot, _quant, TextLayers, job, cfg);

    public LatentLayout Layout(int width, int height)
    {
        if (width <= 0 || height <= 0 || width % 16 != 0 || height % 16 != 0)
            throw new ArgumentException($"image size {width}x{height}: width and height must be positive multiples of 16");
        var (h, w) = FlowMatchEulerScheduler.PackedLatentSize(width, height);
        // Tokens × channels index one buffer: refuse what cannot be addressed instead of overflowing later.
        long values = (long)h * w * _snapshot.VaeConfig.PatchedChannels;
        if (values > int.MaxValue)
            throw new ArgumentException($"image size {width}x{height}: {(long)h * w} latent tokens × {_snapshot.VaeConfig.PatchedChannels} channels is more than one buffer can hold");
        return new LatentLayout(width, height, h, w, _snapshot.VaeConfig.PatchedChannels);
    }

    /// <summary>Seeded noise: sample b is <see cref="GaussianNoise"/>(seed + b) filling [128, h, w] (NCHW, as diffusers draws it), then packed.</summary>
    public Tensor Noise(LatentLayout layout, int batch, ulong seed)
    {
        var packed = Tensor.Empty(_device, DType.F32, batch, layout.Tokens, layout.Channels);
        var noise = new float[layout.Channels * layout.Tokens];
        using var chw = Tensor.Empty(_device, DType.F32, layout.Channels, layout.Rows, layout.Cols);
        for (int b = 0; b < batch; b++)
        {
            new GaussianNoise(seed + (ulong)b).Fill(noise);
            chw.CopyFrom<float>(noise);
            Latents.Pack(chw, packed.Slice(b, 1).Reshape(layout.Tokens, layout.Channels));
        }
        return packed;
    }

    /// <summary>noise [B, 128, h, w] → packed [B, h·w, 128].</summary>
    public Tensor PackNoise(LatentLayout layout, Tensor noise)
    {
        if (noise.Rank != 4 || noise.Shape[1] != layout.Channels || noise.Shape[2] != layout.Rows || noise.Shape[3] != layout.Cols)
            throw new ArgumentException($"noise has shape {noise.Shape}; expected [B, {layout.Channels}, {layout.Rows}, {layout.Cols}] for {layout.Width}x{layout.Height}");
        int batch = noise.Shape[0];
        var packed = Tensor.Empty(_device, DType.F32, batch, layout.Tokens, layout.Channels);
        for (int b = 0; b < batch; b++)
            Latents.Pack(noise.Slice(b, 1).Reshape(layout.Channels, layout.Rows, layout.Cols), packed.Slice(b, 1).Reshape(layout.Tokens, layout.Channels));
        return packed;
    }

    // ------------------------------------------------------------------ reference images

    /// <summary>
    /// Reference images as Flux2KleinPipeline conditions on them: preprocessed (area limit, multiples of 16, centre
    /// crop, [−1, 1]), each VAE-encoded alone (the distribution's mode), patchified, batch-norm normalised and packed;
    /// tokens of all images concatenated in order with position T = 10·(i+1).
    /// </summary>
    public IImageConditioning EncodeImages(IReadOnlyList<RgbImage> images, StageTimer? timer, Action<string, Tensor>? trace = null)
    {
        var cfg = _snapshot.VaeConfig;
        var prepared = images.Select((img, i) => ReferenceImagePreprocessor.Preprocess(img, $"reference image {i + 1}")).ToArray();
        // Each image's packed grid is (h/16)·(w/16) tokens (VAE ×8, 2×2 patches): pack straight into one device tensor.
        var grids = prepared.Select((p, i) => new ReferenceGrid(10 * (i + 1), p.Height / 16, p.Width / 16)).ToArray();
        var tokens = Tensor.Empty(_device, DType.F32, grids.Sum(g => g.Rows * g.Cols), cfg.PatchedChannels);
        try
        {
            using var weights = _snapshot.OpenWeights("vae");
            using var encoder = new AutoencoderKL(cfg, weights.Loader(_device), withEncoder: true);
            var stats = RequireFlux2Stats(encoder);
            int offset = 0;
            for (int i = 0; i < prepared.Length; i++)
            {
                var p = prepared[i];
                using var pixels = Tensor.FromSpan<float>(_device, p.Data, new Shape(3, p.Height, p.Width));
                trace?.Invoke($"ref.{i}.preprocessed", pixels);
                using var mean = encoder.EncodeMean(pixels);
                int c = mean.Shape[0], h = grids[i].Rows, w = grids[i].Cols;
                using var patched = Tensor.Empty(_device, DType.F32, 4 * c, h, w);
                Latents.Patchify(mean, patched);
                using var normed = Tensor.Empty(_device, DType.F32, 4 * c, h, w);
                stats.Normalize(patched, normed);
                trace?.Invoke($"ref.{i}.vae_latents", normed);
                Latents.Pack(normed, tokens.Slice(offset, h * w));
                offset += h * w;
            }
        }
        catch { tokens.Dispose(); throw; }
        trace?.Invoke("ref.packed", tokens);
        return new Flux2ReferenceImages(tokens, grids, (prepared[0].Width, prepared[0].Height));
    }

    private sealed class Flux2ReferenceImages(Tensor tokens, IReadOnlyList<ReferenceGrid> grids, (int, int) size) : IImageConditioning
    {
        /// <summary>Packed reference tokens [R, 128], every image in order.</summary>
        public Tensor Tokens { get; } = tokens;
        public IReadOnlyList<ReferenceGrid> Grids { get; } = grids;
        public (int Width, int Height)? SuggestedSize { get; } = size;
        public void Dispose() => Tokens.Dispose();
    }

    // ------------------------------------------------------------------ sampler and denoiser

    /// <summary>
    /// klein's schedule: mu = compute_empirical_mu(image tokens, steps) (reference tokens do not count); Euler with the
    /// pipeline's custom sigmas; DPM-Solver++/UniPC with flow sigmas, dynamically shifted by mu; Heun with the static shift.
    /// </summary>
    public ISampler CreateSampler(SamplerKind kind, int steps, LatentLayout layout, SamplerSettings? settings = null) =>
        Samplers.Create(settings ?? SamplerSettings.ForKlein(_snapshot.SchedulerConfig, kind), steps,
            FlowMatchEulerScheduler.ComputeEmpiricalMu(layout.Tokens, steps));

    public Flux2Transformer Transformer
    {
        get
        {
            if (_transformer is null)
            {
                _transformerWeights = _snapshot.OpenWeights("transformer");
                _transformer = new Flux2Transformer(_snapshot.TransformerConfig, _transformerWeights.Loader(_device, _quant, _populateWeights), _quant, _fusedQkv) { SyncPerBlock = _syncPerBlock, TokenMergeRatio = _tokenMergeRatio };
            }
            return _transformer;
        }
    }

    public IReadOnlySet<string> HonouredSwitches { get; } = new HashSet<string> { "rope-cache", "sync-per-block", "populate-weights", "fused-swiglu", "fused-qkv", "tome" };

    public IDenoiser PrepareDenoiser(LatentLayout layout, int textLength, IImageConditioning? images)
    {
        var refs = images as Flux2ReferenceImages;
        if (images is not null && refs is null) throw new ArgumentException("FLUX.2 klein: conditioning images were not encoded by this model");
        return new Flux2Denoiser(Transformer, _device, layout, textLength, refs?.Tokens, refs?.Grids, _ropeCache);
    }

    /// <summary>The transformer for one job's sizes: RoPE tables of [text; image; references], reference tokens appended to every sample.</summary>
    private sealed class Flux2Denoiser : IDenoiser
    {
        private readonly Flux2Transformer _model;
        private readonly LatentLayout _layout;
        private readonly Device _dev;
        private readonly int _textLength;
        private readonly IReadOnlyList<ReferenceGrid>? _grids;
        private readonly bool _cacheRope;
        private Tensor _cos, _sin;
        private readonly Tensor? _refs;

        public Flux2Denoiser(Flux2Transformer model, Device dev, LatentLayout layout, int textLength, Tensor? refs, IReadOnlyList<ReferenceGrid>? grids, bool cacheRope)
        {
            _model = model;
            _layout = layout;
            _refs = refs;
            (_dev, _textLength, _grids, _cacheRope) = (dev, textLength, grids, cacheRope);
            (_cos, _sin) = BuildRope();
        }

        /// <summary>cos, sin [S_text + S_image + S_refs, head_dim] on the device.</summary>
        private (Tensor Cos, Tensor Sin) BuildRope()
        {
            var (cosH, sinH) = _model.RopeTables(_textLength, _layout.Rows, _layout.Cols, _grids);
            int hd = _model.Config.AttentionHeadDim;
            return (Tensor.FromSpan<float>(_dev, cosH, new Shape(cosH.Length / hd, hd)), Tensor.FromSpan<float>(_dev, sinH, new Shape(sinH.Length / hd, hd)));
        }

        public void Predict(Tensor latents, TextConditioning text, float timestep, Tensor output, Action<string, Tensor>? trace = null)
        {
            int batch = latents.Shape[0];
            if (!_cacheRope)
            {
                // rope-cache=off (an experiment): the tables are rebuilt and uploaded on every call, as engines without a cache do.
                _cos.Dispose();
                _sin.Dispose();
                (_cos, _sin) = BuildRope();
            }
            float modelTimestep = timestep / 1000f; // Flux2KleinPipeline passes t / 1000
            Span<float> t = stackalloc float[batch];
            t.Fill(modelTimestep);
            if (_refs is null)
            {
                _model.Forward(latents, text.Embeds, t, _cos, _sin, output, trace, (_layout.Rows, _layout.Cols));
                return;
            }
            // [noisy tokens; reference tokens] per sample, at the same timestep; only the noisy tokens' outputs are kept.
            int s = latents.Shape[1], r = _refs.Shape[0], c = latents.Shape[2];
            using var hidden = Tensor.Empty(latents.Device, DType.F32, batch, s + r, c);
            for (int b = 0; b < batch; b++)
            {
                var row = hidden.Slice(b, 1).Reshape(s + r, c);
                latents.Slice(b, 1).CopyTo(row.Slice(0, s));
                _refs.CopyTo(row.Slice(s, r));
            }
            _model.Forward(hidden, text.Embeds, t, _cos, _sin, output, trace, (_layout.Rows, _layout.Cols));
        }

        public void Dispose()
        {
            _cos.Dispose();
            _sin.Dispose();
        }
    }

    /// <summary>Drops the transformer and unmaps its weights.</summary>
    public void ReleaseDenoiser()
    {
        _transformer?.Dispose();
        _transformer = null;
        _transformerWeights?.Dispose();
        _transformerWeights = null;
    }

    // ------------------------------------------------------------------ decode

    public AutoencoderKL Vae => _vae ??= new AutoencoderKL(_snapshot.VaeConfig, _snapshot.Vae.Loader(_device), withEncoder: false);

    /// <summary>klein's latents are the FLUX.2 kind: the snapshot check guarantees an AutoencoderKLFlux2 with its statistics.</summary>
    private static Flux2LatentStats RequireFlux2Stats(AutoencoderKL vae) =>
        vae.Flux2Stats ?? throw new InvalidOperationException($"the klein VAE is {vae.Config.Kind}; expected AutoencoderKLFlux2 with batch-norm statistics");

    /// <summary>Packed latents [B, h·w, 128] → de-normalised, unpatchified [B, 32, 2h, 2w] → decoded images [B, 3, 16h, 16w].</summary>
    public Tensor Decode(Tensor latents, LatentLayout layout, Action<string, Tensor>? trace = null)
    {
        var cfg = _snapshot.VaeConfig;
        int batch = latents.Shape[0], c = layout.Channels, h = layout.Rows, w = layout.Cols;
        var vae = Vae;
        var stats = RequireFlux2Stats(vae);
        using var latent = Tensor.Empty(_device, DType.F32, batch, cfg.LatentChannels, 2 * h, 2 * w);
        using var chw = Tensor.Empty(_device, DType.F32, c, h, w);
        using var denorm = Tensor.Empty(_device, DType.F32, c, h, w);
        for (int b = 0; b < batch; b++)
        {
            Latents.Unpack(latents.Slice(b, 1).Reshape(h * w, c), chw);
            stats.Denormalize(chw, denorm);
            Latents.Unpatchify(denorm, latent.Slice(b, 1).Reshape(cfg.LatentChannels, 2 * h, 2 * w));
        }
        trace?.Invoke("latents_for_vae", latent);
        var images = Tensor.Empty(_device, DType.F32, batch, 3, layout.Height, layout.Width);
        try
        {
            // The VAE runs one image at a time: its convolutions are already large GEMMs at these sizes.
            for (int b = 0; b < batch; b++)
            {
                using var one = vae.Decode(latent.Slice(b, 1).Reshape(cfg.LatentChannels, 2 * h, 2 * w), batch == 1 ? trace : null);
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
