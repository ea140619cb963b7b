using System.CommandLine;
using PureFlux.Cli.Progress;
using PureFlux.Model.Engine;
using PureFlux.Model.Experiments;

namespace PureFlux.Cli.Commands;

/// <summary>
/// <c>pureflux experiment-run --spec FILE --out FILE</c> (hidden): one run of <c>experiment --fresh-process</c> in this
/// process through <see cref="Experiment.RunOne"/>, its outcome written to --out. Not for people: the parent writes the spec.
/// </summary>
internal static class ExperimentRunCommand
{
    public static Command Create(CliContext ctx)
    {
        var spec = new Option<string>("--spec") { Description = "Run spec (JSON) written by 'pureflux experiment --fresh-process'", Required = true };
        var output = new Option<string>("--out") { Description = "Where to write the run's outcome", Required = true };
        var cmd = new Command("experiment-run", "One run of 'pureflux experiment --fresh-process' (internal).") { spec, output };
        cmd.Hidden = true;
        cmd.SetAction(parse =>
        {
            var s = FreshRunSpec.Read(parse.GetValue(spec)!);
            var arm = new ExperimentVariant(s.Arm, SwitchSet.Parse(s.Switches, $"--spec {parse.GetValue(spec)} switches"));
            var settings = ExperimentSwitches.Apply(arm.Switches, new RunSettings(s.ToJob(), new ModelOptions()));
            var outcome = Experiment.RunOne(s.Model, s.Device, arm, settings, s.Capture, s.Warmup, new ChildProgress(ctx.Err).ToRunProgress());
            RunOutcomeFile.Write(parse.GetValue(output)!, outcome);
            return Cli.Ok;
        });
        return cmd;
    }
}
