/**
 * etcd for `npm run bench`: Debian's `etcd-server` (installed with apt when missing, as root on
 * Debian), 3 members on loopback with their data dirs in the bench's temp dir, through the `etcd3`
 * client (as bench/cluster.ts).
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import { freePort } from '../../cluster/nats-server.ts';
import { ensureDebianPackage, retryUntil, startProcess, stopProcesses, tail, versionOf } from './procs.ts';
import {
  type Closable,
  type StartOptions,
  type SystemModule,
  type SystemUnderTest,
  VALUE,
  WATCHERS_PER_CONNECTION,
} from './types.ts';

const BINARIES = ['/usr/bin/etcd', '/usr/local/bin/etcd'];
const binary = () => BINARIES.find((b) => existsSync(b)) ?? null;
const key = (i: number) => `/bench/k${i}`;
const HOT = '/bench/hot';

interface ChildConfig {
  readonly hosts: readonly string[];
}

const client = (hosts: readonly string[]) =>
  new Etcd3({
    hosts: [...hosts],
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 30_000 }),
  });

async function start(dir: string, { log }: StartOptions): Promise<SystemUnderTest> {
  const bin = binary();
  if (bin === null) throw new Error('etcd is not installed');
  const names = ['e1', 'e2', 'e3'];
  const clientPorts: number[] = [];
  const peerPorts: number[] = [];
  for (let i = 0; i < 3; i++) {
    clientPorts.push(await freePort());
    peerPorts.push(await freePort());
  }
  const initial = names.map((n, i) => `${n}=http://127.0.0.1:${peerPorts[i]}`).join(',');
  log(`etcd: starting 3 members (${bin})`);
  const procs: ChildProcess[] = names.map((n, i) =>
    startProcess(
      bin,
      [
        '--name',
        n,
        '--data-dir',
        path.join(dir, n),
        '--listen-client-urls',
        `http://127.0.0.1:${clientPorts[i]}`,
        '--advertise-client-urls',
        `http://127.0.0.1:${clientPorts[i]}`,
        '--listen-peer-urls',
        `http://127.0.0.1:${peerPorts[i]}`,
        '--initial-advertise-peer-urls',
        `http://127.0.0.1:${peerPorts[i]}`,
        '--initial-cluster',
        initial,
        '--initial-cluster-state',
        'new',
        '--logger',
        'zap',
        '--log-level',
        'warn',
      ],
      path.join(dir, `${n}.log`),
    ),
  );
  const hosts = clientPorts.map((p) => `http://127.0.0.1:${p}`);
  const c = client(hosts);
  const extra = new Set<Etcd3>();
  try {
    await retryUntil(() => c.put('/ready').value('1').exec(), 60_000);
  } catch (err) {
    c.close();
    await stopProcesses(procs);
    throw new Error(`etcd did not start: ${(err as Error).message}\n${tail(path.join(dir, 'e1.log'))}`);
  }
  const value = Buffer.from(VALUE);
  return {
    name: 'etcd',
    version: `${await versionOf(bin, ['--version'])} (client etcd3)`,
    members: () => procs.map((p, i) => ({ name: names[i]!, pid: p.pid! })),
    infra: () => [],
    notes: [
      'linearizable get: the default range request; serializable get: .serializable(true)',
      'sessions: a lease (grant on first use) + put with the lease + revoke; the expire child keeps its leases alive until killed',
      'the client is given all 3 members (etcd3 spreads requests; followers forward writes)',
    ],
    put: (i) => c.put(key(i)).value(value).exec(),
    linearizableGet: (i) => c.get(key(i)).buffer(),
    serializableGet: (i) => c.get(key(i)).serializable(true).buffer(),
    writeHot: (v) => c.put(HOT).value(Buffer.from(v)).exec(),
    async watchHot(n, onValue) {
      const clients: Etcd3[] = [];
      for (let i = 0; i < n; i += WATCHERS_PER_CONNECTION) {
        const wc = client(hosts);
        clients.push(wc);
        extra.add(wc);
      }
      const watchers = await Promise.all(
        Array.from({ length: n }, async (_, w) => {
          const watcher = await clients[Math.floor(w / WATCHERS_PER_CONNECTION)]!.watch().key(HOT).create();
          watcher.on('put', (kv) => onValue(kv.value, w));
          return watcher;
        }),
      );
      return {
        async close() {
          await Promise.all(watchers.map((x) => x.cancel().catch(() => {})));
          for (const x of clients) {
            x.close();
            extra.delete(x);
          }
        },
      };
    },
    sessions: {
      async churn(i, ttlMs) {
        const lease = c.lease(Math.max(1, Math.ceil(ttlMs / 1000)), { autoKeepAlive: false });
        try {
          await lease.put(`/bench/sess/${i}`).value(value).exec();
        } finally {
          await lease.revoke();
        }
      },
      childConfig: { hosts } satisfies ChildConfig,
      async watchExpiry(run, n, onDelete): Promise<Closable> {
        const prefix = `/bench/exp/${run}/`;
        const start = await c.put(`/bench/exp/${run}-start`).value(value).exec();
        const watcher = await c
          .watch()
          .prefix(prefix)
          .startRevision(String(Number(start.header.revision) + 1))
          .create();
        watcher.on('delete', (kv) => {
          const j = Number(kv.key.toString().slice(prefix.length));
          if (j >= 0 && j < n) onDelete(j);
        });
        return { close: () => watcher.cancel() };
      },
    },
    async close() {
      for (const x of extra) x.close();
      c.close();
      await stopProcesses(procs);
    },
  };
}

async function holdEphemerals(config: unknown, run: string, n: number, ttlMs: number): Promise<void> {
  const c = client((config as ChildConfig).hosts);
  const value = Buffer.from(VALUE);
  await Promise.all(
    Array.from({ length: n }, async (_, j) => {
      const lease = c.lease(Math.max(1, Math.ceil(ttlMs / 1000)));
      await lease.put(`/bench/exp/${run}/${j}`).value(value).exec();
    }),
  );
}

export const etcd: SystemModule = {
  available: () => ensureDebianPackage('etcd-server', () => binary() !== null),
  start,
  holdEphemerals,
};
