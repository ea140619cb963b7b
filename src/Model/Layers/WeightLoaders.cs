using PureFlux.Model.Snapshot;

namespace PureFlux.Model.Layers;

public static class WeightLoaders
{
    /// <summary>Loads weights from a snapshot part onto <paramref name="device"/>, checking each shape against the config's.</summary>
    public static WeightLoader Loader(this WeightSource source, Device device) => (name, shape) =>
    {
        source.Expect(name, shape);
        return source.Load(name, device);
    };
}
