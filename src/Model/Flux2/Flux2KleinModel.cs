using PureFlux.Model.Config;
using PureFlux.Model.Flux2;
using PureFlux.Model.Layers;
using PureFlux.Model.Qwen3;
using PureFlux.Model.Sampling;
using PureFlux.Model.Scheduler;
using PureFlux.Model.Snapshot;
using PureFlux.Model.Text;
using PureFlux.Model.Vae;

namespace PureFlux.Model.Pipeline;

/// <summary>What to generate. Width and height must be multiples of 16 (VAE ×8, then 2×2 latent patches).</summary>
public sealed record GenerateRequest(string Prompt, int Width = 1024, int Height = 1024, int Steps = 4, ulong Seed = 42)
{
    public void Validate()
    {
        if (Width <= 0 || Height <= 0 || Width % 16 != 0 || Height % 16 != 0)
            throw new ArgumentException($"image size {Width}x{Height}: width and height must be positive multiples of 16");
        if (Steps < 1 || Steps > 1000) throw new ArgumentException($"steps {Steps}: expected 1..1000");
        if (string.IsNullOrWhiteSpace(Prompt)) throw new ArgumentException("the prompt is empty");
    }
}

/// <summary>An 8-bit RGB image [height, width, 3] and the prompt's tokenizer warning, if any.</summary>
public sealed record GeneratedImage(byte[] Rgb, int Width, int Height, string? Warning);

/// <summary>
/// FLUX.2 [klein] text-to-image: Qwen3 prompt embedding → FlowMatch Euler denoising with the FLUX.2
/// transformer → latent batch-norm de-normalisation and unpatchify → VAE decode. Components are loaded
/// when first needed and the text encoder is released after encoding, so peak memory stays near the
/// largest single component.
/// </summary>
public sealed class Flux2KleinPipeline : IDisposable
{
    private readonly ModelSnapshot _snapshot;
    private readonly Device _device;
    private readonly QuantMode _quant;
    private readonly Dictionary<string, float[]> _promptCache = new();
    private Flux2Transformer? _transformer;
    private WeightSource? _transformerWeights;
    private Flux2Vae? _vae;
    private Qwen3Tokenizer? _tokenizer;

    public Flux2KleinPipeline(ModelSnapshot snapshot, Device device, QuantMode quant = QuantMode.None)
    {
        _snapshot = snapshot;
        _device = device;
        _quant = quant;
        var stored = QuantizedSnapshot.StoredMode(snapshot);
        if (stored != QuantMode.None && quant != QuantMode.None && quant != stored)
            throw new ArgumentException($"{snapshot.Directory}: weights are stored as {stored.ToString().ToLowerInvariant()} (pureflux quantize); " +
                $"--quant {quant.ToString().ToLowerInvariant()} needs the BF16 snapshot (use --quant none or {stored.ToString().ToLowerInvariant()} here)");
        int hidden = snapshot.TextEncoderConfig.HiddenSize;
        TextLayers = DefaultTextLayers(snapshot.TextEncoderConfig.NumHiddenLayers);
        if (snapshot.TransformerConfig.JointAttentionDim != TextLayers.Length * hidden)
            throw new ArgumentException($"{snapshot.Directory}: transformer joint_attention_dim {snapshot.TransformerConfig.JointAttentionDim} " +
                $"does not match {TextLayers.Length} text-encoder layers × hidden {hidden}");
    }

    public Device Device => _device;
    public ModelSnapshot Snapshot => _snapshot;

    /// <summary>Text-encoder layers whose outputs are stacked: klein uses (9, 18, 27) of 36, i.e. L/4, L/2, 3L/4.</summary>
    public int[] TextLayers { get; }

    public static int[] DefaultTextLayers(int layers) => [layers / 4, layers / 2, 3 * layers / 4];

    public Qwen3Tokenizer Tokenizer => _tokenizer ??= _snapshot.LoadTokenizer();

    /// <summary>
    /// Encoded prompts on disk (null: memory only). A repeated prompt then skips the text encoder across processes too.
    /// </summary>
    public PromptCache? DiskCache { get; init; }

    /// <summary>A warning from the last <see cref="EncodePrompt"/> (e.g. the disk cache was not writable), or null.</summary>
    public string? CacheWarning { get; private set; }

    /// <summary>Whether <see cref="EncodePrompt"/> would be answered from the memory or disk cache.</summary>
    public bool IsPromptCached(int[] ids, int[] mask) =>
        _promptCache.ContainsKey(MemoryKey(ids, mask))
        || (DiskCache is { } disk && File.Exists(disk.PathOf(DiskKey(ids, mask))));

    private static string MemoryKey(int[] ids, int[] mask) => string.Join(',', ids) + "|" + string.Join("", mask);

    private string? _encoderIdentity;

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
        var embeds = EncodeWith(weights, ids, mask, trace);
        var host = embeds.ToFloatArray();
        _promptCache[key] = host;
        if (diskKey is not null && !DiskCache!.Store(diskKey, host, s, dim)) CacheWarning = DiskCache.LastWriteError;
        return embeds;
    }

    private Tensor EncodeWith(WeightSource weights, int[] ids, int[] mask, Action<string, Tensor>? trace)
    {
        using var encoder = new Qwen3TextEncoder(_snapshot.TextEncoderConfig, weights.Loader(_device), TextLayers, _quant);
        return encoder.Encode(_device, ids, mask.Select(m => (byte)m).ToArray(), trace);
    }

    public Flux2Transformer Transformer
    {
        get
        {
            if (_transformer is null)
            {
                _transformerWeights = _snapshot.OpenWeights("transformer");
                _transformer = new Flux2Transformer(_snapshot.TransformerConfig, _transformerWeights.Loader(_device), _quant);
            }
            return _transformer;
        }
    }

    /// <summary>Drops the transformer and unmaps its weights.</summary>
    public void ReleaseTransformer()
    {
        _transformer?.Dispose();
        _transformer = null;
        _transformerWeights?.Dispose();
        _transformerWeights = null;
    }

    public Flux2Vae Vae => _vae ??= new Flux2Vae(_snapshot.VaeConfig, _snapshot.Vae.Loader(_device), withEncoder: false);

    /// <summary>Seeded initial noise [128, h, w] packed to [h·w, 128] (h, w = size / 16).</summary>
    public Tensor InitialLatents(int width, int height, ulong seed)
    {
        var (h, w) = FlowMatchEulerScheduler.PackedLatentSize(width, height);
        int c = _snapshot.VaeConfig.PatchedChannels;
        var noise = new float[c * h * w];
        new GaussianNoise(seed).Fill(noise);
        using var chw = Tensor.FromSpan<float>(_device, noise, new Shape(c, h, w));
        var packed = Tensor.Empty(_device, DType.F32, h * w, c);
        Latents.Pack(chw, packed);
        return packed;
    }

    /// <summary>
    /// Runs every denoising step in place on packed latents [h·w, 128] with prompt_embeds [S_txt, joint_dim].
    /// <paramref name="onStep"/> sees (step, noise prediction, latents after the step).
    /// </summary>
    public void Denoise(Tensor latents, Tensor embeds, FlowMatchEulerScheduler scheduler, int latentH, int latentW,
        Action<int, Tensor, Tensor>? onStep = null, Func<int, IDisposable?>? stepScope = null)
    {
        var model = Transformer;
        int textLen = embeds.Shape[0];
        var (cosH, sinH) = model.RopeTables(textLen, latentH, latentW);
        int headDim = model.Config.AttentionHeadDim;
        using var cos = Tensor.FromSpan<float>(_device, cosH, new Shape(cosH.Length / headDim, headDim));
        using var sin = Tensor.FromSpan<float>(_device, sinH, new Shape(sinH.Length / headDim, headDim));
        using var noisePred = Tensor.Empty(_device, DType.F32, latents.Shape);
        for (int i = 0; i < scheduler.Steps; i++)
        {
            using (stepScope?.Invoke(i))
            {
                model.Forward(latents, embeds, scheduler.TransformerTimestep(i), cos, sin, noisePred);
                Elementwise.Axpy(scheduler.Dt(i), noisePred, latents);
            }
            onStep?.Invoke(i, noisePred, latents);
        }
    }

    /// <summary>Packed latents [h·w, 128] → de-normalised, unpatchified [32, 2h, 2w] → decoded image [3, 16h, 16w].</summary>
    public Tensor DecodeLatents(Tensor packed, int latentH, int latentW, Action<string, Tensor>? trace = null)
    {
        var cfg = _snapshot.VaeConfig;
        int c = cfg.PatchedChannels;
        var vae = Vae;
        using var chw = Tensor.Empty(_device, DType.F32, c, latentH, latentW);
        Latents.Unpack(packed, chw);
        using var denorm = Tensor.Empty(_device, DType.F32, c, latentH, latentW);
        BatchNorm.Denormalize(chw, vae.BatchNormMean, vae.BatchNormVar, denorm, (float)cfg.BatchNormEps);
        using var latent = Tensor.Empty(_device, DType.F32, cfg.LatentChannels, 2 * latentH, 2 * latentW);
        Latents.Unpatchify(denorm, latent);
        trace?.Invoke("latents_for_vae", latent);
        return vae.Decode(latent);
    }

    /// <summary>The whole job. <paramref name="timer"/> gets stages "text encoding" (or "text encoding (cached)"), "load transformer", "step i", "vae".</summary>
    public GeneratedImage Generate(GenerateRequest request, StageTimer? timer = null, Action<int, int>? progress = null)
    {
        request.Validate();
        var tokens = Tokenizer.EncodeForKlein(request.Prompt);
        string encodeStage = IsPromptCached(tokens.Ids, tokens.AttentionMask) ? "text encoding (cached)" : "text encoding";
        using var embeds = Timed(timer, encodeStage, () => EncodePrompt(tokens.Ids, tokens.AttentionMask));
        _device.Pool.Trim(); // the encoder's activations are not needed again

        var scheduler = FlowMatchEulerScheduler.ForKlein(_snapshot.SchedulerConfig, request.Steps, request.Width, request.Height);
        var (h, w) = FlowMatchEulerScheduler.PackedLatentSize(request.Width, request.Height);
        using var latents = InitialLatents(request.Width, request.Height, request.Seed);
        Timed(timer, "load transformer", () => Transformer);
        Denoise(latents, embeds, scheduler, h, w,
            onStep: (i, _, _) => progress?.Invoke(i + 1, request.Steps),
            stepScope: i => timer?.Stage($"step {i + 1}"));
        ReleaseTransformer();
        _device.Pool.Trim();

        using var image = Timed(timer, "vae", () => DecodeLatents(latents, h, w));
        return new GeneratedImage(ToRgb(image.ToFloatArray(), request.Width, request.Height), request.Width, request.Height,
            tokens.Warning is null ? CacheWarning : CacheWarning is null ? tokens.Warning : tokens.Warning + "; " + CacheWarning);
    }

    private static T Timed<T>(StageTimer? timer, string stage, Func<T> work)
    {
        using (timer?.Stage(stage)) return work();
    }

    /// <summary>Decoded [3, H, W] in about [-1, 1] → RGB bytes [H, W, 3] as diffusers does: round(clamp(x/2 + 0.5, 0, 1)·255).</summary>
    public static byte[] ToRgb(float[] chw, int width, int height)
    {
        int plane = width * height;
        if (chw.Length != 3 * plane) throw new ArgumentException($"decoded image has {chw.Length} values; expected 3×{height}×{width}");
        var rgb = new byte[3 * plane];
        for (int p = 0; p < plane; p++)
            for (int c = 0; c < 3; c++)
            {
                float v = Math.Clamp(chw[c * plane + p] / 2f + 0.5f, 0f, 1f);
                rgb[3 * p + c] = (byte)Math.Round(v * 255f);
            }
        return rgb;
    }

    public void Dispose()
    {
        ReleaseTransformer();
        _vae?.Dispose();
    }
}
