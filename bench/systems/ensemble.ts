/**
 * Ensemble for `npm run bench`: 3 node processes (RocksDB data in the bench's temp dir) on one
 * nats-server, started with `startBenchCluster` (bench/lib.ts) as the other Ensemble benchmarks do.
 */
import { readFileSync } from 'node:fs';
import { type Client, connect } from '../../client/index.ts';
import { natsCredentials } from '../../cluster/nats-server.ts';
import { type BenchCluster, startBenchCluster } from '../lib.ts';
import { bounded, ownChildrenMatching, registerPid, unregisterPid, versionOf } from './procs.ts';
import {
  type Closable,
  type StartOptions,
  type SystemModule,
  type SystemUnderTest,
  VALUE,
  WATCHERS_PER_CONNECTION,
} from './types.ts';

const CLUSTER = 'bench';
const key = (i: number) => `/bench/k${i}`;
const HOT = '/bench/hot';

interface ChildConfig {
  readonly url: string;
}

const connectAs = (url: string, session: boolean, sessionTtlMs?: number) =>
  connect({
    servers: [url],
    cluster: CLUSTER,
    user: 'client',
    pass: natsCredentials('client').pass,
    timeoutMs: 30_000,
    session,
    ...(sessionTtlMs === undefined ? {} : { sessionTtlMs }),
  });

async function version(): Promise<string> {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  const commit = await versionOf('git', [
    '-C',
    new URL('../..', import.meta.url).pathname,
    'rev-parse',
    '--short',
    'HEAD',
  ]);
  const nats = await versionOf('nats-server', ['--version']);
  return `ensemble ${pkg.version} (${commit}), ${nats}`;
}

async function start(dir: string, { log }: StartOptions): Promise<SystemUnderTest> {
  log('ensemble: starting 3 node processes on a nats-server');
  let cluster: BenchCluster;
  try {
    cluster = await bounded(startBenchCluster(dir, CLUSTER), 120_000, 'starting Ensemble');
  } catch (err) {
    // startBenchCluster keeps its node processes to itself until it resolves: find them by the
    // data dir on their command line.
    for (const pid of ownChildrenMatching([dir])) process.kill(pid, 'SIGKILL');
    throw err;
  }
  for (const pid of cluster.pids) registerPid(pid);
  const port = new URL(cluster.url).port;
  const natsPid = ownChildrenMatching(['nats-server', `-p ${port} `])[0];
  const c = await cluster.client({ sessionTtlMs: 30_000 });
  const extra = new Set<Client>();
  const sut: SystemUnderTest = {
    name: 'ensemble',
    version: await version(),
    members: () => cluster.ids.map((id) => ({ name: id, pid: cluster.pid(id) })),
    infra: () => (natsPid === undefined ? [] : [{ name: 'nats-server', pid: natsPid }]),
    notes: [
      'members: 3 node processes (RocksDB) joined through one nats-server; the nats-server is reported apart',
      'linearizable get: the default read (leader, read index); serializable get: { serializable: true }',
      'sessions: client.session({ ttlMs }) + put(..., { session, ephemeral: true }) + revoke()',
    ],
    put: (i) => c.put(key(i), VALUE),
    linearizableGet: (i) => c.get(key(i)),
    serializableGet: (i) => c.get(key(i), { serializable: true }),
    writeHot: (value) => c.put(HOT, value),
    async watchHot(n, onValue) {
      const clients: Client[] = [];
      const streams: AsyncIterableIterator<unknown>[] = [];
      for (let i = 0; i < n; i += WATCHERS_PER_CONNECTION) {
        const wc = await cluster.client({ sessionTtlMs: 30_000 });
        clients.push(wc);
        extra.add(wc);
      }
      for (let w = 0; w < n; w++) {
        const stream = clients[Math.floor(w / WATCHERS_PER_CONNECTION)]!.watch({ key: HOT });
        streams.push(stream);
        void (async () => {
          for await (const e of stream) {
            const v = (e as { value?: Uint8Array }).value;
            if (v !== undefined) onValue(v, w);
          }
        })().catch(() => {});
      }
      return {
        async close() {
          for (const s of streams) void s.return?.();
          await Promise.all(clients.map((x) => x.close().catch(() => {})));
          for (const x of clients) extra.delete(x);
        },
      };
    },
    sessions: {
      async churn(i, ttlMs) {
        const s = await c.session({ ttlMs });
        try {
          await c.put(`/bench/sess/${i}`, VALUE, { session: s, ephemeral: true });
        } finally {
          await s.revoke();
        }
      },
      childConfig: { url: cluster.url } satisfies ChildConfig,
      async watchExpiry(run, n, onDelete): Promise<Closable> {
        const prefix = `/bench/exp/${run}/`;
        // From the revision of a write made now: no delete after it is missed however long the
        // watch takes to be in place.
        const { revision } = await c.put(`/bench/exp/${run}-start`, VALUE);
        const stream = c.watch({ prefix }, { fromRevision: revision + 1 });
        void (async () => {
          for await (const e of stream) {
            const ev = e as { type: string; key?: string };
            if (ev.type === 'delete' && ev.key?.startsWith(prefix)) {
              const j = Number(ev.key.slice(prefix.length));
              if (j >= 0 && j < n) onDelete(j);
            }
          }
        })().catch(() => {});
        return {
          async close() {
            await stream.return?.();
          },
        };
      },
    },
    async close() {
      await Promise.all([...extra].map((x) => x.close().catch(() => {})));
      await c.close().catch(() => {});
      await cluster.stop();
      for (const pid of cluster.pids) unregisterPid(pid);
    },
  };
  return sut;
}

async function holdEphemerals(config: unknown, run: string, n: number, ttlMs: number): Promise<void> {
  const { url } = config as ChildConfig;
  const c = await connectAs(url, false);
  await Promise.all(
    Array.from({ length: n }, async (_, j) => {
      const s = await c.session({ ttlMs });
      await c.put(`/bench/exp/${run}/${j}`, VALUE, { session: s, ephemeral: true });
    }),
  );
}

export const ensemble: SystemModule = {
  available: async () => null,
  start,
  holdEphemerals,
};
