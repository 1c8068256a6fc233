/**
 * Kiln's Prometheus metrics (prom-client): one registry per process, so `kiln dev` — API, worker and
 * the Temporal SDK in one process — answers every metric on one `/metrics`. Workflows are
 * deterministic and count nothing; transitions are counted where I/O is allowed: the storage writes
 * of the build workflows' activities (build.ts), the API's requests (api.ts) and the API's Temporal
 * client (temporal.ts). The Temporal SDK's own worker metrics come from its Runtime's Prometheus
 * exporter, appended to this registry's text (sdk.ts).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

const BUILDER = ['project', 'bucket', 'builder'] as const;

/** Every metric Kiln defines, on one registry. */
export class KilnMetrics {
  readonly registry = new Registry();

  // ---- build transitions (worker: counted as each build workflow stores them) ----
  /** A build entered `status` (SCHEDULED again after a lease reset). */
  readonly buildStatusChanges = new Counter({
    name: 'kiln_build_status_changes_total',
    help: 'Builds that entered a status, by builder and status (SCHEDULED counts again after a lease reset)',
    labelNames: [...BUILDER, 'status'],
    registers: [this.registry],
  });
  /** A lease expired: the build went back to SCHEDULED (`reset`) or ended INFRA_FAILURE (`ended`). */
  readonly leaseExpiries = new Counter({
    name: 'kiln_lease_expiries_total',
    help: 'Leases that expired, by builder and outcome: reset (rescheduled) or ended (INFRA_FAILURE, no resets left)',
    labelNames: [...BUILDER, 'outcome'],
    registers: [this.registry],
  });
  /** A late succeed/fail from an expired lease was refused and noted in the build. */
  readonly staleReportsRefused = new Counter({
    name: 'kiln_stale_reports_refused_total',
    help: 'Late reports (succeed/fail) from an expired lease that were refused and noted in the build',
    labelNames: [...BUILDER],
    registers: [this.registry],
  });

  // ---- the API ----
  readonly apiRequests = new Counter({
    name: 'kiln_api_requests_total',
    help: 'HTTP API requests, by method, route and status code',
    labelNames: ['method', 'route', 'status'],
    registers: [this.registry],
  });
  readonly apiRequestDuration = new Histogram({
    name: 'kiln_api_request_duration_seconds',
    help: 'HTTP API request latency, by method and route',
    labelNames: ['method', 'route'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly apiErrors = new Counter({
    name: 'kiln_api_errors_total',
    help: "HTTP API error answers, by route and Kiln's error code (LEASE_EXPIRED, BUILD_IS_COMPLETED, …)",
    labelNames: ['route', 'code'],
    registers: [this.registry],
  });
  readonly leaseWatchBuilds = new Gauge({
    name: 'kiln_lease_watch_builds',
    help: 'Builds whose runners are long-polling POST /api/v1/watch on this API process',
    registers: [this.registry],
  });

  // ---- the API's Temporal client ----
  readonly temporalClientRequests = new Counter({
    name: 'kiln_temporal_client_requests_total',
    help: "Temporal gRPC calls of the API's client, by method and gRPC status code",
    labelNames: ['method', 'code'],
    registers: [this.registry],
  });
  readonly temporalClientDuration = new Histogram({
    name: 'kiln_temporal_client_request_duration_seconds',
    help: "Temporal gRPC call latency of the API's client, by method",
    labelNames: ['method'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 70],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}

let processMetrics: KilnMetrics | undefined;

/** This process's metrics (made on first use). */
export function kilnMetrics(): KilnMetrics {
  processMetrics ??= new KilnMetrics();
  return processMetrics;
}
