// Small statistics shared by the benchmarks (tunnel.ts's per-round medians, footprint.ts's per-ping ones).

/** The median of the finite values (the mean of the middle two for an even count); null if there are none. */
export function median(xs: number[]): number | null {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}
