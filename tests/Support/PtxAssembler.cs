using System.Diagnostics;
using System.Reflection;
using System.Text.RegularExpressions;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace PureFlux.Tests.Support;

/// <summary>One <c>[IlgpuKernel]</c> method of PureFlux.Kernels, named "Type.Method" (namespace dropped).</summary>
public sealed record KernelMethod(string Id, MethodInfo Method, bool ExplicitlyGrouped)
{
    /// <summary>Every marked kernel, sorted by id. Overloads get their parameter types appended to the id.</summary>
    public static IReadOnlyList<KernelMethod> All => AllLazy.Value;

    private static readonly Lazy<IReadOnlyList<KernelMethod>> AllLazy = new(() =>
    {
        const BindingFlags flags = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance | BindingFlags.DeclaredOnly;
        var found = new List<(string Name, MethodInfo Method, bool Explicit)>();
        foreach (var type in typeof(IlgpuKernelAttribute).Assembly.GetTypes())
            foreach (var m in type.GetMethods(flags))
                if (m.GetCustomAttribute<IlgpuKernelAttribute>() is { } attr)
                {
                    string typeName = (type.FullName ?? type.Name).Replace("PureFlux.Kernels.", "", StringComparison.Ordinal).Replace('+', '.');
                    found.Add(($"{typeName}.{m.Name}", m, attr.ExplicitlyGrouped));
                }
        return found
            .GroupBy(f => f.Name)
            .SelectMany(g => g.Count() == 1
                ? g.Select(f => new KernelMethod(f.Name, f.Method, f.Explicit))
                : g.Select(f => new KernelMethod($"{f.Name}({string.Join(",", f.Method.GetParameters().Select(p => p.ParameterType.Name))})", f.Method, f.Explicit)))
            .OrderBy(k => k.Id, StringComparer.Ordinal)
            .ToList();
    });

    public static KernelMethod Get(string id) =>
        All.FirstOrDefault(k => k.Id == id) ?? throw new ArgumentException($"no [IlgpuKernel] method '{id}'");

    public override string ToString() => Id;
}

/// <summary>ptxas -v figures for one kernel entry.</summary>
public sealed record PtxasReport(string Entry, int Registers, int StackFrameBytes, int SpillStoreBytes, int SpillLoadBytes, int SharedBytes, int ConstantBytes)
{
    public override string ToString() =>
        $"{Registers,3} regs, {SharedBytes,6} B smem, {StackFrameBytes,4} B stack, {SpillStoreBytes,4}/{SpillLoadBytes,-4} B spill st/ld, {ConstantBytes,4} B cmem";
}

/// <summary>
/// Compiles ILGPU kernels to PTX with ILGPU's own PTX backend, no CUDA device needed, and assembles the result
/// with NVIDIA's ptxas (fetched by tools/get-ptxas.sh), so CUDA code generation is checked on any machine.
/// </summary>
public static partial class PtxAssembler
{
    /// <summary>Where tools/get-ptxas.sh caches ptxas by default.</summary>
    public const string DefaultPtxasPath = "/var/cache/pureflux-ptxas/bin/ptxas";

    /// <summary>ptxas from PUREFLUX_PTXAS, the get-ptxas.sh cache, or PATH; null when none is found.</summary>
    public static string? FindPtxas()
    {
        var env = Environment.GetEnvironmentVariable("PUREFLUX_PTXAS");
        if (!string.IsNullOrWhiteSpace(env))
            return File.Exists(env) ? env : throw new FileNotFoundException($"PUREFLUX_PTXAS={env} does not exist");
        if (File.Exists(DefaultPtxasPath)) return DefaultPtxasPath;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var p = Path.Combine(dir, "ptxas");
            if (File.Exists(p)) return p;
        }
        return null;
    }

    /// <summary>"sm_80" → SM_80. CUDA 11.8's ptxas (what get-ptxas.sh fetches) reads PTX ISA up to 7.8.</summary>
    public static CudaArchitecture Architecture(string sm) => sm switch
    {
        "sm_80" => CudaArchitecture.SM_80,
        "sm_86" => CudaArchitecture.SM_86,
        "sm_89" => CudaArchitecture.SM_89,
        "sm_90" => CudaArchitecture.SM_90,
        _ => throw new ArgumentException($"unsupported target '{sm}'"),
    };

    // A context of its own (same settings as Devices.Context: algorithms enabled, O2, so XMath lowers exactly as
    // on a real GPU), so PTX compilation never contends with tests running kernels on the shared context.
    private static readonly Lazy<Context> PtxContext = new(() =>
        Context.Create(b => b.Default().EnableAlgorithms().Optimize(OptimizationLevel.O2)));
    private static readonly object CompileLock = new();

    /// <summary>The PTX ILGPU emits for <paramref name="kernel"/> on <paramref name="sm"/>.</summary>
    public static string CompileToPtx(KernelMethod kernel, string sm)
    {
        var arch = Architecture(sm);
        lock (CompileLock)
        {
            using var backend = new PTXBackend(PtxContext.Value, new CudaCapabilityContext(arch), arch, CudaInstructionSet.ISA_78, null);
            var entry = kernel.ExplicitlyGrouped
                ? EntryPointDescription.FromExplicitlyGroupedKernel(kernel.Method)
                : EntryPointDescription.FromImplicitlyGroupedKernel(kernel.Method);
            var compiled = (PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty);
            return compiled.PTXAssembly;
        }
    }

    /// <summary>Runs <c>ptxas -arch=sm -O3 -v</c>; returns exit code, combined output and per-entry reports.</summary>
    public static (int ExitCode, string Output, IReadOnlyList<PtxasReport> Reports) Assemble(string ptxas, string ptxFile, string sm)
    {
        var psi = new ProcessStartInfo(ptxas)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { $"-arch={sm}", "-O3", "-v", ptxFile, "-o", Path.ChangeExtension(ptxFile, ".cubin") })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {ptxas}");
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        string output = stdout + stderr.Result;
        return (p.ExitCode, output, ParseVerbose(output));
    }

    /// <summary>Parses ptxas -v lines ("Compiling entry function 'X'", "Used N registers, M bytes smem, ...").</summary>
    public static IReadOnlyList<PtxasReport> ParseVerbose(string output)
    {
        var reports = new List<PtxasReport>();
        string? entry = null;
        int stack = 0, spillSt = 0, spillLd = 0;
        foreach (var line in output.Split('\n'))
        {
            var m = EntryRegex().Match(line);
            if (m.Success) { entry = m.Groups[1].Value; stack = spillSt = spillLd = 0; continue; }
            m = FrameRegex().Match(line);
            if (m.Success)
            {
                stack = int.Parse(m.Groups[1].Value);
                spillSt = int.Parse(m.Groups[2].Value);
                spillLd = int.Parse(m.Groups[3].Value);
                continue;
            }
            m = UsedRegex().Match(line);
            if (m.Success && entry is not null)
            {
                int smem = SmemRegex().Match(line) is { Success: true } s ? int.Parse(s.Groups[1].Value) : 0;
                int cmem = CmemRegex().Matches(line).Sum(c => int.Parse(c.Groups[1].Value));
                reports.Add(new PtxasReport(entry, int.Parse(m.Groups[1].Value), stack, spillSt, spillLd, smem, cmem));
                entry = null;
            }
        }
        return reports;
    }

    [GeneratedRegex(@"Compiling entry function '([^']+)'")]
    private static partial Regex EntryRegex();
    [GeneratedRegex(@"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")]
    private static partial Regex FrameRegex();
    [GeneratedRegex(@"Used (\d+) registers")]
    private static partial Regex UsedRegex();
    [GeneratedRegex(@"(\d+) bytes smem")]
    private static partial Regex SmemRegex();
    [GeneratedRegex(@"(\d+) bytes cmem")]
    private static partial Regex CmemRegex();
}
