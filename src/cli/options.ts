/**
 * The options every client command shares. `--token` comes from `KILN_TOKEN` when not given, and
 * help shows the variable's name, never its value (a token is a secret).
 */
import { Option } from 'commander';

/** The Kiln API a client command talks to: --api, else KILN_API, else http://127.0.0.1:8080. */
export const DEFAULT_API = 'http://127.0.0.1:8080';

/** `--api <url>` (env KILN_API). */
export function apiOption(): Option {
  return new Option('--api <url>', 'Kiln API base URL').env('KILN_API').default(DEFAULT_API);
}

/** `--token <token>` (env KILN_TOKEN; its value is never printed). */
export function tokenOption(): Option {
  return new Option('--token <token>', 'bearer token').env('KILN_TOKEN');
}
