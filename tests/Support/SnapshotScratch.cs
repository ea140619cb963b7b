using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace PureFlux.Tests.Support;

/// <summary>A scratch directory (optionally a copy of another), deleted on dispose.</summary>
public sealed class ScratchDir : IDisposable
{
    public string Dir { get; } = Path.Combine(Path.GetTempPath(), $"pureflux-scratch-{Environment.ProcessId}-{Guid.NewGuid():N}");

    public ScratchDir(string? copyOf = null)
    {
        Directory.CreateDirectory(Dir);
        if (copyOf is not null) CopyTree(copyOf, Dir);
    }

    public string this[string rel] => Path.Combine(Dir, rel);

    /// <summary>A path for outputs beside the scratch snapshot (generate refuses to write inside the model directory).</summary>
    public string Out(string name)
    {
        Directory.CreateDirectory(Dir + "-out");
        return Path.Combine(Dir + "-out", name);
    }

    public static void CopyTree(string from, string to)
    {
        foreach (var f in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            string dst = Path.Combine(to, Path.GetRelativePath(from, f));
            Directory.CreateDirectory(Path.GetDirectoryName(dst)!);
            File.Copy(f, dst);
        }
    }

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        try { if (Directory.Exists(Dir + "-out")) Directory.Delete(Dir + "-out", recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>Edits of safetensors files and configs for tests that damage a snapshot or a golden set.</summary>
public static class SnapshotEdit
{
    /// <summary>Rewrites a safetensors file: <paramref name="edit"/> gets every tensor (name → dtype, shape, bytes) and may change, add or remove them.</summary>
    public static void Rewrite(string path, Action<Dictionary<string, (DType DType, Shape Shape, byte[] Bytes)>> edit)
    {
        var tensors = new Dictionary<string, (DType, Shape, byte[])>(StringComparer.Ordinal);
        using (var f = SafetensorsFile.Open(path))
            foreach (var n in f.Names.Order(StringComparer.Ordinal))
            {
                var e = f.Entry(n);
                tensors[n] = (e.DType, e.Shape, f.Bytes(n).ToArray());
            }
        edit(tensors);
        if (new FileInfo(path).LinkTarget is not null) File.Delete(path);
        SafetensorsWriter.Write(path, tensors.Select(kv => SafetensorsWriteEntry.FromBytes(kv.Key, kv.Value.Item1, kv.Value.Item2, kv.Value.Item3)).ToList());
    }

    /// <summary>Sets element <paramref name="index"/> of a BF16 or F32 tensor to <paramref name="value"/>.</summary>
    public static void Poison(string path, string tensor, float value, int index = 0) => Rewrite(path, t =>
    {
        var (dtype, shape, bytes) = t[tensor];
        if (dtype == DType.BF16) BitConverter.TryWriteBytes(bytes.AsSpan(2 * index), Bf16.FromFloat(value));
        else if (dtype == DType.F32) BitConverter.TryWriteBytes(bytes.AsSpan(4 * index), value);
        else throw new ArgumentException($"{tensor} is {dtype}");
    });

    /// <summary>Replaces <paramref name="old"/> by <paramref name="new"/> in a text file (asserting it was there).</summary>
    public static void Replace(string path, string old, string @new)
    {
        string text = File.ReadAllText(path);
        Assert.Contains(old, text);
        File.WriteAllText(path, text.Replace(old, @new));
    }
}

/// <summary>
/// Lays a snapshot out exactly as <c>huggingface-cli download</c> leaves it in the Hugging Face cache:
/// <c>ROOT/models--ORG--NAME/blobs/&lt;sha256&gt;</c> holds the data (identical files share one blob),
/// <c>snapshots/&lt;rev&gt;/...</c> mirrors the repository with relative symbolic links into <c>../../blobs</c> (deeper
/// for files in sub-folders), and <c>refs/main</c> names the revision.
/// </summary>
public static class HfCache
{
    public const string Revision = "5e1d7c4a2f0b9a8c7d6e5f4a3b2c1d0e9f8a7b6c";

    /// <summary>Moves every file of <paramref name="source"/> into a cache under <paramref name="root"/>; returns the snapshot directory.</summary>
    public static string Make(string source, string root, string repo = "models--black-forest-labs--FLUX.2-klein-4B")
    {
        string repoDir = Path.Combine(root, repo), blobs = Path.Combine(repoDir, "blobs"), snap = Path.Combine(repoDir, "snapshots", Revision);
        Directory.CreateDirectory(blobs);
        Directory.CreateDirectory(Path.Combine(repoDir, "refs"));
        File.WriteAllText(Path.Combine(repoDir, "refs", "main"), Revision);
        foreach (var f in Directory.GetFiles(source, "*", SearchOption.AllDirectories))
        {
            string hash;
            using (var s = File.OpenRead(f)) hash = Convert.ToHexStringLower(SHA256.HashData(s));
            string blob = Path.Combine(blobs, hash);
            if (File.Exists(blob)) File.Delete(f); else File.Move(f, blob);
            string link = Path.Combine(snap, Path.GetRelativePath(source, f));
            Directory.CreateDirectory(Path.GetDirectoryName(link)!);
            File.CreateSymbolicLink(link, Path.GetRelativePath(Path.GetDirectoryName(link)!, blob));
        }
        return snap;
    }

    /// <summary>Points an existing link of the snapshot somewhere else.</summary>
    public static void Relink(string link, string target)
    {
        File.Delete(link);
        File.CreateSymbolicLink(link, target);
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int mkfifo(string path, uint mode);

    /// <summary>Makes a named pipe (Linux); false where that is not possible.</summary>
    public static bool MakeFifo(string path) => OperatingSystem.IsLinux() && mkfifo(path, 0x1B6 /* 0666 */) == 0;
}
