/**
 * Change verifications: the newest ones (ChangesPage), and one patch set's (ChangePage): for each
 * attempt the platforms table (status, tinderbox or runner, started, ended, log link), the messages
 * Kiln posted on Gerrit, and the vote; the change's other patch sets; the Gerrit and Temporal links.
 */
import { Link, useParams } from 'react-router';
import type { RecentVerificationsResponse, VerificationResponse } from '../../../src/api/routes/getVerification.ts';
import { useApi } from '../api.ts';
import { ErrorBox, Facts, Loading, StatusBadge } from '../components.tsx';
import { between, duration, when } from '../format.ts';
import { useLive } from '../live.ts';
import { useSession } from '../session.tsx';

function Vote({ vote }: { vote?: number }) {
  if (vote === undefined) return <span className="muted">no vote yet</span>;
  const label = vote > 0 ? `Verified +${vote}` : `Verified ${vote}`;
  return (
    <span className={`vote vote-${vote > 0 ? 'plus' : vote < 0 ? 'minus' : 'zero'}`} data-testid="vote">
      {label}
    </span>
  );
}

export function ChangesPage() {
  const api = useApi<RecentVerificationsResponse>('/api/v1/verifications/recent?limit=100');
  useLive((c) => (c.verifications.length > 0 ? api.reload() : undefined), api.reload);
  if (!api.data) return <Loading error={api.error} what="verifications" />;
  return (
    <section>
      <h1>Change verifications</h1>
      {api.data.verifications.length === 0 ? (
        <p className="muted">No change has been verified yet.</p>
      ) : (
        <table className="changes">
          <thead>
            <tr>
              <th>Change</th>
              <th>Project</th>
              <th>Phase</th>
              <th>Platforms</th>
              <th>Vote</th>
              <th>Created</th>
            </tr>
          </thead>
          <tbody>
            {api.data.verifications.map((v) => (
              <tr key={v.id}>
                <td>
                  <Link to={`/changes/${v.host}/${v.change}/${v.patchset}`}>
                    {v.change}/{v.patchset}
                  </Link>{' '}
                  <span className="muted">{v.host}</span>
                </td>
                <td>
                  {v.project} <span className="muted">{v.branch}</span>
                </td>
                <td>{v.phase}</td>
                <td>
                  {v.platforms.map((p) => (
                    <span key={p.buildId} className={`chip status-${p.status}`} title={p.status}>
                      {p.name}
                    </span>
                  ))}
                </td>
                <td>
                  <Vote vote={v.vote} />
                </td>
                <td>{when(v.createTime)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

export function ChangePage() {
  const { host = '', change = '', patchset = '' } = useParams();
  const s = useSession();
  const api = useApi<VerificationResponse>(
    `/api/v1/verifications/${encodeURIComponent(host)}/${encodeURIComponent(change)}/${encodeURIComponent(patchset)}`,
  );
  const mine = new Set(api.data?.attempts.flatMap((a) => a.verification.platforms.map((p) => p.buildId)) ?? []);
  useLive((c) => {
    if (
      c.builds.some((b) => mine.has(b.id)) ||
      c.verifications.some((v) => v.host === host && String(v.change) === change && String(v.patchset) === patchset)
    )
      api.reload();
  }, api.reload);
  if (!api.data) return <Loading error={api.error} what={`change ${change} patch set ${patchset}`} />;
  const d = api.data;
  return (
    <section className="change">
      <h1>
        Change {d.change} patch set {d.patchset} <span className="muted">on {d.host}</span>
      </h1>
      <p className="links">
        {d.gerritUrl && (
          <a href={d.gerritUrl} target="_blank" rel="noreferrer">
            Gerrit ↗
          </a>
        )}{' '}
        Patch sets:{' '}
        {d.patchsets.map((p) => (
          <Link key={p} className={p === d.patchset ? 'tab on' : 'tab'} to={`/changes/${d.host}/${d.change}/${p}`}>
            {p}
          </Link>
        ))}
      </p>
      {d.attempts.map((a, i) => {
        const v = a.verification;
        const byId = new Map(a.builds.map((b) => [b.id, b]));
        return (
          <article key={v.id} className="attempt" data-testid="attempt">
            <h2>
              Attempt {d.attempts.length - i} <span className="phase">{v.phase}</span> <Vote vote={v.vote} />
            </h2>
            <Facts
              rows={[
                ['Reason', v.reason || '—'],
                ['Project', `${v.project} (${v.branch})`],
                ...(v.mode ? ([['Mode', v.mode]] as [string, string][]) : []),
                ...(v.merged
                  ? ([['Merged', 'yes: unstarted platforms were canceled, no vote']] as [string, string][])
                  : []),
                ...(v.canceled ? ([['Canceled', v.canceled]] as [string, string][]) : []),
                ['Created', when(v.createTime)],
                ['Updated', when(v.updateTime)],
                [
                  'Temporal',
                  s.links.temporalUi ? (
                    <a
                      href={`${s.links.temporalUi}/namespaces/${encodeURIComponent(s.links.namespace)}/workflows/${encodeURIComponent(v.workflowId)}/${encodeURIComponent(v.runId)}/history`}
                      target="_blank"
                      rel="noreferrer"
                    >
                      {v.workflowId} ↗
                    </a>
                  ) : (
                    v.workflowId
                  ),
                ],
              ]}
            />
            <table className="platforms" data-testid="platforms">
              <thead>
                <tr>
                  <th>Platform</th>
                  <th>Status</th>
                  <th>Tinderbox / runner</th>
                  <th>Started</th>
                  <th>Ended</th>
                  <th>Duration</th>
                  <th>Log</th>
                </tr>
              </thead>
              <tbody>
                {v.platforms.map((p) => {
                  const b = byId.get(p.buildId);
                  const status = b?.status ?? p.status;
                  return (
                    <tr key={p.buildId} data-platform={p.name} data-status={status}>
                      <td>
                        <Link to={`/builds/${p.buildId}`}>
                          {p.name} #{p.number}
                        </Link>
                      </td>
                      <td>
                        <StatusBadge status={status} />
                      </td>
                      <td data-testid="holder">{b?.leaseHolder ?? p.holder ?? '—'}</td>
                      <td>{when(b?.startTime)}</td>
                      <td>{when(b?.endTime)}</td>
                      <td>{b?.startTime ? duration(between(b.startTime, b.endTime)) : '—'}</td>
                      <td>
                        {b && b.leaseGeneration > 0 ? (
                          <Link to={`/builds/${p.buildId}#log`}>log</Link>
                        ) : (
                          <span className="muted">—</span>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
            <h3>Messages posted on Gerrit</h3>
            {v.messages.length === 0 ? (
              <p className="muted">None yet.</p>
            ) : (
              <ol className="messages" data-testid="messages">
                {v.messages.map((m, j) => (
                  <li key={j}>{m}</li>
                ))}
              </ol>
            )}
          </article>
        );
      })}
      {api.error && <ErrorBox error={api.error} />}
    </section>
  );
}
