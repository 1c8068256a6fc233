/** Kiln's web UI: the layout, the navigation and the routes. */
import { lazy, Suspense, useEffect, useState } from 'react';
import { BrowserRouter, NavLink, Route, Routes, useLocation } from 'react-router';
import { NotFound } from './components.tsx';
import { liveConnected, liveWanted, onLiveStatus } from './live.ts';
import { BuildPage } from './pages/Build.tsx';
import { BuildsPage } from './pages/Builds.tsx';
import { ChangePage, ChangesPage } from './pages/Changes.tsx';
import { ConsolePage } from './pages/Console.tsx';
import { PipelinePage } from './pages/Pipeline.tsx';
import { SessionGate, useSession } from './session.tsx';

// Charts are the largest dependency: loaded with the statistics page only.
const StatsPage = lazy(() => import('./pages/Stats.tsx'));

function LiveDot() {
  const [on, setOn] = useState(liveConnected());
  useEffect(() => onLiveStatus(setOn), []);
  if (!on && !liveWanted()) return null;
  return (
    <span className={on ? 'live on' : 'live'} title={on ? 'live updates on' : 'live updates reconnecting'}>
      {on ? '● live' : '○ offline'}
    </span>
  );
}

function Header() {
  const s = useSession();
  return (
    <header>
      <span className="brand">Kiln</span>
      <nav>
        <NavLink to="/builds">Builds</NavLink>
        <NavLink to="/console">Console</NavLink>
        <NavLink to="/pipeline">Pipeline</NavLink>
        <NavLink to="/changes">Changes</NavLink>
        <NavLink to="/stats">Statistics</NavLink>
        {s.links.temporalUi && (
          <a href={s.links.temporalUi} target="_blank" rel="noreferrer">
            Temporal UI ↗
          </a>
        )}
      </nav>
      <span className="who">
        <LiveDot />{' '}
        {s.authEnabled ? (
          <>
            {s.name}{' '}
            <button type="button" className="link" onClick={s.signOut}>
              sign out
            </button>
          </>
        ) : (
          <span className="muted" title="no token is configured: the API listens on loopback only">
            auth off
          </span>
        )}
      </span>
    </header>
  );
}

function Missing() {
  const loc = useLocation();
  return <NotFound what={`There is no page at ${loc.pathname}.`} />;
}

/** The whole app. */
export function App() {
  return (
    <BrowserRouter>
      <SessionGate>
        <Header />
        <main>
          <Suspense fallback={<p className="muted">Loading…</p>}>
            <Routes>
              <Route path="/" element={<BuildsPage />} />
              <Route path="/builds" element={<BuildsPage />} />
              <Route path="/builds/:id" element={<BuildPage />} />
              <Route path="/console" element={<ConsolePage />} />
              <Route path="/pipeline" element={<PipelinePage />} />
              <Route path="/changes" element={<ChangesPage />} />
              <Route path="/changes/:host/:change/:patchset" element={<ChangePage />} />
              <Route path="/stats" element={<StatsPage />} />
              <Route path="*" element={<Missing />} />
            </Routes>
          </Suspense>
        </main>
      </SessionGate>
    </BrowserRouter>
  );
}
