namespace PureFlux.Model.Flux2;

/// <summary>A packed latent grid in the joint sequence: its time coordinate T (0 for the generated image, 10, 20, …
/// for reference images) and its rows × cols of tokens.</summary>
public readonly record struct ReferenceGrid(int T, int Rows, int Cols);
