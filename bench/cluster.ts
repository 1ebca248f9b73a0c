/**
 * `npm run bench:cluster [-- --seconds 5] [--no-etcd]`: a 3-node Ensemble cluster on this
 * machine (node processes, RocksDB, nats-server), against etcd 3 members on loopback in the same
 * run when etcd is installed (as root on Debian it is installed with apt, saying so), with the
 * same workload and 256-byte values:
 *   sequential put latency p50/p99, put throughput with 1, 16 and 64 requests in flight,
 *   linearizable and serializable get throughput with 64 in flight, sequential get p50.
 * Prints a table with the ratio Ensemble/etcd.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stopChildren } from '../cluster/children.ts';
import { freePort } from '../cluster/nats-server.ts';
import { startBenchCluster } from './lib.ts';

const args = process.argv.slice(2);
const seconds = Number(args[args.indexOf('--seconds') + 1] || 0) || Number(process.env.BENCH_SECONDS ?? 4);
const withEtcd = !args.includes('--no-etcd');
const VALUE = new Uint8Array(256).fill(97);

interface Target {
  readonly name: string;
  put(key: string): Promise<unknown>;
  get(key: string, serializable: boolean): Promise<unknown>;
  close(): Promise<void>;
}

interface Results {
  putP50: number;
  putP99: number;
  getP50: number;
  put1: number;
  put16: number;
  put64: number;
  getLin64: number;
  getSer64: number;
}

const progress = (line: string) => process.stderr.write(`  ${line}\n`);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
}

async function sequential(fn: (i: number) => Promise<unknown>, n: number): Promise<number[]> {
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn(i);
    lat.push(performance.now() - t0);
  }
  return lat.sort((a, b) => a - b);
}

async function throughput(fn: (i: number) => Promise<unknown>, inFlight: number): Promise<number> {
  let n = 0;
  const end = performance.now() + seconds * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) await fn(n++);
    }),
  );
  return n / ((performance.now() - start) / 1000);
}

async function measure(t: Target): Promise<Results> {
  const key = (i: number) => `/bench/k${i % 10_000}`;
  progress(`${t.name}: warm-up`);
  await throughput((i) => t.put(key(i)), 16);
  progress(`${t.name}: sequential puts`);
  const put = await sequential((i) => t.put(key(i)), 1000);
  progress(`${t.name}: sequential gets`);
  const get = await sequential((i) => t.get(key(i), false), 1000);
  const r: Results = {
    putP50: percentile(put, 0.5),
    putP99: percentile(put, 0.99),
    getP50: percentile(get, 0.5),
    put1: 0,
    put16: 0,
    put64: 0,
    getLin64: 0,
    getSer64: 0,
  };
  for (const n of [1, 16, 64] as const) {
    progress(`${t.name}: puts, ${n} in flight, ${seconds} s`);
    r[`put${n}`] = await throughput((i) => t.put(key(i)), n);
  }
  progress(`${t.name}: linearizable gets, 64 in flight`);
  r.getLin64 = await throughput((i) => t.get(key(i), false), 64);
  progress(`${t.name}: serializable gets, 64 in flight`);
  r.getSer64 = await throughput((i) => t.get(key(i), true), 64);
  return r;
}

async function ensemble(dir: string): Promise<Target> {
  const cluster = await startBenchCluster(dir);
  const c = await cluster.client();
  return {
    name: 'ensemble',
    put: (key) => c.put(key, VALUE),
    get: (key, serializable) => c.get(key, serializable ? { serializable: true } : {}),
    close: async () => {
      await c.close();
      await cluster.stop();
    },
  };
}

function findEtcd(): string | null {
  for (const p of ['/usr/bin/etcd', '/usr/local/bin/etcd']) if (existsSync(p)) return p;
  if (process.getuid?.() === 0 && existsSync('/etc/debian_version')) {
    progress('etcd not found: installing etcd-server with apt for the side-by-side run');
    try {
      execFileSync('apt-get', ['install', '-y', 'etcd-server'], {
        stdio: 'ignore',
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
    } catch {
      try {
        execFileSync('apt-get', ['update'], { stdio: 'ignore' });
        execFileSync('apt-get', ['install', '-y', 'etcd-server'], {
          stdio: 'ignore',
          env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
        });
      } catch {
        return null;
      }
    }
    return existsSync('/usr/bin/etcd') ? '/usr/bin/etcd' : null;
  }
  return null;
}

async function etcd(dir: string, binary: string): Promise<Target> {
  const { Etcd3 } = await import('etcd3');
  const names = ['e1', 'e2', 'e3'];
  const client: number[] = [];
  const peer: number[] = [];
  for (let i = 0; i < 3; i++) {
    client.push(await freePort());
    peer.push(await freePort());
  }
  const initial = names.map((n, i) => `${n}=http://127.0.0.1:${peer[i]}`).join(',');
  const children = names.map((n, i) =>
    spawn(
      binary,
      [
        '--name',
        n,
        '--data-dir',
        path.join(dir, n),
        '--listen-client-urls',
        `http://127.0.0.1:${client[i]}`,
        '--advertise-client-urls',
        `http://127.0.0.1:${client[i]}`,
        '--listen-peer-urls',
        `http://127.0.0.1:${peer[i]}`,
        '--initial-advertise-peer-urls',
        `http://127.0.0.1:${peer[i]}`,
        '--initial-cluster',
        initial,
        '--initial-cluster-state',
        'new',
      ],
      { stdio: 'ignore' },
    ),
  );
  const c = new Etcd3({ hosts: client.map((p) => `http://127.0.0.1:${p}`) });
  for (let i = 0; ; i++) {
    try {
      await c.put('/ready').value('1');
      break;
    } catch (err) {
      if (i > 100) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const value = Buffer.from(VALUE);
  return {
    name: 'etcd',
    put: (key) => c.put(key).value(value).exec(),
    get: (key, serializable) => c.get(key).serializable(serializable).buffer(),
    close: async () => {
      c.close();
      await stopChildren(children);
    },
  };
}

const rows: [string, (r: Results) => number, 'ms' | '/s'][] = [
  ['sequential put p50', (r) => r.putP50, 'ms'],
  ['sequential put p99', (r) => r.putP99, 'ms'],
  ['sequential linearizable get p50', (r) => r.getP50, 'ms'],
  ['puts/s, 1 in flight', (r) => r.put1, '/s'],
  ['puts/s, 16 in flight', (r) => r.put16, '/s'],
  ['puts/s, 64 in flight', (r) => r.put64, '/s'],
  ['linearizable gets/s, 64 in flight', (r) => r.getLin64, '/s'],
  ['serializable gets/s, 64 in flight', (r) => r.getSer64, '/s'],
];

const fmt = (v: number, unit: 'ms' | '/s') => (unit === 'ms' ? `${v.toFixed(2)} ms` : `${Math.round(v)}`);

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ensemble-bench-'));
  try {
    progress('starting a 3-node Ensemble cluster');
    const e = await ensemble(path.join(dir, 'ensemble'));
    const mine = await measure(e);
    await e.close();
    let theirs: Results | null = null;
    const binary = withEtcd ? findEtcd() : null;
    if (binary) {
      progress('starting a 3-member etcd cluster');
      const t = await etcd(path.join(dir, 'etcd'), binary);
      theirs = await measure(t);
      await t.close();
    } else if (withEtcd) {
      progress('etcd not available: Ensemble alone');
    }
    console.log(
      `\n| measure (3 nodes, 256-byte values, ${seconds} s runs) | ensemble | etcd | ensemble/etcd |`,
    );
    console.log('|---|---|---|---|');
    for (const [name, get, unit] of rows) {
      const a = get(mine);
      const b = theirs ? get(theirs) : Number.NaN;
      // > 1: Ensemble is better (lower latency, higher throughput); < 1: etcd is.
      const ratio = theirs ? (unit === 'ms' ? b / a : a / b) : Number.NaN;
      console.log(
        `| ${name} | ${fmt(a, unit)} | ${theirs ? fmt(b, unit) : '-'} | ${theirs ? (ratio >= 1 ? `ensemble ${ratio.toFixed(2)}x` : `etcd ${(1 / ratio).toFixed(2)}x`) : '-'} |`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  process.exit(0);
}

await main();
