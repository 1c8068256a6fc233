/**
 * The Temporal SDK's own metrics (worker task slots, poll and schedule-to-start latencies, sticky
 * cache, the worker's gRPC requests to the server: `temporal_*`). The SDK's Runtime exports them in
 * Prometheus format on an address of its own; Kiln binds it to a free loopback port and appends it
 * to its `/metrics`, so each process is one scrape target.
 */
import { createServer } from 'node:net';

let url: string | undefined;

/** A free loopback `host:port` for the SDK's exporter, remembered for `sdkMetricsUrl`. */
export async function reserveSdkMetricsAddress(): Promise<string> {
  const port = await new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const p = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(p));
    });
  });
  const address = `127.0.0.1:${port}`;
  url = `http://${address}/metrics`;
  return address;
}

/** Where this process's SDK metrics are, once a worker's Runtime exports them. */
export function sdkMetricsUrl(): string | undefined {
  return url;
}

/** Forgets the address (the Runtime was installed without it, e.g. by an earlier caller). */
export function clearSdkMetricsAddress(): void {
  url = undefined;
}
