global using Xunit;
global using PureFlux.Runtime;
global using PureFlux.Kernels;
