/**
 * Kiln's SSH endpoint for tinderboxes (config `tinderboxSsh`): an SSH server (the `ssh2` library) that accepts
 * each configured tinderbox by its id (the SSH user) and public key, and runs the Buildbot Gerrit Plugin's
 * `buildbot …` commands it sends (`runBuildbotCommand`), so `ssh kiln buildbot get …` works as it did against
 * Gerrit. Only exec requests are served: no shell, no port forwarding.
 */
import { generateKeyPairSync, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type pino from 'pino';
import ssh2 from 'ssh2';
import { ConfigError } from '../config/load.ts';
import { type TinderboxSshConfig } from '../config/tinderboxSsh.ts';
import { type BuildbotCommandContext, runBuildbotCommand, type SshTinderbox } from './buildbotCommands.ts';

const { Server, utils } = ssh2;

/** What `buildbot version` reports: Kiln's own version. */
export const KILN_VERSION = '0.1.0';

/** A running endpoint. */
export interface TinderboxSshServer {
  /** The port it listens on (the configured one, or the one picked for port 0). */
  port: number;
  close(): Promise<void>;
}

/** Reads (or, when missing, makes) the host key: an RSA key in PEM, which ssh2 reads. */
function hostKey(file: string): Buffer {
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true });
    const { privateKey } = generateKeyPairSync('rsa', {
      modulusLength: 3072,
      privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
      publicKeyEncoding: { type: 'pkcs1', format: 'pem' },
    });
    writeFileSync(file, privateKey, { mode: 0o600 });
  }
  return readFileSync(file);
}

/** The configured tinderboxes with their parsed public keys; a bad key fails at start naming the entry. */
function clients(config: TinderboxSshConfig) {
  return new Map(
    config.tinderboxes.map((t, i) => {
      const text = t.publicKey ?? readFileSync(t.publicKeyFile!, 'utf8');
      const key = utils.parseKey(text.trim());
      if (key instanceof Error || Array.isArray(key)) {
        throw new ConfigError(`config: tinderboxSsh.tinderboxes[${i}]: not an OpenSSH public key (${String(key)})`);
      }
      const tb: SshTinderbox = { id: t.id, capabilities: t.capabilities, admin: t.admin };
      return [t.id, { tb, key }] as const;
    }),
  );
}

/** Starts the endpoint; resolves once it listens. */
export async function startTinderboxSsh(
  config: TinderboxSshConfig,
  ctx: BuildbotCommandContext,
  o: { logger: pino.Logger; hostKeyFile: string },
): Promise<TinderboxSshServer> {
  const known = clients(config);
  const server = new Server({ hostKeys: [hostKey(config.hostKeyFile ?? o.hostKeyFile)] }, (client) => {
    let who: SshTinderbox | undefined;
    client.on('authentication', (auth) => {
      const entry = known.get(auth.username);
      if (auth.method !== 'publickey' || !entry) return auth.reject(['publickey']);
      const pub = entry.key.getPublicSSH();
      const same =
        auth.key.algo === entry.key.type && auth.key.data.length === pub.length && timingSafeEqual(auth.key.data, pub);
      if (!same) return auth.reject(['publickey']);
      // Without a signature the client only asks whether the key would do; with one, it proves it holds it.
      if (auth.signature && auth.blob && entry.key.verify(auth.blob, auth.signature, auth.hashAlgo) !== true) {
        return auth.reject(['publickey']);
      }
      if (auth.signature) who = entry.tb;
      auth.accept();
    });
    client.on('ready', () => {
      client.on('session', (acceptSession) => {
        const session = acceptSession();
        session.on('exec', (accept, _reject, info) => {
          const stream = accept();
          const tb = who!;
          const chunks: Buffer[] = [];
          const input = new Promise<Buffer>((resolve) => {
            stream.on('data', (d: Buffer) => chunks.push(d));
            stream.on('end', () => resolve(Buffer.concat(chunks)));
          });
          void runBuildbotCommand(ctx, tb, info.command, () => input)
            .catch((e: unknown) => {
              o.logger.error({ err: e, tinderbox: tb.id, command: info.command }, 'buildbot command failed');
              return { stdout: '', stderr: 'fatal: internal error (see Kiln log)\n', exitCode: 1 };
            })
            .then((r) => {
              o.logger.info({ tinderbox: tb.id, command: info.command, exitCode: r.exitCode }, 'buildbot command');
              if (r.stdout) stream.write(r.stdout);
              if (r.stderr) stream.stderr.write(r.stderr);
              stream.exit(r.exitCode);
              stream.end();
            });
        });
        session.on('shell', (_accept, reject) => reject());
        session.on('pty', (accept) => accept?.());
      });
    });
    client.on('error', (e) => o.logger.debug({ err: e }, 'tinderbox ssh client error'));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  o.logger.info({ host: config.host, port }, 'tinderbox SSH endpoint listening');
  return {
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
