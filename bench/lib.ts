/**
 * Shared by the benchmarks: a local Ensemble cluster of real node processes on a fresh
 * nats-server, stopped by the pids it started.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type Client, type ConnectOptions, connect } from '../client/index.ts';
import { stopChildren } from '../cluster/children.ts';
import { natsCredentials, startNatsServer } from '../cluster/nats-server.ts';
import { nodeArgs } from '../cluster/node-command.ts';
import { devGrants } from '../cluster/up.ts';

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
  client(options?: Partial<ConnectOptions>): Promise<Client>;
  /** CPU ms each node process used so far (user + system). */
  cpu(): number[];
  stop(): Promise<void>;
}

export async function startBenchCluster(
  dir: string,
  name = 'bench',
  flags: readonly string[] = [],
): Promise<BenchCluster> {
  const nats = await startNatsServer();
  const ids = ['n1', 'n2', 'n3'];
  const spawnNode = (id: string) =>
    spawn(
      process.execPath,
      nodeArgs({ id, data: path.join(dir, id), nats: [nats.url], cluster: name, initialCluster: ids, flags }),
      { stdio: 'ignore' },
    );
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
