/**
 * Quantiles of a Prometheus histogram as /metrics exposes it, the way histogram_quantile()
 * computes them: linear interpolation inside the bucket the rank falls in.
 */

/** The cumulative buckets of `name` in a /metrics text, `le` in the histogram's unit. */
export function histogramBuckets(text: string, name: string): { readonly le: number; readonly count: number }[] {
  const pattern = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`, 'gm');
  return [...text.matchAll(pattern)].map((m) => ({ le: m[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[1]), count: Number(m[2]) }));
}

/** The `q` quantile (0-1) of cumulative buckets; undefined without observations. Past the last finite bucket, its bound. */
export function histogramQuantile(q: number, buckets: readonly { readonly le: number; readonly count: number }[]): number | undefined {
  const total = buckets.at(-1)?.count ?? 0;
  if (total === 0) return undefined;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const { le, count } of buckets) {
    if (count >= rank) {
      if (le === Number.POSITIVE_INFINITY) return lower;
      return count === below ? le : lower + ((le - lower) * (rank - below)) / (count - below);
    }
    lower = le;
    below = count;
  }
  return lower;
}
