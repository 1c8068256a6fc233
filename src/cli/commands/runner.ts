/** `kiln runner -c runner.yaml`: the pull agent (src/runner/). SIGTERM/SIGINT stop it gracefully. */
import { type Command } from 'commander';
import { loadEnv } from '../../config/load.ts';
import { makeLogger } from '../../processes/logger.ts';
import { loadRunnerConfig } from '../../runner/config.ts';
import { Runner } from '../../runner/runner.ts';

/** Registers `kiln runner` on the program. */
export function registerRunnerCommand(program: Command): void {
  program
    .command('runner')
    .description('pull agent: lease builds of the configured builders and run their commands here')
    .requiredOption('-c, --config <file>', 'runner config (YAML): api, token, serve, dimensions, capacity, intervals')
    .option('--name <name>', 'lease holder name (default: config name, else <hostname>-<pid>)')
    .action((o: { config: string; name?: string }) => {
      const settings = loadRunnerConfig(o.config);
      if (o.name) settings.name = o.name;
      const env = loadEnv();
      const logger = makeLogger({
        level: env.LOG_LEVEL,
        format: env.LOG_FORMAT,
        base: { component: 'kiln-runner', runner: settings.name },
      });
      const runner = new Runner(settings, logger);
      runner.start();
      let signals = 0;
      const stop = (sig: string) => {
        signals += 1;
        if (signals > 1) {
          logger.warn({ sig }, 'second signal: exiting now');
          process.exit(1);
        }
        void runner.stop().then(() => process.exit(0));
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
