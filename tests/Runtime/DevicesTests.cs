namespace PureFlux.Tests.Runtime;

public class DevicesTests
{
    [Theory]
    [InlineData("tpu")]
    [InlineData("gpu:0")]
    [InlineData("cpu:1")]
    [InlineData("ilgpu")]
    [InlineData("")]
    public void Unknown_id_says_what_is_accepted(string id)
    {
        var e = Assert.Throws<ArgumentException>(() => Devices.Open(id));
        Assert.Contains("unknown device", e.Message);
        Assert.Contains(Devices.Usage, e.Message);
    }

    [Theory]
    [InlineData("cuda:x")]
    [InlineData("cuda:-1")]
    [InlineData("opencl:1.5")]
    [InlineData("cuda:")]
    public void Bad_index_says_so(string id)
    {
        var e = Assert.Throws<ArgumentException>(() => Devices.Open(id));
        Assert.Contains("bad device index", e.Message);
        Assert.Contains(Devices.Usage, e.Message);
    }

    [Theory]
    [InlineData("ilgpu-cpu:0")]
    [InlineData("ilgpu-cpu:1x8")]
    [InlineData("ilgpu-cpu:3x4")]
    [InlineData("ilgpu-cpu:2x")]
    [InlineData("ilgpu-cpu:64x32")]
    [InlineData("ilgpu-cpu:")]
    public void Bad_emulator_shape_says_what_is_accepted(string id)
    {
        var e = Assert.Throws<ArgumentException>(() => Devices.Open(id));
        Assert.Contains($"device '{id}': bad ILGPU CPU group shape", e.Message);
        Assert.Contains("expected WxN", e.Message);
    }

    [Theory]
    [InlineData("ilgpu-cpu:2x2", "ilgpu-cpu:2x2", 2, 4)]
    [InlineData("ilgpu-cpu:8x1", "ilgpu-cpu:8x1", 8, 8)]
    [InlineData("ilgpu-cpu:4x4", "ilgpu-cpu", 4, 16)] // the default shape is ILGPU's own device
    [InlineData("ilgpu-cpu", "ilgpu-cpu", 4, 16)]
    public void Emulator_shape_sets_the_warp_and_group_size(string spec, string id, int warp, int group)
    {
        using var dev = (IlgpuDevice)Devices.Open(spec);
        Assert.Equal(DeviceKind.IlgpuCpu, dev.Kind);
        Assert.Equal(id, dev.Id);
        Assert.Equal(warp, dev.Accelerator.WarpSize);
        Assert.Equal(group, dev.Accelerator.MaxNumThreadsPerGroup);
    }

    [Fact]
    public void Cuda_without_a_gpu_says_why()
    {
        if (Devices.IsAvailable(DeviceKind.Cuda, out _)) Assert.Skip("skipped: this machine has a CUDA device");
        var e = Assert.Throws<ArgumentException>(() => Devices.Open("cuda"));
        Assert.Contains("device 'cuda': no CUDA device", e.Message);
        Assert.Contains("libcuda", e.Message);
        Assert.False(Devices.IsAvailable(DeviceKind.Cuda, out var reason));
        Assert.Contains("libcuda", reason);
        Assert.Throws<ArgumentException>(() => Devices.Open("cuda:3"));
    }

    [Fact]
    public void Opencl_index_past_the_last_device_says_how_many()
    {
        if (!Devices.IsAvailable(DeviceKind.OpenCL, out var reason))
        {
            var e = Assert.Throws<ArgumentException>(() => Devices.Open("opencl"));
            Assert.Contains(reason[reason.IndexOf('(')..], e.Message); // the same cause as IsAvailable gives
            return;
        }
        var e2 = Assert.Throws<ArgumentException>(() => Devices.Open("opencl:99"));
        Assert.Contains("OpenCL device(s) found", e2.Message);
    }

    [Fact]
    public void List_includes_cpu_and_ilgpu_cpu()
    {
        var list = Devices.List();
        Assert.Contains(list, d => d.Id == "cpu" && d.Kind == DeviceKind.Cpu && d.MemoryBytes > 0);
        Assert.Contains(list, d => d.Id == "ilgpu-cpu" && d.Kind == DeviceKind.IlgpuCpu);
        Assert.Equal(list.Count, list.Select(d => d.Id).Distinct().Count());
        Assert.Equal(Devices.IsAvailable(DeviceKind.Cuda, out _), list.Any(d => d.Kind == DeviceKind.Cuda));
        Assert.Equal(Devices.IsAvailable(DeviceKind.OpenCL, out _), list.Any(d => d.Kind == DeviceKind.OpenCL));
    }

    [Theory]
    [InlineData("cpu", DeviceKind.Cpu)]
    [InlineData(" CPU ", DeviceKind.Cpu)]
    [InlineData("ilgpu-cpu", DeviceKind.IlgpuCpu)]
    public void Open_by_id(string id, DeviceKind kind)
    {
        using var dev = Devices.Open(id);
        Assert.Equal(kind, dev.Kind);
        Assert.Equal(id.Trim().ToLowerInvariant(), dev.Id);
        Assert.False(string.IsNullOrWhiteSpace(dev.Name));
    }

    [Fact]
    public void Auto_picks_cuda_when_present_else_the_managed_cpu()
    {
        using var dev = Devices.Open("auto");
        Assert.Equal(Devices.IsAvailable(DeviceKind.Cuda, out _) ? DeviceKind.Cuda : DeviceKind.Cpu, dev.Kind);
    }

    [Fact]
    public void Cpu_device_threads_are_positive()
    {
        using var dev = new CpuDevice();
        Assert.True(dev.Threads >= 1);
        using var two = new CpuDevice(2);
        Assert.Equal(2, two.Threads);
        Assert.Equal(2, two.ParallelOptions.MaxDegreeOfParallelism);
    }
}
