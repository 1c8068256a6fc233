/**
 * Test support: real git repositories on disk (a bare "server" repository with branches and Gerrit
 * style patch set refs, made with the real `git`), and a tiny HTTP server on loopback that serves
 * them through `git http-backend` (git's own smart-HTTP CGI), as a Gerrit or a git host would.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Kiln Test',
  GIT_AUTHOR_EMAIL: 'test@kiln.invalid',
  GIT_COMMITTER_NAME: 'Kiln Test',
  GIT_COMMITTER_EMAIL: 'test@kiln.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
  HOME: tmpdir(),
};

/** Runs git and returns its trimmed stdout. */
export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, env: GIT_ENV, encoding: 'utf8' }).trim();
}

/** A bare repository plus a work tree to make commits in and push them from. */
export interface TestRepo {
  /** The bare repository (what a runner fetches from). */
  bare: string;
  work: string;
  /** Writes `files`, commits them, and returns the commit's SHA (not pushed). */
  commit(message: string, files: Record<string, string>, opts?: { executable?: string[] }): string;
  /** Pushes `rev` to `ref` of the bare repository (e.g. `refs/heads/main`, `refs/changes/19/375219/1`). */
  push(rev: string, ref: string): void;
}

/** Makes a bare repository `<root>/<name>.git` with an empty work tree next to it. */
export function makeRepo(root: string, name: string): TestRepo {
  const bare = join(root, `${name}.git`);
  const work = join(root, `${name}-work`);
  mkdirSync(root, { recursive: true });
  git(root, 'init', '--quiet', '--bare', '--initial-branch=main', bare);
  // Serving over HTTP needs these for the dumb parts of the protocol; harmless on disk.
  git(bare, 'config', 'http.receivepack', 'true');
  git(root, 'init', '--quiet', '--initial-branch=main', work);
  return {
    bare,
    work,
    commit: (message, files, opts = {}) => {
      for (const [path, text] of Object.entries(files)) {
        mkdirSync(join(work, path, '..'), { recursive: true });
        writeFileSync(join(work, path), text, { mode: opts.executable?.includes(path) ? 0o755 : 0o644 });
        git(work, 'add', path);
      }
      git(work, 'commit', '--quiet', '--allow-empty', '-m', message);
      return git(work, 'rev-parse', 'HEAD');
    },
    push: (rev, ref) => {
      git(work, 'push', '--quiet', '--force', bare, `${rev}:${ref}`);
    },
  };
}

/** A temporary folder for repositories. */
export function tempRoot(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A running `git http-backend` server. */
export interface GitHttpServer {
  /** e.g. http://127.0.0.1:40123 — a repository `<root>/x.git` is at `<url>/x.git`. */
  url: string;
  /** Requests served, by path (the runner's fetches show up here). */
  requests: string[];
  close(): Promise<void>;
}

/**
 * Serves every repository under `root` over smart HTTP on 127.0.0.1 (a free port): each request
 * runs `git http-backend` as a CGI, with the request body on its stdin and its CGI headers turned
 * into the HTTP response. Read-only (no pushes). Closes with `close()`, and with the process.
 */
export async function startGitHttpServer(root: string): Promise<GitHttpServer> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    requests.push(url.pathname);
    const cgi = spawn('git', ['http-backend'], {
      env: {
        ...GIT_ENV,
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: decodeURIComponent(url.pathname),
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        ...(req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
        ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: req.headers['content-encoding'] } : {}),
        ...(req.headers['git-protocol'] ? { GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
        REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
        SERVER_PROTOCOL: 'HTTP/1.1',
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const sep = head.indexOf('\r\n\r\n') >= 0 ? '\r\n\r\n' : '\n\n';
      const at = head.indexOf(sep);
      if (at < 0) return;
      headersDone = true;
      let status = 200;
      for (const line of head.subarray(0, at).toString('latin1').split(/\r?\n/)) {
        const i = line.indexOf(':');
        if (i < 0) continue;
        const k = line.slice(0, i).trim();
        const v = line.slice(i + 1).trim();
        if (k.toLowerCase() === 'status') status = Number.parseInt(v, 10);
        else res.setHeader(k, v);
      }
      res.writeHead(status);
      res.write(head.subarray(at + sep.length));
    });
    cgi.stdout.on('end', () => res.end());
    cgi.on('error', () => {
      res.statusCode = 500;
      res.end();
    });
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  server.unref();
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
