namespace PureFlux.Model.Guidance;

/// <summary>
/// How the conditional (c) and unconditional (u) predictions of one denoising step become the prediction the
/// scheduler uses. The engine asks <see cref="NeedsUncond"/> first; when it answers false it runs only the
/// conditional pass and uses cond as the prediction (and does not call <see cref="Combine"/>).
/// </summary>
public interface IGuidance
{
    /// <summary>A short human-readable description (method and settings), for logs and run metadata.</summary>
    string Name { get; }

    /// <summary>Whether step <paramref name="step"/> of <paramref name="steps"/> (0-based), at noise level
    /// <paramref name="sigma"/> (the scheduler's sigma for that step, 1 = pure noise), needs the unconditional pass.
    /// False ⇒ the engine runs only the conditional pass and prediction = cond.</summary>
    bool NeedsUncond(float sigma, int step, int steps);

    /// <summary>Writes the guided prediction into <paramref name="output"/>. cond, uncond, output: F32 [B, S, C]
    /// device tensors on one device (S = the generated tokens only); output may alias cond.</summary>
    void Combine(Tensor cond, Tensor uncond, Tensor output, int step, int steps);
}
