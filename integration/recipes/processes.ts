/**
 * Helpers of the multi-process recipe tests: start `worker.fixture.ts` roles as client
 * processes, and read back the history of a prefix (every event from a revision up to now) to
 * check what held at each revision.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client, WatchEvent } from '../../client/index.ts';
import { natsCredentials } from '../../cluster/nats-server.ts';
import type { TestCluster } from '../cluster.ts';
import type { ManagedProcess } from '../harness.ts';

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'worker.fixture.ts');

/** Starts a worker role in its own process (see worker.fixture.ts for the roles). */
export function worker(cluster: TestCluster, ttlMs: number, role: string, ...args: string[]): ManagedProcess {
  return cluster.h.spawn(
    process.execPath,
    ['--import', 'tsx', WORKER, role, cluster.h.natsUrls.join(','), cluster.name, String(ttlMs), ...args],
    { env: { ...process.env, ENSEMBLE_CLIENT_PASSWORD: natsCredentials('client').pass } },
  );
}

/** Every event under `prefix` from revision `from` up to the cluster's revision now, in order. */
export async function history(c: Client, prefix: string, from = 1): Promise<WatchEvent[]> {
  const { revision } = await c.range('/', { limit: 1 });
  const events: WatchEvent[] = [];
  if (revision < from) return events;
  const w = c.watch({ prefix }, { fromRevision: from, progressNotify: true });
  try {
    for await (const e of w) {
      if (e.type !== 'progress') events.push(e);
      if (e.revision >= revision) break;
    }
  } finally {
    await w.return();
  }
  return events;
}

/**
 * Replays `events`, calling `check(live, revision)` after each whole revision with the keys
 * alive then (key → value as text).
 */
export function replay(
  events: readonly WatchEvent[],
  check: (
    live: ReadonlyMap<string, { value: string; createRevision: number }>,
    revision: number,
    changed: readonly WatchEvent[],
  ) => void,
): void {
  const live = new Map<string, { value: string; createRevision: number }>();
  for (let i = 0; i < events.length; ) {
    const revision = events[i]!.revision;
    const changed: WatchEvent[] = [];
    for (; i < events.length && events[i]!.revision === revision; i++) {
      const e = events[i]!;
      changed.push(e);
      if (e.type === 'delete') live.delete(e.key);
      else
        live.set(e.key, {
          value: new TextDecoder().decode(e.value),
          createRevision: e.createRevision ?? revision,
        });
    }
    check(live, revision, changed);
  }
}

export const lines = (p: ManagedProcess, pattern: RegExp): RegExpMatchArray[] =>
  p
    .output()
    .split('\n')
    .map((l) => l.match(pattern))
    .filter((m): m is RegExpMatchArray => m !== null);
