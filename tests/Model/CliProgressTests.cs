using PureFlux.Cli.Progress;
using PureFlux.Model.Engine;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

/// <summary>The progress display of generate / experiment / bench e2e: plain lines off a terminal, the ETA, --progress.</summary>
public class CliProgressTests
{
    /// <summary>A clock the test moves by hand (timestamps in ticks).</summary>
    private sealed class FakeClock : TimeProvider
    {
        public long Now;
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => Now;
        public void Advance(double seconds) => Now += TimeSpan.FromSeconds(seconds).Ticks;
    }

    [Fact]
    public void Plain_renderer_prints_the_same_bytes_as_before_the_live_display()
    {
        // generate: the redrawn bar, a newline after the last step; stages print nothing.
        var w = new StringWriter();
        var bar = new PlainProgress(w, PlainSteps.Bar, new FakeClock());
        bar.Stage("denoising");
        bar.Step(1, 2);
        bar.Step(2, 2);
        bar.Note("warning: x");
        Assert.Equal("\rstep 1/2 [##########..........]\rstep 2/2 [####################]\nwarning: x" + Environment.NewLine, w.ToString());

        // experiment: narration as given, steps as lines with the seconds since the run started.
        w = new StringWriter();
        var clock = new FakeClock();
        var lines = new PlainProgress(w, PlainSteps.Lines, clock);
        clock.Advance(100);
        lines.Log("run 1/2: baseline (repetition 1)");
        lines.RunStarted(new RunStart("baseline (repetition 1)", 0, 2, Warmup: false));
        clock.Advance(1.5);
        lines.Step(1, 4);
        string nl = Environment.NewLine;
        Assert.Equal($"run 1/2: baseline (repetition 1){nl}    step 1/4, {1.5:0.0} s{nl}", w.ToString());

        // bench: runs narrated, steps silent; --progress none: notes only.
        w = new StringWriter();
        new PlainProgress(w, PlainSteps.Silent, clock).Step(1, 4);
        var quiet = new QuietProgress(w);
        quiet.Log("run none");
        quiet.Step(1, 1);
        quiet.Note("header");
        Assert.Equal("header" + nl, w.ToString());
    }

    [Fact]
    public void Eta_is_the_mean_of_completed_units_times_those_left_less_the_current_ones_time()
    {
        Assert.Null(Eta.Remaining(TimeSpan.Zero, done: 0, total: 4, TimeSpan.Zero)); // no mean yet
        // 2 steps in 10 s: 5 s each, 3 left = 15 s, 1 s of the third already spent.
        Assert.Equal(TimeSpan.FromSeconds(14), Eta.Remaining(TimeSpan.FromSeconds(10), 2, 5, TimeSpan.FromSeconds(1)));
        Assert.Equal(TimeSpan.Zero, Eta.Remaining(TimeSpan.FromSeconds(10), 2, 3, TimeSpan.FromSeconds(60))); // slower than the mean: not negative
        Assert.Equal(TimeSpan.Zero, Eta.Remaining(TimeSpan.FromSeconds(10), 3, 3, TimeSpan.Zero));

        // Back-to-back units: runs of an experiment starting at 100 s, each next start is the previous one's end.
        var eta = new Eta();
        Assert.Null(eta.Remaining(TimeSpan.FromSeconds(100)));
        eta.Started(TimeSpan.FromSeconds(100));
        eta.Started(TimeSpan.FromSeconds(130)); // a later start does not move the first
        eta.Completed(1, 6, TimeSpan.FromSeconds(130));
        eta.Completed(2, 6, TimeSpan.FromSeconds(160));
        Assert.Equal(TimeSpan.FromSeconds(4 * 30 - 5), eta.Remaining(TimeSpan.FromSeconds(165)));

        Assert.Equal("-:--", Eta.Format(null));
        Assert.Equal("0:42", Eta.Format(TimeSpan.FromSeconds(42.9)));
        Assert.Equal("12:05", Eta.Format(TimeSpan.FromSeconds(725)));
        Assert.Equal("1:02:09", Eta.Format(TimeSpan.FromSeconds(3729)));
    }

    [Fact]
    public void Progress_option_is_checked_and_auto_is_plain_off_a_terminal()
    {
        Assert.Equal(ProgressMode.Plain, ProgressDisplay.Resolve(ProgressMode.Auto, errIsTerminal: false));
        Assert.Equal(ProgressMode.Live, ProgressDisplay.Resolve(ProgressMode.Auto, errIsTerminal: true));
        Assert.Equal(ProgressMode.None, ProgressDisplay.Resolve(ProgressMode.None, errIsTerminal: true));
        foreach (var command in new[] { new[] { "generate", "--prompt", "x" }, ["experiment", "--variant", "steps=1"], ["bench", "e2e"] })
        {
            var (code, _, err) = Run([.. command, "--progress", "fancy"]);
            Assert.Equal(2, code);
            Assert.Equal("error: --progress 'fancy': expected auto, live, plain or none", err.TrimEnd());
        }
    }

    [Fact]
    public void Live_display_draws_with_ansi_and_shows_stage_step_and_eta()
    {
        // What a terminal gets (forced here onto a writer): cursor movement and the current stage and step.
        var w = new StringWriter();
        int result = LiveProgress.Show(w, d =>
        {
            d.Note("header line");
            d.RunStarted(new RunStart("baseline (repetition 1)", 0, 2, Warmup: false));
            d.Stage("denoising");
            d.Step(1, 2);
            Thread.Sleep(250); // let the display draw once
            d.Step(2, 2);
            return 7;
        });
        Assert.Equal(7, result);
        string s = w.ToString();
        Assert.Contains("\e[", s);
        Assert.Contains("header line", s);
        Assert.Contains("run 1/2: baseline (repetition 1)", s);
        Assert.Contains("denoising · step 1/2", s);
        Assert.Contains("ETA", s);
        Assert.Null(PureFlux.Cli.Interrupts.RestoreTerminal); // a finished display leaves nothing for an interrupt to undo
    }

    [Fact]
    public void Redirected_output_has_no_ansi_escapes()
    {
        // The tests' writers are not a terminal: --progress auto prints plain lines.
        var (code, _, err) = Run("experiment", "--model", TinySnapshot.Dir, "--size", "32", "--steps", "1", "--reps", "1", "--warmup", "false",
            "--baseline", FreshProcessTests.Baseline, "--variant", "rope-cache=off");
        Assert.True(code == 0, err);
        Assert.DoesNotContain('\e', err);
        Assert.Contains("run 2/2: rope-cache=off (repetition 1)", err);
        Assert.Contains("    step 1/1, ", err);
    }
}
