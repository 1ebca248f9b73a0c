/**
 * `npm run bench:failover [-- --kills 20] [--clients 8] [--fast] [--snapshot-threshold n]
 * [--value-bytes n] [--json] [--keep-logs]`: the write gap clients see when the leader is killed.
 * A 3-node cluster on this machine (node processes, RocksDB, nats-server); `--clients`
 * closed-loop writers, each with its own connection and session (so a retried write applies
 * once), put to their own keys (values padded to `--value-bytes`, to grow the history faster).
 * `--kills` times: the leader is killed with SIGKILL, and for each client the gap is the time from
 * the kill to its first write acknowledged after it; the killed node is started again and caught
 * up before the next kill. Prints p50, p99 and max of the gaps, and how long the cluster took to
 * name a new leader.
 *
 * Per kill it also prints how long the restarted node took to catch up (from its start to having
 * applied what the leader had committed when it came back; in brackets its boot, until it logged
 * `started`) and how: by log entries, or by a snapshot (its `ensemble_snapshots_installed_total`;
 * the new leader's `ensemble_snapshots_sent_total` counts the ones it finished sending), with the
 * leader's data size (history included). `--snapshot-threshold` passes the node flag (log entries
 * between snapshots; default 10000) to make snapshot catch-up happen in a short run.
 * Each node process logs to `<tmp dir>/logs/<id>.<n>.log`: when the bench fails or stalls it
 * prints their paths and keeps them (`--keep-logs`: always).
 *
 * Default timeouts: 50 ms tick, 100 ms heartbeat, 500 ms election timeout. `--fast`: 25 ms tick,
 * 50 ms heartbeat, 300 ms election timeout (etcd's measured 430 ms median gap used these).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Client } from '../client/index.ts';
import { startBenchCluster } from './lib.ts';

const args = process.argv.slice(2);
const opt = (name: string, fallback: number) => {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isSafeInteger(v) || v < 1) throw new TypeError(`${name} takes a whole number >= 1`);
  return v;
};
const kills = opt('--kills', 20);
const clients = opt('--clients', 8);
const fast = args.includes('--fast');
const json = args.includes('--json');
const keepLogs = args.includes('--keep-logs');
/** Pad every value to this many bytes (0: the counter alone), to grow the history faster. */
const valueBytes = args.includes('--value-bytes') ? opt('--value-bytes', 0) : 0;
const snapshotThreshold = args.includes('--snapshot-threshold') ? opt('--snapshot-threshold', 0) : null;
const progress = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? Number.NaN;
};

async function leaderOf(c: Client, among: readonly string[]): Promise<string> {
  const until = performance.now() + 60_000;
  for (;;) {
    if (performance.now() > until) throw new Error(`no leader among ${among.join(', ')} within 60 s`);
    const all = await Promise.all(among.map((id) => c.status(id).catch(() => null)));
    const leader = all[0]?.leader;
    if (leader && among.includes(leader) && all.every((s) => s?.leader === leader)) return leader;
    await sleep(20);
  }
}

/** The value of metric `name` (no labels) from node metrics at `port`, or null. */
async function metric(port: number | null, name: string): Promise<number | null> {
  if (port === null) return null;
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2000) });
    const m = new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(await res.text());
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The wall time (ISO, from the node's log) and last index of the line `started (...)`, or null. */
function startedLine(file: string): { at: number; lastIndex: number } | null {
  const m = /^(\S+) \[\w+\] started \(.*last index (\d+)\)$/m.exec(readFileSync(file, 'utf8'));
  return m ? { at: Date.parse(m[1]!), lastIndex: Number(m[2]) } : null;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ensemble-bench-failover-'));
  const flags = [
    ...(fast ? ['--tick-ms', '25', '--election-ticks', '12'] : []),
    ...(snapshotThreshold !== null ? ['--snapshot-threshold', String(snapshotThreshold)] : []),
  ];
  const electionMs = fast ? 300 : 500;
  progress(`failover: 3 nodes, ${clients} writers, ${kills} leader kills, election timeout ${electionMs} ms`);
  const cluster = await startBenchCluster(dir, 'failover', flags);
  const probe = await cluster.client({ session: false, timeoutMs: 5000 });
  const writers = await Promise.all(
    Array.from({ length: clients }, () => cluster.client({ sessionTtlMs: 10_000, timeoutMs: 30_000 })),
  );
  // Each writer: the completion time of every acknowledged write.
  const acks: number[][] = writers.map(() => []);
  let running = true;
  const errors: string[] = [];
  const loops = writers.map(async (c, w) => {
    for (let i = 0; running; i++) {
      try {
        await c.put(`/failover/${w}/${i % 100}`, String(i).padEnd(valueBytes, '.'));
        acks[w]!.push(performance.now());
      } catch (err) {
        errors.push((err as Error).message);
        await sleep(10);
      }
    }
  });
  const gaps: number[] = [];
  const elections: number[] = [];
  const catchUps: number[] = [];
  let keep = keepLogs;
  let shown = false;
  let ok = false;
  const showLogs = (why: string) => {
    keep = true;
    shown = true;
    progress(
      `  ${why}; node logs (kept):\n${cluster
        .logFiles()
        .map((f) => `    ${f}`)
        .join('\n')}`,
    );
  };
  try {
    await sleep(1000);
    for (let k = 0; k < kills; k++) {
      const leader = await leaderOf(probe, cluster.ids);
      const killedAt = performance.now();
      await cluster.kill(leader);
      const survivors = cluster.ids.filter((id) => id !== leader);
      const next = await leaderOf(probe, survivors);
      elections.push(performance.now() - killedAt);
      // Every writer's first acknowledgement after the kill.
      const mine: number[] = [];
      let reported = false;
      for (let w = 0; w < clients; w++) {
        for (;;) {
          if (!reported && performance.now() - killedAt > 5000) {
            // A stall: say where each writer is aimed and what every node thinks.
            reported = true;
            const aimed = writers.map((c) => (c as unknown as { leader: string | null }).leader);
            const views = await Promise.all(
              cluster.ids.map((id) =>
                probe.status(id).then(
                  (s) =>
                    `${id}: ${s.role} term ${s.term} leader ${s.leader} commit ${s.commitIndex} applied ${s.appliedIndex} last ${s.lastIndex}`,
                  (e: Error) => `${id}: ${e.message}`,
                ),
              ),
            );
            progress(
              `  stall after killing ${leader}: writers aimed at ${aimed.join(',')}; ${views.join('; ')}`,
            );
            showLogs(`stall after kill ${k + 1}`);
          }
          const after = acks[w]!.find((t) => t > killedAt);
          if (after !== undefined) {
            mine.push(after - killedAt);
            break;
          }
          if (performance.now() - killedAt > 30_000) {
            mine.push(Number.POSITIVE_INFINITY);
            break;
          }
          await sleep(5);
        }
      }
      gaps.push(...mine);
      progress(
        `  kill ${k + 1}/${kills}: ${leader} -> ${next} in ${elections.at(-1)!.toFixed(0)} ms; gaps max ${Math.max(...mine).toFixed(0)} ms`,
      );
      const sentBefore = await metric(cluster.metricsPort(next), 'ensemble_snapshots_sent_total');
      const startedAt = performance.now();
      const startedWall = Date.now();
      cluster.start(leader);
      // Caught up: the restarted node applied what the leader had committed when it came back.
      const at = await probe.status(next);
      const target = at.commitIndex;
      const until = performance.now() + 60_000;
      let lastReport = performance.now();
      for (;;) {
        // Its metrics port answers at once (a status request to a node not up yet waits out an
        // attempt, about a second).
        const applied = await metric(cluster.metricsPort(leader), 'ensemble_raft_applied_index');
        if (applied !== null && applied >= target) break;
        if (performance.now() - lastReport > 10_000) {
          lastReport = performance.now();
          const installed = await metric(cluster.metricsPort(leader), 'ensemble_snapshots_installed_total');
          const sent = await metric(cluster.metricsPort(next), 'ensemble_snapshots_sent_total');
          progress(
            `  ${leader} catching up for ${((lastReport - startedAt) / 1000).toFixed(0)} s: applied ${applied ?? '?'} of ${target}, snapshots installed ${installed ?? '?'} (${next} finished sending ${sent === null || sentBefore === null ? '?' : sent - sentBefore})`,
          );
        }
        const gone = cluster.exited(leader);
        if (gone !== null) {
          showLogs(`${leader} exited (${gone}) while catching up`);
          throw new Error(`${leader} exited (${gone}) while catching up: see ${cluster.logFile(leader)}`);
        }
        if (performance.now() > until) {
          showLogs(`${leader} did not catch up`);
          throw new Error(`${leader} did not catch up within 60 s`);
        }
        await sleep(20);
      }
      const caughtUp = performance.now() - startedAt;
      catchUps.push(caughtUp);
      const started = startedLine(cluster.logFile(leader));
      const installed = await metric(cluster.metricsPort(leader), 'ensemble_snapshots_installed_total');
      const sentAfter = await metric(cluster.metricsPort(next), 'ensemble_snapshots_sent_total');
      const how =
        installed === null
          ? 'how unknown (no metrics)'
          : installed > 0
            ? `by snapshot (${installed} installed; leader sent ${sentBefore === null || sentAfter === null ? '?' : sentAfter - sentBefore})`
            : `by ${started ? target - started.lastIndex : '?'} log entries`;
      progress(
        `    ${leader} caught up to ${target} in ${caughtUp.toFixed(0)} ms [boot ${started ? started.at - startedWall : '?'} ms] ${how}; leader data ${(at.dataBytes / 1e6).toFixed(1)} MB at revision ${at.revision}`,
      );
      for (const a of acks) a.length = 0;
      await sleep(500);
    }
    ok = true;
  } finally {
    running = false;
    await Promise.all(loops);
    await Promise.all([...writers, probe].map((c) => c.close()));
    await cluster.stop();
    if (!ok && !shown) showLogs('failed');
    else if (keep && !shown) progress(`  node logs kept in ${path.join(dir, 'logs')}`);
    else await rm(dir, { recursive: true, force: true });
  }
  const result = {
    electionTimeoutMs: electionMs,
    kills,
    clients,
    gapP50Ms: Math.round(pct(gaps, 0.5)),
    gapP99Ms: Math.round(pct(gaps, 0.99)),
    gapMaxMs: Math.round(Math.max(...gaps)),
    electionP50Ms: Math.round(pct(elections, 0.5)),
    catchUpP50Ms: Math.round(pct(catchUps, 0.5)),
    catchUpMaxMs: Math.round(Math.max(...catchUps)),
    errors: errors.length,
  };
  if (json) console.log(JSON.stringify(result));
  else {
    console.log(`\nwrite gap after kill -9 of the leader (${clients} writers x ${kills} kills)`);
    console.log(`  p50 ${result.gapP50Ms} ms   p99 ${result.gapP99Ms} ms   max ${result.gapMaxMs} ms`);
    console.log(
      `  new leader named after ${result.electionP50Ms} ms (p50); election timeout ${electionMs} ms`,
    );
    console.log(
      `  restarted node caught up in ${result.catchUpP50Ms} ms (p50), ${result.catchUpMaxMs} ms (max)`,
    );
    console.log(
      `  target: p99 under two election timeouts (${2 * electionMs} ms): ${result.gapP99Ms < 2 * electionMs ? 'met' : 'NOT met'}`,
    );
    console.log(
      `  writes that failed outright: ${errors.length}${errors.length ? ` (${[...new Set(errors)].slice(0, 3).join('; ')})` : ''}`,
    );
  }
}

await main();
