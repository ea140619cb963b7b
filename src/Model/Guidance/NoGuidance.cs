namespace PureFlux.Model.Guidance;

/// <summary>No guidance: only the conditional pass runs and the prediction is cond (guidance-distilled models,
/// or a scale that turns guidance off).</summary>
public sealed class NoGuidance : IGuidance
{
    public static readonly NoGuidance Instance = new();

    public string Name => "none";

    public bool NeedsUncond(float sigma, int step, int steps) => false;

    /// <summary>Copies cond into output (nothing to do when they are the same tensor); uncond is not read.</summary>
    public void Combine(Tensor cond, Tensor uncond, Tensor output, int step, int steps)
    {
        Check.SameShape("NoGuidance.Combine", "cond", cond, "output", output);
        if (!ReferenceEquals(cond, output) && !(cond.Buffer == output.Buffer && cond.ByteOffset == output.ByteOffset))
            cond.CopyTo(output);
    }
}
