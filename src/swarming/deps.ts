/**
 * Worker-side Swarming wiring: one `SwarmingClient` per Swarming hostname, built from the config's
 * service-level `swarming` block (base URL override, OAuth token env variable, notify token).
 */
import { type KilnConfig } from '../config/schema.ts';
import { SwarmingClient } from './client.ts';

/** What the Swarming activities get from the worker (see `activities/swarming.ts`). */
export interface SwarmingDeps {
  clientFor(hostname: string): SwarmingClient;
  notifyToken?: string;
}

/** The worker's Swarming deps, or undefined when the config has no `swarming` block. */
export function swarmingDepsFromConfig(
  config: KilnConfig,
  env: NodeJS.ProcessEnv = process.env,
): SwarmingDeps | undefined {
  const s = config.swarming;
  if (!s) return undefined;
  const clients = new Map<string, SwarmingClient>();
  const tokenEnv = s.tokenEnv;
  return {
    clientFor(hostname: string): SwarmingClient {
      let c = clients.get(hostname);
      if (!c) {
        c = new SwarmingClient({
          hostname,
          ...(s.baseUrlOverride !== undefined ? { baseUrl: s.baseUrlOverride } : {}),
          ...(tokenEnv !== undefined ? { token: () => env[tokenEnv] ?? '' } : {}),
        });
        clients.set(hostname, c);
      }
      return c;
    },
    ...(s.notifyToken !== undefined ? { notifyToken: s.notifyToken } : {}),
  };
}
