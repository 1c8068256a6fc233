/**
 * A build's inputs beyond its properties, as LUCI passes them: Buildbot-buildbucket's `changes` (the changes a
 * build is for, with their authors) and Buildbucket v2's `gerritChanges` and `gitilesCommit`. Pure: no Node
 * built-ins, so workflow code may import it.
 */
import { commitBuildset } from './launchpad/commit.ts';

/** One change of a schedule request's `changes` (Buildbot-buildbucket's build parameter), as given. */
export interface BuildChange {
  /** A unique identity of the change. */
  id?: string;
  /** The change's revision (a commit SHA). */
  revision?: string;
  author?: { email?: string; name?: string };
  /** Creation time, microseconds since the epoch. */
  create_ts?: number;
  /** Changed files, relative to the repository root. */
  files?: { path: string }[];
  message?: string;
  branch?: string;
  /** A page a person reads the change on. */
  url?: string;
  /** The project the change belongs to. */
  project?: string;
  /** The repository's URL (LUCI's CQ sets it instead of `project`). */
  repo_url?: string;
}

/** A Gerrit patch set under test (Buildbucket v2 `GerritChange`). */
export interface GerritChangeInput {
  host: string;
  project: string;
  change: number;
  patchset: number;
}

/** A commit under test (Buildbucket v2 `GitilesCommit`). */
export interface GitilesCommitInput {
  host: string;
  project: string;
  ref: string;
  id: string;
}

/** The build's `blamelist`: the changes' author emails, each once, in order (Swarmbucket's rule). */
export function blamelistOf(changes: readonly BuildChange[]): string[] {
  const out: string[] = [];
  for (const c of changes) {
    const email = c.author?.email;
    if (email && !out.includes(email)) out.push(email);
  }
  return out;
}

/** `buildset` of a Gerrit patch set, as CQ and Buildbucket write it. */
export function gerritChangeBuildset(c: GerritChangeInput): string {
  return `patch/gerrit/${c.host}/${c.change}/${c.patchset}`;
}

/**
 * The tags Buildbucket derives from a build's Gerrit changes and commit — a `buildset` each — so builds are found
 * by them (`kiln search --gerrit-change host/change/patchset` searches these tags).
 */
export function inputBuildsetTags(input: {
  gerritChanges?: readonly GerritChangeInput[];
  gitilesCommit?: GitilesCommitInput;
}): string[] {
  return [
    ...(input.gerritChanges ?? []).map((c) => `buildset:${gerritChangeBuildset(c)}`),
    ...(input.gitilesCommit ? [`buildset:${commitBuildset(input.gitilesCommit)}`] : []),
  ];
}
