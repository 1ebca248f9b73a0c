/**
 * One client process of a chaos run (`tsx integration/chaos/worker.ts <config-json>`): it drives
 * a mix of operations through the real client against a cluster under faults and records every
 * invocation and completion, in a JSON-lines file the run checks afterwards (records.ts).
 *
 * - Linearizable ops on a few shared keys: puts of unique values, gets, compare-and-sets (a txn
 *   on the version) and deletes; each recorded for the linearizability checker. A write that
 *   ended with TIMEOUT, UNKNOWN_OUTCOME or a transport error is indeterminate (no response); one
 *   refused with a code the wire reference says applied nothing leaves the history.
 * - Sequential creates under one prefix; ephemeral puts under the worker's own prefix, tied to
 *   its session; one watch of the whole chaos prefix from the revision it started at.
 * - Session changes are recorded: a session that ended while the worker was alive and the
 *   cluster healthy enough to hear its keepalives is a violation the run reports.
 * - On SIGTERM (or at `durationMs`) it stops issuing, waits for what is in flight, checks its
 *   live ephemeral keys, closes (its session ends and its ephemeral keys go) and exits 0.
 *
 * Progress goes to stdout as one JSON line a second (`{ "progress": { … } }`).
 */
import { createWriteStream } from 'node:fs';
import { type Client, connect, EnsembleError } from '../../client/index.ts';
import type { Op, OpResult } from '../sim/linearizability.ts';
import { waitFor } from '../wait.ts';
import {
  CHAOS_PREFIX,
  type ChaosRecord,
  COUNTER,
  chaosKey,
  seededRandom,
  type WatchedEvent,
} from './records.ts';

export interface WorkerConfig {
  readonly id: string;
  readonly servers: readonly string[];
  readonly cluster: string;
  readonly user: string;
  readonly pass: string;
  readonly out: string;
  readonly seed: number;
  /** Shared keys of the linearizable ops. */
  readonly keys: number;
  /** Operation loops running at once. */
  readonly concurrency: number;
  readonly sessionTtlMs: number;
  /** Deadline of one operation, retries included. */
  readonly timeoutMs: number;
  /** Stop by itself after this long (it stops on SIGTERM too). */
  readonly durationMs: number;
  readonly tls?: { readonly caFile: string };
}

/** Codes after which the wire reference says a write did not happen (protocol/README.md). */
const APPLIED_NOTHING = new Set([
  'NOT_LEADER',
  'NO_QUORUM',
  'BAD_REQUEST',
  'UNKNOWN_OP',
  'TOO_LARGE',
  'BAD_PATH',
  'COMPACTED',
  'SESSION_EXPIRED',
  'PERMISSION_DENIED',
  'QUOTA_EXCEEDED',
  'RATE_LIMITED',
  'CLOSED',
]);

const now = (): number => performance.timeOrigin + performance.now();
const text = (v: Uint8Array | undefined): string | null =>
  v === undefined ? null : new TextDecoder().decode(v);

export async function runWorker(cfg: WorkerConfig): Promise<void> {
  const file = createWriteStream(cfg.out, { flags: 'a' });
  const record = (r: ChaosRecord) => file.write(`${JSON.stringify(r)}\n`);
  const random = seededRandom(cfg.seed);
  const stats = { ok: 0, failed: 0, indeterminate: 0, watched: 0 };
  let stopping = false;
  const stop = () => {
    stopping = true;
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  const stopTimer = setTimeout(stop, cfg.durationMs);

  let client: Client | null = null;
  while (client === null && !stopping) {
    try {
      client = await connect({
        servers: [...cfg.servers],
        cluster: cfg.cluster,
        user: cfg.user,
        pass: cfg.pass,
        timeoutMs: cfg.timeoutMs,
        sessionTtlMs: cfg.sessionTtlMs,
        ...(cfg.tls ? { tls: cfg.tls } : {}),
      });
    } catch (err) {
      record({ t: 'note', at: now(), text: `connect failed: ${String(err)}` });
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  if (client === null) {
    file.end();
    return;
  }
  const c = client;
  let session = c.sessionInfo?.id ?? null;
  record({ t: 'session', at: now(), id: session, state: 'OPEN' });
  let sessionState = 'CONNECTED';
  c.onSessionState((state, id) => {
    sessionState = state;
    record({ t: 'session', at: now(), id, state });
    if (id !== null && id !== session) session = id;
  });

  const progress = setInterval(() => process.stdout.write(`${JSON.stringify({ progress: stats })}\n`), 1000);

  // One watch of the whole chaos prefix, from the revision the worker starts at.
  const start = await readRevision(c);
  const watchFrom = start + 1;
  record({ t: 'watchStart', at: now(), from: watchFrom });
  const watch = c.watch({ prefix: CHAOS_PREFIX }, { fromRevision: watchFrom, progressNotify: true });
  const watched: WatchedEvent[] = [];
  /** Revisions seen whole: a revision is complete once an event of a later one, or a progress
   * message at or past it, arrived (a large revision may come in several messages). */
  let watchedUpTo = start;
  let lastEventRevision = start;
  const flushWatch = () => {
    if (watched.length === 0) return;
    record({ t: 'watch', events: watched.splice(0), upTo: watchedUpTo });
  };
  const watching = (async () => {
    try {
      for await (const item of watch) {
        if (item.type === 'progress') {
          watchedUpTo = Math.max(watchedUpTo, item.revision);
          continue;
        }
        watched.push([item.revision, item.type, item.key, text(item.value)]);
        if (item.revision > lastEventRevision) {
          watchedUpTo = Math.max(watchedUpTo, lastEventRevision);
          lastEventRevision = item.revision;
        }
        stats.watched++;
        if (watched.length >= 256) flushWatch();
      }
    } catch (err) {
      if (!(err instanceof EnsembleError && err.code === 'CLOSED'))
        record({ t: 'note', at: now(), text: `watch ended: ${String(err)}` });
    }
    flushWatch();
  })();
  // Resumes of the watch (a lost message, a dead or moved node), with where the stream was.
  let resumes = 0;
  const watchFlusher = setInterval(() => {
    if (watch.resumes !== resumes) {
      flushWatch();
      resumes = watch.resumes;
      record({
        t: 'note',
        at: now(),
        text: `watch resumed (${resumes} so far, ${watch.revisionGaps} for a revision gap) after revision ${watchedUpTo}`,
      });
    }
    flushWatch();
  }, 100);

  let seq = 0;
  const versions = new Map<string, number>();
  const ephemeral = new Map<string, { session: string | null; ok: boolean | null }>();

  /** The cluster said the session is gone: recorded with what the client thought of it then. */
  const noteExpired = (err: unknown) => {
    if (err instanceof EnsembleError && err.code === 'SESSION_EXPIRED')
      record({ t: 'expired', at: now(), session, state: sessionState });
  };

  /** Runs one op, records it for the checker with the outcome. */
  const linear = async (op: Op, run: () => Promise<{ result: OpResult; revision?: number }>) => {
    const invoke = now();
    try {
      const { result, revision } = await run();
      stats.ok++;
      record({
        t: 'op',
        client: cfg.id,
        invoke,
        response: now(),
        op,
        result,
        ...(revision ? { revision } : {}),
      });
    } catch (err) {
      noteExpired(err);
      const code = err instanceof EnsembleError ? err.code : null;
      if (op.type !== 'get' && (code === null || !APPLIED_NOTHING.has(code))) {
        stats.indeterminate++;
        record({ t: 'op', client: cfg.id, invoke, response: null, op, error: code ?? String(err) });
      } else {
        stats.failed++;
        record({ t: 'failed', client: cfg.id, invoke, at: now(), op, error: code ?? String(err) });
      }
    }
  };

  const step = async () => {
    const key = chaosKey(Math.floor(random() * cfg.keys));
    const value = `${cfg.id}-${++seq}`;
    const r = random();
    if (r < 0.3) {
      await linear({ type: 'put', key, value }, async () => {
        const p = await c.put(key, value);
        versions.set(key, p.version);
        return { result: { version: p.version }, revision: p.revision };
      });
    } else if (r < 0.55) {
      await linear({ type: 'get', key }, async () => {
        const g = await c.read(key);
        if (g.kv) versions.set(key, g.kv.version);
        return { result: { value: text(g.kv?.value), version: g.kv?.version ?? 0 } };
      });
    } else if (r < 0.7) {
      const expectedVersion = versions.get(key) ?? 0;
      await linear({ type: 'cas', key, expectedVersion, value }, async () => {
        const t = await c.txn({
          compare: [{ key, target: 'version', result: 'eq', value: expectedVersion }],
          success: [{ op: 'put', key, value: new TextEncoder().encode(value) }],
        });
        const put = t.results[0];
        const version = t.succeeded && put?.op === 'put' ? put.kv.version : undefined;
        if (version !== undefined) versions.set(key, version);
        return {
          result: version !== undefined ? { succeeded: true, version } : { succeeded: false },
          revision: t.revision,
        };
      });
    } else if (r < 0.78) {
      await linear({ type: 'delete', key }, async () => {
        const n = await c.delete(key);
        versions.set(key, 0);
        return { result: { deleted: n > 0 } };
      });
    } else if (r < 0.88) {
      const invoke = now();
      try {
        const s = await c.createSequential(`${CHAOS_PREFIX}seq/`, value);
        stats.ok++;
        record({ t: 'seq', invoke, response: now(), value, key: s.key, revision: s.revision });
      } catch (err) {
        noteExpired(err);
        stats.indeterminate++;
        record({ t: 'seq', invoke, response: null, value, key: null, error: String(err) });
      }
    } else {
      const ekey = `${CHAOS_PREFIX}eph/${cfg.id}/${seq}`;
      const owner = session;
      try {
        await c.put(ekey, value, { ephemeral: true });
        stats.ok++;
        ephemeral.set(ekey, { session: owner, ok: true });
      } catch (err) {
        noteExpired(err);
        const code = err instanceof EnsembleError ? err.code : null;
        if (code !== null && APPLIED_NOTHING.has(code)) stats.failed++;
        else stats.indeterminate++;
        ephemeral.set(ekey, {
          session: owner,
          ok: code !== null && APPLIED_NOTHING.has(code) ? false : null,
        });
      }
    }
  };

  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  const loops = Array.from({ length: cfg.concurrency }, async () => {
    while (!stopping) await step();
  });
  // The lock recipe: increments of one counter, each read and written while holding the lock,
  // the write through the lock's fence. Mutual exclusion holds iff the counter's values in the
  // watch streams go up by one at a time (two holders would write the same value).
  const lock = c.lock('chaos');
  const locking = (async () => {
    while (!stopping) {
      let hold: Awaited<ReturnType<typeof lock.acquire>>;
      try {
        hold = await lock.acquire({ timeout: cfg.timeoutMs });
      } catch {
        stats.failed++;
        continue;
      }
      try {
        const n = Number((await c.getText(COUNTER)) ?? 0);
        const invoke = now();
        const r = await hold.put(COUNTER, String(n + 1));
        stats.ok++;
        record({ t: 'inc', invoke, response: now(), to: n + 1, token: hold.token, revision: r.revision });
      } catch (err) {
        const code = err instanceof EnsembleError ? err.code : null;
        if (code === 'NOT_HELD') stats.failed++;
        else stats.indeterminate++;
      } finally {
        await hold.release().catch(() => {});
      }
    }
  })();
  await Promise.all([...loops, locking]);
  clearTimeout(stopTimer);

  // Ephemeral keys of the session still open: every acknowledged one of the current session is
  // there (none expired behind its back), none of an earlier session is.
  try {
    const live = new Set((await c.rangeAll(`${CHAOS_PREFIX}eph/${cfg.id}/`)).kvs.map((kv) => kv.key));
    const missing: string[] = [];
    const stale: string[] = [];
    for (const [k, e] of ephemeral) {
      if (e.session === session && e.ok === true && !live.has(k)) missing.push(k);
      if (e.session !== session && live.has(k)) stale.push(k);
    }
    record({
      t: 'ephemeral',
      at: now(),
      session,
      acked: [...ephemeral.values()].filter((e) => e.ok).length,
      missing,
      stale,
    });
  } catch (err) {
    record({ t: 'note', at: now(), text: `ephemeral check failed: ${String(err)}` });
  }
  // The last revision the watch must reach: a linearizable read now.
  const end = await readRevision(c).catch(() => null);
  if (end !== null) {
    await waitFor(() => watchedUpTo >= end, { timeoutMs: 10_000, intervalMs: 50 }).catch(() => {});
    record({ t: 'watchEnd', at: now(), upTo: watchedUpTo, target: end });
  }
  clearInterval(watchFlusher);
  clearInterval(progress);
  record({ t: 'end', at: now(), session, stats });
  await c.close();
  await watching;
  process.stdout.write(`${JSON.stringify({ progress: stats, done: true })}\n`);
  await new Promise<void>((r) => file.end(r));
}

/** The cluster's current revision, by a linearizable read. */
async function readRevision(c: Client): Promise<number> {
  for (;;) {
    try {
      return (await c.read(chaosKey(0))).revision;
    } catch (err) {
      if (err instanceof EnsembleError && err.code === 'CLOSED') throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').at(-1)!)) {
  const cfg = JSON.parse(process.argv[2] ?? '{}') as WorkerConfig;
  runWorker(cfg).then(
    () => process.exit(0),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
