/**
 * Pipeline: what is pending and running now, per builder (platform) with age, the change
 * verifications in flight with each platform's state, and the stuck builds as `kiln stuck` finds
 * them (marked in the lists, with the Temporal UI filter that shows each category).
 */
import { Link } from 'react-router';
import type { PipelineResponse } from '../../../src/api/routes/getPipeline.ts';
import type { StuckResponse } from '../../../src/api/routes/getStuck.ts';
import { useApi } from '../api.ts';
import { BuilderLink, ErrorBox, Loading, StatusBadge } from '../components.tsx';
import { ago, builderPath, duration, between } from '../format.ts';
import { useLive } from '../live.ts';
import { useSession } from '../session.tsx';
import { useEffect } from 'react';

const CATEGORY: Record<string, string> = {
  'scheduled-too-long': 'scheduled too long',
  'lease-expiring': 'lease expiring',
  'heartbeat-old': 'old heartbeat',
};

export function PipelinePage() {
  const s = useSession();
  const api = useApi<PipelineResponse>('/api/v1/pipeline?limit=300');
  const stuck = useApi<StuckResponse>('/api/v1/stuck');
  useLive((c) => (c.builds.length + c.verifications.length > 0 ? api.reload() : undefined), api.reload);
  // Stuck builds come from Temporal visibility: a slow refresh (the API shares answers between pages).
  useEffect(() => {
    const t = setInterval(stuck.reload, 30_000);
    return () => clearInterval(t);
  }, [stuck.reload]);
  if (!api.data) return <Loading error={api.error} what="the pipeline" />;
  const d = api.data;
  const now = Date.parse(d.now);
  const stuckOf = new Map<string, string[]>();
  for (const c of stuck.data?.categories ?? [])
    for (const b of c.builds) stuckOf.set(b.buildId, [...(stuckOf.get(b.buildId) ?? []), c.category]);
  const pending = d.builds.filter((b) => b.status === 'SCHEDULED');
  const running = d.builds.filter((b) => b.status === 'STARTED');
  const list = (builds: typeof d.builds, what: string) =>
    builds.length === 0 ? (
      <p className="muted">Nothing {what}.</p>
    ) : (
      <table className="open" data-testid={what}>
        <thead>
          <tr>
            <th>Build</th>
            <th>Builder</th>
            <th>Status</th>
            <th>Priority</th>
            <th>Age</th>
            <th>Runner</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {builds.map((b) => (
            <tr key={b.id} data-build-id={b.id} className={stuckOf.has(b.id) ? 'stuck' : ''}>
              <td>
                <Link to={`/builds/${b.id}`}>#{b.number}</Link>
              </td>
              <td>
                <BuilderLink builder={b.builder} />
              </td>
              <td>
                <StatusBadge status={b.status} />
                {b.status === 'SCHEDULED' && b.leaseHolder && <span className="muted"> leased</span>}
              </td>
              <td>{b.priority}</td>
              <td>{duration(between(b.createTime, undefined, now))}</td>
              <td>{b.leaseHolder ?? ''}</td>
              <td>
                {(stuckOf.get(b.id) ?? []).map((c) => (
                  <span key={c} className="stuck-mark" data-testid="stuck-mark">
                    stuck: {CATEGORY[c] ?? c}
                  </span>
                ))}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    );
  return (
    <section>
      <h1>Pipeline</h1>
      <table className="builders">
        <thead>
          <tr>
            <th>Builder</th>
            <th>Pending</th>
            <th>Oldest pending</th>
            <th>Running</th>
          </tr>
        </thead>
        <tbody>
          {d.builders
            .filter((b) => b.pending + b.running > 0)
            .map((b) => (
              <tr key={builderPath(b.builder)}>
                <td>
                  <BuilderLink builder={b.builder} />
                </td>
                <td>{b.pending}</td>
                <td>{b.oldestPendingTime ? ago(b.oldestPendingTime, now) : '—'}</td>
                <td>{b.running}</td>
              </tr>
            ))}
        </tbody>
      </table>
      {d.builders.every((b) => b.pending + b.running === 0) && <p className="muted">Every queue is empty.</p>}
      <h2>Change verifications in flight</h2>
      {d.verifications.length === 0 ? (
        <p className="muted">None.</p>
      ) : (
        <table className="changes">
          <thead>
            <tr>
              <th>Change</th>
              <th>Phase</th>
              <th>Platforms</th>
              <th>Age</th>
            </tr>
          </thead>
          <tbody>
            {d.verifications.map(({ verification: v, builds }) => (
              <tr key={v.id}>
                <td>
                  <Link to={`/changes/${v.host}/${v.change}/${v.patchset}`}>
                    {v.change}/{v.patchset}
                  </Link>{' '}
                  <span className="muted">{v.project}</span>
                </td>
                <td>{v.phase}</td>
                <td>
                  {v.platforms.map((p) => {
                    const b = builds.find((x) => x.id === p.buildId);
                    const st = b?.status ?? p.status;
                    return (
                      <Link key={p.buildId} to={`/builds/${p.buildId}`} className={`chip status-${st}`} title={st}>
                        {p.name}
                        {b?.leaseHolder ? ` · ${b.leaseHolder}` : ''}
                        {stuckOf.has(p.buildId) ? ' ⚠' : ''}
                      </Link>
                    );
                  })}
                </td>
                <td>{ago(v.createTime, now)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Pending ({pending.length})</h2>
      {list(pending, 'pending')}
      <h2>Running ({running.length})</h2>
      {list(running, 'running')}
      {d.truncated && <p className="muted">More open builds exist than are listed here.</p>}
      <h2>Stuck</h2>
      {stuck.error && <ErrorBox error={stuck.error} />}
      {stuck.data && (
        <ul className="stuck-categories">
          {stuck.data.categories.map((c) => (
            <li key={c.category}>
              <strong>{CATEGORY[c.category]}</strong>: {c.builds.length}{' '}
              {s.links.temporalUi && (
                <a
                  href={`${s.links.temporalUi}/namespaces/${encodeURIComponent(s.links.namespace)}/workflows?query=${encodeURIComponent(c.filter)}`}
                  target="_blank"
                  rel="noreferrer"
                >
                  in the Temporal UI ↗
                </a>
              )}
              <code className="filter">{c.filter}</code>
            </li>
          ))}
          <li className="muted">
            Thresholds: scheduled over {stuck.data.thresholds.scheduledForSecs}s, lease ending within{' '}
            {stuck.data.thresholds.leaseExpiresWithinSecs}s, heartbeat older than{' '}
            {stuck.data.thresholds.heartbeatOlderThanSecs}s (as of {ago(stuck.data.at)}).
          </li>
        </ul>
      )}
    </section>
  );
}
