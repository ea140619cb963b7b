namespace PureFlux.Model.T5;

/// <summary>
/// T5's relative-position buckets (transformers T5Attention._relative_position_bucket, bidirectional as in the
/// encoder): half the buckets per direction (+half when the key is after the query); distances below a quarter of the
/// buckets are their own bucket, larger ones are log-spaced up to <c>maxDistance</c> and clamped to the last bucket.
/// The log step is evaluated in float32 as PyTorch does (float tensor ops with the scalars rounded to float32), then
/// truncated, so bucket edges fall where transformers puts them.
/// </summary>
public static class T5RelativePosition
{
    /// <summary>The bucket of <paramref name="relativePosition"/> = key position − query position.</summary>
    public static int Bucket(int relativePosition, int numBuckets, int maxDistance)
    {
        int half = numBuckets / 2;
        int bucket = relativePosition > 0 ? half : 0;
        int distance = Math.Abs(relativePosition);
        int maxExact = half / 2;
        if (distance < maxExact) return bucket + distance;
        float logRatio = MathF.Log(distance / (float)maxExact);
        float span = (float)Math.Log((double)maxDistance / maxExact);
        int large = maxExact + (int)(logRatio / span * (half - maxExact));
        return bucket + Math.Min(large, half - 1);
    }

    /// <summary>
    /// Buckets of every key − query offset of an S_q × S_k attention, offset −(S_q − 1) first: entry n is the bucket
    /// of offset n − (S_q − 1) (what <see cref="PureFlux.Kernels.RelativePositionBias"/> takes). [S_q + S_k − 1].
    /// </summary>
    public static int[] BucketsOfOffsets(int queries, int keys, int numBuckets, int maxDistance)
    {
        var buckets = new int[queries + keys - 1];
        for (int n = 0; n < buckets.Length; n++) buckets[n] = Bucket(n - (queries - 1), numBuckets, maxDistance);
        return buckets;
    }
}
