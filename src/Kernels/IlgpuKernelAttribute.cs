namespace PureFlux.Kernels;

/// <summary>
/// Marks an ILGPU kernel method so tools can find every kernel: the PTX test compiles each marked method
/// for sm_80/sm_90 and assembles it with ptxas; benchmarks report registers and spills per kernel.
/// <see cref="ExplicitlyGrouped"/> is true for kernels launched with a KernelConfig (they use Group/Grid/
/// SharedMemory) and false for auto-grouped kernels whose first parameter is an Index type.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class IlgpuKernelAttribute(bool explicitlyGrouped = false) : Attribute
{
    public bool ExplicitlyGrouped { get; } = explicitlyGrouped;
}
