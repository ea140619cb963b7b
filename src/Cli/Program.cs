using System.Runtime.InteropServices;

// Ctrl-C (SIGINT), SIGTERM and SIGHUP: delete the temporary files this process is writing (PNGs, cache entries, snapshot
// directories of make-model / quantize), say so in one line, exit 130 / 143. Any other exit sweeps them too.
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, PureFlux.Cli.Interrupts.Handle);
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, PureFlux.Cli.Interrupts.Handle);
using var sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, PureFlux.Cli.Interrupts.Handle);
AppDomain.CurrentDomain.ProcessExit += (_, _) => PureFlux.Runtime.TempFileRegistry.Default.DeleteAll();
return PureFlux.Cli.Cli.Run(args, Console.Out, Console.Error);
