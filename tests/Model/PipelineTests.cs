using PureFlux.Model.Engine;
using PureFlux.Model.Flux2;
using PureFlux.Model.Scheduler;
using PureFlux.Model.Snapshot;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

public class PipelineTests
{
    // Four denoising steps compound the per-forward fp32 error (~1e-4): the golden README suggests ~1e-3
    // relative to each tensor's max magnitude for the end-to-end pipeline.
    private const double Tol = 1e-3;

    public static TheoryData<string, int, int> Cases()
    {
        var data = new TheoryData<string, int, int>();
        foreach (var b in Backends.Ids)
        {
            data.Add(b, 64, 64);
            data.Add(b, 64, 96);
        }
        return data;
    }

    [Theory, MemberData(nameof(Cases))]
    public void Every_step_and_the_image_match_diffusers(string backend, int height, int width)
    {
        var dev = Backends.Get(backend);
        var g = GoldenModel.File($"pipeline_h{height}_w{width}.safetensors");
        using var snapshot = ModelSnapshot.Open(GoldenModel.ModelDir);
        using var model = new Flux2KleinModel(snapshot, dev);
        Assert.Equal([1, 2, 3], model.TextLayers);

        int[] ids = g.ReadInt64("inputs.input_ids").Select(v => (int)v).ToArray();
        int[] mask = g.ReadInt64("inputs.attention_mask").Select(v => (int)v).ToArray();
        var embeds = model.EncodePrompt(ids, mask);
        Assert.True(Compare.RelMaxError(g.ReadFloats("prompt_embeds"), embeds.ToFloatArray()) <= 2e-4, "prompt_embeds");
        using var text = new TextConditioning(embeds.Reshape(1, 16, embeds.Shape[1]));

        var layout = model.Layout(width, height);
        using var sampler = model.CreateSampler(SamplerKind.Euler, 4, layout);
        Assert.Equal(g.ReadFloats("sigmas"), sampler.Sigmas);
        using var noise = g.LoadF32("inputs.initial_noise", dev);

        var trace = new GoldenModel.Trace();
        int steps = 0;
        var result = GenerationEngine.Run(model, new GenerationJob { PromptEmbeds = text, Noise = noise, Width = width, Height = height, Steps = 4 },
            new GenerationHooks
            {
                Trace = trace.Record,
                OnStep = r =>
                {
                    int i = r.Step;
                    steps++;
                    Assert.Equal(g.ReadFloats($"step.{i}.transformer_in.timestep")[0], r.ModelTimestep);
                    Assert.Null(r.Uncond);
                    double ep = Compare.RelMaxError(g.ReadFloats($"step.{i}.noise_pred"), r.Prediction.ToFloatArray());
                    Assert.True(ep <= Tol, $"step {i} noise_pred on {backend}: {ep:g3}");
                    double el = Compare.RelMaxError(g.ReadFloats($"step.{i}.latents_after"), r.Latents.ToFloatArray());
                    Assert.True(el <= Tol, $"step {i} latents on {backend}: {el:g3}");
                },
            });
        Assert.Equal(4, steps);
        Assert.True(Compare.RelMaxError(g.ReadFloats("step.0.transformer_in.hidden_states"), trace.Values["latents.initial_packed"]) == 0, "packed noise");
        GoldenModel.AssertClose(g, trace, "latents_for_vae", "latents_for_vae", Tol, $"pipeline on {backend}");
        double ei = Compare.RelMaxError(g.ReadFloats("decoded_image"), result.Decoded);
        Assert.True(ei <= Tol, $"decoded image on {backend}: {ei:g3}");

        // Post-processing as diffusers' pil output: round(clamp(x/2+0.5)·255) — compare against image_pt.
        var rgb = result.Image(0).Rgb;
        var pt = g.ReadFloats("image_pt");
        int plane = width * height, off = 0;
        for (int p = 0; p < plane; p++)
            for (int c = 0; c < 3; c++)
                off = Math.Max(off, Math.Abs(rgb[3 * p + c] - (int)Math.Round(pt[c * plane + p] * 255f)));
        Assert.True(off <= 1, $"8-bit image differs from diffusers by {off} levels");
    }
}
