/**
 * Shared by the benchmarks: a local Ensemble cluster of real node processes on a fresh
 * nats-server, stopped by the pids it started. Each node process (each incarnation: a restart
 * is a new one) writes its stdout and stderr to its own file, `<dir>/logs/<id>.<n>.log`.
 *
 * The nodes run a copy of the built command (`bin/`, `dist/`) taken when the cluster starts, in
 * `<dir>/app`: `npm run build` (and so `npm test`) deletes and rewrites `dist/`, and a node
 * restarted meanwhile would exit at once (`dist/cli.js is missing`) or run other code than its
 * peers.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { type Client, type ConnectOptions, connect } from '../client/index.ts';
import { stopChildren } from '../cluster/children.ts';
import { natsCredentials, startNatsServer } from '../cluster/nats-server.ts';
import { nodeArgs, nodeEnv } from '../cluster/node-command.ts';
import { devGrants } from '../cluster/up.ts';
import { pinBuild } from '../integration/pin-build.ts';

export interface BenchCluster {
  readonly url: string;
  readonly ids: readonly string[];
  /** Pids of the node processes started first (see `pid` for the current ones). */
  readonly pids: readonly number[];
  /** The current pid of node `id`. */
  pid(id: string): number;
  /** SIGKILLs node `id` and resolves once it exited. */
  kill(id: string): Promise<void>;
  /** Starts node `id` again from its data directory. */
  start(id: string): void;
  /** The log file of the current process of node `id` (stdout and stderr). */
  logFile(id: string): string;
  /** Every log file so far, oldest first. */
  logFiles(): readonly string[];
  /** The metrics port of the current process of node `id` once it logged it, else null. */
  metricsPort(id: string): number | null;
  /** How the current process of node `id` ended (`code 1`, `SIGKILL`), or null while it runs. */
  exited(id: string): string | null;
  client(options?: Partial<ConnectOptions>): Promise<Client>;
  /** CPU ms each node process used so far (user + system). */
  cpu(): number[];
  stop(): Promise<void>;
}

export async function startBenchCluster(
  dir: string,
  name = 'bench',
  flags: readonly string[] = [],
  /** The checkout whose build the nodes run (default this one): A/B of two commits. */
  root?: string,
  /** More environment for the node processes (e.g. `MALLOC_ARENA_MAX`). */
  env: Readonly<Record<string, string>> = {},
): Promise<BenchCluster> {
  const bin = await pinBuild(dir, root);
  const nats = await startNatsServer();
  const ids = ['n1', 'n2', 'n3'];
  const logDir = path.join(dir, 'logs');
  mkdirSync(logDir, { recursive: true });
  const files: string[] = [];
  const fileOf = new Map<string, string>();
  const incarnations = new Map<string, number>();
  const spawnNode = (id: string) => {
    const n = (incarnations.get(id) ?? 0) + 1;
    incarnations.set(id, n);
    const file = path.join(logDir, `${id}.${n}.log`);
    files.push(file);
    fileOf.set(id, file);
    const fd = openSync(file, 'a');
    try {
      const [, ...args] = nodeArgs({
        id,
        data: path.join(dir, id),
        nats: [nats.url],
        cluster: name,
        initialCluster: ids,
        flags,
      });
      return spawn(process.execPath, [bin, ...args], {
        stdio: ['ignore', fd, fd],
        env: { ...nodeEnv(), ...env },
      });
    } finally {
      closeSync(fd); // the child has its own copy
    }
  };
  const current = new Map(ids.map((id) => [id, spawnNode(id)]));
  const all = [...current.values()];
  const client = (options: Partial<ConnectOptions> = {}) =>
    connect({
      servers: [nats.url],
      cluster: name,
      user: 'client',
      pass: natsCredentials('client').pass,
      timeoutMs: 30_000,
      ...options,
    });
  const probe = await client({ session: false });
  for (;;) {
    const s = await probe.status().catch(() => null);
    if (s?.leader) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await probe.close();
  // As `ensemble up` does: the application users may read and write every key.
  const admin = await client({ session: false, user: 'admin', pass: natsCredentials('admin').pass });
  await devGrants(admin);
  await admin.close();
  const pids = all.map((c) => c.pid!);
  return {
    url: nats.url,
    ids,
    pids,
    pid: (id) => current.get(id)!.pid!,
    async kill(id) {
      const c = current.get(id)!;
      if (c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await exited;
    },
    start(id) {
      const c = spawnNode(id);
      current.set(id, c);
      all.push(c);
    },
    logFile: (id) => fileOf.get(id)!,
    logFiles: () => [...files],
    exited(id) {
      const c = current.get(id)!;
      return c.exitCode !== null ? `code ${c.exitCode}` : c.signalCode;
    },
    metricsPort(id) {
      const m = /metrics http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(readFileSync(fileOf.get(id)!, 'utf8'));
      return m ? Number(m[1]) : null;
    },
    client,
    cpu: () =>
      pids.map((pid) => {
        const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        return (Number(f[11]) + Number(f[12])) * 10;
      }),
    stop: async () => {
      await stopChildren(all);
      await nats.stop();
    },
  };
}
