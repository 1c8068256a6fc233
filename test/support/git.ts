/**
 * Test support for real git: bare repositories on disk with a work clone to commit from, every
 * change through the real `git` binary, and a repository served over HTTP on loopback by
 * `git http-backend` behind a tiny Node server (with optional basic auth), as a Git hosting
 * service would. Everything is under one temp folder per `GitFixture`, removed by `cleanup()`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const GIT_ENV = {
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_TERMINAL_PROMPT: '0',
  LC_ALL: 'C',
};

/** Runs git synchronously in `cwd`; returns trimmed stdout. */
export function git(cwd: string, args: string[], env: Record<string, string> = {}): string {
  return execFileSync('git', args, {
    cwd,
    env: { ...process.env, ...GIT_ENV, ...env },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

/** A bare "server" repository and a work clone that commits and pushes to it. */
export class GitFixture {
  readonly root = mkdtempSync(join(tmpdir(), 'kiln-git-'));
  readonly bare: string;
  readonly work: string;
  private n = 0;

  constructor(readonly name = 'project') {
    this.bare = join(this.root, 'srv', `${name}.git`);
    this.work = join(this.root, 'work', name);
    mkdirSync(this.bare, { recursive: true });
    git(this.bare, ['init', '--bare', '-q', '-b', 'master']);
    git(this.root, ['clone', '-q', this.bare, this.work]);
    git(this.work, ['config', 'user.name', 'Test Author']);
    git(this.work, ['config', 'user.email', 'author@example.org']);
  }

  /** `file://` URL of the bare repository. */
  get url(): string {
    return `file://${this.bare}`;
  }

  /** Commits `files` on `branch` (created from the current branch when new) as `author`; pushes it; returns the SHA. */
  commit(
    branch: string,
    message: string,
    files: Record<string, string> = {},
    author: { name: string; email: string } = { name: 'Test Author', email: 'author@example.org' },
  ): string {
    this.checkout(branch);
    const content = Object.keys(files).length ? files : { [`file-${++this.n}.txt`]: `${message}\n` };
    for (const [f, text] of Object.entries(content)) {
      mkdirSync(join(this.work, f, '..'), { recursive: true });
      writeFileSync(join(this.work, f), text);
    }
    git(this.work, ['add', '-A']);
    git(this.work, ['commit', '-q', '--allow-empty', '-m', message], {
      GIT_AUTHOR_NAME: author.name,
      GIT_AUTHOR_EMAIL: author.email,
    });
    git(this.work, ['push', '-q', 'origin', `HEAD:refs/heads/${branch}`]);
    return git(this.work, ['rev-parse', 'HEAD']);
  }

  /** Creates `branch` at `from` (a branch or SHA) on the server. */
  branch(branch: string, from: string): string {
    git(this.work, ['fetch', '-q', 'origin']);
    const sha = git(this.work, ['rev-parse', from.length === 40 ? from : `origin/${from}`]);
    git(this.work, ['push', '-q', 'origin', `${sha}:refs/heads/${branch}`]);
    return sha;
  }

  /** The server's tip of `branch`, or undefined. */
  tip(branch: string): string | undefined {
    try {
      return git(this.bare, ['rev-parse', '--verify', '--quiet', `refs/heads/${branch}`]);
    } catch {
      return undefined;
    }
  }

  /** True when `a` is an ancestor of `b` on the server. */
  isAncestor(a: string, b: string): boolean {
    try {
      git(this.bare, ['merge-base', '--is-ancestor', a, b]);
      return true;
    } catch {
      return false;
    }
  }

  /** Parents of `sha` on the server. */
  parents(sha: string): string[] {
    return git(this.bare, ['rev-list', '--parents', '-n', '1', sha]).split(' ').slice(1);
  }

  /** Content of `file` at `rev` on the server. */
  show(rev: string, file: string): string {
    return git(this.bare, ['show', `${rev}:${file}`]);
  }

  private checkout(branch: string): void {
    git(this.work, ['fetch', '-q', 'origin']);
    const remote = (() => {
      try {
        return git(this.work, ['rev-parse', '--verify', '--quiet', `origin/${branch}`]);
      } catch {
        return undefined;
      }
    })();
    if (remote) git(this.work, ['checkout', '-q', '-B', branch, `origin/${branch}`]);
    else git(this.work, ['checkout', '-q', '-B', branch]);
  }

  /**
   * Installs a `post-receive` hook that appends every ref update (`old new ref`) to a log, so a
   * test counts pushes that landed; returns a reader of that log.
   */
  recordPushes(): () => string[] {
    const log = join(this.root, 'pushes.log');
    writeFileSync(log, '');
    const hook = join(this.bare, 'hooks', 'post-receive');
    writeFileSync(hook, `#!/bin/sh\ncat >> '${log}'\n`);
    chmodSync(hook, 0o755);
    return () => readFileSync(log, 'utf8').split('\n').filter(Boolean);
  }

  /**
   * Installs a `pre-receive` hook that writes `entered` then waits until `release` exists before
   * accepting, so a test can kill a pusher mid-push.
   */
  holdPushes(): { entered: string; release: string } {
    const entered = join(this.root, 'push-entered');
    const release = join(this.root, 'push-release');
    const hook = join(this.bare, 'hooks', 'pre-receive');
    writeFileSync(
      hook,
      `#!/bin/sh\ncat > /dev/null\ntouch '${entered}'\ni=0\nwhile [ ! -e '${release}' ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done\nexit 0\n`,
    );
    chmodSync(hook, 0o755);
    return { entered, release };
  }

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** A Git HTTP server on loopback: `git http-backend` (smart HTTP, fetch and push) behind Node's http. */
export interface GitHttpServer {
  /** Base URL; a repository `<name>.git` under the project root is at `<url>/<name>.git`. */
  url: string;
  /** Requests seen (method and path), for assertions. */
  requests: string[];
  close(): Promise<void>;
}

/**
 * Serves every bare repository under `projectRoot` over smart HTTP. With `auth`, every request needs
 * that basic-auth user and password (401 otherwise), and pushes are allowed for it; without, pushes
 * are allowed anonymously (http.receivepack).
 */
export async function startGitHttpServer(
  projectRoot: string,
  auth?: { username: string; password: string },
  /** @default a free port */
  port = 0,
): Promise<GitHttpServer> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://localhost');
    requests.push(`${req.method} ${u.pathname}${u.search}`);
    if (auth) {
      const expected = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
      if (req.headers.authorization !== expected) {
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="git"' }).end('auth required\n');
        return;
      }
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const cgi = spawn('git', ['http-backend'], {
        env: {
          ...process.env,
          ...GIT_ENV,
          GIT_PROJECT_ROOT: projectRoot,
          GIT_HTTP_EXPORT_ALL: '1',
          GIT_CONFIG_COUNT: '1',
          GIT_CONFIG_KEY_0: 'http.receivepack',
          GIT_CONFIG_VALUE_0: 'true',
          REQUEST_METHOD: req.method ?? 'GET',
          PATH_INFO: decodeURIComponent(u.pathname),
          QUERY_STRING: u.search.slice(1),
          CONTENT_TYPE: req.headers['content-type'] ?? '',
          CONTENT_LENGTH: String(body.length),
          HTTP_CONTENT_ENCODING: String(req.headers['content-encoding'] ?? ''),
          GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
          REMOTE_ADDR: '127.0.0.1',
          REMOTE_USER: auth?.username ?? 'anonymous',
        },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      const out: Buffer[] = [];
      cgi.stdout.on('data', (c: Buffer) => out.push(c));
      cgi.stderr.resume();
      // http-backend may exit before reading the body (an error answer): not the server's failure.
      cgi.stdin.on('error', () => undefined);
      cgi.on('error', () => res.writeHead(500).end('cannot run git http-backend'));
      cgi.stdin.end(body);
      cgi.on('close', () => {
        const all = Buffer.concat(out);
        const sep = all.indexOf('\r\n\r\n') >= 0 ? all.indexOf('\r\n\r\n') : all.indexOf('\n\n');
        const sepLen = all.indexOf('\r\n\r\n') >= 0 ? 4 : 2;
        if (sep < 0) {
          res.writeHead(500).end('bad CGI output');
          return;
        }
        const headers: Record<string, string> = {};
        let status = 200;
        for (const line of all.subarray(0, sep).toString('latin1').split(/\r?\n/)) {
          const i = line.indexOf(':');
          if (i <= 0) continue;
          const k = line.slice(0, i).trim();
          const v = line.slice(i + 1).trim();
          if (k.toLowerCase() === 'status') status = Number.parseInt(v, 10);
          else headers[k] = v;
        }
        res.writeHead(status, headers).end(all.subarray(sep + sepLen));
      });
    });
  });
  server.unref();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  const a = server.address();
  const bound = typeof a === 'object' && a ? a.port : 0;
  return {
    url: `http://127.0.0.1:${bound}`,
    requests,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
