/**
 * Metrics of the API's Temporal client (the `@temporalio/client` connection, which the SDK's Runtime
 * does not see): one gRPC interceptor counts every call by method and status and times it. Workers'
 * own calls are in the SDK's `temporal_request*` metrics (sdk.ts).
 */
import { InterceptingCall, type Interceptor, status as grpcStatus } from '@grpc/grpc-js';
import { type KilnMetrics } from './registry.ts';

/** A gRPC interceptor recording `kiln_temporal_client_*`; add it to the client connection's interceptors. */
export function temporalClientMetricsInterceptor(m: KilnMetrics): Interceptor {
  return (options, nextCall) => {
    const method = options.method_definition.path.split('/').pop() ?? 'unknown';
    const started = process.hrtime.bigint();
    return new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        next(metadata, {
          onReceiveStatus(status, nextStatus) {
            m.temporalClientRequests.inc({ method, code: grpcStatus[status.code] ?? String(status.code) });
            m.temporalClientDuration.observe({ method }, Number(process.hrtime.bigint() - started) / 1e9);
            nextStatus(status);
          },
        });
      },
    });
  };
}
