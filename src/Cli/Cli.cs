using System.CommandLine;
using PureFlux.Cli.Commands;

namespace PureFlux.Cli;

/// <summary>Where a command writes: normal output and errors (the console, or writers given by tests).</summary>
public sealed record CliContext(TextWriter Out, TextWriter Err)
{
    /// <summary>Err is this process's stderr and that is a terminal (not redirected, TERM not dumb): where --progress auto draws live.</summary>
    public bool ErrIsTerminal { get; init; }
}

/// <summary>
/// The <c>pureflux</c> command line. Each subcommand lives in its own file under Commands/ as a
/// <c>static Command Create(CliContext)</c>; add new ones to <see cref="Subcommands"/>.
/// Exit codes: 0 success, 1 the command failed (one-line message on stderr), 2 bad usage. Usage means a bad command
/// line: a parse error or an <see cref="ArgumentException"/> (the convention for "this argument is wrong"). Bad data in
/// files (configs, weights, tokenizers, golden sets) is reported with the readers' own exception types
/// (ModelConfigException, SnapshotException, SafetensorsException, TokenizerLoadException, InvalidDataException): exit 1.
/// </summary>
public static class Cli
{
    public const int Ok = 0, Failed = 1, Usage = 2;

    private static readonly Func<CliContext, Command>[] Subcommands =
    [
        GenerateCommand.Create,
        VerifyCommand.Create,
        MakeModelCommand.Create,
        QuantizeCommand.Create,
        DevicesCommand.Create,
        TokenizeCommand.Create,
        BenchCommand.Create,
        ExperimentCommand.Create,
        ExperimentRunCommand.Create, // hidden: one run of experiment --fresh-process
    ];

    public static RootCommand BuildRoot(CliContext ctx)
    {
        var root = new RootCommand("PureFlux: FLUX.2 [klein] inference in pure managed C# (ILGPU + SIMD CPU).");
        foreach (var create in Subcommands) root.Add(create(ctx));
        return root;
    }

    /// <summary>Parses and runs a command line; never throws, never prints a stack trace (unless PUREFLUX_DEBUG=1).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var ctx = new CliContext(stdout, stderr)
        {
            ErrIsTerminal = ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected && Environment.GetEnvironmentVariable("TERM") != "dumb",
        };
        try
        {
            var root = BuildRoot(ctx);
            var parse = root.Parse(args);
            if (parse.Errors.Count > 0)
            {
                var command = parse.CommandResult.Command;
                string name = command is RootCommand ? "pureflux" : "pureflux " + command.Name;
                // An unknown word explains more than "required command was not provided": report it first.
                var error = parse.Errors.OrderBy(e => e.Message.StartsWith("Unrecognized", StringComparison.Ordinal) ? 0 : 1).First();
                string message = args.Length == 0
                    ? $"no command given; commands: {string.Join(", ", root.Subcommands.Where(c => !c.Hidden).Select(c => c.Name))}"
                    : OneLine(error.Message);
                stderr.WriteLine($"error: {message} (see '{name} --help')");
                return Usage;
            }
            return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            stderr.WriteLine("error: " + Describe(e));
            if (Environment.GetEnvironmentVariable("PUREFLUX_DEBUG") == "1") stderr.WriteLine(e);
            return IsUsage(e) ? Usage : Failed;
        }
    }

    /// <summary>
    /// A bad command line. An operator's own argument check (Runtime.Check: shapes, dtypes) reaching the user means
    /// the model's parts or data disagree, not that the user typed something wrong: that is a failure (1).
    /// </summary>
    private static bool IsUsage(Exception e) => e is ArgumentException && e.TargetSite?.DeclaringType != typeof(PureFlux.Runtime.Check);

    private static string Describe(Exception e)
    {
        // Our own exceptions carry complete messages (file, field, expectation); others get their type too.
        bool ours = e is ArgumentException or IOException or InvalidDataException or UnauthorizedAccessException or NotSupportedException
            || e.GetType().Namespace?.StartsWith("PureFlux", StringComparison.Ordinal) == true;
        return OneLine(ours ? e.Message : $"{e.GetType().Name}: {e.Message}");
    }

    private static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();
}
