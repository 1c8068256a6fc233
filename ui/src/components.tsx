/** Small pieces every page uses. */
import { type ReactNode } from 'react';
import { Link } from 'react-router';
import type { BuildStatus } from '../../src/domain/build.ts';
import { ApiError } from './api.ts';
import { builderPath, STATUS_LABEL } from './format.ts';

/** A build status as a coloured badge. */
export function StatusBadge({ status }: { status: BuildStatus }) {
  return (
    <span className={`status status-${status}`} data-status={status}>
      {STATUS_LABEL[status]}
    </span>
  );
}

/** A link to a builder's builds. */
export function BuilderLink({ builder }: { builder: { project: string; bucket: string; builder: string } }) {
  const path = builderPath(builder);
  return <Link to={`/builds?builder=${encodeURIComponent(path)}`}>{path}</Link>;
}

/** What a page shows while it has nothing yet, or when the API refused. */
export function Loading({ error, what }: { error?: Error; what: string }) {
  if (!error) return <p className="muted">Loading {what}…</p>;
  return <ErrorBox error={error} />;
}

/** An API error: a 404 names what was not found; a 400 names the field. */
export function ErrorBox({ error }: { error: Error }) {
  const api = error instanceof ApiError ? error : undefined;
  if (api && api.status === 404) return <NotFound what={api.message} />;
  return (
    <div className="error" role="alert">
      <strong>{api ? `${api.code}` : 'Error'}</strong>: {error.message}
    </div>
  );
}

/** The 404 page: says what was not found. */
export function NotFound({ what }: { what: string }) {
  return (
    <div className="notfound" role="alert">
      <h1>Not found</h1>
      <p data-testid="not-found">{what}</p>
      <p>
        <Link to="/">Back to the builds</Link>
      </p>
    </div>
  );
}

/** A two-column list of labels and values. */
export function Facts({ rows }: { rows: [string, ReactNode][] }) {
  return (
    <dl className="facts">
      {rows.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}
