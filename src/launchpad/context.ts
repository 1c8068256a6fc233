/**
 * What the Launchpad features need at run time (Node side): the config's repositories, schedulers,
 * promotions, merges and notification settings looked up by name, the git cache, storage, the
 * Launchpad store, the build service, and a Temporal client. Built once per worker (and API) process.
 */
import { join } from 'node:path';
import { type Client } from '@temporalio/client';
import type pino from 'pino';
import { type BuildService } from '../builds/service.ts';
import {
  durationMs,
  type MergeConfig,
  type OnCommitSchedulerConfig,
  type PeriodicSchedulerConfig,
  type PromotionConfig,
  promotionName,
  type RepositoryConfig,
} from '../config/launchpad.ts';
import { type Registry } from '../config/load.ts';
import { type KilnConfig } from '../config/schema.ts';
import { type Build, type BuilderId } from '../domain/build.ts';
import { type GitilesCommit, remoteIdentity } from '../domain/launchpad/commit.ts';
import { type Storage } from '../storage/storage.ts';
import { GitMirror } from './git.ts';
import { type LaunchpadStore } from './store.ts';

/** Workflow and schedule IDs of the Launchpad features. */
export const launchpadIds = {
  /** A periodic scheduler's Temporal Schedule (the task queue keeps deployments sharing a namespace apart). */
  schedule: (taskQueue: string, name: string) => `kiln/${taskQueue}/schedule/${name}`,
  /** A periodic merge's Temporal Schedule. */
  merge: (taskQueue: string, name: string) => `kiln/${taskQueue}/merge/${name}`,
  /** The prefix of every schedule Kiln manages for a task queue. */
  schedulePrefix: (taskQueue: string) => `kiln/${taskQueue}/`,
  /** A git poller's workflow (and its status record). */
  poller: (taskQueue: string, name: string) => `poller/${taskQueue}/${name}`,
  /** A promotion's coordinator workflow; its attempts are `<this>/<n>`. */
  promotion: (taskQueue: string, name: string) => `promotion/${taskQueue}/${name}`,
  buildNotification: (buildId: string) => `notify/build/${buildId}`,
  promotionNotification: (attemptId: string) => `notify/promotion/${attemptId}`,
};

/** Parses `project/bucket/builder`. */
export function parseBuilderPath(path: string): BuilderId {
  const [project = '', bucket = '', builder = ''] = path.split('/');
  return { project, bucket, builder };
}

/** Options of `LaunchpadContext`. */
export interface LaunchpadContextOptions {
  config: KilnConfig;
  registry: Registry;
  storage: Storage;
  store: LaunchpadStore;
  client: Client;
  taskQueue: string;
  /** Schedules builds (pollers, periodic schedulers). */
  builds: BuildService;
  logger: pino.Logger;
  /** @default `<dataDir>/git` */
  gitCacheDir?: string;
}

/** See the module comment. */
export class LaunchpadContext {
  readonly config: KilnConfig;
  readonly storage: Storage;
  readonly store: LaunchpadStore;
  readonly client: Client;
  readonly taskQueue: string;
  readonly builds: BuildService;
  readonly logger: pino.Logger;
  readonly registry: Registry;
  readonly gitCacheDir: string;
  private readonly mirrors = new Map<string, GitMirror>();

  constructor(o: LaunchpadContextOptions) {
    this.config = o.config;
    this.registry = o.registry;
    this.storage = o.storage;
    this.store = o.store;
    this.client = o.client;
    this.taskQueue = o.taskQueue;
    this.builds = o.builds;
    this.logger = o.logger;
    this.gitCacheDir = o.gitCacheDir ?? join(o.config.dataDir, 'git');
  }

  /** Base URL of links in messages: `api.publicUrl`, else the API's own address. */
  get publicUrl(): string {
    const api = this.config.api;
    return (api.publicUrl ?? `http://${api.host.includes(':') ? `[${api.host}]` : api.host}:${api.port}`).replace(
      /\/+$/,
      '',
    );
  }

  /** A build's link. */
  buildLink(id: string): string {
    return `${this.publicUrl}/api/v1/builds/${id}`;
  }

  repo(name: string): RepositoryConfig | undefined {
    return this.config.repositories.find((r) => r.name === name);
  }

  /** The cache of repository `name`. */
  mirror(name: string): GitMirror {
    const repo = this.repo(name);
    if (!repo) throw new Error(`repository ${name} is not configured`);
    let m = this.mirrors.get(name);
    if (!m || m.repo !== repo) {
      m = new GitMirror(repo, this.gitCacheDir, durationMs(this.config.git.commandTimeout));
      this.mirrors.set(name, m);
    }
    return m;
  }

  onCommitScheduler(name: string): OnCommitSchedulerConfig | undefined {
    const s = this.config.schedulers.find((x) => x.name === name);
    return s?.kind === 'on-commit' ? s : undefined;
  }

  periodicScheduler(name: string): PeriodicSchedulerConfig | undefined {
    const s = this.config.schedulers.find((x) => x.name === name);
    return s?.kind === 'periodic' ? s : undefined;
  }

  promotions(): PromotionConfig[] {
    return this.config.promotions.map((p) => ({ ...p, name: promotionName(p) }));
  }

  promotion(name: string): PromotionConfig | undefined {
    return this.promotions().find((p) => p.name === name);
  }

  merge(name: string): MergeConfig | undefined {
    return this.config.merges.find((m) => m.name === name);
  }

  /** The configured repository a build's commit belongs to (same host and project). */
  repoOfCommit(c: Pick<GitilesCommit, 'host' | 'project'>): RepositoryConfig | undefined {
    return this.config.repositories.find((r) => {
      const id = remoteIdentity(r.url);
      return id.host === c.host && id.project === c.project;
    });
  }

  /** The commit input of a build of `repo` at `id` on `branch`. */
  commitOf(repo: RepositoryConfig, branch: string, id: string): GitilesCommit {
    return { ...remoteIdentity(repo.url), ref: `refs/heads/${branch}`, id };
  }

  /**
   * Buckets whose roles govern a repository-level thing: the repository's `bucket`, else the buckets
   * of the builders it names.
   */
  bucketsOf(repoName: string | undefined, builders: readonly string[]): string[] {
    const repo = repoName === undefined ? undefined : this.repo(repoName);
    if (repo?.bucket) return [repo.bucket];
    return [...new Set(builders.map((b) => b.split('/').slice(0, 2).join('/')))];
  }

  /**
   * The newest ended build of each of `builders` for commit `id` of `repo`, from storage (by the
   * commit's buildset); undefined for a builder with no ended build of it.
   */
  async newestEndedBuilds(
    repo: RepositoryConfig,
    id: string,
    builders: readonly string[],
  ): Promise<Map<string, Build | undefined>> {
    const { host, project } = remoteIdentity(repo.url);
    const out = new Map<string, Build | undefined>();
    for (const path of builders) {
      const builder = parseBuilderPath(path);
      const page = await this.storage.searchBuilds({
        builder,
        buildset: `commit/gitiles/${host}/${project}/+/${id}`,
        limit: 50,
      });
      // Newest first (IDs decrease with time); the first that ended decides.
      out.set(
        path,
        page.builds.find((b) => ['SUCCESS', 'FAILURE', 'INFRA_FAILURE', 'CANCELED'].includes(b.status)),
      );
    }
    return out;
  }

  /** True when every builder's newest ended build of the commit is SUCCESS; with the builds that show it. */
  async isGreen(
    repo: RepositoryConfig,
    id: string,
    builders: readonly string[],
  ): Promise<{ green: boolean; builds: string[]; missing: string[]; red: string[] }> {
    const newest = await this.newestEndedBuilds(repo, id, builders);
    const builds: string[] = [];
    const missing: string[] = [];
    const red: string[] = [];
    for (const [path, b] of newest) {
      if (!b) missing.push(path);
      else if (b.status !== 'SUCCESS') red.push(`${path} #${b.number} ${b.status}`);
      else builds.push(b.id);
    }
    return { green: missing.length === 0 && red.length === 0, builds, missing, red };
  }
}
