/**
 * The workloads of `npm run bench`, the same for every system (bench/systems/types.ts). Latencies
 * are recorded in microseconds in HDR histograms (`hdr-histogram-js`) and reported in ms.
 */
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import hdr from 'hdr-histogram-js';
import { cpuMs, rssMiB, sleep, startScript } from './systems/procs.ts';
import { KEY_COUNT, type Member, readStamp, type SystemUnderTest, stampValue } from './systems/types.ts';

export interface Latency {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

export function histogram(): hdr.Histogram {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: 3,
  });
}

/** Records `ms` (a duration in milliseconds) in `h` (microseconds). */
const record = (h: hdr.Histogram, ms: number) => h.recordValue(Math.max(1, Math.round(ms * 1000)));

export function summarize(h: hdr.Histogram): Latency {
  const ms = (us: number) => Math.round(us) / 1000;
  // A percentile is the highest value equivalent to its bucket: never above the exact max.
  const at = (p: number) => ms(Math.min(h.getValueAtPercentile(p), h.maxValue));
  return { count: h.totalCount, p50: at(50), p99: at(99), p999: at(99.9), max: ms(h.maxValue) };
}

const keyOf = (i: number) => i % KEY_COUNT;

/** Writes every key once, 64 in flight (so reads find values). */
export async function load(sut: SystemUnderTest): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < KEY_COUNT) await sut.put(next++);
    }),
  );
}

export interface Sequential extends Latency {}

/** `n` operations one after the other. */
export async function sequential(fn: (i: number) => Promise<unknown>, n: number): Promise<Sequential> {
  const h = histogram();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn(keyOf(i));
    record(h, performance.now() - t0);
  }
  return summarize(h);
}

export interface Throughput {
  /** Operations completed per second. */
  readonly rate: number;
  readonly errors: number;
  /** The message of the first failed operation, if any failed. */
  readonly firstError?: string;
  readonly latency: Latency;
}

/**
 * A closed loop: `inFlight` workers, each issuing its next operation when the previous one
 * answered, for `seconds`. `fn` gets the operation's number (0, 1, 2, …), not a key.
 */
export async function closedLoop(
  fn: (i: number) => Promise<unknown>,
  inFlight: number,
  seconds: number,
): Promise<Throughput> {
  const h = histogram();
  let n = 0;
  let done = 0;
  let errors = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          await fn(n++);
          done++;
          record(h, performance.now() - t0);
        } catch (err) {
          errors++;
          firstError ??= (err as Error)?.message ?? String(err);
          if (errors > 100 && errors > done)
            throw new Error(`${errors} operations failed, the first with: ${firstError}`);
        }
      }
    }),
  );
  return {
    rate: done / ((performance.now() - start) / 1000),
    errors,
    ...(firstError === undefined ? {} : { firstError }),
    latency: summarize(h),
  };
}

/** A 90/10 read/write mix (reads with `get`), closed loop. */
export function mix(
  put: (i: number) => Promise<unknown>,
  get: (i: number) => Promise<unknown>,
  inFlight: number,
  seconds: number,
): Promise<Throughput> {
  return closedLoop((i) => (i % 10 === 9 ? put(keyOf(i)) : get(keyOf(i * 7))), inFlight, seconds);
}

export interface OpenLoop {
  /** The rate asked for (operations per second). */
  readonly targetRate: number;
  /** The rate completed. */
  readonly rate: number;
  readonly errors: number;
  /** From each operation's intended start (its slot in the schedule) to its answer. */
  readonly latency: Latency;
}

/**
 * An open loop: operations start on a fixed schedule, `rate` per second for `seconds`, whether or
 * not earlier ones answered; each latency counts from the operation's slot in the schedule, so a
 * stall delays the measured latency of everything behind it (no coordinated omission). At most
 * `maxOutstanding` wait at once (a bound on memory; a start delayed by it still counts from its slot).
 */
export async function openLoop(
  fn: (i: number) => Promise<unknown>,
  rate: number,
  seconds: number,
  maxOutstanding = 20_000,
): Promise<OpenLoop> {
  const h = histogram();
  const total = Math.max(1, Math.round(rate * seconds));
  const interval = 1000 / rate;
  let issued = 0;
  let done = 0;
  let errors = 0;
  let outstanding = 0;
  const pending = new Set<Promise<void>>();
  const t0 = performance.now();
  while (issued < total) {
    const due = Math.min(total, Math.floor((performance.now() - t0) / interval) + 1);
    while (issued < due && outstanding < maxOutstanding) {
      const intended = t0 + issued * interval;
      const i = issued++;
      outstanding++;
      const p = fn(keyOf(i)).then(
        () => {
          done++;
          record(h, performance.now() - intended);
        },
        () => {
          errors++;
        },
      );
      const q = p.finally(() => {
        outstanding--;
        pending.delete(q);
      });
      pending.add(q);
    }
    await sleep(Math.max(0, Math.min(1, t0 + issued * interval - performance.now())));
  }
  await Promise.all(pending);
  return {
    targetRate: rate,
    rate: done / ((performance.now() - t0) / 1000),
    errors,
    latency: summarize(h),
  };
}

export interface WatchDelivery {
  readonly watchers: number;
  readonly writes: number;
  /** The rate the writes were sent at. */
  readonly writeRate: number;
  /** Delivered values over writes x watchers (ZooKeeper's one-shot watches may skip values). */
  readonly delivered: number;
  /** From each write's send to each watcher learning its value. */
  readonly latency: Latency;
}

/**
 * `n` watchers of one key; once each has seen a value, writes at `rate` per second for `seconds`,
 * each value stamped with its send time; a delivery's latency is its arrival minus that stamp.
 */
export async function watchDelivery(
  sut: SystemUnderTest,
  n: number,
  rate: number,
  seconds: number,
): Promise<WatchDelivery> {
  const h = histogram();
  const stamps = new Set<number>();
  const last = new Float64Array(n).fill(-1);
  const ready = new Uint8Array(n);
  let readyCount = 0;
  let delivered = 0;
  const watchers = await sut.watchHot(n, (v, w) => {
    const now = performance.now();
    if (!ready[w]) {
      ready[w] = 1;
      readyCount++;
    }
    const t = readStamp(v);
    if (stamps.has(t) && last[w] !== t) {
      last[w] = t;
      delivered++;
      record(h, now - t);
    }
  });
  try {
    // Until every watcher has seen a value, its watch may not be in place yet.
    const until = performance.now() + 60_000;
    while (readyCount < n) {
      if (performance.now() > until)
        throw new Error(`only ${readyCount} of ${n} watchers saw a write in 60 s`);
      await sut.writeHot(stampValue(performance.now()));
      await sleep(250);
    }
    await sleep(200);
    const total = Math.max(1, Math.round(rate * seconds));
    const t0 = performance.now();
    let prev = -1;
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < total; i++) {
      const wait = t0 + (i * 1000) / rate - performance.now();
      if (wait > 0) await sleep(wait);
      let t = Number(performance.now().toFixed(3));
      if (t <= prev) t = Number((prev + 0.001).toFixed(3));
      prev = t;
      stamps.add(t);
      writes.push(sut.writeHot(stampValue(t)).catch(() => {}));
    }
    await Promise.all(writes);
    const expected = total * n;
    const settle = performance.now() + 5000;
    while (delivered < expected && performance.now() < settle) await sleep(50);
    return {
      watchers: n,
      writes: total,
      writeRate: rate,
      delivered: delivered / expected,
      latency: summarize(h),
    };
  } finally {
    await watchers.close();
  }
}

export interface Expiry {
  readonly sessions: number;
  readonly ttlMs: number;
  /** Sessions whose ephemeral key was deleted within the wait. */
  readonly expired: number;
  /** From the client's SIGKILL to each ephemeral key's delete reaching a watcher. */
  readonly latency: Latency;
}

/**
 * A child process opens `n` sessions of `ttlMs` with an ephemeral key each and is killed with
 * SIGKILL; this measures when each key's delete reaches a watcher here.
 */
export async function expiry(sut: SystemUnderTest, n: number, ttlMs: number): Promise<Expiry> {
  const sessions = sut.sessions;
  if (sessions === null) throw new Error('no sessions');
  const run = `r${Date.now()}`;
  const child: ChildProcess = startScript(path.join(import.meta.dirname, 'systems', 'expire-child.ts'), [
    sut.name,
    JSON.stringify(sessions.childConfig),
    run,
    String(n),
    String(ttlMs),
  ]);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error('the expire child was not ready within 60 s')), 60_000);
      child.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`the expire child exited (${child.exitCode ?? child.signalCode})`));
      });
    });
    const deletedAt = new Float64Array(n).fill(Number.NaN);
    let deleted = 0;
    let t0 = Number.NaN;
    const w = await sessions.watchExpiry(run, n, (j) => {
      if (Number.isNaN(deletedAt[j]!)) {
        deletedAt[j] = performance.now() - t0;
        deleted++;
      }
    });
    try {
      t0 = performance.now();
      child.kill('SIGKILL');
      await exited;
      const until = t0 + ttlMs * 4 + 15_000;
      while (deleted < n && performance.now() < until) await sleep(20);
    } finally {
      await w.close();
    }
    const h = histogram();
    for (const d of deletedAt) if (!Number.isNaN(d)) record(h, d);
    return { sessions: n, ttlMs, expired: deleted, latency: summarize(h) };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  }
}

export interface MemberUsage {
  readonly name: string;
  readonly pid: number;
  /** Largest RSS sampled (every 500 ms) while the workloads ran. */
  readonly rssPeakMiB: number;
  /** CPU used while the workloads ran, in seconds (user + system). */
  readonly cpuSeconds: number;
  /** Of one core, averaged over the workloads' wall time. */
  readonly cpuPercent: number;
}

/** Samples RSS and CPU of `members` from now until `stop`. */
export function sampleUsage(members: readonly Member[]): { stop(): MemberUsage[] } {
  const t0 = performance.now();
  const cpu0 = members.map((m) => cpuMs(m.pid) ?? 0);
  const peak = members.map((m) => rssMiB(m.pid) ?? 0);
  const timer = setInterval(() => {
    members.forEach((m, i) => {
      const r = rssMiB(m.pid);
      if (r !== null && r > peak[i]!) peak[i] = r;
    });
  }, 500);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      const wall = (performance.now() - t0) / 1000;
      return members.map((m, i) => {
        const r = rssMiB(m.pid);
        if (r !== null && r > peak[i]!) peak[i] = r;
        const used = ((cpuMs(m.pid) ?? cpu0[i]!) - cpu0[i]!) / 1000;
        return {
          name: m.name,
          pid: m.pid,
          rssPeakMiB: Math.round(peak[i]! * 10) / 10,
          cpuSeconds: Math.round(used * 100) / 100,
          cpuPercent: Math.round((1000 * used) / wall) / 10,
        };
      });
    },
  };
}
