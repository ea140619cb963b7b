using System.Globalization;
using PureFlux.Model.Scheduler;

namespace PureFlux.Model.Engine;

/// <summary>Generation produced NaN or ±∞ values; the message names the stage and step.</summary>
public sealed class NonFiniteException(string message) : Exception(message);

/// <summary>
/// Keeps NaN/Inf from becoming a silent black image: the engine checks the latents after every sampler call and the
/// decoded images (one device-side count each, <see cref="Elementwise.CountNonFinite"/>: a read of a tensor far smaller
/// than one transformer pass). A hit throws <see cref="NonFiniteException"/>, or with
/// <see cref="GenerationJob.AllowNonFinite"/> warns once per stage and lets the run finish.
/// </summary>
internal sealed class NonFiniteGuard(bool allow, Action<string> warn)
{
    private const string Hint = "the model produced non-finite values (a NaN/Inf in a weight file, or an overflow); " +
        "--allow-nonfinite (GenerationJob.AllowNonFinite) writes the image anyway";
    private readonly HashSet<string> _warned = new();

    /// <summary>Latents [B, S, C] after sampler call <paramref name="call"/>.</summary>
    public void Latents(ISampler sampler, int call, Tensor latents)
    {
        var n = Elementwise.CountNonFinite(latents);
        if (!n.Any) return;
        int step = sampler.StepOf(call);
        string where = $"step {step + 1} of {sampler.Steps}" + (sampler.Calls == sampler.Steps ? "" : $", call {call + 1} of {sampler.Calls}");
        string sigma = sampler.Sigma(call).ToString("0.###", CultureInfo.InvariantCulture);
        Report("latents", $"{where} (σ={sigma}): latents contain {n} values (of {latents.Count}){Images(latents)}");
    }

    /// <summary>Decoded images [B, 3, H, W].</summary>
    public void Decoded(Tensor images)
    {
        var n = Elementwise.CountNonFinite(images);
        if (!n.Any) return;
        Report("decoded", $"vae decode: the decoded image{(images.Shape[0] > 1 ? "s" : "")} contain{(images.Shape[0] > 1 ? "" : "s")} {n} values (of {images.Count}){Images(images)}");
    }

    /// <summary>Which images of a batch are hit (" in images 1, 3 of 4"), or "" for a batch of one.</summary>
    private static string Images(Tensor t)
    {
        int batch = t.Shape[0];
        if (batch == 1) return "";
        var hit = Enumerable.Range(0, batch).Where(b => Elementwise.CountNonFinite(t.Slice(b, 1)).Any).Select(b => (b + 1).ToString(CultureInfo.InvariantCulture)).ToList();
        return $" in image{(hit.Count > 1 ? "s" : "")} {string.Join(", ", hit)} of {batch}";
    }

    private void Report(string stage, string what)
    {
        if (!allow) throw new NonFiniteException($"{what}; {Hint}");
        if (_warned.Add(stage)) warn($"{what}; continuing as --allow-nonfinite asks (later {stage} checks are not reported)");
    }
}
