/**
 * A fake Gerrit for tests: a real HTTP server on 127.0.0.1 that speaks Gerrit's REST wire format
 * (`)]}'` prefix, `_number`, `_account_id`, `current_revision`, detailed labels, change messages)
 * for the calls Kiln makes: change detail, group members and posting reviews. Tests set up
 * accounts, groups and changes in memory, move changes along (new patchsets, votes, merge,
 * abandon), inject failures, and assert on every review posted.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import { type AddressInfo } from 'node:net';

/** An account the fake knows; `password` (HTTP basic) or `token` (bearer) let it authenticate. */
export interface FakeAccount {
  _account_id: number;
  name?: string;
  email?: string;
  username?: string;
  password?: string;
  token?: string;
}

/** A review the fake received and applied. */
export interface RecordedReview {
  change: number;
  patchset: number;
  revision: string;
  accountId: number;
  message?: string;
  labels?: Record<string, number>;
  tag?: string;
}

/** A request the fake served (for asserting on paths and auth). */
export interface RecordedRequest {
  method: string;
  /** Path and query as sent, e.g. `/a/changes/proj~1/detail?o=CURRENT_REVISION`. */
  url: string;
  /** `basic:<username>`, `bearer:<username>`, or `anonymous`. */
  auth: string;
}

/** Which requests an injected fault applies to. */
export interface FaultMatch {
  method?: string;
  /** Substring of the path. */
  path?: string;
}

interface Fault extends FaultMatch {
  kind: 'status' | 'status-after-apply' | 'raw' | 'delay';
  times: number;
  status: number;
  body: string;
  delayMs: number;
}

interface FakePatchset {
  number: number;
  revision: string;
  ref: string;
  created: string;
  uploader: number;
}

interface FakeVote {
  value: number;
  date: string;
  tag?: string;
}

interface FakeMessage {
  id: string;
  author: number;
  date: string;
  message: string;
  tag?: string;
  _revision_number: number;
}

interface FakeChange {
  number: number;
  project: string;
  branch: string;
  changeId: string;
  subject: string;
  /** The commit message of every patchset (subject, body, footers). */
  message: string;
  hashtags: string[];
  status: 'NEW' | 'MERGED' | 'ABANDONED';
  owner: number;
  created: string;
  updated: string;
  patchsets: FakePatchset[];
  /** Votes on the current patchset: label → account → vote. */
  votes: Map<string, Map<number, FakeVote>>;
  messages: FakeMessage[];
}

interface FakeGroup {
  name: string;
  id: string;
  members: number[];
  includes: string[];
  /** Gerrit's `visible_to_all`: off by default, so only members (and admins) can read the group. */
  visibleToAll: boolean;
}

/** Labels the fake's projects have, with their allowed values. */
const DEFAULT_LABELS: Record<string, number[]> = {
  'Code-Review': [-2, -1, 0, 1, 2],
  Verified: [-1, 0, 1],
  'Commit-Queue': [0, 1, 2],
};

class HttpReply {
  constructor(
    readonly status: number,
    readonly body: string,
    readonly json: boolean,
  ) {}
}

function json(value: unknown, status = 200): HttpReply {
  return new HttpReply(status, `)]}'\n${JSON.stringify(value)}`, true);
}

function text(status: number, body: string): HttpReply {
  return new HttpReply(status, body, false);
}

/** Gerrit's timestamp format: `2024-05-01 10:11:12.123000000` (UTC). */
function gerritTime(d: Date): string {
  return `${d.toISOString().replace('T', ' ').replace('Z', '')}000000`;
}

function sha1(s: string): string {
  return createHash('sha1').update(s).digest('hex');
}

function formatVote(label: string, value: number): string {
  if (value === 0) return `-${label}`;
  return `${label}${value > 0 ? '+' : ''}${value}`;
}

/** The fake Gerrit server. Start with `FakeGerritServer.start()`, stop with `close()`. */
export class FakeGerritServer {
  /** Every review applied, in order. */
  readonly reviews: RecordedReview[] = [];
  /** Every request served, in order. */
  readonly requests: RecordedRequest[] = [];

  private readonly accounts = new Map<number, FakeAccount>();
  private readonly groups: FakeGroup[] = [];
  private readonly changes = new Map<number, FakeChange>();
  private readonly faults: Fault[] = [];
  private nextChange = 1;
  private nextMessage = 1;
  private clock = Date.parse('2024-05-01T10:00:00Z');

  private constructor(
    private readonly server: http.Server,
    /** Base URL of the REST API, e.g. `http://127.0.0.1:34567`. */
    readonly url: string,
    private readonly labels: Record<string, number[]>,
  ) {}

  /** Starts a fake on 127.0.0.1 and a free port. */
  static async start(opts: { labels?: Record<string, number[]> } = {}): Promise<FakeGerritServer> {
    const holder: { fake?: FakeGerritServer } = {};
    const server = http.createServer((req, res) => {
      void holder.fake!.handle(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    holder.fake = new FakeGerritServer(server, `http://127.0.0.1:${port}`, opts.labels ?? DEFAULT_LABELS);
    return holder.fake;
  }

  /** Stops the server and drops open connections. */
  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve, reject) => this.server.close((e) => (e ? reject(e) : resolve())));
  }

  /** Adds an account. */
  addAccount(a: FakeAccount): FakeAccount {
    this.accounts.set(a._account_id, a);
    return a;
  }

  /**
   * Adds a group by name (and UUID), with direct members and included groups (by name). Like Gerrit, a group
   * is visible only to its members unless `visibleToAll`: anyone else reading it gets 404.
   */
  addGroup(g: { name: string; id?: string; members: number[]; includes?: string[]; visibleToAll?: boolean }): void {
    this.groups.push({
      name: g.name,
      id: g.id ?? sha1(`group/${g.name}`),
      members: g.members,
      includes: g.includes ?? [],
      visibleToAll: g.visibleToAll ?? false,
    });
  }

  /** Creates a change with patchset 1. */
  createChange(c: {
    project: string;
    branch?: string;
    owner: number;
    subject?: string;
    number?: number;
    /** Lines after the subject (e.g. `Kiln-Requires: with-java` footers). */
    body?: string;
    hashtags?: string[];
  }): {
    number: number;
    id: string;
    changeId: string;
    patchset: { number: number; revision: string; ref: string };
  } {
    const number = c.number ?? this.nextChange;
    this.nextChange = Math.max(this.nextChange, number + 1);
    const now = this.tick();
    const change: FakeChange = {
      number,
      project: c.project,
      branch: c.branch ?? 'master',
      changeId: `I${sha1(`change/${number}`)}`,
      subject: c.subject ?? `Change ${number}`,
      message: `${c.subject ?? `Change ${number}`}\n\n${c.body ? `${c.body}\n` : ''}Change-Id: I${sha1(`change/${number}`)}\n`,
      hashtags: c.hashtags ?? [],
      status: 'NEW',
      owner: c.owner,
      created: now,
      updated: now,
      patchsets: [],
      votes: new Map(),
      messages: [],
    };
    this.changes.set(number, change);
    const patchset = this.addPatchset(change, c.owner);
    return { number, id: this.restId(change), changeId: change.changeId, patchset };
  }

  /** Uploads a new patchset; votes on the old one do not carry over. */
  newPatchset(change: number, uploader?: number): { number: number; revision: string; ref: string } {
    const c = this.change(change);
    return this.addPatchset(c, uploader ?? c.owner);
  }

  /** Sets a change's status (merge, abandon, restore). */
  setStatus(change: number, status: 'NEW' | 'MERGED' | 'ABANDONED'): void {
    const c = this.change(change);
    c.status = status;
    c.updated = this.tick();
  }

  /** Records `account`'s vote on `label` on the current patchset, as if they had replied. */
  vote(change: number, account: number, label: string, value: number): void {
    const c = this.change(change);
    const date = this.tick();
    this.setVote(c, account, label, value, date);
    const ps = c.patchsets[c.patchsets.length - 1]!;
    this.addMessage(c, account, date, `Patch Set ${ps.number}: ${formatVote(label, value)}`, undefined, ps.number);
  }

  /** The messages on a change, as Gerrit stores them. */
  messages(change: number): { message: string; tag?: string; author: number; patchset: number }[] {
    return this.change(change).messages.map((m) => ({
      message: m.message,
      tag: m.tag,
      author: m.author,
      patchset: m._revision_number,
    }));
  }

  /** The next matching request(s) fail with `status` (default 503) without touching any state. */
  failNext(opts: FaultMatch & { status?: number; times?: number; body?: string } = {}): void {
    this.faults.push(this.fault('status', opts));
  }

  /**
   * The next matching request is applied (e.g. the review is stored) but answered with `status`
   * (default 503): a response lost after Gerrit did the work.
   */
  failNextAfterApplying(opts: FaultMatch & { status?: number; times?: number } = {}): void {
    this.faults.push(this.fault('status-after-apply', opts));
  }

  /** The next matching request is answered with this raw body and status 200 (e.g. a malformed response). */
  respondRawNext(body: string, opts: FaultMatch & { times?: number } = {}): void {
    this.faults.push(this.fault('raw', { ...opts, body }));
  }

  /** The next matching request is answered only after `ms`. */
  delayNext(ms: number, opts: FaultMatch & { times?: number } = {}): void {
    this.faults.push(this.fault('delay', { ...opts, delayMs: ms }));
  }

  private fault(
    kind: Fault['kind'],
    o: FaultMatch & { status?: number; times?: number; body?: string; delayMs?: number },
  ): Fault {
    return {
      kind,
      method: o.method,
      path: o.path,
      times: o.times ?? 1,
      status: o.status ?? (kind === 'raw' ? 200 : 503),
      body: o.body ?? 'Service Unavailable',
      delayMs: o.delayMs ?? 0,
    };
  }

  private takeFault(kinds: Fault['kind'][], method: string, path: string): Fault | undefined {
    const i = this.faults.findIndex(
      (f) =>
        kinds.includes(f.kind) &&
        (f.method === undefined || f.method === method) &&
        (f.path === undefined || path.includes(f.path)),
    );
    if (i < 0) return undefined;
    const f = this.faults[i]!;
    if (--f.times <= 0) this.faults.splice(i, 1);
    return f;
  }

  private tick(): string {
    this.clock += 1000;
    return gerritTime(new Date(this.clock));
  }

  private change(n: number): FakeChange {
    const c = this.changes.get(n);
    if (!c) throw new Error(`fake Gerrit: no change ${n}`);
    return c;
  }

  private restId(c: FakeChange): string {
    return `${encodeURIComponent(c.project)}~${c.number}`;
  }

  private addPatchset(c: FakeChange, uploader: number): { number: number; revision: string; ref: string } {
    const number = c.patchsets.length + 1;
    const revision = sha1(`${c.number}/${number}`);
    const ref = `refs/changes/${String(c.number % 100).padStart(2, '0')}/${c.number}/${number}`;
    const created = this.tick();
    c.patchsets.push({ number, revision, ref, created, uploader });
    c.votes = new Map();
    c.updated = created;
    this.addMessage(c, uploader, created, `Uploaded patch set ${number}.`, 'autogenerated:gerrit:newPatchSet', number);
    return { number, revision, ref };
  }

  private setVote(c: FakeChange, account: number, label: string, value: number, date: string, tag?: string): void {
    let byAccount = c.votes.get(label);
    if (!byAccount) c.votes.set(label, (byAccount = new Map()));
    byAccount.set(account, { value, date, tag });
    c.updated = date;
  }

  private addMessage(
    c: FakeChange,
    author: number,
    date: string,
    message: string,
    tag: string | undefined,
    ps: number,
  ) {
    c.messages.push({ id: `msg${this.nextMessage++}`, author, date, message, tag, _revision_number: ps });
  }

  private accountInfo(id: number): Record<string, unknown> {
    const a = this.accounts.get(id);
    const out: Record<string, unknown> = { _account_id: id };
    if (a?.name) out.name = a.name;
    if (a?.email) out.email = a.email;
    if (a?.username) out.username = a.username;
    return out;
  }

  private findChange(rawId: string): FakeChange | undefined {
    const id = decodeURIComponent(rawId);
    let m: RegExpMatchArray | null;
    if ((m = id.match(/^([0-9]+)$/))) return this.changes.get(Number(m[1]));
    if ((m = id.match(/^(.+)~([0-9]+)$/))) {
      const c = this.changes.get(Number(m[2]));
      return c && c.project === m[1] ? c : undefined;
    }
    if ((m = id.match(/^(.+)~(.+)~(I[0-9a-f]{40})$/))) {
      return [...this.changes.values()].find((c) => c.project === m![1] && c.branch === m![2] && c.changeId === m![3]);
    }
    if ((m = id.match(/^(I[0-9a-f]{40})$/))) return [...this.changes.values()].find((c) => c.changeId === m![1]);
    return undefined;
  }

  private changeInfo(c: FakeChange, options: Set<string>, detail: boolean): Record<string, unknown> {
    const current = c.patchsets[c.patchsets.length - 1]!;
    const info: Record<string, unknown> = {
      id: this.restId(c),
      project: c.project,
      branch: c.branch,
      change_id: c.changeId,
      subject: c.subject,
      status: c.status,
      created: c.created,
      updated: c.updated,
      insertions: 1,
      deletions: 0,
      hashtags: c.hashtags,
      _number: c.number,
      owner: detail ? this.accountInfo(c.owner) : { _account_id: c.owner },
    };
    if (detail || options.has('LABELS') || options.has('DETAILED_LABELS')) {
      const labels: Record<string, unknown> = {};
      for (const [name, values] of Object.entries(this.labels)) {
        const all = [...(c.votes.get(name) ?? new Map<number, FakeVote>()).entries()].map(([account, v]) => ({
          value: v.value,
          date: v.date,
          ...(v.tag ? { tag: v.tag } : {}),
          permitted_voting_range: { min: Math.min(...values), max: Math.max(...values) },
          ...this.accountInfo(account),
        }));
        const valueNames: Record<string, string> = {};
        for (const v of values) valueNames[v > 0 ? `+${v}` : v === 0 ? ' 0' : String(v)] = `${name} ${v}`;
        labels[name] = { all, values: valueNames, default_value: 0 };
      }
      info.labels = labels;
    }
    if (options.has('CURRENT_REVISION') || options.has('ALL_REVISIONS')) {
      const revs = options.has('ALL_REVISIONS') ? c.patchsets : [current];
      const revisions: Record<string, unknown> = {};
      for (const ps of revs) {
        revisions[ps.revision] = {
          kind: 'REWORK',
          _number: ps.number,
          created: ps.created,
          uploader: this.accountInfo(ps.uploader),
          ref: ps.ref,
          fetch: {},
          ...(options.has('CURRENT_COMMIT') || options.has('ALL_COMMITS')
            ? { commit: { subject: c.subject, message: c.message } }
            : {}),
        };
      }
      info.current_revision = current.revision;
      info.revisions = revisions;
    }
    if (detail || options.has('MESSAGES')) {
      info.messages = c.messages.map((m) => ({
        id: m.id,
        ...(m.tag ? { tag: m.tag } : {}),
        author: this.accountInfo(m.author),
        real_author: this.accountInfo(m.author),
        date: m.date,
        message: m.message,
        _revision_number: m._revision_number,
      }));
    }
    return info;
  }

  private authenticate(req: http.IncomingMessage): FakeAccount | undefined {
    const h = req.headers.authorization ?? '';
    if (h.startsWith('Basic ')) {
      const decoded = Buffer.from(h.slice('Basic '.length), 'base64').toString('utf8');
      const i = decoded.indexOf(':');
      const user = decoded.slice(0, i);
      const pass = decoded.slice(i + 1);
      return [...this.accounts.values()].find(
        (a) => a.username === user && a.password !== undefined && a.password === pass,
      );
    }
    if (h.startsWith('Bearer ')) {
      const token = h.slice('Bearer '.length);
      return [...this.accounts.values()].find((a) => a.token !== undefined && a.token === token);
    }
    return undefined;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const rawUrl = req.url ?? '/';
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');

    const authed = rawUrl.startsWith('/a/');
    const user = authed ? this.authenticate(req) : undefined;
    const scheme = (req.headers.authorization ?? '').split(' ')[0]?.toLowerCase();
    this.requests.push({ method, url: rawUrl, auth: user ? `${scheme}:${user.username}` : 'anonymous' });

    const delay = this.takeFault(['delay'], method, rawUrl);
    if (delay) await new Promise((r) => setTimeout(r, delay.delayMs));

    let reply: HttpReply;
    const early = this.takeFault(['status', 'raw'], method, rawUrl);
    if (early) {
      reply = early.kind === 'raw' ? new HttpReply(early.status, early.body, true) : text(early.status, early.body);
    } else if (authed && !user) {
      reply = text(401, 'Unauthorized');
    } else {
      try {
        reply = this.route(method, rawUrl, body, user);
      } catch (e) {
        reply = text(500, `Internal server error: ${(e as Error).message}`);
      }
      const late = this.takeFault(['status-after-apply'], method, rawUrl);
      if (late) reply = text(late.status, late.body);
    }
    if (res.destroyed) return;
    res.writeHead(reply.status, {
      'Content-Type': reply.json ? 'application/json; charset=utf-8' : 'text/plain; charset=utf-8',
    });
    res.end(reply.body);
  }

  private route(method: string, rawUrl: string, body: string, user: FakeAccount | undefined): HttpReply {
    const url = new URL(rawUrl, 'http://fake');
    const path = url.pathname.replace(/^\/a\//, '/');
    const options = new Set(url.searchParams.getAll('o'));
    let m: RegExpMatchArray | null;

    if (method === 'GET' && (m = path.match(/^\/changes\/([^/]+)(\/detail)?\/?$/))) {
      const c = this.findChange(m[1]!);
      if (!c) return text(404, `Not found: ${decodeURIComponent(m[1]!)}`);
      return json(this.changeInfo(c, options, m[2] !== undefined));
    }

    if (method === 'GET' && (m = path.match(/^\/groups\/([^/]+)\/members\/?$/))) {
      const name = decodeURIComponent(m[1]!);
      const group = this.groups.find((g) => g.name === name || g.id === name);
      if (!group || !(group.visibleToAll || (user !== undefined && group.members.includes(user._account_id)))) {
        return text(404, name);
      }
      const recursive = url.searchParams.has('recursive');
      const ids = new Set<number>();
      const visit = (g: FakeGroup, seen: Set<string>) => {
        if (seen.has(g.id)) return;
        seen.add(g.id);
        for (const id of g.members) ids.add(id);
        if (!recursive) return;
        for (const inc of g.includes) {
          const sub = this.groups.find((x) => x.name === inc || x.id === inc);
          if (sub) visit(sub, seen);
        }
      };
      visit(group, new Set());
      return json([...ids].sort((a, b) => a - b).map((id) => this.accountInfo(id)));
    }

    if (method === 'POST' && (m = path.match(/^\/changes\/([^/]+)\/revisions\/([^/]+)\/review\/?$/))) {
      if (!user) return text(403, 'Authentication required');
      const c = this.findChange(m[1]!);
      if (!c) return text(404, `Not found: ${decodeURIComponent(m[1]!)}`);
      const revId = decodeURIComponent(m[2]!);
      const current = c.patchsets[c.patchsets.length - 1]!;
      const ps =
        revId === 'current'
          ? current
          : c.patchsets.find(
              (p) =>
                p.revision === revId ||
                String(p.number) === revId ||
                (revId.length >= 4 && p.revision.startsWith(revId)),
            );
      if (!ps) return text(404, `Not found: ${revId}`);
      let input: { message?: unknown; labels?: unknown; tag?: unknown };
      try {
        input = JSON.parse(body) as typeof input;
      } catch {
        return text(400, 'Invalid JSON');
      }
      // Like Gerrit with change.strictLabels off (its default): a vote on an unknown label or out of the
      // label's range is dropped, the rest of the review applied, and the answer leaves the vote out.
      const labels = Object.fromEntries(
        Object.entries((input.labels ?? {}) as Record<string, number>).filter(([label, value]) =>
          this.labels[label]?.includes(value),
        ),
      );
      const message = typeof input.message === 'string' ? input.message : undefined;
      const tag = typeof input.tag === 'string' ? input.tag : undefined;
      const date = this.tick();
      if (ps === current) {
        for (const [label, value] of Object.entries(labels)) this.setVote(c, user._account_id, label, value, date, tag);
      }
      const votes = Object.entries(labels).map(([l, v]) => formatVote(l, v));
      const header = `Patch Set ${ps.number}:${votes.length ? ` ${votes.join(' ')}` : ''}`;
      this.addMessage(c, user._account_id, date, message ? `${header}\n\n${message}` : header, tag, ps.number);
      this.reviews.push({
        change: c.number,
        patchset: ps.number,
        revision: ps.revision,
        accountId: user._account_id,
        ...(message !== undefined ? { message } : {}),
        ...(input.labels !== undefined ? { labels } : {}),
        ...(tag !== undefined ? { tag } : {}),
      });
      return json(input.labels !== undefined ? { labels } : {});
    }

    if (method === 'POST' && (m = path.match(/^\/changes\/([^/]+)\/submit\/?$/))) {
      if (!user) return text(403, 'Authentication required');
      const c = this.findChange(m[1]!);
      if (!c) return text(404, `Not found: ${decodeURIComponent(m[1]!)}`);
      if (c.status !== 'NEW') return text(409, `change is ${c.status.toLowerCase()}`);
      const verified = c.votes.get('Verified');
      if (![...(verified?.values() ?? [])].some((v) => v.value > 0)) {
        return text(409, `Change ${c.number}: submit requirement "Verified" is unsatisfied`);
      }
      c.status = 'MERGED';
      c.updated = this.tick();
      return json(this.changeInfo(c, new Set(), false));
    }

    return text(404, 'Not Found');
  }
}
