/**
 * Connects Temporal clients and workers to the server named by config: address, namespace, and
 * optionally TLS/mTLS and an API key for Temporal Cloud or a secured cluster.
 */
import { readFileSync } from 'node:fs';
import {
  Client,
  Connection,
  type TLSConfig,
  type ConnectionOptions,
  defaultGrpcRetryOptions,
  makeGrpcRetryInterceptor,
} from '@temporalio/client';
import { NativeConnection, type NativeConnectionOptions } from '@temporalio/worker';
import { hostPort } from '../../workers/relay.ts';
import { type KilnConfig } from '../config/schema.ts';

type TemporalConfig = KilnConfig['temporal'];

function tlsOptions(t: TemporalConfig): TLSConfig | undefined {
  if (!t.tls) return undefined;
  const read = (p: string | undefined) => (p === undefined ? undefined : readFileSync(p));
  const cert = read(t.tls.certPath);
  const key = read(t.tls.keyPath);
  return {
    serverNameOverride: t.tls.serverName,
    serverRootCACertificate: read(t.tls.caPath),
    clientCertPair: cert && key ? { crt: cert, key } : undefined,
  };
}

function apiKey(t: TemporalConfig): string | undefined {
  return t.apiKeyEnv ? process.env[t.apiKeyEnv] : undefined;
}

/**
 * A client for scheduling and messaging workflows. `interceptors` are added after the SDK's default
 * retry interceptor (e.g. the metrics one, src/metrics/temporal.ts).
 */
export async function connectClient(
  t: TemporalConfig & { address: string },
  interceptors: NonNullable<ConnectionOptions['interceptors']> = [],
): Promise<Client> {
  const connection = await Connection.connect({
    address: t.address,
    tls: tlsOptions(t),
    apiKey: apiKey(t),
    ...(interceptors.length > 0
      ? { interceptors: [makeGrpcRetryInterceptor(defaultGrpcRetryOptions()), ...interceptors] }
      : {}),
  });
  return new Client({ connection, namespace: t.namespace });
}

/**
 * A native connection for workers. `via`: connect to this `host:port` instead (the worker
 * supervisor's relay to `t.address`); with TLS the server's certificate is still checked against
 * the server's own name.
 */
export async function connectWorker(t: TemporalConfig & { address: string }, via?: string): Promise<NativeConnection> {
  let tls = tlsOptions(t);
  if (via !== undefined && tls && tls.serverNameOverride === undefined) {
    tls = { ...tls, serverNameOverride: hostPort(t.address)?.host };
  }
  const opts: NativeConnectionOptions = { address: via ?? t.address, tls, apiKey: apiKey(t) };
  return NativeConnection.connect(opts);
}
