using PureFlux.Model.Pipeline;
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
        using var pipe = new Flux2KleinPipeline(snapshot, dev);
        Assert.Equal([1, 2, 3], pipe.TextLayers);

        int[] ids = g.ReadInt64("inputs.input_ids").Select(v => (int)v).ToArray();
        int[] mask = g.ReadInt64("inputs.attention_mask").Select(v => (int)v).ToArray();
        using var embeds = pipe.EncodePrompt(ids, mask);
        Assert.True(Compare.RelMaxError(g.ReadFloats("prompt_embeds"), embeds.ToFloatArray()) <= 2e-4, "prompt_embeds");

        var scheduler = FlowMatchEulerScheduler.ForKlein(snapshot.SchedulerConfig, 4, width, height);
        Assert.Equal(g.ReadFloats("sigmas"), scheduler.Sigmas);
        var (h, w) = FlowMatchEulerScheduler.PackedLatentSize(width, height);
        using var noise = g.LoadF32("inputs.initial_noise", dev);
        using var latents = Tensor.Empty(dev, DType.F32, h * w, 128);
        Latents.Pack(noise.Reshape(128, h, w), latents);
        Assert.True(Compare.RelMaxError(g.ReadFloats("step.0.transformer_in.hidden_states"), latents.ToFloatArray()) == 0, "packed noise");

        pipe.Denoise(latents, embeds, scheduler, h, w, onStep: (i, pred, after) =>
        {
            Assert.Equal(g.ReadFloats($"step.{i}.transformer_in.timestep")[0], scheduler.TransformerTimestep(i));
            double ep = Compare.RelMaxError(g.ReadFloats($"step.{i}.noise_pred"), pred.ToFloatArray());
            Assert.True(ep <= Tol, $"step {i} noise_pred on {backend}: {ep:g3}");
            double el = Compare.RelMaxError(g.ReadFloats($"step.{i}.latents_after"), after.ToFloatArray());
            Assert.True(el <= Tol, $"step {i} latents on {backend}: {el:g3}");
        });

        var trace = new GoldenModel.Trace();
        using var image = pipe.DecodeLatents(latents, h, w, trace.Record);
        GoldenModel.AssertClose(g, trace, "latents_for_vae", "latents_for_vae", Tol, $"pipeline on {backend}");
        double ei = Compare.RelMaxError(g.ReadFloats("decoded_image"), image.ToFloatArray());
        Assert.True(ei <= Tol, $"decoded image on {backend}: {ei:g3}");

        // Post-processing as diffusers' pil output: round(clamp(x/2+0.5)·255) — compare against image_pt.
        var rgb = Flux2KleinPipeline.ToRgb(image.ToFloatArray(), width, height);
        var pt = g.ReadFloats("image_pt");
        int plane = width * height, off = 0;
        for (int p = 0; p < plane; p++)
            for (int c = 0; c < 3; c++)
                off = Math.Max(off, Math.Abs(rgb[3 * p + c] - (int)Math.Round(pt[c * plane + p] * 255f)));
        Assert.True(off <= 1, $"8-bit image differs from diffusers by {off} levels");
    }
}
