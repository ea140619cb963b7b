namespace PureFlux.Tests.Runtime;

/// <summary>Symbolic links flattened into text files by a copy (git core.symlinks=false, archives) are followed.</summary>
public class FlattenedLinkTests
{
    [Fact]
    public void A_text_file_naming_a_safetensors_file_opens_that_file()
    {
        string root = Path.Combine(Path.GetTempPath(), $"pureflux-flat-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(Path.Combine(root, "dev", "vae"));
            Directory.CreateDirectory(Path.Combine(root, "schnell", "vae"));
            Directory.CreateDirectory(Path.Combine(root, "kontext", "vae"));
            string real = Path.Combine(root, "dev", "vae", "w.safetensors");
            SafetensorsWriter.Write(real, [SafetensorsWriteEntry.FromFloats("x", [1f, 2f, 3f], new Shape(3))]);
            // The shared FLUX.1 golden set ships exactly this: the link's target as the whole file, no newline.
            string flat = Path.Combine(root, "schnell", "vae", "w.safetensors");
            File.WriteAllText(flat, "../../dev/vae/w.safetensors");
            // A chain, with a trailing newline as `git` writes when it is edited by hand.
            string chained = Path.Combine(root, "kontext", "vae", "w.safetensors");
            File.WriteAllText(chained, "../../schnell/vae/w.safetensors\n");
            foreach (var p in new[] { flat, chained })
            {
                using var f = SafetensorsFile.Open(p);
                Assert.Equal([1f, 2f, 3f], f.ReadFloats("x"));
                Assert.Equal(Path.GetFullPath(real), f.Path);
            }

            // A flattened link whose target is missing names both.
            string dangling = Path.Combine(root, "kontext", "vae", "gone.safetensors");
            File.WriteAllText(dangling, "../../dev/vae/missing.safetensors");
            var e = Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(dangling));
            Assert.Contains(dangling, e.Message);
            Assert.Contains("flattened", e.Message);
            Assert.Contains("missing.safetensors does not exist", e.Message);

            // A real safetensors file smaller than the limit is never taken for a link (its header length has NUL bytes).
            Assert.True(new FileInfo(real).Length < FlattenedLink.MaxBytes);
            Assert.Equal(real, FlattenedLink.Resolve(real, out var problem));
            Assert.Null(problem);
            // Text that names nothing and is not a path keeps the old error.
            string junk = Path.Combine(root, "dev", "junk.safetensors");
            File.WriteAllBytes(junk, [0x7b, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]);
            Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(junk));
        }
        finally { Directory.Delete(root, recursive: true); }
    }
}
