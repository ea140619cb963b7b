namespace PureFlux.Tests.Support;

/// <summary>Reference tensors copied into tests/golden from the official Python implementations.</summary>
public static class Golden
{
    public static string Dir => Path.Combine(AppContext.BaseDirectory, "golden");

    private static readonly Lazy<SafetensorsFile> OpsFile = new(() => SafetensorsFile.Open(Path.Combine(Dir, "ops.safetensors")));

    /// <summary>ops.safetensors (operator goldens, names &lt;op&gt;.&lt;case&gt;.&lt;role&gt;).</summary>
    public static SafetensorsFile Ops => OpsFile.Value;

    public static float[] F(string name) => Ops.ReadFloats(name);
    public static int[] Dims(string name) => Ops.Entry(name).Shape.ToArray();

    /// <summary>A golden tensor uploaded to <paramref name="device"/> as F32.</summary>
    public static Tensor Load(Device device, string name) => Ops.LoadF32(name, device);
}
