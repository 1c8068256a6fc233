/**
 * `kiln`: the command line entry point. The command tree lives in `program.ts`; this parses argv
 * and turns errors into one line on stderr (plus a hint where one helps) and an exit code: 1 for
 * bad input or a start error, 3 for UNAVAILABLE (retry later).
 */
import { InvalidArgumentError } from 'commander';
import { KilnApiError } from '../client/kilnClient.ts';
import { ConfigError } from '../config/load.ts';
import { KilnError } from '../domain/errors.ts';
import { StartError } from '../processes/runtime.ts';
import { DevServerError } from '../temporal/devServer.ts';
import { fromNpmRun } from './npmRun.ts';
import { buildProgram } from './program.ts';

fromNpmRun();
const program = buildProgram();

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof KilnApiError || e instanceof KilnError) {
    console.error(`kiln: ${e.code}: ${e.message}`);
    if (e instanceof KilnApiError && e.hint) console.error(`kiln: ${e.hint}`);
  } else if (e instanceof ConfigError || e instanceof InvalidArgumentError) {
    for (const line of e.message.split('\n')) console.error(`kiln: ${line}`);
  } else if (e instanceof StartError || e instanceof DevServerError) {
    console.error(`kiln: cannot start: ${e.message}`);
  } else {
    console.error('kiln:', e);
  }
  const unavailable = (e instanceof KilnApiError || e instanceof KilnError) && e.code === 'UNAVAILABLE';
  // Exit now: a server command that failed to start has stopped its parts, and nothing else may linger.
  process.exit(unavailable ? 3 : 1);
}
