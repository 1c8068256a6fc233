/**
 * The `kiln` command tree, built without parsing argv so tests can introspect it (the compose file's
 * commands must exist). Server commands (`dev`, `api`, `worker`, `migrate`) run Kiln's processes;
 * client commands (`schedule`, `get`, `search`, `cancel`, `priority`) talk to the API at --api /
 * KILN_API (default http://127.0.0.1:8080) with --token / KILN_TOKEN. `main.ts` parses argv.
 */
import { Command, InvalidArgumentError } from 'commander';
import { KilnClient } from '../client/kilnClient.ts';
import { type Build } from '../domain/build.ts';
import { registerGerritCommands } from './commands/gerrit.ts';
import { promotionLine, registerLaunchpadCommands } from './commands/launchpad.ts'; // ---- launchpad ----
import { registerLogCommand } from './commands/log.ts';
import { registerRunnerCommand } from './commands/runner.ts';
import { registerStuckCommand } from './commands/stuck.ts';
import { registerTinderboxCommands } from './commands/tinderbox.ts';
import { failureReport, WAIT_FAILED_EXIT_CODE, waitForBuild } from './commands/wait.ts';
import { buildDetails, buildLine } from './format.ts';
import { runApi, runDev, runMigrate, runWorker } from './serve.ts';
import { apiOption, tokenOption } from './options.ts';

const apiOpts = (c: Command) => c.addOption(apiOption()).addOption(tokenOption()).option('--json', 'print JSON');

const client = (o: { api: string; token?: string }) => new KilnClient({ baseUrl: o.api, token: o.token });

/** Parses "project/bucket/builder". */
function builderArg(s: string) {
  const parts = s.split('/');
  if (parts.length !== 3 || parts.some((p) => !p)) throw new InvalidArgumentError('expected project/bucket/builder');
  const [project, bucket, builder] = parts as [string, string, string];
  return { project, bucket, builder };
}

const collect = (v: string, prev: string[]) => [...prev, v];

function print(o: { json?: boolean }, value: unknown, human: () => string): void {
  console.log(o.json ? JSON.stringify(value, null, 2) : human());
}

/** Builds the whole `kiln` program; `main.ts` parses argv with it. */
export function buildProgram(): Command {
  const program = new Command('kiln').description('Durable build orchestrator on Temporal').showHelpAfterError();

  program
    .command('dev')
    .description('everything on this machine: Temporal dev server, worker, API (embedded storage)')
    .option('-c, --config <file>', 'config file (default: KILN_CONFIG, ./kiln.yaml, or the demo config)')
    .action((o: { config?: string }) => runDev(o.config));

  program
    .command('api')
    .description('the HTTP API only (needs TEMPORAL_ADDRESS; several processes need PostgreSQL storage)')
    .option('-c, --config <file>', 'config file')
    .action((o: { config?: string }) => runApi(o.config));

  program
    .command('worker')
    .description('a Temporal worker for Kiln workflows and activities')
    .option('-c, --config <file>', 'config file')
    .action((o: { config?: string }) => runWorker(o.config));

  program
    .command('migrate')
    .description('apply storage migrations and exit')
    .option('-c, --config <file>', 'config file')
    .action((o: { config?: string }) => runMigrate(o.config));

  apiOpts(
    program
      .command('schedule <builder>')
      .description('schedule a build of project/bucket/builder')
      .option(
        '-p, --property <key=json>',
        'input property (repeatable); value parsed as JSON, else a string',
        collect,
        [],
      )
      .option('-t, --tag <key:value>', 'tag (repeatable)', collect, [])
      .option('--priority <n>', 'priority 0-255 (lower runs first)', (v) => Number.parseInt(v, 10))
      .option('--request-id <id>', 'idempotency key: the same id returns the same build')
      .option('-w, --wait', 'follow the build until it ends; exit non-zero unless SUCCESS'),
  ).action(
    async (
      b: string,
      o: {
        property: string[];
        tag: string[];
        priority?: number;
        requestId?: string;
        wait?: boolean;
        api: string;
        token?: string;
        json?: boolean;
      },
    ) => {
      const properties: Record<string, unknown> = {};
      for (const kv of o.property) {
        const i = kv.indexOf('=');
        if (i <= 0) throw new InvalidArgumentError(`--property ${kv}: expected key=value`);
        const raw = kv.slice(i + 1);
        try {
          properties[kv.slice(0, i)] = JSON.parse(raw);
        } catch {
          properties[kv.slice(0, i)] = raw;
        }
      }
      const build = await client(o).schedule({
        builder: builderArg(b),
        properties,
        tags: o.tag,
        priority: o.priority,
        requestId: o.requestId,
      });
      if (!o.wait) {
        print(o, build, () => buildLine(build));
        return;
      }
      if (!o.json) console.log(`build ${build.id}`);
      const ended = await waitForBuild(client(o), build, { print: o.json ? () => undefined : undefined });
      if (o.json) console.log(JSON.stringify(ended, null, 2));
      if (ended.status !== 'SUCCESS') {
        if (!o.json) for (const l of await failureReport(client(o), ended)) console.log(l);
        process.exitCode = WAIT_FAILED_EXIT_CODE;
      }
    },
  );

  apiOpts(
    program.command('get <build>').description('show one build: by id, or by project/bucket/builder/number'),
  ).action(async (ref: string, o: { api: string; token?: string; json?: boolean }) => {
    const byNumber = /^([^/]+)\/([^/]+)\/([^/]+)\/([0-9]+)$/.exec(ref);
    const build = byNumber
      ? await client(o).getByNumber(
          { project: byNumber[1]!, bucket: byNumber[2]!, builder: byNumber[3]! },
          Number(byNumber[4]),
        )
      : await client(o).get(ref);
    // ---- launchpad: which promotions the build fed ----
    const fed = build.input.gitilesCommit
      ? await client(o)
          .promotions({ build: build.id, limit: 10 })
          .then((r) => r.promotions)
          .catch(() => [])
      : [];
    print(o, fed.length ? { ...build, promotions: fed } : build, () =>
      [
        buildDetails(build),
        ...(fed.length ? ['promotions fed:', ...fed.map((a) => `  ${promotionLine(a)}`)] : []),
      ].join('\n'),
    );
  });

  apiOpts(
    program
      .command('search')
      .description('search builds, newest first')
      .option('--builder <p/b/b>', 'project/bucket/builder')
      .option('--bucket <p/b>', 'project/bucket')
      .option('--status <status>', 'SCHEDULED, STARTED, SUCCESS, FAILURE, INFRA_FAILURE, CANCELED')
      .option('-t, --tag <key:value>', 'tag that must match (repeatable)', collect, [])
      .option('--buildset <buildset>', 'e.g. patch/gerrit/host/123/4')
      .option('--created-by <name>', 'who scheduled (the token name, or anonymous)')
      .option('--gerrit-change <host/change/patchset>', 'builds of a Gerrit patch set (repeatable)', collect, [])
      .option('--limit <n>', 'page size', '50')
      .option('--cursor <cursor>', 'next page'),
  ).action(
    async (o: {
      builder?: string;
      bucket?: string;
      status?: string;
      tag: string[];
      buildset?: string;
      createdBy?: string;
      gerritChange: string[];
      limit: string;
      cursor?: string;
      api: string;
      token?: string;
      json?: boolean;
    }) => {
      const b = o.builder ? builderArg(o.builder) : undefined;
      const [project, bucket] = o.bucket ? o.bucket.split('/') : [b?.project, b?.bucket];
      const c = client(o);
      const page = await c.search({
        project,
        bucket,
        builder: b?.builder,
        status: o.status,
        tag: o.tag,
        buildset: o.buildset,
        createdBy: o.createdBy,
        gerritChange: o.gerritChange,
        limit: o.limit,
        cursor: o.cursor,
      });
      // No builds of a builder that is not configured: say so (BUILDER_NOT_FOUND, with the nearest names).
      if (b && page.builds.length === 0 && !o.cursor) await c.getBuilder(b);
      print(
        o,
        page,
        () =>
          [...page.builds.map(buildLine), ...(page.nextCursor ? [`(more: --cursor ${page.nextCursor})`] : [])].join(
            '\n',
          ) || '(no builds)',
      );
    },
  );

  apiOpts(program.command('cancel <id>').description('cancel a build').option('--reason <text>', 'why')).action(
    async (id: string, o: { reason?: string; api: string; token?: string; json?: boolean }) => {
      const build: Build = await client(o).cancel(id, o.reason);
      print(o, build, () => buildLine(build));
    },
  );

  apiOpts(program.command('priority <id> <priority>').description("change a pending build's priority")).action(
    async (id: string, p: string, o: { api: string; token?: string; json?: boolean }) => {
      const build = await client(o).setPriority(id, Number.parseInt(p, 10));
      print(o, build, () => buildLine(build));
    },
  );

  registerRunnerCommand(program);
  registerLogCommand(program);
  registerStuckCommand(program);
  registerTinderboxCommands(program);
  registerGerritCommands(program);
  registerLaunchpadCommands(program); // ---- launchpad ----

  return program;
}
