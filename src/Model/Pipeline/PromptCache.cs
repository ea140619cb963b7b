using System.Security.Cryptography;
using System.Text;
using PureFlux.Model.Layers;
using PureFlux.Model.Snapshot;

namespace PureFlux.Model.Pipeline;

/// <summary>
/// Encoded prompts on disk, so that a prompt used before skips the text encoder (on a 2-core CPU with FLUX.2 klein 4B
/// that is 13–24 s of a ~100 s job). One safetensors file per prompt: "prompt_embeds" F32 [S, joint_dim].
/// <para>
/// The key is a SHA-256 of everything the embeddings depend on: the token ids and mask, the stacked layers, the quant
/// mode, the text encoder's config file and the identity (path, size, modification time) of its weight files — so a
/// changed or replaced encoder misses instead of returning stale embeddings. Each entry stores its key and the SHA-256
/// of its data: a missing, unreadable, truncated, altered or mismatched file is a miss (it is then rewritten); a cache
/// that cannot be written is skipped with a warning, never an error. Writes are atomic (unique temporary file, rename).
/// </para>
/// </summary>
public sealed class PromptCache(string directory)
{
    public const string TensorName = "prompt_embeds";

    public string Directory { get; } = directory;

    /// <summary>Why the last <see cref="Store"/> failed, if it did (for a warning).</summary>
    public string? LastWriteError { get; private set; }

    public static string Key(ModelSnapshot snapshot, int[] layers, QuantMode quant, int[] ids, int[] mask) =>
        Key(EncoderIdentity(snapshot, layers, quant), ids, mask);

    /// <summary>Everything but the tokens: the encoder's config hash, weight-file identities, layers and quant mode
    /// (a pipeline computes it once, not per prompt).</summary>
    public static string EncoderIdentity(ModelSnapshot snapshot, int[] layers, QuantMode quant) =>
        EncoderIdentity(snapshot.Directory, snapshot.TextEncoder, layers, quant);

    /// <summary>As above for any family's snapshot directory and text-encoder weights; <paramref name="family"/> (when not
    /// null) separates families whose templates or feature rules differ over one encoder.</summary>
    public static string EncoderIdentity(string snapshotDirectory, WeightSource textEncoder, int[] layers, QuantMode quant, string? family = null)
    {
        var sb = new StringBuilder("pureflux-prompt-v1\n");
        if (family is not null) sb.Append("family=").Append(family).Append('\n');
        string configPath = Path.Combine(snapshotDirectory, "text_encoder", "config.json");
        sb.Append("config=").Append(File.Exists(configPath) ? Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(configPath))) : "-").Append('\n');
        foreach (var f in textEncoder.Files.Select(f => f.Path).Order(StringComparer.Ordinal))
        {
            // The link's final target (a Hugging Face cache blob), so a changed blob is a different encoder.
            var info = RegularFile.Target(f) as FileInfo ?? new FileInfo(f);
            info.Refresh();
            sb.Append("weights=").Append(Path.GetFullPath(f)).Append(';').Append(info.Exists ? info.Length : -1).Append(';').Append(info.LastWriteTimeUtc.Ticks).Append('\n');
        }
        sb.Append("layers=").Append(string.Join(',', layers)).Append('\n');
        sb.Append("quant=").Append(quant).Append('\n');
        return sb.ToString();
    }

    /// <summary>SHA-256 (hex) of the encoder identity and the token ids and mask.</summary>
    public static string Key(string encoderIdentity, int[] ids, int[] mask)
    {
        var sb = new StringBuilder(encoderIdentity);
        sb.Append("ids=").Append(string.Join(',', ids)).Append('\n');
        sb.Append("mask=").Append(string.Join("", mask)).Append('\n');
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString()))).ToLowerInvariant();
    }

    public string PathOf(string key) => Path.Combine(Directory, key + ".safetensors");

    /// <summary>The entry format: written into each file's metadata; a file of another format is a miss.</summary>
    public const string Format = "pureflux prompt cache v2";
    public const string KeyMetadata = "pureflux.key", HashMetadata = "pureflux.sha256";

    /// <summary>
    /// The cached embeddings [tokens, dim] for <paramref name="key"/>, or null: absent, unreadable, not a complete entry of
    /// this format for this key, another shape, or data whose SHA-256 differs from the one stored in the entry (a flipped
    /// byte). Nothing in a cache file can make this throw; a bad entry is simply a miss that the caller rewrites.
    /// </summary>
    public float[]? TryLoad(string key, int tokens, int dim)
    {
        string path = PathOf(key);
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists) return null;
            // Only a file of about the expected size is opened: the header of an entry is well under a megabyte.
            long dataBytes = (long)tokens * dim * sizeof(float);
            if (info.Length < 8 + dataBytes || info.Length > 8 + dataBytes + (1 << 20)) return null;
            using var file = SafetensorsFile.Open(path);
            if (!file.Metadata.TryGetValue("format", out var format) || format != Format) return null;
            if (!file.Metadata.TryGetValue(KeyMetadata, out var storedKey) || storedKey != key) return null;
            if (!file.Metadata.TryGetValue(HashMetadata, out var hash)) return null;
            if (file.Entries.Count != 1 || !file.Contains(TensorName)) return null;
            var e = file.Entry(TensorName);
            if (e.DType != DType.F32 || !e.Shape.Dims.SequenceEqual([tokens, dim])) return null;
            if (!string.Equals(Hash(file.Bytes(TensorName)), hash, StringComparison.Ordinal)) return null;
            return file.ReadFloats(TensorName);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // whatever the file holds (a bad header byte, a truncation, a directory, a dangling link): a miss
            return null;
        }
    }

    /// <summary>SHA-256 (lower-case hex) of an entry's data bytes, as stored in its metadata.</summary>
    public static string Hash(ReadOnlySpan<byte> data) => Convert.ToHexString(SHA256.HashData(data)).ToLowerInvariant();

    /// <summary>
    /// Writes the embeddings with the SHA-256 of their bytes, to a unique temporary file that is renamed into place: a
    /// reader sees the old entry or the new one, and concurrent writers of one entry each install a complete file.
    /// False (see <see cref="LastWriteError"/>) when the cache is not writable.
    /// </summary>
    public bool Store(string key, float[] embeds, int tokens, int dim)
    {
        try
        {
            if ((long)tokens * dim != embeds.Length)
                throw new ArgumentException($"{embeds.Length} values do not make [{tokens}, {dim}]");
            System.IO.Directory.CreateDirectory(Directory);
            SafetensorsWriter.Write(PathOf(key), [SafetensorsWriteEntry.FromFloats(TensorName, embeds, new Shape(tokens, dim))],
                new Dictionary<string, string>
                {
                    ["format"] = Format,
                    [KeyMetadata] = key,
                    [HashMetadata] = Hash(System.Runtime.InteropServices.MemoryMarshal.AsBytes(embeds.AsSpan())),
                });
            LastWriteError = null;
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or SafetensorsException or ArgumentException or NotSupportedException)
        {
            LastWriteError = $"prompt cache {Directory}: cannot write ({ex.Message})";
            return false;
        }
    }
}
