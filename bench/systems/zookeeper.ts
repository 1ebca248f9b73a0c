/**
 * ZooKeeper for `npm run bench`: Debian's `zookeeper` package (installed with apt when missing, as
 * root on Debian; it runs on the machine's java), a 3-server ensemble on loopback (a zoo.cfg and a
 * myid file per server, data dirs in the bench's temp dir), each server one JVM started directly
 * (QuorumPeerMain), through the pure-JavaScript client `node-zookeeper-client`.
 *
 * That client has no `sync`, so there is no linearizable read: ZooKeeper's ordinary read (served
 * by the server the client is connected to) is the serializable one.
 */
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import zookeeper, { type Client as ZkClient } from 'node-zookeeper-client';
import { freePort } from '../../cluster/nats-server.ts';
import {
  debianVersion,
  ensureDebianPackage,
  retryUntil,
  sleep,
  startProcess,
  stopProcesses,
  tail,
  versionOf,
} from './procs.ts';
import {
  type Closable,
  KEY_COUNT,
  type StartOptions,
  type SystemModule,
  type SystemUnderTest,
  VALUE,
  WATCHERS_PER_CONNECTION,
} from './types.ts';

const JAR = '/usr/share/java/zookeeper.jar';
/** A logging backend for the server's slf4j (warnings to stderr, i.e. the member's log file). */
const SLF4J = '/usr/share/java/slf4j-simple.jar';
const JAVA = '/usr/bin/java';
const key = (i: number) => `/bench/k${i}`;
const HOT = '/bench/hot';

interface ChildConfig {
  readonly connect: string;
}

function zkConnect(connectString: string, sessionTimeout: number): Promise<ZkClient> {
  const c = zookeeper.createClient(connectString, { sessionTimeout, spinDelay: 200, retries: 0 });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      c.close();
      reject(new Error('ZooKeeper: no connection within 30 s'));
    }, 30_000);
    c.once('connected', () => {
      clearTimeout(timer);
      resolve(c);
    });
    c.connect();
  });
}

/**
 * The client keeps one emitter per watched path (made anew after each notification), with a
 * listener per watcher: up to WATCHERS_PER_CONNECTION of them is intended, not a leak.
 */
function allowManyWatchers(c: ZkClient): void {
  const wm = (c as unknown as { connectionManager?: { watcherManager?: { dataWatchers?: object } } })
    .connectionManager?.watcherManager;
  if (wm?.dataWatchers === undefined) return;
  wm.dataWatchers = new Proxy(wm.dataWatchers, {
    set(target, path, emitter) {
      if (emitter instanceof EventEmitter) emitter.setMaxListeners(0);
      return Reflect.set(target, path, emitter);
    },
  });
}

/** Closes `c` and resolves once the server closed the session (its socket), at most after 10 s. */
function zkClose(c: ZkClient): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 10_000);
    c.once('disconnected', () => {
      clearTimeout(timer);
      resolve();
    });
    c.close();
  });
}

const cb =
  <T>(resolve: (v: T) => void, reject: (e: unknown) => void) =>
  (err: unknown, v: T) =>
    err ? reject(err) : resolve(v);

const setData = (c: ZkClient, p: string, v: Buffer) =>
  new Promise<unknown>((resolve, reject) => c.setData(p, v, -1, cb(resolve, reject)));
const getData = (c: ZkClient, p: string) =>
  new Promise<Buffer>((resolve, reject) => c.getData(p, cb(resolve, reject)));
const create = (c: ZkClient, p: string, v: Buffer, mode: number) =>
  new Promise<string>((resolve, reject) => c.create(p, v, mode, cb(resolve, reject)));
const mkdirp = (c: ZkClient, p: string) =>
  new Promise<string>((resolve, reject) => c.mkdirp(p, cb(resolve, reject)));

async function createIfAbsent(c: ZkClient, p: string, v: Buffer): Promise<void> {
  try {
    await create(c, p, v, zookeeper.CreateMode.PERSISTENT);
  } catch (err) {
    if ((err as { getCode?: () => number }).getCode?.() !== zookeeper.Exception.NODE_EXISTS) throw err;
  }
}

/** The `Mode:` a server reports to the `srvr` four-letter command, or null. */
function mode(port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let out = '';
    s.setTimeout(2000, () => s.destroy());
    s.on('connect', () => s.write('srvr'));
    s.on('data', (d) => {
      out += d.toString();
    });
    s.on('error', () => {});
    s.on('close', () => resolve(/Mode: (\w+)/.exec(out)?.[1] ?? null));
  });
}

async function start(dir: string, { log }: StartOptions): Promise<SystemUnderTest> {
  const names = ['z1', 'z2', 'z3'];
  const clientPorts: number[] = [];
  const quorum: string[] = [];
  for (let i = 0; i < 3; i++) {
    clientPorts.push(await freePort());
    quorum.push(`server.${i + 1}=127.0.0.1:${await freePort()}:${await freePort()}`);
  }
  log('zookeeper: starting a 3-server ensemble (one JVM each)');
  const procs: ChildProcess[] = [];
  for (let i = 0; i < 3; i++) {
    const data = path.join(dir, names[i]!);
    await mkdir(data, { recursive: true });
    await writeFile(path.join(data, 'myid'), `${i + 1}\n`);
    const cfg = path.join(dir, `${names[i]}.cfg`);
    await writeFile(
      cfg,
      [
        'tickTime=1000',
        'initLimit=10',
        'syncLimit=5',
        `dataDir=${data}`,
        `clientPort=${clientPorts[i]}`,
        'clientPortAddress=127.0.0.1',
        'maxClientCnxns=0',
        'admin.enableServer=false',
        '4lw.commands.whitelist=srvr,ruok',
        ...quorum,
        '',
      ].join('\n'),
    );
    procs.push(
      startProcess(
        JAVA,
        [
          '-Xms128m',
          '-Xmx1g',
          '-Djava.net.preferIPv4Stack=true',
          '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn',
          `-Dzookeeper.log.dir=${dir}`,
          '-cp',
          `${JAR}:${SLF4J}`,
          'org.apache.zookeeper.server.quorum.QuorumPeerMain',
          cfg,
        ],
        path.join(dir, `${names[i]}.log`),
      ),
    );
  }
  const connectString = clientPorts.map((p) => `127.0.0.1:${p}`).join(',');
  let c: ZkClient;
  try {
    await retryUntil(async () => {
      const modes = await Promise.all(clientPorts.map(mode));
      if (modes.filter((m) => m === 'leader').length !== 1 || modes.some((m) => m === null))
        throw new Error(`modes: ${modes.join(', ')}`);
    }, 90_000);
    c = await zkConnect(connectString, 30_000);
    for (const p of ['/bench', '/bench/sess', '/bench/exp']) await createIfAbsent(c, p, Buffer.alloc(0));
    await createIfAbsent(c, HOT, Buffer.from(VALUE));
    // Every numbered key exists before the workloads set it (setData needs the node).
    const value = Buffer.from(VALUE);
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < KEY_COUNT) await createIfAbsent(c, key(next++), value);
      }),
    );
  } catch (err) {
    await stopProcesses(procs);
    throw new Error(`ZooKeeper did not start: ${(err as Error).message}\n${tail(path.join(dir, 'z1.log'))}`);
  }
  const extra = new Set<ZkClient>();
  const value = Buffer.from(VALUE);
  const pkg = await debianVersion('zookeeper');
  const java = await versionOf(JAVA, ['-version']);
  return {
    name: 'zookeeper',
    version: `zookeeper ${pkg ?? 'unknown'} (Debian), ${java}, client node-zookeeper-client`,
    members: () => procs.map((p, i) => ({ name: names[i]!, pid: p.pid! })),
    infra: () => [],
    notes: [
      'members: one JVM each (-Xmx1g), tickTime 1000 ms, transaction log fsync on (the default)',
      'put: setData on an existing node; get: getData on the connected server (ZooKeeper reads are not linearizable without sync, which node-zookeeper-client lacks): linearizable get is -',
      'watch: getData with a one-shot watch, re-armed by the getData that reads the new value; delivery is when that read returns',
      'sessions: a new connection (session) + an ephemeral node + close; expiry: the session timeout',
    ],
    put: (i) => setData(c, key(i), value),
    linearizableGet: null,
    serializableGet: (i) => getData(c, key(i)),
    writeHot: (v) => setData(c, HOT, Buffer.from(v)),
    async watchHot(n, onValue) {
      const clients: ZkClient[] = [];
      let closed = false;
      for (let i = 0; i < n; i += WATCHERS_PER_CONNECTION) {
        const wc = await zkConnect(connectString, 30_000);
        clients.push(wc);
        extra.add(wc);
        allowManyWatchers(wc);
      }
      await Promise.all(
        Array.from({ length: n }, (_, w) => {
          const wc = clients[Math.floor(w / WATCHERS_PER_CONNECTION)]!;
          return new Promise<void>((armed) => {
            const arm = () => {
              if (closed) return;
              wc.getData(
                HOT,
                () => arm(),
                (err, data) => {
                  armed();
                  if (!err) onValue(data, w);
                },
              );
            };
            arm();
          });
        }),
      );
      return {
        async close() {
          closed = true;
          await Promise.all(clients.map((x) => zkClose(x)));
          for (const x of clients) extra.delete(x);
        },
      };
    },
    sessions: {
      async churn(i, ttlMs) {
        const s = await zkConnect(connectString, ttlMs);
        try {
          await create(s, `/bench/sess/${i}`, value, zookeeper.CreateMode.EPHEMERAL);
        } finally {
          await zkClose(s);
        }
      },
      childConfig: { connect: connectString } satisfies ChildConfig,
      async watchExpiry(run, n, onDelete): Promise<Closable> {
        await Promise.all(
          Array.from(
            { length: n },
            (_, j) =>
              new Promise<void>((resolve, reject) =>
                c.exists(
                  `/bench/exp/${run}/${j}`,
                  (ev) => {
                    if (ev.getType() === zookeeper.Event.NODE_DELETED) onDelete(j);
                  },
                  (err) => (err ? reject(err) : resolve()),
                ),
              ),
          ),
        );
        return { close: async () => {} };
      },
    },
    async close() {
      await Promise.all([...extra].map((x) => zkClose(x)));
      await zkClose(c);
      await stopProcesses(procs);
    },
  };
}

async function holdEphemerals(config: unknown, run: string, n: number, ttlMs: number): Promise<void> {
  const { connect } = config as ChildConfig;
  const first = await zkConnect(connect, ttlMs);
  await mkdirp(first, `/bench/exp/${run}`);
  const value = Buffer.from(VALUE);
  await Promise.all(
    Array.from({ length: n }, async (_, j) => {
      const s = j === 0 ? first : await zkConnect(connect, ttlMs);
      await create(s, `/bench/exp/${run}/${j}`, value, zookeeper.CreateMode.EPHEMERAL);
    }),
  );
  // Give the sessions a moment to be settled on every server before the kill.
  await sleep(100);
}

export const zookeeperSystem: SystemModule = {
  available: async () => {
    if (!existsSync(JAVA)) return 'java is not installed (ZooKeeper runs on it)';
    return ensureDebianPackage('zookeeper', () => existsSync(JAR));
  },
  start,
  holdEphemerals,
};
