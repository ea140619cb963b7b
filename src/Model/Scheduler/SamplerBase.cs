namespace PureFlux.Model.Scheduler;

/// <summary>
/// What every sampler shares: the host schedule, the call counter (calls in order 0..Calls−1), argument checks and
/// the lazily allocated device buffers (same shape and device as the sample, freed on Dispose).
/// </summary>
public abstract class SamplerBase : ISampler
{
    private readonly double[] _timesteps;
    private readonly float[] _sigmas;
    private readonly List<Tensor> _buffers = [];
    private Device? _device;
    private Shape? _shape;
    private bool _disposed;

    private protected SamplerBase(string name, int steps, int order, double[] timesteps, float[] sigmas)
    {
        if (sigmas.Length != timesteps.Length + 1)
            throw new ArgumentException($"{name}: {sigmas.Length} sigmas for {timesteps.Length} calls; expected calls + 1");
        Name = name;
        Steps = steps;
        Order = order;
        _timesteps = timesteps;
        _sigmas = sigmas;
    }

    public string Name { get; }
    public int Steps { get; }
    public int Calls => _timesteps.Length;
    public int Order { get; }
    public IReadOnlyList<double> Timesteps => _timesteps;
    /// <summary>A copy of the sigmas (Calls + 1 values).</summary>
    public float[] Sigmas => (float[])_sigmas.Clone();
    /// <summary>The next call <see cref="Step"/> accepts.</summary>
    public int NextCall { get; private set; }

    public float Sigma(int call) => _sigmas[CheckCall(call)];
    public float ModelTimestep(int call) => (float)_timesteps[CheckCall(call)] / 1000f;
    public float Timestep(int call) => (float)_timesteps[CheckCall(call)];
    public virtual int StepOf(int call) => CheckCall(call);

    /// <summary>σ by index into the full sigma list (Calls + 1 values).</summary>
    private protected float S(int index) => _sigmas[index];

    public void Step(int call, Tensor modelOutput, Tensor sample)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(modelOutput);
        ArgumentNullException.ThrowIfNull(sample);
        string op = $"{Name} sampler Step";
        CheckCall(call);
        if (call != NextCall)
            throw new InvalidOperationException($"{op}: call {call} out of order; expected call {NextCall} (calls run 0..{Calls - 1}; Reset() starts over)");
        Check.DType(op, "modelOutput", modelOutput, DType.F32);
        Check.DType(op, "sample", sample, DType.F32);
        Check.SameShape(op, "modelOutput", modelOutput, "sample", sample);
        Check.SameDevice(op, modelOutput, sample);
        Check.That(!(modelOutput.Buffer == sample.Buffer && modelOutput.ByteOffset < sample.ByteOffset + sample.ByteCount
                     && sample.ByteOffset < modelOutput.ByteOffset + modelOutput.ByteCount), op, "modelOutput overlaps sample");
        if (_device is not null && (_device != sample.Device || !_shape!.Equals(sample.Shape)))
        {
            if (call != 0)
                throw new ArgumentException($"{op}: sample {sample.Shape} on {sample.Device.Id} differs from the earlier calls' {_shape} on {_device.Id}");
            FreeBuffers();
        }
        _device = sample.Device;
        _shape = sample.Shape;
        StepCore(call, modelOutput, sample);
        NextCall = call + 1;
    }

    public void Reset()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        NextCall = 0;
        ResetCore();
    }

    /// <summary>
    /// A fresh sampler that runs calls <paramref name="firstCall"/>..Calls−1 of this schedule: its call 0 is this one's
    /// <paramref name="firstCall"/>, its history empty — diffusers' set_timesteps then set_begin_index(firstCall), which
    /// image-to-image uses. Multistep solvers therefore start first order (DPM-Solver++'s lower_order_nums = 0, UniPC
    /// without a corrector: no last_sample), Heun with a predictor (firstCall must be a step's first call).
    /// </summary>
    /// <param name="steps">The user steps the tail covers (N − t_start).</param>
    internal SamplerBase Tail(int firstCall, int steps)
    {
        if ((uint)firstCall >= (uint)Calls) throw new ArgumentOutOfRangeException(nameof(firstCall), firstCall, $"{Name}: the first call must be in [0, {Calls})");
        return WithSchedule(steps, _timesteps[firstCall..], _sigmas[firstCall..]);
    }

    /// <summary>A new sampler of this kind and settings on the given schedule (timesteps [calls], sigmas [calls + 1]).</summary>
    private protected abstract SamplerBase WithSchedule(int steps, double[] timesteps, float[] sigmas);

    /// <summary>One call; arguments are checked, <paramref name="call"/> is <see cref="NextCall"/>.</summary>
    private protected abstract void StepCore(int call, Tensor v, Tensor x);

    /// <summary>Clears the multistep state (buffers stay allocated).</summary>
    private protected abstract void ResetCore();

    /// <summary>A device buffer shaped like the sample, allocated on first use; contents undefined until written.</summary>
    private protected Tensor Buffer(ref Tensor? slot, string name)
    {
        if (slot is null)
        {
            slot = Tensor.Empty(_device!, DType.F32, _shape!, $"{Name}.{name}");
            _buffers.Add(slot);
        }
        return slot;
    }

    /// <summary>Drops every buffer (the subclass's slots must be nulled by <see cref="ForgetBuffers"/>).</summary>
    private void FreeBuffers()
    {
        foreach (var t in _buffers) t.Dispose();
        _buffers.Clear();
        ForgetBuffers();
        ResetCore();
    }

    /// <summary>Sets every buffer slot to null (they were freed).</summary>
    private protected abstract void ForgetBuffers();

    private int CheckCall(int call) =>
        (uint)call < (uint)Calls ? call : throw new ArgumentOutOfRangeException(nameof(call), call, $"{Name}: call must be in [0, {Calls})");

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _buffers) t.Dispose();
        _buffers.Clear();
        ForgetBuffers();
        GC.SuppressFinalize(this);
    }

    /// <summary>torch's float32 expm1 (correctly rounded from a double evaluation; series near 0). expm1(−∞) = −1.</summary>
    private protected static float Expm1(float x)
    {
        double d = x;
        return Math.Abs(d) < 1e-5 ? (float)(d + d * d / 2 + d * d * d / 6) : (float)(Math.Exp(d) - 1.0);
    }

    /// <summary>Flow λ(σ) = log(α) − log(σ) with α = 1 − σ, in float32 (+∞ for σ = 0).</summary>
    private protected static float Lambda(float sigma) => MathF.Log(1f - sigma) - MathF.Log(sigma);
}
