namespace PureFlux.Model.Engine;

/// <summary>A generation that cannot run here: it needs more memory than is available, or a buffer larger than one can be.</summary>
public sealed class ResourceLimitException(string message) : Exception(message);

/// <summary>One stage of a job (text encoding, reference images, denoising, decoding): what is resident while it runs.</summary>
/// <param name="WeightBytes">Weights held by the device while the stage runs (mapped or uploaded, as stored or as quantized).</param>
/// <param name="ActivationBytes">Activations and buffers on the device at the stage's peak (pool size classes included).</param>
/// <param name="HostBytes">Host arrays beside them (copies of images, tables); on the CPU backends the same memory.</param>
public sealed record MemoryStage(string Name, double WeightBytes, double ActivationBytes, double HostBytes = 0)
{
    public double DeviceBytes => WeightBytes + ActivationBytes;
}

/// <summary>
/// What a job needs before it runs (<see cref="IDiffusionModel.EstimateMemory"/>): the stages run one after another
/// (each family releases one large component before loading the next), so the peak is the largest stage. Sizes are
/// doubles: any request, however absurd, is estimated without overflow and refused with numbers.
/// </summary>
public sealed record MemoryEstimate(string Request, IReadOnlyList<MemoryStage> Stages)
{
    /// <summary>The largest device buffer (elements) and host array (bytes) the job would need, and what they hold.</summary>
    public double LargestBufferElements { get; init; }
    public string LargestBuffer { get; init; } = "";
    public double LargestHostArrayBytes { get; init; }
    public string LargestHostArray { get; init; } = "";

    /// <summary>Kernels index one buffer with 32-bit integers.</summary>
    public const double MaxBufferElements = int.MaxValue;
    /// <summary>Host arrays are copied through spans of bytes.</summary>
    public const double MaxHostArrayBytes = int.MaxValue;

    public MemoryStage Peak(bool hostCountsToo) =>
        Stages.MaxBy(s => s.DeviceBytes + (hostCountsToo ? s.HostBytes : 0)) ?? new MemoryStage("nothing", 0, 0);

    /// <summary>
    /// Refuses the job, in one line with the estimate and what is available, when it cannot fit on
    /// <paramref name="device"/> (or, for a GPU, when its host-side arrays cannot fit in host memory).
    /// </summary>
    /// <exception cref="ResourceLimitException">The job is too large for this machine or for the engine's buffers.</exception>
    public void EnsureFits(Device device)
    {
        bool hostDevice = device.Kind is DeviceKind.Cpu or DeviceKind.IlgpuCpu;
        var peak = Peak(hostDevice);
        double need = peak.DeviceBytes + (hostDevice ? peak.HostBytes : 0);
        var (available, source) = MemoryBudget.Available(device);
        string F(double b) => MemoryBudget.Format(b);
        string breakdown = $"{peak.Name}: weights {F(peak.WeightBytes)} + activations {F(peak.ActivationBytes)}" + (hostDevice && peak.HostBytes > 0 ? $" + host arrays {F(peak.HostBytes)}" : "");
        if (need > available)
            throw new ResourceLimitException($"{Request}: needs about {F(need)} of memory ({breakdown}), but {device.Id} has {F(available)} available ({source}); " +
                "use a smaller --width/--height or --batch-size, or --quant int8/int4");
        if (!hostDevice)
        {
            double host = Stages.Max(s => s.HostBytes);
            var (hostAvailable, hostSource) = MemoryBudget.Host();
            if (host > hostAvailable)
                throw new ResourceLimitException($"{Request}: needs about {F(host)} of host memory for its images, but {F(hostAvailable)} is available ({hostSource}); use a smaller --width/--height or --batch-size");
        }
        if (LargestBufferElements > MaxBufferElements)
            throw new ResourceLimitException($"{Request}: the {LargestBuffer} would hold {LargestBufferElements:0} values, more than one buffer can ({MaxBufferElements:0}); " +
                "use a smaller --width/--height or --batch-size");
        if (LargestHostArrayBytes > MaxHostArrayBytes)
            throw new ResourceLimitException($"{Request}: the {LargestHostArray} would take {F(LargestHostArrayBytes)}, more than one host array can (2 GiB); " +
                "use a smaller --width/--height or --batch-size");
    }
}
