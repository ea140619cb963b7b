namespace PureFlux.Model.Scheduler;

/// <summary>
/// A sampler over flow-matching model outputs (velocity v, x0 = x − σ·v). One "call" = one model evaluation.
/// Timesteps and sigmas are computed on the host when the sampler is created; <see cref="Step"/> runs on the tensors'
/// device. Multistep history lives in device tensors allocated on the first call and freed by <see cref="IDisposable.Dispose"/>.
/// </summary>
public interface ISampler : IDisposable
{
    /// <summary>"euler", "dpm++2m", "unipc", "heun".</summary>
    string Name { get; }
    /// <summary>User-visible step count N.</summary>
    int Steps { get; }
    /// <summary>Model evaluations: N (Heun: 2N − 1).</summary>
    int Calls { get; }
    /// <summary>diffusers' class attribute <c>order</c>: 1 (Euler, DPM-Solver++, UniPC) or 2 (Heun).</summary>
    int Order { get; }
    /// <summary>The scheduler's timestep per call, exactly as diffusers (float32 values for Euler/Heun, int64 values for
    /// DPM/UniPC), stored as double.</summary>
    IReadOnlyList<double> Timesteps { get; }
    /// <summary>σ per call plus the final appended σ (Calls + 1 values), float32 as diffusers.</summary>
    float[] Sigmas { get; }
    /// <summary>σ at which the model is evaluated at <paramref name="call"/> (for guidance intervals).</summary>
    float Sigma(int call);
    /// <summary>What the klein pipeline gives the transformer at <paramref name="call"/>: float32(t) / 1000f.</summary>
    float ModelTimestep(int call);
    /// <summary>The scheduler's timestep at <paramref name="call"/> as float32 (what denoisers receive).</summary>
    float Timestep(int call);
    /// <summary>The user step (0..N−1) a call belongs to, for progress.</summary>
    int StepOf(int call);
    /// <summary>
    /// In place: sample ← step(modelOutput, call, sample). Both tensors F32, same shape, on one device. Calls must
    /// come in order 0..Calls−1 (multistep state); <see cref="Reset"/> starts over.
    /// </summary>
    void Step(int call, Tensor modelOutput, Tensor sample);
    /// <summary>Forgets the multistep state so the next call is 0 again (device buffers are kept for reuse).</summary>
    void Reset();
}
