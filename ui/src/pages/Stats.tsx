/**
 * Statistics of one builder over a chosen window: builds per day by outcome, pass / failure /
 * infra-failure rates, and queue time and duration p50/p95 per day, all computed by the API in SQL.
 */
import { type FormEvent, useState } from 'react';
import { useSearchParams } from 'react-router';
import {
  Bar,
  BarChart,
  CartesianGrid,
  Legend,
  Line,
  LineChart,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
} from 'recharts';
import type { BuilderStatsResponse } from '../../../src/api/routes/getBuilderStats.ts';
import { useApi } from '../api.ts';
import { ErrorBox, Facts } from '../components.tsx';
import { duration } from '../format.ts';
import { useSession } from '../session.tsx';
import type { ListBuildersResponse } from '../../../src/api/routes/listBuilders.ts';

const COLORS = {
  success: '#2e7d32',
  failure: '#c62828',
  infraFailure: '#6a1b9a',
  canceled: '#757575',
  open: '#f9a825',
};

const pct = (n: number, total: number) => (total === 0 ? '—' : `${((100 * n) / total).toFixed(1)} %`);

export default function StatsPage() {
  useSession();
  const [params, setParams] = useSearchParams();
  const all = useApi<ListBuildersResponse>('/api/v1/builders?queue=0');
  const builder = params.get('builder') ?? (all.data?.builders[0] ? pathOf(all.data.builders[0].builder) : undefined);
  const days = params.get('days') ?? '30';
  const parts = builder?.split('/') ?? [];
  const [form, setForm] = useState({ builder: builder ?? '', days });
  const path =
    builder && parts.length === 3
      ? `/api/v1/builders/${parts.map(encodeURIComponent).join('/')}/stats?days=${encodeURIComponent(days)}`
      : null;
  const stats = useApi<BuilderStatsResponse>(path);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setParams({ builder: form.builder, days: form.days });
  };
  const w = stats.data?.window;
  // Every UTC day of the window, days without builds as zeros, so the axis spans the window.
  const byDay = new Map(stats.data?.days.map((d) => [d.day, d]) ?? []);
  const allDays: BuilderStatsResponse['days'] = [];
  if (stats.data) {
    for (let t = Date.parse(stats.data.from.slice(0, 10)); t < Date.parse(stats.data.to); t += 86_400_000) {
      const day = new Date(t).toISOString().slice(0, 10);
      allDays.push(byDay.get(day) ?? { day, total: 0, success: 0, failure: 0, infraFailure: 0, canceled: 0, open: 0 });
    }
  }
  const data =
    allDays.map((d) => ({
      ...d,
      queueP50: d.queueP50Ms !== undefined ? d.queueP50Ms / 1000 : undefined,
      queueP95: d.queueP95Ms !== undefined ? d.queueP95Ms / 1000 : undefined,
      durationP50: d.durationP50Ms !== undefined ? d.durationP50Ms / 1000 : undefined,
      durationP95: d.durationP95Ms !== undefined ? d.durationP95Ms / 1000 : undefined,
    })) ?? [];
  return (
    <section>
      <h1>Statistics</h1>
      <form className="filters" onSubmit={submit} aria-label="statistics window">
        <label>
          Builder{' '}
          <select
            name="builder"
            value={form.builder || builder || ''}
            onChange={(e) => setForm({ ...form, builder: e.target.value })}
          >
            {builder && !all.data?.builders.some((b) => pathOf(b.builder) === builder) && (
              <option value={builder}>{builder}</option>
            )}
            {all.data?.builders.map((b) => (
              <option key={pathOf(b.builder)} value={pathOf(b.builder)}>
                {pathOf(b.builder)}
              </option>
            ))}
          </select>
        </label>
        <label>
          Days{' '}
          <input
            name="days"
            type="number"
            min={1}
            max={366}
            value={form.days}
            onChange={(e) => setForm({ ...form, days: e.target.value })}
          />
        </label>
        <button type="submit">Show</button>
      </form>
      {builder && parts.length !== 3 && (
        <div className="error" role="alert">
          <strong>INVALID_ARGUMENT</strong>: builder: give project/bucket/builder
        </div>
      )}
      {(stats.error ?? all.error) && <ErrorBox error={(stats.error ?? all.error)!} />}
      {w && stats.data && (
        <>
          <p className="muted">
            {builder}, builds created {new Date(stats.data.from).toLocaleString()} –{' '}
            {new Date(stats.data.to).toLocaleString()}
          </p>
          <div className="columns">
            <Facts
              rows={[
                ['Builds', String(w.total)],
                ['Passed', `${w.success} (${pct(w.success, w.total - w.open)})`],
                ['Failed', `${w.failure} (${pct(w.failure, w.total - w.open)})`],
                ['Infra failures', `${w.infraFailure} (${pct(w.infraFailure, w.total - w.open)})`],
                ['Canceled', String(w.canceled)],
                ['Not ended', String(w.open)],
              ]}
            />
            <Facts
              rows={[
                ['Queue time p50', duration(w.queueP50Ms)],
                ['Queue time p95', duration(w.queueP95Ms)],
                ['Duration p50', duration(w.durationP50Ms)],
                ['Duration p95', duration(w.durationP95Ms)],
              ]}
            />
          </div>
          <h2>Builds per day</h2>
          <div className="chart" data-testid="chart-builds">
            <ResponsiveContainer width="100%" height={260}>
              <BarChart data={data}>
                <CartesianGrid strokeDasharray="3 3" />
                <XAxis dataKey="day" />
                <YAxis allowDecimals={false} />
                <Tooltip />
                <Legend />
                <Bar dataKey="success" name="success" stackId="a" fill={COLORS.success} isAnimationActive={false} />
                <Bar dataKey="failure" name="failure" stackId="a" fill={COLORS.failure} isAnimationActive={false} />
                <Bar
                  dataKey="infraFailure"
                  name="infra failure"
                  stackId="a"
                  fill={COLORS.infraFailure}
                  isAnimationActive={false}
                />
                <Bar dataKey="canceled" name="canceled" stackId="a" fill={COLORS.canceled} isAnimationActive={false} />
                <Bar dataKey="open" name="not ended" stackId="a" fill={COLORS.open} isAnimationActive={false} />
              </BarChart>
            </ResponsiveContainer>
          </div>
          <h2>Queue time and duration (seconds)</h2>
          <div className="chart" data-testid="chart-times">
            <ResponsiveContainer width="100%" height={260}>
              <LineChart data={data}>
                <CartesianGrid strokeDasharray="3 3" />
                <XAxis dataKey="day" />
                <YAxis />
                <Tooltip />
                <Legend />
                <Line dataKey="queueP50" name="queue p50" stroke="#1565c0" isAnimationActive={false} connectNulls />
                <Line dataKey="queueP95" name="queue p95" stroke="#90caf9" isAnimationActive={false} connectNulls />
                <Line
                  dataKey="durationP50"
                  name="duration p50"
                  stroke="#ef6c00"
                  isAnimationActive={false}
                  connectNulls
                />
                <Line
                  dataKey="durationP95"
                  name="duration p95"
                  stroke="#ffcc80"
                  isAnimationActive={false}
                  connectNulls
                />
              </LineChart>
            </ResponsiveContainer>
          </div>
        </>
      )}
    </section>
  );
}

function pathOf(b: { project: string; bucket: string; builder: string }): string {
  return `${b.project}/${b.bucket}/${b.builder}`;
}
