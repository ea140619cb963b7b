using PureFlux.Model.Config;
using PureFlux.Model.Engine;
using PureFlux.Model.Guidance;
using PureFlux.Model.Image;
using PureFlux.Model.Layers;
using PureFlux.Model.Pipeline;
using PureFlux.Model.Qwen3;
using PureFlux.Model.Sampling;
using PureFlux.Model.Scheduler;
using PureFlux.Model.Snapshot;
using PureFlux.Model.Text;
using PureFlux.Model.Vae;

namespace PureFlux.Model.ZImage;

/// <summary>The Z-Image family (Z-Image-Turbo and the undistilled base): diffusers' ZImagePipeline.</summary>
public sealed class ZImageFamily : IModelFamily, IQuantizableFamily
{
    /// <summary>The transformer (FP32 or BF16 as stored) and the encoder layers up to hidden_states[−2] as int8/int4.</summary>
    public void Quantize(string source, QuantMode mode, string destination, Action<string>? log = null)
    {
        using var s = ZImageSnapshot.Open(source);
        using var cpu = new CpuDevice(1);
        QuantizedSnapshot.Write(s.Directory, QuantizedSnapshot.StoredMode(s.Transformer),
        [
            new QuantizableComponent("transformer", "diffusion_pytorch_model.safetensors", () => s.OpenWeights("transformer"),
                (load, _) => new ZImageTransformer(s.TransformerConfig, load, cpu, mode)),
            new QuantizableComponent("text_encoder", "model.safetensors", () => s.OpenWeights("text_encoder"),
                (load, w) => new Qwen3TextEncoder(s.TextEncoderConfig, load.WithOptionalPrefix(w, "model."), [s.TextLayer], mode)),
        ], mode, destination, log);
    }

    public string Name => "z-image";
    public IReadOnlyList<string> PipelineClasses { get; } = [ZImageSnapshot.PipelineClass];

    public IDiffusionModel Open(string directory, Device device, ModelOptions options)
    {
        var snapshot = ZImageSnapshot.Open(directory);
        try { return new ZImageModel(snapshot, device, options, ownsSnapshot: true); }
        catch { snapshot.Dispose(); throw; }
    }
}

/// <summary>
/// Z-Image on the engine: Qwen3 prompt embedding (chat template with thinking on, hidden_states[−2], padding dropped:
/// captions of their own lengths) → 16-channel latents as 2×2 patch tokens [S, 64] with the channel fastest → the Z-Image
/// transformer, which sees t = (1000 − timestep) / 1000 and whose output is negated → AutoencoderKL decode of
/// z / scaling_factor + shift_factor. CFG is c + g·(c − u), on when g &gt; 0 (the Turbo recipe uses g = 0).
/// </summary>
public sealed class ZImageModel : IDiffusionModel, Bench.IStageFlopModel
{
    private static readonly IModelFamily FamilyInstance = new ZImageFamily();
    /// <summary>The pipeline's max_sequence_length: prompts are cut at 512 tokens (template included).</summary>
    public const int MaxTextTokens = 512;
    private readonly ZImageSnapshot _snapshot;
    private readonly bool _ownsSnapshot;
    private readonly Device _device;
    private readonly QuantMode _quant;
    private readonly bool _ropeCache;
    private readonly bool _syncPerBlock;
    private readonly bool _populateWeights;
    private readonly double? _tokenMergeRatio;
    private readonly bool _bf16Transformer;
    private readonly Dictionary<string, float[]> _promptCache = new();
    private ZImageTransformer? _transformer;
    private WeightSource? _transformerWeights;
    private AutoencoderKL? _vae;
    private Qwen3Tokenizer? _tokenizer;
    private string? _encoderIdentity;

    public ZImageModel(ZImageSnapshot snapshot, Device device, ModelOptions? options = null, bool ownsSnapshot = false)
    {
        options ??= new ModelOptions();
        options.RefuseKontextOptions("Z-Image");
        _snapshot = snapshot;
        _ownsSnapshot = ownsSnapshot;
        _device = device;
        _quant = options.Quant;
        _ropeCache = options.RopeCache;
        _syncPerBlock = options.SyncPerBlock;
        _populateWeights = options.PopulateWeights;
        _tokenMergeRatio = options.TokenMergeRatio;
        DiskCache = options.PromptCache;
        if (options.TextLayers is { } layers && !(layers.Length == 1 && layers[0] == snapshot.TextLayer))
            throw new ArgumentException($"--text-layers {string.Join(',', layers)}: Z-Image conditions on one hidden state, hidden_states[-2] = layer {snapshot.TextLayer} of this encoder");
        if (options.GuidanceDistilled is not null)
            throw new ArgumentException("--guidance-distilled applies to FLUX.2 klein snapshots; Z-Image has no such switch");
        // An FP32 transformer (the real Turbo repo ships one) that would not fit as stored is held as BF16.
        _bf16Transformer = options.WeightsBf16 ?? ShouldConvertToBf16(snapshot, device);
        Defaults = new ModelDefaults(Steps: 8, Guidance: 0f, SamplerKind.Euler, GuidanceDistilled: false, CfgFormula: GuidanceFormula.CondPlus);
    }

    private static bool ShouldConvertToBf16(ZImageSnapshot s, Device device)
    {
        double f32 = s.Transformer.Names.Where(n => s.Transformer.Entry(n).DType == DType.F32).Sum(n => (double)s.Transformer.Entry(n).Bytes);
        if (f32 < 1e9) return false;
        var (available, _) = MemoryBudget.Available(device);
        return f32 > 0.6 * available;
    }

    public IModelFamily Family => FamilyInstance;
    public Device Device => _device;
    public ZImageSnapshot Snapshot => _snapshot;
    public ModelDefaults Defaults { get; }
    public QuantMode Quant => _quant == QuantMode.None ? StoredQuant : _quant;
    /// <summary>Whether FP32 transformer matrices are converted to BF16 as they load.</summary>
    public bool TransformerAsBf16 => _bf16Transformer;
    private QuantMode StoredQuant => QuantizedSnapshot.StoredMode(_snapshot.Transformer);

    public Qwen3Tokenizer Tokenizer => _tokenizer ??= _snapshot.LoadTokenizer();
    public PromptCache? DiskCache { get; init; }

    // ------------------------------------------------------------------ text

    /// <summary>Prompts → [B, T, cap_feat_dim] with mask [B, T]: each prompt's own token count, zero rows after it.</summary>
    public TextConditioning EncodeText(IReadOnlyList<string> prompts, StageTimer? timer)
    {
        var tokens = prompts.Select(p => Tokenizer.EncodeForZImage(p, MaxTextTokens)).ToArray();
        bool cached = tokens.All(t => _promptCache.ContainsKey(MemoryKey(t.Ids)) || (DiskCache is { } d && File.Exists(d.PathOf(DiskKey(t.Ids)))));
        int dim = _snapshot.TextEncoderConfig.HiddenSize, len = tokens.Max(t => t.Length);
        var embeds = Tensor.Zeros(_device, DType.F32, new Shape(prompts.Count, len, dim));
        var maskH = new float[prompts.Count * len];
        var warnings = new List<string>();
        try
        {
            using (timer?.Stage(cached ? "text encoding (cached)" : "text encoding"))
                for (int i = 0; i < tokens.Length; i++)
                {
                    using var e = EncodePrompt(tokens[i].Ids, out var cacheWarning);
                    e.CopyTo(embeds.Slice(i, 1).Reshape(len, dim).Slice(0, tokens[i].Length));
                    Array.Fill(maskH, 1f, i * len, tokens[i].Length);
                    if (tokens[i].Warning is { } w) warnings.Add(prompts.Count > 1 ? $"prompt {i + 1}: {w}" : w);
                    if (cacheWarning is not null) warnings.Add(cacheWarning);
                }
        }
        catch { embeds.Dispose(); throw; }
        var mask = Tensor.FromSpan<float>(_device, maskH, new Shape(prompts.Count, len));
        return new TextConditioning(embeds, mask, warning: warnings.Count == 0 ? null : string.Join("; ", warnings.Distinct()));
    }

    private static string MemoryKey(int[] ids) => string.Join(',', ids);

    private string DiskKey(int[] ids) =>
        PromptCache.Key(_encoderIdentity ??= PromptCache.EncoderIdentity(_snapshot.Directory, _snapshot.TextEncoder, [_snapshot.TextLayer], _quant, family: "z-image"),
            ids, Enumerable.Repeat(1, ids.Length).ToArray());

    /// <summary>Real token ids [S] → prompt_embeds [S, hidden] = hidden_states[−2] (only the layers up to it run).</summary>
    public Tensor EncodePrompt(int[] ids, out string? cacheWarning, Action<string, Tensor>? trace = null)
    {
        cacheWarning = null;
        int s = ids.Length, dim = _snapshot.TextEncoderConfig.HiddenSize;
        string key = MemoryKey(ids);
        if (trace is null && _promptCache.TryGetValue(key, out var hit)) return Tensor.FromSpan<float>(_device, hit, new Shape(s, dim));
        string? diskKey = trace is null && DiskCache is not null ? DiskKey(ids) : null;
        if (diskKey is not null && DiskCache!.TryLoad(diskKey, s, dim) is { } stored)
        {
            _promptCache[key] = stored;
            return Tensor.FromSpan<float>(_device, stored, new Shape(s, dim));
        }
        using var weights = _snapshot.OpenWeights("text_encoder");
        using var encoder = new Qwen3TextEncoder(_snapshot.TextEncoderConfig, ZImageSnapshot.TextEncoderLoader(weights, _device, _quant, _populateWeights), [_snapshot.TextLayer], _quant);
        var embeds = encoder.Encode(_device, ids, Enumerable.Repeat((byte)1, s).ToArray(), trace);
        var host = embeds.ToFloatArray();
        _promptCache[key] = host;
        if (diskKey is not null && !DiskCache!.Store(diskKey, host, s, dim)) cacheWarning = DiskCache.LastWriteError;
        return embeds;
    }

    /// <summary>Stage FLOPs for bench e2e: the prompt's real tokens through L − 1 encoder layers, one transformer pass, the VAE decoder.</summary>
    public Bench.StageFlops Flops(string prompt, int width, int height)
    {
        var tokens = Tokenizer.EncodeForZImage(prompt, MaxTextTokens);
        int rows = height / 16, cols = width / 16;
        return new Bench.StageFlops(tokens.Length, rows * cols,
            Bench.FlopModel.TextEncoder(_snapshot.TextEncoderConfig, tokens.Length, _snapshot.TextLayer),
            Bench.FlopModel.ZImageStep(_snapshot.TransformerConfig, tokens.Length, rows * cols),
            Bench.FlopModel.VaeDecode(_snapshot.VaeConfig, 2 * rows, 2 * cols));
    }

    // ------------------------------------------------------------------ latents

    public MemoryEstimate EstimateMemory(GenerationJob job, bool cfg) => ZImageMemoryEstimate.Estimate(this, job, cfg);

    public LatentLayout Layout(int width, int height)
    {
        if (width <= 0 || height <= 0 || width % 16 != 0 || height % 16 != 0)
            throw new ArgumentException($"image size {width}x{height}: width and height must be positive multiples of 16");
        int rows = height / 16, cols = width / 16;
        var axes = _snapshot.TransformerConfig.AxesLens;
        // RoPE positions index tables of axes_lens entries: the token grid must fit them (8192 px per side for Turbo).
        if (rows > axes[1] || cols > axes[2])
            throw new ArgumentException($"image size {width}x{height}: a {rows}x{cols} token grid exceeds the model's position range {axes[1]}x{axes[2]} (transformer/config.json axes_lens); at most {16 * axes[2]}x{16 * axes[1]}");
        long values = (long)rows * cols * _snapshot.TransformerConfig.PatchChannels;
        if (values > int.MaxValue) throw new ArgumentException($"image size {width}x{height}: {(long)rows * cols} latent tokens is more than one buffer can hold");
        return new LatentLayout(width, height, rows, cols, _snapshot.TransformerConfig.PatchChannels);
    }

    private int LatentChannels => _snapshot.VaeConfig.LatentChannels;

    /// <summary>Seeded noise: sample b is <see cref="GaussianNoise"/>(seed + b) filling [16, H/8, W/8] (NCHW, as diffusers draws it), then patch tokens.</summary>
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
            Latents.PatchTokens(chw, packed.Slice(b, 1).Reshape(layout.Tokens, layout.Channels));
        }
        return packed;
    }

    /// <summary>noise [B, 16, H/8, W/8] → patch tokens [B, S, 64].</summary>
    public Tensor PackNoise(LatentLayout layout, Tensor noise)
    {
        int c = LatentChannels;
        if (noise.Rank != 4 || noise.Shape[1] != c || noise.Shape[2] != 2 * layout.Rows || noise.Shape[3] != 2 * layout.Cols)
            throw new ArgumentException($"noise has shape {noise.Shape}; expected [B, {c}, {2 * layout.Rows}, {2 * layout.Cols}] for {layout.Width}x{layout.Height}");
        int batch = noise.Shape[0];
        var packed = Tensor.Empty(_device, DType.F32, batch, layout.Tokens, layout.Channels);
        for (int b = 0; b < batch; b++)
            Latents.PatchTokens(noise.Slice(b, 1).Reshape(c, 2 * layout.Rows, 2 * layout.Cols), packed.Slice(b, 1).Reshape(layout.Tokens, layout.Channels));
        return packed;
    }

    public string? ReferenceImagesUnsupported => "Z-Image text-to-image takes no reference images (--ref-image); use a FLUX.2 klein snapshot for image conditioning";

    public IImageConditioning EncodeImages(IReadOnlyList<RgbImage> images, StageTimer? timer, Action<string, Tensor>? trace = null) =>
        throw new NotSupportedException(ReferenceImagesUnsupported);

    // ------------------------------------------------------------------ sampler and denoiser

    /// <summary>The scheduler config's own sampler (static shift 3, as ZImagePipeline: its mu is ignored); the others with the same shift.</summary>
    public ISampler CreateSampler(SamplerKind kind, int steps, LatentLayout layout, SamplerSettings? settings = null)
    {
        var sc = _snapshot.SchedulerConfig;
        settings ??= kind switch
        {
            SamplerKind.Euler => SamplerSettings.FromSchedulerConfig(sc) with { EulerSigmas = EulerSigmasMode.TorchFloat32Linspace },
            _ => new SamplerSettings { Kind = kind, NumTrainTimesteps = sc.NumTrainTimesteps, Shift = sc.Shift, UseDynamicShifting = sc.UseDynamicShifting && kind != SamplerKind.Heun, TimeShiftType = sc.TimeShiftType },
        };
        return Samplers.Create(settings, steps, settings.UseDynamicShifting ? FlowMatchEulerScheduler.CalculateShift(layout.Tokens, sc) : null);
    }

    public ZImageTransformer Transformer
    {
        get
        {
            if (_transformer is null)
            {
                _transformerWeights = _snapshot.OpenWeights("transformer");
                var load = _transformerWeights.Loader(_device, _quant, _populateWeights);
                if (_bf16Transformer) load = load.ConvertingF32MatricesToBf16(_device);
                _transformer = new ZImageTransformer(_snapshot.TransformerConfig, load, _device, _quant) { CacheRope = _ropeCache, SyncPerBlock = _syncPerBlock, TokenMergeRatio = _tokenMergeRatio };
            }
            return _transformer;
        }
    }

    public IDenoiser PrepareDenoiser(LatentLayout layout, int textLength, IImageConditioning? images)
    {
        if (images is not null) throw new ArgumentException("Z-Image: conditioning images are not supported");
        return new ZImageDenoiser(Transformer, layout);
    }

    /// <summary>The transformer with the pipeline's conventions: t = (1000 − timestep)/1000 and the output negated.</summary>
    public IReadOnlySet<string> HonouredSwitches { get; } = new HashSet<string> { "rope-cache", "sync-per-block", "populate-weights", "fused-swiglu", "tome" };

    private sealed class ZImageDenoiser(ZImageTransformer model, LatentLayout layout) : IDenoiser
    {
        public void Predict(Tensor latents, TextConditioning text, float timestep, Tensor output, Action<string, Tensor>? trace = null)
        {
            int batch = latents.Shape[0];
            var lengths = CaptionLengths(text);
            Span<float> t = stackalloc float[batch];
            t.Fill((1000f - timestep) / 1000f);
            model.Forward(latents, layout.Rows, layout.Cols, text.Embeds, lengths, t, output, trace);
            Elementwise.Scale(output, -1f, output);
        }

        public void Dispose() { }
    }

    /// <summary>Each row's caption length from the conditioning's mask (all rows when there is none).</summary>
    internal static int[] CaptionLengths(TextConditioning text)
    {
        int batch = text.Batch, len = text.Length;
        if (text.Mask is null) return Enumerable.Repeat(len, batch).ToArray();
        var m = text.Mask.ToFloatArray();
        var lengths = new int[batch];
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < len; i++)
                if (m[b * len + i] != 0) lengths[b] = i + 1;
        return lengths;
    }

    public void ReleaseDenoiser()
    {
        _transformer?.Dispose();
        _transformer = null;
        _transformerWeights?.Dispose();
        _transformerWeights = null;
    }

    // ------------------------------------------------------------------ decode

    public AutoencoderKL Vae => _vae ??= new AutoencoderKL(_snapshot.VaeConfig, _snapshot.Vae.Loader(_device), withEncoder: false);

    /// <summary>Patch tokens [B, S, 64] → latents [B, 16, H/8, W/8] → z / scale + shift → decoded images [B, 3, H, W].</summary>
    public Tensor Decode(Tensor latents, LatentLayout layout, Action<string, Tensor>? trace = null)
    {
        int batch = latents.Shape[0], c = LatentChannels, h = 2 * layout.Rows, w = 2 * layout.Cols;
        var vae = Vae;
        using var latent = Tensor.Empty(_device, DType.F32, batch, c, h, w);
        for (int b = 0; b < batch; b++)
            Latents.UnpatchTokens(latents.Slice(b, 1).Reshape(layout.Tokens, layout.Channels), latent.Slice(b, 1).Reshape(c, h, w));
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
