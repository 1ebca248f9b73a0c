/**
 * Real clusters for the integration tests: node processes (`bin/ensemble.mjs node`) on the
 * harness's NATS server(s), data in temp directories, stopped by their own pids at teardown.
 */
import path from 'node:path';
import type { TestFn } from 'ava';
import { type Client, type ConnectOptions, connect } from '../client/index.ts';
import { natsCredentials } from '../cluster/nats-server.ts';
import { nodeArgs } from '../cluster/node-command.ts';
import { devGrants } from '../cluster/up.ts';
import type { NatsUser } from '../protocol/index.ts';
import { type Harness, type ManagedProcess, startHarness } from './harness.ts';

export interface ClusterOptions {
  readonly nodes?: number;
  readonly cluster?: string;
  /** Extra flags for every node (e.g. `--snapshot-threshold 500`). */
  readonly flags?: readonly string[];
  readonly tickMs?: number;
  /** A node's data directory (default: a fresh temp directory), e.g. a mount made for the test. */
  readonly dataDir?: (id: string) => Promise<string>;
}

export class TestCluster {
  readonly procs = new Map<string, ManagedProcess>();
  readonly dirs = new Map<string, string>();
  readonly httpPorts = new Map<string, number>();
  private clients: Client[] = [];

  constructor(
    readonly h: Harness,
    readonly ids: string[],
    readonly name: string,
    private readonly flags: readonly string[],
  ) {}

  static async start(h: Harness, o: ClusterOptions = {}): Promise<TestCluster> {
    const n = o.nodes ?? 3;
    const ids = Array.from({ length: n }, (_, i) => `n${i + 1}`);
    const flags = [
      ...(o.flags ?? []),
      '--tick-ms',
      String(o.tickMs ?? 50),
      ...(h.tls ? ['--tls-ca', h.tls.caFile] : []),
    ];
    const c = new TestCluster(h, ids, o.cluster ?? 'it', flags);
    if (o.dataDir) for (const id of ids) c.dirs.set(id, await o.dataDir(id));
    for (const id of ids) await c.startNode(id, ids);
    await c.waitForLeader();
    // As `ensemble up` does: the application users may read and write every key.
    await devGrants(await c.client({ session: false, user: 'admin' }));
    return c;
  }

  async startNode(id: string, initial: readonly string[] | null): Promise<ManagedProcess> {
    let dir = this.dirs.get(id);
    if (dir === undefined) {
      dir = await this.h.tempDir(id);
      this.dirs.set(id, dir);
    }
    const args = nodeArgs({
      id,
      data: dir,
      nats: this.h.natsUrls,
      cluster: this.name,
      initialCluster: initial,
      flags: this.flags,
    });
    const p = this.h.spawn(process.execPath, args, {
      env: { ...process.env, ENSEMBLE_PEER_PASSWORD: natsCredentials('peer').pass },
    });
    this.procs.set(id, p);
    const m = await p.waitForOutput(/metrics http:\/\/127\.0\.0\.1:(\d+)\/metrics/, 30_000);
    this.httpPorts.set(id, Number(m[1]));
    return p;
  }

  async client(
    options: {
      session?: boolean;
      sessionTtlMs?: number;
      timeoutMs?: number;
      user?: NatsUser;
      inspect?: ConnectOptions['inspect'];
    } = {},
  ): Promise<Client> {
    const { user = 'client', ...rest } = options;
    const c = await connect({
      servers: [...this.h.natsUrls],
      cluster: this.name,
      user,
      pass: natsCredentials(user).pass,
      ...(this.h.tls ? { tls: { caFile: this.h.tls.caFile } } : {}),
      timeoutMs: options.timeoutMs ?? 20_000,
      ...rest,
    });
    this.clients.push(c);
    return c;
  }

  /** An admin's client (membership, leader transfer, compaction, grants). */
  admin(): Promise<Client> {
    return this.client({ session: false, user: 'admin' });
  }

  /** Waits until every running node names the same leader; returns it. */
  async waitForLeader(timeoutMs = 30_000, among: readonly string[] = this.running()): Promise<string> {
    const c = await this.client({ session: false, timeoutMs: 2000 });
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        const all = await Promise.all(among.map((id) => c.status(id)));
        const leader = all[0]!.leader;
        if (leader !== null && all.every((s) => s.leader === leader) && among.includes(leader)) return leader;
      } catch {
        // a node is not answering yet
      }
      if (performance.now() > deadline)
        throw new Error(`no agreed leader among ${among.join(',')} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  running(): string[] {
    return this.ids.filter((id) => {
      const p = this.procs.get(id);
      return p !== undefined && p.child.exitCode === null && p.child.signalCode === null;
    });
  }

  async kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.procs.get(id)?.kill(signal);
  }

  async metrics(id: string): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${this.httpPorts.get(id)}/metrics`);
    return res.text();
  }

  async metric(id: string, name: string): Promise<number> {
    const text = await this.metrics(id);
    let total = 0;
    for (const line of text.split('\n')) if (line.startsWith(name)) total += Number(line.split(' ').at(-1));
    return total;
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close().catch(() => {})));
    await Promise.all([...this.procs.values()].map((p) => p.stop().catch(() => {})));
  }
}

/**
 * A stream of writes through `c`: `writers` concurrent loops put `key(i)` = `String(i)` for
 * i = 0, 1, 2, …; `acked` lists each i once its put was answered. `stop` ends the loops and
 * resolves once the puts in flight are answered; it rejects if a put failed.
 */
export function writeStream(
  c: Client,
  key: (i: number) => string,
  writers = 8,
): { readonly acked: readonly number[]; stop(): Promise<void> } {
  const acked: number[] = [];
  let next = 0;
  let stopped = false;
  const loops = Array.from({ length: writers }, async () => {
    while (!stopped) {
      const i = next++;
      await c.put(key(i), String(i));
      acked.push(i);
    }
  });
  return {
    acked,
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

export const dataDirOf = (c: TestCluster, id: string): string => path.resolve(c.dirs.get(id) ?? '');

/**
 * Registers `test.before` (a harness and a cluster on it) and `test.after.always` (both stopped)
 * on an ava test function; returns a getter for the cluster, valid inside tests (its harness is
 * `.h`).
 */
export function useCluster(
  test: TestFn,
  options: ClusterOptions & { readonly label: string },
): () => TestCluster {
  let current: TestCluster | null = null;
  let harness: Harness | null = null;
  test.before(async () => {
    harness = await startHarness({ label: options.label });
    current = await TestCluster.start(harness, options);
  });
  test.after.always(async () => {
    await current?.close();
    await harness?.teardown();
  });
  return () => {
    if (current === null) throw new TypeError('the cluster is used before test.before ran');
    return current;
  };
}
