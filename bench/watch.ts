/**
 * `npm run bench:watch [-- --seconds 5] [--runs 1000@1000,10000@1000,10000@100] [--sessions 10000]`
 *
 * - Watch fan-out: N watchers on one prefix (spread over clients, 60 per session, all in this
 *   process), a writer at R writes/s; event delivery latency p50/p99 from the write's send time
 *   (stamped in the value) to its arrival at each watcher, how many deliveries arrived, and the
 *   CPU of each node. Every watcher gets every event: N x R events/s reach this one process,
 *   which is the limit at 10k watchers (the writer shares its event loop and slows down).
 * - Sessions: S sessions opened and kept alive (keepalives every TTL/3) for the run; CPU used
 *   by each node per second.
 * Prints a table. A 3-node cluster of real processes on this machine.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Client } from '../client/index.ts';
import { encodeEnvelope } from '../protocol/codec.ts';
import { startBenchCluster } from './lib.ts';

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1]! : fallback;
};
const seconds = Number(arg('--seconds', process.env.BENCH_SECONDS ?? '5'));
/** Runs as `watchers@writes per second`. */
const runs = arg('--runs', '1000@1000,10000@1000,10000@100')
  .split(',')
  .map((r) => r.split('@').map(Number) as [number, number]);
const sessionCount = Number(arg('--sessions', '10000'));
const PER_SESSION = 60;
const progress = (line: string) => process.stderr.write(`  ${line}\n`);

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
}

async function fanout(
  cluster: Awaited<ReturnType<typeof startBenchCluster>>,
  watchers: number,
  rate: number,
) {
  const clients: Client[] = [];
  const lat: number[] = [];
  let delivered = 0;
  const iters: AsyncIterableIterator<unknown>[] = [];
  progress(`${watchers} watchers: connecting ${Math.ceil(watchers / PER_SESSION)} clients`);
  for (let i = 0; i < watchers; i += PER_SESSION)
    clients.push(await cluster.client({ sessionTtlMs: 30_000 }));
  const prefix = `/fan${watchers}/`;
  for (let i = 0; i < watchers; i++) {
    const c = clients[Math.floor(i / PER_SESSION)]!;
    const it = c.watch({ prefix });
    iters.push(it);
    void (async () => {
      for await (const e of it) {
        if ((e as { type: string }).type === 'progress') continue;
        const v = (e as { value?: Uint8Array }).value;
        if (v === undefined) continue;
        delivered++;
        if (delivered % 7 === 0 || watchers <= 1000)
          lat.push(performance.timeOrigin + performance.now() - Number(new TextDecoder().decode(v)));
      }
    })().catch(() => {});
  }
  await new Promise((r) => setTimeout(r, 1500));
  progress(`${watchers} watchers: ${rate} writes/s for ${seconds} s (a writer process)`);
  const cpu0 = cluster.cpu();
  const self0 = process.cpuUsage();
  const t0 = performance.now();
  const writer = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(import.meta.dirname, 'watch-writer.ts'),
      cluster.url,
      'bench',
      prefix,
      String(rate),
      String(seconds),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  writer.stdout.on('data', (d) => {
    out += d;
  });
  await new Promise((r) => writer.once('exit', r));
  const done = JSON.parse(out.trim().split('\n').at(-1) || '{"writes":0,"seconds":1}') as {
    writes: number;
    seconds: number;
  };
  const writes = done.writes;
  await new Promise((r) => setTimeout(r, 2000));
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = cluster.cpu().map((v, i) => (v - cpu0[i]!) / elapsed / 10);
  const used = process.cpuUsage(self0);
  const clientCpu = (used.user + used.system) / 1e4 / elapsed;
  for (const it of iters) void it.return?.();
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
  lat.sort((a, b) => a - b);
  return {
    p50: pct(lat, 0.5),
    p99: pct(lat, 0.99),
    deliveredShare: delivered / (writes * watchers),
    rate: writes / done.seconds,
    cpu,
    clientCpu,
  };
}

async function sessions(cluster: Awaited<ReturnType<typeof startBenchCluster>>, n: number) {
  const c = await cluster.client({ session: false, timeoutMs: 60_000 });
  progress(`opening ${n} sessions`);
  const opened: { id: string; secret: Uint8Array }[] = [];
  let i = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (i < n) {
        i++;
        const r = await (c as unknown as { requestAny: Client['requestAny'] }).requestAny('sessionOpen', {
          ttlMs: 30_000,
        });
        opened.push({ id: r.id, secret: r.secret });
      }
    }),
  );
  progress(`keeping ${n} sessions alive for ${seconds} s`);
  const subject = `ensemble.bench.session.keepalive`;
  const cpu0 = cluster.cpu();
  const t0 = performance.now();
  const every = 10_000; // TTL/3
  let k = 0;
  while (performance.now() - t0 < seconds * 1000) {
    const batch = Math.ceil((opened.length * 100) / every); // per 100 ms
    for (let j = 0; j < batch; j++) {
      const s = opened[k++ % opened.length]!;
      c.nc.publish(subject, encodeEnvelope({ id: s.id, secret: s.secret }, { cluster: 'bench' }));
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = cluster.cpu().map((v, idx) => (v - cpu0[idx]!) / elapsed / 10);
  const status = await c.status();
  await c.close();
  return {
    open: status.sessions.length >= 1000 ? `${status.sessions.length}+` : status.sessions.length,
    keepalivesPerSec: k / elapsed,
    cpu,
  };
}

async function main(): Promise<void> {
  const rows: string[] = [];
  for (const [n, rate] of runs) {
    const dir = await mkdtemp(path.join(tmpdir(), 'ensemble-benchw-'));
    const cluster = await startBenchCluster(dir);
    try {
      const r = await fanout(cluster, n, rate);
      rows.push(
        `| ${n} watchers, one prefix, ${rate} writes/s asked, ${r.rate.toFixed(0)} done | ${r.p50.toFixed(1)} ms | ${r.p99.toFixed(1)} ms | ${(100 * r.deliveredShare).toFixed(1)}% | ${r.cpu.map((x) => `${x.toFixed(0)}%`).join(' / ')} | ${r.clientCpu.toFixed(0)}% |`,
      );
    } finally {
      await cluster.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'ensemble-benchs-'));
  const cluster = await startBenchCluster(dir);
  try {
    const s = await sessions(cluster, sessionCount);
    rows.push(
      `| ${sessionCount} sessions kept alive (${s.keepalivesPerSec.toFixed(0)} keepalives/s) | - | - | ${s.open} open | ${s.cpu.map((x) => `${x.toFixed(0)}%`).join(' / ')} | - |`,
    );
  } finally {
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
  console.log(
    `\n| workload (3 nodes, ${seconds} s) | delivery p50 | delivery p99 | delivered | CPU per node (n1 / n2 / n3) | CPU of the watching process |`,
  );
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
  process.exit(0);
}

await main();
