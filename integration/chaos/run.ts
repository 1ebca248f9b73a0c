/**
 * One chaos run: a cluster (cluster.ts), client processes running a mixed workload and
 * recording it (worker.ts), faults one after another for `durationS` (faults.ts), then the
 * checks (checks.ts) over the records and the cluster's final state:
 * every history linearizable, acknowledged writes in the watch streams and applied once, watch
 * streams whole and agreeing, sessions and ephemeral keys right, and all nodes' key trees
 * identical at one revision (the chaos admin op `hash`).
 *
 * The run directory keeps data, node logs, the workers' records and `report.json`; it is removed
 * after a clean run unless `keep`, and kept (and named) after a violation.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { adopt } from '../../cluster/children.ts';
import { natsCredentials } from '../../cluster/nats-server.ts';
import { within } from '../wait.ts';
import {
  type CheckOutcome,
  checkAcknowledged,
  checkLinearizable,
  checkLock,
  checkSequential,
  checkSessions,
  checkWatches,
  percentile,
  writeGaps,
} from './checks.ts';
import { ChaosCluster } from './cluster.ts';
import { canMount } from './disks.ts';
import { type FaultKind, type FaultRecord, FaultSchedule } from './faults.ts';
import { netnsAvailable } from './netns.ts';
import { CHAOS_PREFIX, type ChaosRecord, readRecords, seededRandom } from './records.ts';
import type { WorkerConfig } from './worker.ts';

export interface ChaosOptions {
  readonly durationS: number;
  readonly seed: number;
  readonly faults: readonly FaultKind[];
  /** Put nodes in network namespaces: true (fail if not permitted), false, or 'auto'. */
  readonly netns: boolean | 'auto';
  readonly workers?: number;
  readonly concurrency?: number;
  readonly keys?: number;
  readonly nodes?: number;
  /** Node flags, e.g. `['--tick-ms', '50']`. */
  readonly flags?: readonly string[];
  readonly keep?: boolean;
  /** Ends the faults early (Ctrl-C): the run heals, stops its workers and checks what it has. */
  readonly signal?: AbortSignal;
  /** Take the fault kinds in turn (a short run meets every kind). */
  readonly roundRobin?: boolean;
  /** Progress and fault lines. */
  readonly log?: (line: string) => void;
}

export interface ChaosReport {
  readonly seed: number;
  readonly durationS: number;
  readonly placement: 'netns' | 'loopback';
  /** How partitions were made: network namespaces or the nodes' transport filters. */
  readonly partitions: string;
  readonly ops: { readonly ok: number; readonly failed: number; readonly indeterminate: number };
  readonly faults: readonly FaultRecord[];
  readonly faultsByKind: Readonly<Record<string, number>>;
  readonly crashOnlyStops: number;
  readonly gaps: {
    readonly count: number;
    readonly p50: number | null;
    readonly p99: number | null;
    readonly max: number | null;
  };
  readonly checks: readonly CheckOutcome[];
  readonly violations: number;
  readonly dir: string | null;
}

const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));
const now = (): number => performance.timeOrigin + performance.now();
/** The workers' session TTL: longer than any fault's hold, so only a longer outage loses one. */
const SESSION_TTL_MS = 15_000;

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const log = o.log ?? (() => {});
  const dir = await mkdtemp(path.join(tmpdir(), 'ensemble-chaos-'));
  const _root = process.getuid?.() === 0;
  let netns = false;
  if (o.netns !== false) {
    netns = await netnsAvailable();
    if (!netns && o.netns === true)
      throw new Error('--netns: network namespaces are not permitted here (root and ip netns needed)');
  }
  const faults = o.faults.filter((k) => k !== 'disk' || canMount());
  if (faults.length < o.faults.length)
    log('disk faults need root and loop devices (mount, losetup, mkfs.ext4): left out');
  const name = `chaos${o.seed % 100000}`;
  log(`run directory ${dir}; nodes ${netns ? 'in network namespaces' : 'on loopback'}`);
  const cluster = await ChaosCluster.start({
    dir,
    name,
    nodes: o.nodes ?? 3,
    netns,
    disks: faults.includes('disk'),
    flags: o.flags ?? [],
    log,
  });
  const workers: {
    id: string;
    child: ChildProcess;
    out: string;
    stats: Record<string, number>;
    ready: Promise<void>;
    exited: Promise<void>;
  }[] = [];
  let report: ChaosReport | null = null;
  try {
    const probe = await cluster.client();
    const electionMs = (await probe.status()).electionTimeoutMs || 500;
    await probe.close();
    const n = o.workers ?? 4;
    for (let i = 0; i < n; i++) {
      const id = `w${i + 1}`;
      const out = path.join(dir, `${id}.jsonl`);
      const cfg: WorkerConfig = {
        id,
        servers: cluster.urls,
        cluster: name,
        user: 'client',
        pass: natsCredentials('client').pass,
        out,
        seed: o.seed * 31 + i,
        keys: o.keys ?? 6,
        concurrency: o.concurrency ?? 4,
        sessionTtlMs: SESSION_TTL_MS,
        timeoutMs: 8000,
        durationMs: (o.durationS + 120) * 1000,
      };
      const child = spawn(process.execPath, ['--import=tsx', WORKER, JSON.stringify(cfg)], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      adopt(child);
      let ready = () => {};
      const w = {
        id,
        child,
        out,
        stats: {} as Record<string, number>,
        ready: new Promise<void>((r) => {
          ready = r;
        }),
        exited: new Promise<void>((r) => child.once('exit', () => r())),
      };
      createInterface({ input: child.stdout! }).on('line', (line) => {
        try {
          const m = JSON.parse(line) as { progress?: Record<string, number>; ready?: boolean };
          if (m.ready) ready();
          if (m.progress) w.stats = m.progress;
        } catch {
          log(`${id}: ${line}`);
        }
      });
      createInterface({ input: child.stderr! }).on('line', (line) => log(`${id} stderr: ${line}`));
      workers.push(w);
    }

    // Faults start once every worker connected, opened its session and watch.
    const allReady = Promise.all(workers.map((w) => w.ready));
    const exitedEarly = Promise.race(workers.map((w) => w.exited.then(() => w.id)));
    const first = await Promise.race([
      allReady.then(() => null),
      exitedEarly.then((id) => `worker ${id} exited before it was ready`),
      new Promise<string>((r) => setTimeout(() => r('workers not ready within 120 s'), 120_000).unref()),
    ]);
    if (first !== null) throw new Error(first);
    log(`${workers.length} workers ready`);
    const started = now();
    const until = started + o.durationS * 1000;
    const schedule = new FaultSchedule(cluster, {
      kinds: faults,
      random: seededRandom(o.seed ^ 0x5bd1e995),
      electionMs,
      recoverMs: 60_000,
      roundRobin: o.roundRobin ?? false,
      log,
    });
    const total = () => {
      const t = { ok: 0, failed: 0, indeterminate: 0 };
      for (const w of workers) {
        t.ok += w.stats.ok ?? 0;
        t.failed += w.stats.failed ?? 0;
        t.indeterminate += w.stats.indeterminate ?? 0;
      }
      return t;
    };
    const ticker = setInterval(() => {
      const t = total();
      const s = Math.round((now() - started) / 1000);
      log(
        `[${s}/${o.durationS} s] ops ok ${t.ok}, failed ${t.failed}, indeterminate ${t.indeterminate}; faults ${schedule.records.length}`,
      );
    }, 5000);
    try {
      await schedule.run(until, o.signal);
    } finally {
      clearInterval(ticker);
    }

    // Wind down: whole cluster, then the workers finish, check their sessions and close.
    const violations: string[] = [...schedule.violations];
    await cluster.heal().catch(() => {});
    for (const id of cluster.ids) if (!cluster.running(id)) cluster.start(id);
    for (const id of cluster.ids) cluster.resume(id);
    await cluster.waitHealthy(60_000).catch((err) => violations.push(`not whole at the end: ${String(err)}`));
    log('stopping the workers');
    for (const w of workers) w.child.kill('SIGTERM');
    await within(Promise.all(workers.map((w) => w.exited)), {
      timeoutMs: 90_000,
      what: 'the workers finish',
    }).catch(() => {});
    for (const w of workers)
      if (w.child.exitCode === null && w.child.signalCode === null) {
        violations.push(`worker ${w.id} did not finish within 90 s of SIGTERM`);
        w.child.kill('SIGKILL');
      } else if (w.child.exitCode !== 0)
        violations.push(`worker ${w.id} exited with ${w.child.exitCode ?? w.child.signalCode}`);

    log('checking');
    const records = new Map<string, ChaosRecord[]>();
    for (const w of workers) records.set(w.id, await readRecords(w.out));
    const checks: CheckOutcome[] = [...recordChecks(records), await checkFinalState(cluster, SESSION_TTL_MS)];
    if (violations.length > 0) checks.push({ name: 'liveness and workers', violations });
    const ops = { ok: 0, failed: 0, indeterminate: 0 };
    for (const rs of records.values())
      for (const r of rs)
        if (r.t === 'end') {
          ops.ok += r.stats.ok ?? 0;
          ops.failed += r.stats.failed ?? 0;
          ops.indeterminate += r.stats.indeterminate ?? 0;
        }
    const gaps = writeGaps(
      records,
      schedule.records.filter((f) => f.kind === 'kill' && f.leaderLost && f.what !== 'kill -9 every node'),
    );
    const byKind: Record<string, number> = {};
    for (const f of schedule.records) byKind[f.kind] = (byKind[f.kind] ?? 0) + 1;
    const count = checks.reduce((s, c) => s + c.violations.length, 0);
    report = {
      seed: o.seed,
      durationS: o.durationS,
      placement: cluster.placement,
      partitions: cluster.placement === 'netns' ? 'network namespaces' : 'transport filter (chaos admin op)',
      ops,
      faults: schedule.records,
      faultsByKind: byKind,
      crashOnlyStops: cluster.crashes.length,
      gaps: {
        count: gaps.length,
        p50: percentile(gaps, 50),
        p99: percentile(gaps, 99),
        max: gaps.at(-1) ?? null,
      },
      checks,
      violations: count,
      dir: count > 0 || o.keep ? dir : null,
    };
    await writeFile(path.join(dir, 'report.json'), JSON.stringify(report, null, 2));
    return report;
  } finally {
    for (const w of workers)
      if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await cluster.stop();
    if (report !== null && report.dir === null) await rm(dir, { recursive: true, force: true });
  }
}

/** The record checks again over a kept run directory (`npm run chaos -- --recheck DIR`). */
export async function recheck(dir: string): Promise<CheckOutcome[]> {
  const records = new Map<string, ChaosRecord[]>();
  for (const f of (await readdir(dir)).filter((n) => /^w\d+\.jsonl$/.test(n)).sort())
    records.set(f.replace('.jsonl', ''), await readRecords(path.join(dir, f)));
  return recordChecks(records);
}

function recordChecks(records: ReadonlyMap<string, ChaosRecord[]>): CheckOutcome[] {
  return [
    checkLinearizable(records),
    checkWatches(records),
    checkAcknowledged(records),
    checkSequential(records),
    checkSessions(records),
    checkLock(records),
  ];
}

/**
 * After the workers closed: no ephemeral key is left once every session has ended (the workers'
 * last sessions at their close; a session a client gave up after an outage within its TTL of the
 * cluster's recovery), and every node's key tree hashes the same at one revision.
 */
async function checkFinalState(cluster: ChaosCluster, ttlMs: number): Promise<CheckOutcome> {
  const violations: string[] = [];
  const c = await cluster.client({ timeoutMs: 10_000 });
  let detail = '';
  try {
    const deadline = now() + ttlMs + 10_000;
    let eph = await c.rangeAll(`${CHAOS_PREFIX}eph/`);
    while (eph.kvs.length > 0 && now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      eph = await c.rangeAll(`${CHAOS_PREFIX}eph/`);
    }
    if (eph.kvs.length > 0)
      violations.push(
        `${eph.kvs.length} ephemeral keys outlived their sessions: ${eph.kvs
          .slice(0, 5)
          .map((kv) => kv.key)
          .join(', ')}`,
      );
    const revision = eph.revision;
    const hashes = await Promise.all(
      cluster.ids.map((id) =>
        cluster
          .admin<{ revision: number; hash: string; keys: number }>(id, 'hash', { revision }, 15_000)
          .then((h) => ({ id, ...h }))
          .catch((err) => ({ id, revision, hash: `error: ${String(err)}`, keys: -1 })),
      ),
    );
    const distinct = new Set(hashes.map((h) => h.hash));
    if (distinct.size !== 1)
      violations.push(
        `key trees differ at revision ${revision}: ${hashes.map((h) => `${h.id} ${h.hash.slice(0, 16)} (${h.keys} keys)`).join(', ')}`,
      );
    detail = `${hashes[0]?.keys ?? 0} keys, hash ${hashes[0]?.hash.slice(0, 12)} on ${hashes.length} nodes at revision ${revision}`;
  } catch (err) {
    violations.push(`final state unreadable: ${String(err)}`);
  } finally {
    await c.close();
  }
  return { name: 'final state (ephemeral keys gone, trees identical)', violations, detail };
}
