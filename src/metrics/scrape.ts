/**
 * One scrape's text: this process's registry, then the Temporal SDK's metrics when this process
 * runs a worker (the SDK's Runtime serves them on a loopback port chosen at start; see sdk.ts).
 */
import { type KilnMetrics } from './registry.ts';
import { sdkMetricsUrl } from './sdk.ts';

/** The Prometheus text exposition of everything this process measures. */
export async function scrapeText(m: KilnMetrics): Promise<string> {
  const own = await m.registry.metrics();
  const url = sdkMetricsUrl();
  if (!url) return own;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) return own;
    return `${own.trimEnd()}\n${await res.text()}`;
  } catch {
    return own; // the SDK's exporter is not up (yet): Kiln's own metrics still answer
  }
}
