/**
 * NATS KV for `npm run bench`: three nats-servers (the binary Ensemble already uses) joined by
 * routes on loopback, each with JetStream storing files in the bench's temp dir, no auth; one KV
 * bucket with 3 replicas (history 1), through `@nats-io/kv`. NATS KV has no sessions.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { type KV, Kvm, KvWatchInclude } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ensureNatsServer, freePort, type NatsServer, startNatsServer } from '../../cluster/nats-server.ts';
import { retryUntil, versionOf } from './procs.ts';
import {
  type StartOptions,
  type SystemModule,
  type SystemUnderTest,
  VALUE,
  WATCHERS_PER_CONNECTION,
} from './types.ts';

const BUCKET = 'bench';
const STREAM = `KV_${BUCKET}`;
const key = (i: number) => `k${i}`;
const HOT = 'hot';

function kvVersion(): string {
  try {
    // The package's exports do not include its package.json: walk up from its entry point.
    let dir = path.dirname(createRequire(import.meta.url).resolve('@nats-io/kv'));
    for (let i = 0; i < 4; i++, dir = path.dirname(dir)) {
      const file = path.join(dir, 'package.json');
      if (!existsSync(file)) continue;
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version: string };
      if (pkg.name === '@nats-io/kv') return pkg.version;
    }
  } catch {
    // not found
  }
  return 'unknown';
}

async function start(dir: string, { log }: StartOptions): Promise<SystemUnderTest> {
  const binary = await ensureNatsServer();
  const names = ['s1', 's2', 's3'];
  const routePorts: number[] = [];
  for (const _ of names) routePorts.push(await freePort());
  const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`);
  log('natskv: starting 3 nats-servers with JetStream, joined by routes');
  const servers: NatsServer[] = [];
  const conns = new Set<NatsConnection>();
  const stopAll = async () => {
    for (const nc of conns) await nc.close().catch(() => {});
    await Promise.all(servers.map((s) => s.stop()));
  };
  try {
    for (let i = 0; i < names.length; i++) {
      const own = path.join(dir, names[i]!);
      await mkdir(own, { recursive: true });
      const config = path.join(own, 'server.conf');
      await writeFile(
        config,
        [
          `server_name: ${names[i]}`,
          'jetstream {',
          `  store_dir: ${JSON.stringify(path.join(own, 'jetstream'))}`,
          '  max_memory_store: 256MB',
          '  max_file_store: 4GB',
          '}',
          '',
        ].join('\n'),
      );
      servers.push(
        await startNatsServer({
          binary,
          config,
          dir: own,
          cluster: { name: 'benchkv', port: routePorts[i]!, routes: routes.filter((_, j) => j !== i) },
        }),
      );
    }
  } catch (err) {
    await stopAll();
    throw err;
  }
  const urls = servers.map((s) => s.url);
  const open = async () => {
    const nc = await connect({ servers: urls, timeout: 10_000 });
    conns.add(nc);
    return nc;
  };
  let nc: NatsConnection;
  let kv: KV;
  try {
    nc = await open();
    const kvm = new Kvm(nc);
    // Until JetStream has a meta leader, creating the bucket fails.
    kv = await retryUntil(
      () => kvm.create(BUCKET, { replicas: 3, history: 1, storage: 'file' }),
      60_000,
      500,
    );
  } catch (err) {
    await stopAll();
    throw new Error(`NATS KV did not start: ${(err as Error).message}`);
  }
  const jsm = await jetstreamManager(nc);
  return {
    name: 'natskv',
    version: `${await versionOf(binary, ['--version'])}, @nats-io/kv ${kvVersion()}`,
    members: () => servers.map((s, i) => ({ name: names[i]!, pid: s.pid ?? -1 })).filter((m) => m.pid > 0),
    infra: () => [],
    notes: [
      'bucket: 3 replicas, history 1, file storage; each server has JetStream with its store dir on disk',
      'linearizable get: a stream message get by last subject (answered by the stream leader); serializable get: kv.get (direct get, any replica)',
      'watch: kv.watch({ key, include: updates only }), an ordered consumer per watcher',
      'sessions: NATS KV has none (no sessions, no ephemeral keys): -',
    ],
    put: (i) => kv.put(key(i), VALUE),
    linearizableGet: (i) => jsm.streams.getMessage(STREAM, { last_by_subj: `$KV.${BUCKET}.${key(i)}` }),
    serializableGet: (i) => kv.get(key(i)),
    writeHot: (v) => kv.put(HOT, v),
    async watchHot(n, onValue) {
      const mine: NatsConnection[] = [];
      const its: { stop(): void }[] = [];
      for (let i = 0; i < n; i += WATCHERS_PER_CONNECTION) mine.push(await open());
      const kvs = await Promise.all(mine.map((c) => new Kvm(c).open(BUCKET)));
      // Ordered consumers are created one request each: a few at a time.
      let next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < n) {
            const w = next++;
            const it = await kvs[Math.floor(w / WATCHERS_PER_CONNECTION)]!.watch({
              key: HOT,
              include: KvWatchInclude.UpdatesOnly,
            });
            its.push(it);
            void (async () => {
              for await (const e of it) if (e.operation === 'PUT') onValue(e.value, w);
            })().catch(() => {});
          }
        }),
      );
      return {
        async close() {
          for (const it of its) it.stop();
          for (const c of mine) {
            conns.delete(c);
            await c.close().catch(() => {});
          }
        },
      };
    },
    sessions: null,
    close: stopAll,
  };
}

export const natskv: SystemModule = {
  available: async () => {
    try {
      await ensureNatsServer();
      return null;
    } catch (err) {
      return (err as Error).message.split('\n')[0] ?? 'nats-server is missing';
    }
  },
  start,
};
