/**
 * Builds: newest first, live, with filters kept in the URL (builder, status, tag, buildset, created
 * range) and cursor paging. Filter values go to the API as typed, so a bad one comes back as the
 * API's message naming the field.
 */
import { type FormEvent, useMemo, useState } from 'react';
import { Link, useSearchParams } from 'react-router';
import type { BuildPage as BuildPageData } from '../../../src/storage/storage.ts';
import type { BuildSummaryOut } from '../../../src/api/uiSchemas.ts';
import { BUILD_STATUSES } from '../../../src/domain/build.ts';
import { useApi } from '../api.ts';
import { BuilderLink, ErrorBox, StatusBadge } from '../components.tsx';
import { between, duration, tagValues, when } from '../format.ts';
import { useLive } from '../live.ts';

const PAGE = 50;

/** The API query for the page's URL, or the name of a filter that cannot be one. */
function toApiQuery(p: URLSearchParams): { query: string } | { field: string; message: string } {
  const q = new URLSearchParams();
  const builder = p.get('builder')?.trim();
  if (builder) {
    const parts = builder.split('/');
    if (parts.length === 3) {
      q.set('project', parts[0]!);
      q.set('bucket', parts[1]!);
      q.set('builder', parts[2]!);
    } else if (parts.length === 1) q.set('builder', builder);
    else return { field: 'builder', message: 'give project/bucket/builder or a builder name' };
  }
  for (const k of ['status', 'buildset', 'createdAfter', 'createdBefore', 'cursor']) {
    const v = p.get(k)?.trim();
    if (v) q.set(k, v);
  }
  for (const t of p.getAll('tag')) if (t.trim()) q.append('tag', t.trim());
  q.set('limit', String(PAGE));
  return { query: q.toString() };
}

/** True when a live-updated build belongs in the list the URL asks for. */
function matches(b: BuildSummaryOut, p: URLSearchParams): boolean {
  const builder = p.get('builder');
  if (builder) {
    const parts = builder.split('/');
    const want = parts.length === 3 ? builder : undefined;
    if (want ? `${b.builder.project}/${b.builder.bucket}/${b.builder.builder}` !== want : b.builder.builder !== builder)
      return false;
  }
  const status = p.get('status');
  if (status && b.status !== status) return false;
  for (const t of p.getAll('tag')) if (!b.tags.includes(t)) return false;
  const bs = p.get('buildset');
  if (bs && !b.tags.includes(`buildset:${bs}`)) return false;
  const after = p.get('createdAfter');
  if (after && Date.parse(b.createTime) < Date.parse(after)) return false;
  const before = p.get('createdBefore');
  if (before && Date.parse(b.createTime) >= Date.parse(before)) return false;
  return true;
}

/** `datetime-local` value ↔ ISO. */
const toLocalInput = (iso: string | null) => {
  if (!iso || Number.isNaN(Date.parse(iso))) return iso ?? '';
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
};
const fromLocalInput = (v: string) => (v && !Number.isNaN(Date.parse(v)) ? new Date(v).toISOString() : v);

function Filters({ params, onApply }: { params: URLSearchParams; onApply(p: URLSearchParams): void }) {
  const [f, setF] = useState(() => ({
    builder: params.get('builder') ?? '',
    status: params.get('status') ?? '',
    tag: params.getAll('tag').join(' '),
    buildset: params.get('buildset') ?? '',
    createdAfter: toLocalInput(params.get('createdAfter')),
    createdBefore: toLocalInput(params.get('createdBefore')),
  }));
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const p = new URLSearchParams();
    if (f.builder.trim()) p.set('builder', f.builder.trim());
    if (f.status) p.set('status', f.status);
    for (const t of f.tag.split(/\s+/).filter(Boolean)) p.append('tag', t);
    if (f.buildset.trim()) p.set('buildset', f.buildset.trim());
    if (f.createdAfter) p.set('createdAfter', fromLocalInput(f.createdAfter));
    if (f.createdBefore) p.set('createdBefore', fromLocalInput(f.createdBefore));
    onApply(p);
  };
  const set = (k: keyof typeof f) => (e: { target: { value: string } }) => setF({ ...f, [k]: e.target.value });
  return (
    <form className="filters" onSubmit={submit} aria-label="filters">
      <label>
        Builder{' '}
        <input name="builder" value={f.builder} onChange={set('builder')} placeholder="project/bucket/builder" />
      </label>
      <label>
        Status{' '}
        <select name="status" value={f.status} onChange={set('status')}>
          <option value="">any</option>
          {BUILD_STATUSES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
      </label>
      <label>
        Tags <input name="tag" value={f.tag} onChange={set('tag')} placeholder="key:value …" />
      </label>
      <label>
        Buildset <input name="buildset" value={f.buildset} onChange={set('buildset')} placeholder="patch/gerrit/…" />
      </label>
      <label>
        Created after{' '}
        <input name="createdAfter" type="datetime-local" value={f.createdAfter} onChange={set('createdAfter')} />
      </label>
      <label>
        before{' '}
        <input name="createdBefore" type="datetime-local" value={f.createdBefore} onChange={set('createdBefore')} />
      </label>
      <button type="submit">Apply</button>
    </form>
  );
}

/** The table of builds; also used by other pages. */
export function BuildTable({ builds, showBuilder = true }: { builds: BuildSummaryOut[]; showBuilder?: boolean }) {
  return (
    <table className="builds">
      <thead>
        <tr>
          <th>Build</th>
          {showBuilder && <th>Builder</th>}
          <th>Status</th>
          <th>Created</th>
          <th>Queued</th>
          <th>Duration</th>
          <th>Runner</th>
          <th>Tags</th>
        </tr>
      </thead>
      <tbody>
        {builds.map((b) => (
          <tr key={b.id} data-build-id={b.id} data-status={b.status}>
            <td>
              <Link to={`/builds/${b.id}`}>#{b.number}</Link>
            </td>
            {showBuilder && (
              <td>
                <BuilderLink builder={b.builder} />
              </td>
            )}
            <td>
              <StatusBadge status={b.status} />
            </td>
            <td title={b.createTime}>{when(b.createTime)}</td>
            <td>{duration(between(b.createTime, b.startTime ?? (b.endTime ? b.endTime : undefined)))}</td>
            <td>{b.startTime ? duration(between(b.startTime, b.endTime)) : '—'}</td>
            <td>{b.leaseHolder ?? ''}</td>
            <td className="tags">
              {b.tags
                .filter((t) => !t.startsWith('builder:'))
                .slice(0, 4)
                .map((t) => (
                  <Link key={t} className="tag" to={`/builds?tag=${encodeURIComponent(t)}`}>
                    {t}
                  </Link>
                ))}
              {tagValues(b.tags, 'rebuild_of').length > 0 && <span className="muted"> (rebuild)</span>}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function BuildsPage() {
  const [params, setParams] = useSearchParams();
  const q = useMemo(() => toApiQuery(params), [params]);
  const api = useApi<BuildPageData>('query' in q ? `/api/v1/builds?${q.query}` : null);
  const firstPage = !params.get('cursor');
  useLive(
    (c) =>
      api.setData((d) => {
        if (!d) return d;
        let builds = [...d.builds];
        let changed = false;
        for (const b of c.builds) {
          const i = builds.findIndex((x) => x.id === b.id);
          if (i >= 0) {
            if ((builds[i]!.version ?? 0) < b.version) {
              builds[i] = { ...builds[i]!, ...b };
              changed = true;
            }
          } else if (firstPage && matches(b, params)) {
            builds.push(b as BuildPageData['builds'][number]);
            changed = true;
          }
        }
        if (!changed) return d;
        builds.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
        builds = builds.filter((b) => !params.get('status') || b.status === params.get('status'));
        return { ...d, builds: builds.slice(0, PAGE) };
      }),
    api.reload,
  );
  const apply = (p: URLSearchParams) => setParams(p);
  return (
    <section>
      <h1>Builds</h1>
      <Filters key={params.toString()} params={params} onApply={apply} />
      {'field' in q && (
        <div className="error" role="alert">
          <strong>INVALID_ARGUMENT</strong>: {q.field}: {q.message}
        </div>
      )}
      {api.error && <ErrorBox error={api.error} />}
      {api.data && (
        <>
          {api.data.builds.length === 0 ? (
            <p className="muted">No builds match.</p>
          ) : (
            <BuildTable builds={api.data.builds as BuildSummaryOut[]} />
          )}
          <p className="paging">
            {!firstPage && (
              <button
                type="button"
                onClick={() => {
                  const p = new URLSearchParams(params);
                  p.delete('cursor');
                  setParams(p);
                }}
              >
                ← Newest
              </button>
            )}{' '}
            {api.data.nextCursor && (
              <button
                type="button"
                onClick={() => {
                  const p = new URLSearchParams(params);
                  p.set('cursor', api.data!.nextCursor!);
                  setParams(p);
                }}
              >
                Older →
              </button>
            )}
          </p>
        </>
      )}
      {!api.data && !api.error && 'query' in q && <p className="muted">Loading builds…</p>}
    </section>
  );
}
