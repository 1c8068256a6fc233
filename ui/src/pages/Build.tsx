/**
 * One build: status with the reason, times, the lease and every lease generation (from the build's
 * own events: expiries, resets, refused stale reports), inputs, tags, output, the log of each attempt
 * (live tail, ANSI colours), links to the Temporal UI, Swarming and Gerrit, and the actions the
 * session's role allows: cancel (SCHEDULER), priority while pending (WRITER), rebuild (SCHEDULER).
 */
import { AnsiUp } from 'ansi_up';
import { useEffect, useMemo, useRef, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import type { Build } from '../../../src/domain/build.ts';
import { ApiError, apiPost, apiText, useApi } from '../api.ts';
import { BuilderLink, ErrorBox, Facts, Loading, StatusBadge } from '../components.tsx';
import { between, builderPath, duration, gerritPatchOf, statusReason, tagValues, when } from '../format.ts';
import { useLive } from '../live.ts';
import { useSession } from '../session.tsx';

const ENDED = ['SUCCESS', 'FAILURE', 'INFRA_FAILURE', 'CANCELED'];

function Actions({ build, onChanged }: { build: Build; onChanged(b?: Build): void }) {
  const s = useSession();
  const navigate = useNavigate();
  const bucket = `${build.builder.project}/${build.builder.bucket}`;
  const [error, setError] = useState<Error>();
  const [priority, setPriority] = useState(String(build.priority));
  const [busy, setBusy] = useState(false);
  const ended = ENDED.includes(build.status);
  const act = async (fn: () => Promise<void>) => {
    setBusy(true);
    setError(undefined);
    try {
      await fn();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  const canCancel = !ended && s.can(bucket, 'SCHEDULER');
  const canPriority = build.status === 'SCHEDULED' && s.can(bucket, 'WRITER');
  const canRebuild = s.can(bucket, 'SCHEDULER');
  if (!canCancel && !canPriority && !canRebuild) return null;
  return (
    <div className="actions" aria-label="actions">
      {canCancel && (
        <button
          type="button"
          disabled={busy}
          onClick={() =>
            void act(async () => {
              if (!window.confirm(`Cancel build #${build.number} of ${builderPath(build.builder)}?`)) return;
              onChanged(
                await apiPost<Build>(`/api/v1/builds/${build.id}/cancel`, { reason: 'canceled from the web UI' }),
              );
            })
          }
        >
          Cancel build
        </button>
      )}
      {canPriority && (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void act(async () =>
              onChanged(await apiPost<Build>(`/api/v1/builds/${build.id}/priority`, { priority: Number(priority) })),
            );
          }}
        >
          <label>
            Priority{' '}
            <input
              name="priority"
              type="number"
              min={0}
              max={255}
              value={priority}
              onChange={(e) => setPriority(e.target.value)}
            />
          </label>{' '}
          <button type="submit" disabled={busy}>
            Set
          </button>
        </form>
      )}
      {canRebuild && (
        <button
          type="button"
          disabled={busy}
          onClick={() =>
            void act(async () => {
              const b = await apiPost<Build>(`/api/v1/builds/${build.id}/rebuild`, {});
              void navigate(`/builds/${b.id}`);
            })
          }
        >
          Rebuild
        </button>
      )}
      {error && <ErrorBox error={error} />}
    </div>
  );
}

/** The log of one attempt, tailed while it is not complete. */
function LogViewer({ build }: { build: Build }) {
  const attempts = Array.from({ length: build.leaseGeneration }, (_, i) => i + 1);
  const [attempt, setAttempt] = useState<number>();
  const shown = attempt ?? build.leaseGeneration;
  const [text, setText] = useState('');
  const [state, setState] = useState<{ complete: boolean; size: number; missing?: string }>({
    complete: false,
    size: 0,
  });
  const [follow, setFollow] = useState(true);
  const pre = useRef<HTMLPreElement>(null);
  const ended = ENDED.includes(build.status);
  useEffect(() => {
    if (shown === 0) return;
    let offset = 0;
    let stop = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    setText('');
    setState({ complete: false, size: 0 });
    const decoderText: string[] = [];
    const tick = async () => {
      try {
        const r = await apiText(`/api/v1/builds/${build.id}/log?attempt=${shown}&offset=${offset}`);
        if (stop) return;
        const size = Number(r.headers.get('x-kiln-log-size') ?? '0');
        const complete = r.headers.get('x-kiln-log-complete') === 'true';
        if (r.text) {
          decoderText.push(r.text);
          offset += new TextEncoder().encode(r.text).length;
          setText(decoderText.join(''));
        }
        setState({ complete, size });
        if (!complete) timer = setTimeout(() => void tick(), 1500);
      } catch (e) {
        if (stop) return;
        if (e instanceof ApiError && e.status === 404) {
          setState({ complete: ended, size: 0, missing: e.message });
          if (!ended) timer = setTimeout(() => void tick(), 2000);
        } else timer = setTimeout(() => void tick(), 5000);
      }
    };
    void tick();
    return () => {
      stop = true;
      if (timer) clearTimeout(timer);
    };
  }, [build.id, shown, ended]);
  const html = useMemo(() => {
    const a = new AnsiUp();
    a.use_classes = true;
    return a.ansi_to_html(text);
  }, [text]);
  useEffect(() => {
    if (follow && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [html, follow]);
  if (attempts.length === 0) return <p className="muted">No log yet: no runner has taken this build.</p>;
  return (
    <div className="log">
      <div className="log-bar">
        {attempts.map((a) => (
          <button key={a} type="button" className={a === shown ? 'tab on' : 'tab'} onClick={() => setAttempt(a)}>
            attempt {a}
          </button>
        ))}
        <span className="muted" data-testid="log-state">
          {state.missing ?? `${state.size} bytes${state.complete ? ', complete' : ', live'}`}
        </span>
        <label>
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> follow
        </label>
        <a href={`/api/v1/builds/${build.id}/log?attempt=${shown}`} target="_blank" rel="noreferrer">
          raw
        </a>
      </div>
      {/* ansi_up escapes the text; only its colour spans are markup. */}
      <pre ref={pre} className="log-text" data-testid="log-text" dangerouslySetInnerHTML={{ __html: html }} />
    </div>
  );
}

const EVENT_TITLES: Record<string, string> = {
  LEASED: 'leased',
  STARTED: 'started',
  LEASE_EXPIRED: 'lease expired',
  STALE_REPORT_REFUSED: 'stale report refused',
  CANCEL_REQUESTED: 'cancel requested',
  ENDED: 'ended',
  PRIORITY_CHANGED: 'priority changed',
  SWARMING_TASK: 'Swarming task',
};

function Links({ build }: { build: Build }) {
  const s = useSession();
  const links: { label: string; href: string; internal?: boolean }[] = [];
  if (s.links.temporalUi) {
    links.push({
      label: 'Temporal UI workflow',
      href: `${s.links.temporalUi}/namespaces/${encodeURIComponent(s.links.namespace)}/workflows/${encodeURIComponent(`build/${build.id}`)}`,
    });
  }
  const task = tagValues(build.tags, 'swarming_task_id')[0];
  if (build.url) links.push({ label: task ? `Swarming task ${task}` : 'Runner page', href: build.url });
  const patch = gerritPatchOf(tagValues(build.tags, 'buildset')[0]);
  for (const c of build.input.gerritChanges ?? []) {
    const base = s.links.gerrit[c.host] ?? `https://${c.host}`;
    links.push({
      label: `Gerrit change ${c.change}/${c.patchset}`,
      href: `${base}/c/${c.project}/+/${c.change}/${c.patchset}`,
    });
  }
  if (patch) {
    if (!build.input.gerritChanges?.length) {
      const base = s.links.gerrit[patch.host] ?? `https://${patch.host}`;
      links.push({
        label: `Gerrit change ${patch.change}/${patch.patchset}`,
        href: `${base}/c/${patch.change}/${patch.patchset}`,
      });
    }
    links.push({
      label: 'Verification',
      href: `/changes/${patch.host}/${patch.change}/${patch.patchset}`,
      internal: true,
    });
  }
  return (
    <ul className="links" aria-label="links">
      {links.map((l) => (
        <li key={l.label}>
          {l.internal ? (
            <Link to={l.href}>{l.label}</Link>
          ) : (
            <a href={l.href} target="_blank" rel="noreferrer">
              {l.label} ↗
            </a>
          )}
        </li>
      ))}
    </ul>
  );
}

export function BuildPage() {
  const { id = '' } = useParams();
  const api = useApi<Build>(`/api/v1/builds/${encodeURIComponent(id)}`);
  useLive((c) => {
    const mine = c.builds.find((b) => b.id === id);
    if (mine && (api.data?.version ?? 0) < mine.version) api.reload();
  }, api.reload);
  if (!api.data) {
    if (api.error instanceof ApiError && api.error.code === 'INVALID_ARGUMENT')
      return (
        <ErrorBox
          error={new ApiError(404, 'BUILD_NOT_FOUND', `"${id}" is not a build ID, so there is no such build.`)}
        />
      );
    return <Loading error={api.error} what={`build ${id}`} />;
  }
  const b = api.data;
  const reason = statusReason(b);
  const events = b.events ?? [];
  return (
    <section className="build">
      <h1>
        <BuilderLink builder={b.builder} /> #{b.number} <StatusBadge status={b.status} />
      </h1>
      <p className="muted">build {b.id}</p>
      {reason && <p className="reason">{reason}</p>}
      {b.summaryMarkdown && <p className="summary">{b.summaryMarkdown}</p>}
      <Actions build={b} onChanged={(nb) => (nb ? api.setData(() => nb) : api.reload())} />
      <div className="columns">
        <Facts
          rows={[
            ['Created', `${when(b.createTime)}${b.createdBy ? ` by ${b.createdBy}` : ''}`],
            ['Started', when(b.startTime)],
            ['Ended', when(b.endTime)],
            ['Queue time', duration(between(b.createTime, b.startTime ?? b.endTime))],
            ['Duration', b.startTime ? duration(between(b.startTime, b.endTime)) : '—'],
            ['Priority', String(b.priority)],
            ['Lease holder', b.leaseHolder ?? '—'],
            ['Lease expires', when(b.leaseExpiration)],
            ['Lease generation', `${b.leaseGeneration} (${b.leaseResets} reset${b.leaseResets === 1 ? '' : 's'})`],
            ['Dimensions', b.dimensions.join(', ') || '—'],
          ]}
        />
        <div>
          <h2>Links</h2>
          <Links build={b} />
          <h2>Tags</h2>
          <p className="tags">
            {b.tags.map((t) => (
              <Link key={t} className="tag" to={`/builds?tag=${encodeURIComponent(t)}`}>
                {t}
              </Link>
            ))}
          </p>
        </div>
      </div>
      <h2>Lease history</h2>
      {events.length === 0 ? (
        <p className="muted">Nothing happened to the lease yet.</p>
      ) : (
        <table className="events" data-testid="lease-history">
          <thead>
            <tr>
              <th>Time</th>
              <th>What</th>
              <th>Details</th>
            </tr>
          </thead>
          <tbody>
            {events.map((e, i) => (
              <tr key={i} className={`event-${e.kind}`}>
                <td>{when(e.time)}</td>
                <td>{EVENT_TITLES[e.kind] ?? e.kind}</td>
                <td>{e.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Input</h2>
      <pre className="json">{JSON.stringify(b.input.properties, null, 2)}</pre>
      {b.input.gerritChanges && b.input.gerritChanges.length > 0 && (
        <p>
          Changes: {b.input.gerritChanges.map((c) => `${c.host} ${c.project} ${c.change}/${c.patchset}`).join(', ')}
        </p>
      )}
      {b.output?.properties && (
        <>
          <h2>Output</h2>
          <pre className="json">{JSON.stringify(b.output.properties, null, 2)}</pre>
        </>
      )}
      <h2 id="log">Log</h2>
      <LogViewer build={b} />
    </section>
  );
}
