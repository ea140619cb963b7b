return PureFlux.Cli.Cli.Run(args, Console.Out, Console.Error);
