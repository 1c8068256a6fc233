/**
 * `kiln`: the command line entry point. The command tree lives in `program.ts`; this parses argv
 * and turns errors into one line on stderr and an exit code.
 */
import { InvalidArgumentError } from 'commander';
import { KilnApiError } from '../client/kilnClient.ts';
import { ConfigError } from '../config/load.ts';
import { KilnError } from '../domain/errors.ts';
import { buildProgram } from './program.ts';

const program = buildProgram();

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof KilnApiError || e instanceof KilnError) {
    console.error(`kiln: ${e.code}: ${e.message}`);
  } else if (e instanceof ConfigError || e instanceof InvalidArgumentError) {
    console.error(`kiln: ${e.message}`);
  } else {
    console.error('kiln:', e);
  }
  process.exitCode = e instanceof KilnApiError && e.code === 'UNAVAILABLE' ? 3 : 1;
}
