/**
 * Builders console: per bucket, the builders × their newest builds (Buildbot's grid: a coloured box per
 * build, newest on the left), or lined up by buildset (change or commit) as Buildbot's console does;
 * and per builder its queue (pending builds with priority and age), what runs, and its last green build.
 */
import { Link, useSearchParams } from 'react-router';
import type { ConsoleResponse } from '../../../src/api/routes/getConsole.ts';
import type { ListBuildersResponse } from '../../../src/api/routes/listBuilders.ts';
import type { BuildSummaryOut } from '../../../src/api/uiSchemas.ts';
import { useApi } from '../api.ts';
import { BuilderLink, ErrorBox, StatusBadge } from '../components.tsx';
import { ago, builderPath, STATUS_LABEL, tagValues } from '../format.ts';
import { useLive } from '../live.ts';
import { useSession } from '../session.tsx';

function Cell({ b }: { b: BuildSummaryOut }) {
  return (
    <Link
      to={`/builds/${b.id}`}
      className={`cell status-${b.status}`}
      data-status={b.status}
      data-build-id={b.id}
      title={`#${b.number} ${STATUS_LABEL[b.status]}, created ${ago(b.createTime)}`}
    >
      {b.number}
    </Link>
  );
}

export function ConsolePage() {
  const s = useSession();
  const [params, setParams] = useSearchParams();
  const bucket = params.get('bucket') ?? s.buckets[0]?.bucket;
  const byBuildset = params.get('by') === 'buildset';
  const q = bucket ? `?bucket=${encodeURIComponent(bucket)}` : '';
  const grid = useApi<ConsoleResponse>(bucket ? `/api/v1/console${q}&builds=25` : null);
  const builders = useApi<ListBuildersResponse>(bucket ? `/api/v1/builders${q}&queue=5` : null);
  // Any change to a build of this bucket: fetch both again (two indexed queries).
  useLive(
    (c) => {
      if (c.builds.some((b) => `${b.builder.project}/${b.builder.bucket}` === bucket)) {
        grid.reload();
        builders.reload();
      }
    },
    () => {
      grid.reload();
      builders.reload();
    },
  );
  const set = (k: string, v: string | undefined) => {
    const p = new URLSearchParams(params);
    if (v === undefined) p.delete(k);
    else p.set(k, v);
    setParams(p);
  };
  if (!bucket) return <p className="muted">This token may read no bucket.</p>;
  return (
    <section>
      <h1>Console</h1>
      <nav className="tabs" aria-label="buckets">
        {s.buckets.map((b) => (
          <button
            key={b.bucket}
            type="button"
            className={b.bucket === bucket ? 'tab on' : 'tab'}
            onClick={() => set('bucket', b.bucket)}
          >
            {b.bucket}
          </button>
        ))}
        <span className="spacer" />
        <button type="button" className={byBuildset ? 'tab' : 'tab on'} onClick={() => set('by', undefined)}>
          newest builds
        </button>
        <button type="button" className={byBuildset ? 'tab on' : 'tab'} onClick={() => set('by', 'buildset')}>
          by buildset
        </button>
      </nav>
      {grid.error && <ErrorBox error={grid.error} />}
      {grid.data && !byBuildset && (
        <table className="console" data-testid="console">
          <tbody>
            {grid.data.rows.map((r) => (
              <tr key={builderPath(r.builder)} data-builder={r.builder.builder}>
                <th>
                  <BuilderLink builder={r.builder} />
                </th>
                <td className="cells">
                  {r.builds.length === 0 ? (
                    <span className="muted">no builds</span>
                  ) : (
                    r.builds.map((b) => <Cell key={b.id} b={b} />)
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {grid.data && byBuildset && (
        <div className="scroll">
          <table className="console by-buildset" data-testid="console-by-buildset">
            <thead>
              <tr>
                <th>Buildset</th>
                {grid.data.rows.map((r) => (
                  <th key={builderPath(r.builder)}>{r.builder.builder}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {grid.data.buildsets.map((bs) => (
                <tr key={bs}>
                  <th>
                    <Link to={`/builds?buildset=${encodeURIComponent(bs)}`}>{bs}</Link>
                  </th>
                  {grid.data!.rows.map((r) => {
                    const b = r.builds.find((x) => tagValues(x.tags, 'buildset').includes(bs));
                    return <td key={builderPath(r.builder)}>{b ? <Cell b={b} /> : null}</td>;
                  })}
                </tr>
              ))}
            </tbody>
          </table>
          {grid.data.buildsets.length === 0 && <p className="muted">No build of this bucket has a buildset tag.</p>}
        </div>
      )}
      <h2>Builders</h2>
      {builders.error && <ErrorBox error={builders.error} />}
      {builders.data && (
        <table className="builders" data-testid="builders">
          <thead>
            <tr>
              <th>Builder</th>
              <th>Pending</th>
              <th>Queue (priority, age)</th>
              <th>Running</th>
              <th>Last build</th>
              <th>Last green</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {builders.data.builders.map((b) => (
              <tr key={builderPath(b.builder)} data-builder={b.builder.builder}>
                <td>
                  <BuilderLink builder={b.builder} />
                </td>
                <td data-testid="pending">{b.pending}</td>
                <td className="queue">
                  {b.queue.map((q) => (
                    <Link key={q.id} to={`/builds/${q.id}`} title={`created ${q.createTime}`}>
                      #{q.number}{' '}
                      <span className="muted">
                        p{q.priority}, {ago(q.createTime)}
                      </span>
                    </Link>
                  ))}
                  {b.pending > b.queue.length && <span className="muted">+{b.pending - b.queue.length} more</span>}
                </td>
                <td>{b.running}</td>
                <td>
                  {b.lastBuild ? (
                    <Link to={`/builds/${b.lastBuild.id}`}>
                      #{b.lastBuild.number} <StatusBadge status={b.lastBuild.status} />
                    </Link>
                  ) : (
                    '—'
                  )}
                </td>
                <td>
                  {b.lastGreen ? (
                    <Link to={`/builds/${b.lastGreen.id}`}>
                      #{b.lastGreen.number} {ago(b.lastGreen.endTime ?? b.lastGreen.createTime)}
                    </Link>
                  ) : (
                    <span className="muted">never</span>
                  )}
                </td>
                <td>
                  <Link to={`/stats?builder=${encodeURIComponent(builderPath(b.builder))}`}>statistics</Link>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
