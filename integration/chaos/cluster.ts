/**
 * The cluster a chaos run breaks: node processes started with `--chaos`, each with its own NATS
 * server (the servers joined by routes), on loopback or, with `netns`, each node and its NATS
 * server in a network namespace of their own on a private bridge (netns.ts), so partitions cut
 * real links. The run supervises the nodes as `ensemble up` does: a node that exits by itself
 * (crash-only: a stopped executor, a read-only disk) is counted and started again from its data,
 * unless a fault holds it down.
 *
 * Node output goes to `<dir>/logs/<id>.log` (every incarnation, appended). Only processes this
 * cluster started are signalled, by their pid.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { type NatsConnection, connect as natsConnect } from '@nats-io/transport-node';
import { type Client, connect } from '../../client/index.ts';
import { adopt } from '../../cluster/children.ts';
import {
  DEV_PASSWORDS,
  freePort,
  type NatsServer,
  natsCredentials,
  passwordEnv,
  startNatsServer,
} from '../../cluster/nats-server.ts';
import { nodeArgs } from '../../cluster/node-command.ts';
import { devGrants } from '../../cluster/up.ts';
import { decodeReply, encodeEnvelope, inboxPrefix, type NodeStatus, subjects } from '../../protocol/index.ts';
import { pinBuild } from '../pin-build.ts';
import { WaitTimeoutError, waitFor } from '../wait.ts';
import { type Disk, readOnlyDisk, release as releaseDisks } from './disks.ts';
import { createNetwork, type Network } from './netns.ts';

const _run = promisify(execFile);

export interface ChaosClusterOptions {
  /** Run directory: data, logs, records. */
  readonly dir: string;
  readonly name: string;
  readonly nodes?: number;
  /** Each node and its NATS server in a network namespace (root, `ip netns`). */
  readonly netns?: boolean;
  /** Data directories on disks of their own (ext4 on loop devices, root), for disk faults. */
  readonly disks?: boolean;
  /** Extra node flags (e.g. `--tick-ms 50`). */
  readonly flags?: readonly string[];
  readonly log?: (line: string) => void;
}

interface NodeProc {
  child: ChildProcess | null;
  /** A fault holds the node down: do not restart it when it exits. */
  held: boolean;
  paused: boolean;
  exits: number;
  restarts: number;
  restartTimer: NodeJS.Timeout | null;
}

export class ChaosCluster {
  readonly ids: string[];
  readonly nats: NatsServer[] = [];
  readonly nodes = new Map<string, NodeProc>();
  private network: Network | null = null;
  private peer: NatsConnection | null = null;
  private stopped = false;
  /** The node command, from a copy of the build (a rebuild during the run must not break restarts). */
  private bin = '';
  private readonly disks = new Map<string, Disk & { fill(): Promise<void> }>();
  /** Unplanned exits (crash-only stops) seen, by node. */
  readonly crashes: {
    readonly node: string;
    readonly at: number;
    readonly code: number | null;
    readonly signal: string | null;
  }[] = [];

  private constructor(readonly opts: ChaosClusterOptions) {
    this.ids = Array.from({ length: opts.nodes ?? 3 }, (_, i) => `n${i + 1}`);
  }

  get placement(): 'netns' | 'loopback' {
    return this.network === null ? 'loopback' : 'netns';
  }

  /** Client URLs of every NATS server. */
  get urls(): string[] {
    return this.nats.map((s) => s.url);
  }

  get net(): Network | null {
    return this.network;
  }

  dataDir(id: string): string {
    return path.join(this.opts.dir, 'data', id);
  }

  static async start(opts: ChaosClusterOptions): Promise<ChaosCluster> {
    const c = new ChaosCluster(opts);
    try {
      await c.boot();
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  private log(line: string): void {
    this.opts.log?.(line);
  }

  private async boot(): Promise<void> {
    mkdirSync(path.join(this.opts.dir, 'logs'), { recursive: true });
    this.bin = await pinBuild(this.opts.dir);
    for (const id of this.ids) {
      const d = this.dataDir(id);
      mkdirSync(d, { recursive: true });
      if (this.opts.disks) {
        const images = path.join(this.opts.dir, 'images', id);
        mkdirSync(images, { recursive: true });
        this.disks.set(id, await readOnlyDisk(d, images));
      }
    }
    if (this.opts.netns) {
      this.network = await createNetwork(this.ids, { prefix: 'ens' });
      // Off loopback, nodes refuse the public development passwords: real ones for this run.
      for (const user of Object.keys(DEV_PASSWORDS)) {
        const name = passwordEnv(user as keyof typeof DEV_PASSWORDS);
        // nats-server parses a variable's value as a config token: letters first, then hex.
        process.env[name] ??= `p${randomBytes(18).toString('hex')}`;
      }
    }
    // One NATS server per node, joined by routes: fixed ports, so a restart keeps its address.
    const hosts = this.ids.map((id) => this.network?.ip(id) ?? '127.0.0.1');
    const ports = await Promise.all(this.ids.map(() => freePort()));
    const routePorts = await Promise.all(this.ids.map(() => freePort()));
    const routeUrls = this.ids.map((_, i) => `nats://${hosts[i]}:${routePorts[i]}`);
    for (let i = 0; i < this.ids.length; i++) {
      const id = this.ids[i]!;
      this.nats.push(
        await startNatsServer({
          port: ports[i]!,
          host: hosts[i]!,
          ...(this.network ? { wrapper: this.network.exec(id) } : {}),
          dir: path.join(this.opts.dir, 'logs'),
          cluster: {
            name: `${this.opts.name}-nats`,
            port: routePorts[i]!,
            routes: routeUrls.filter((_, j) => j !== i),
          },
        }),
      );
    }
    for (const id of this.ids) {
      this.nodes.set(id, {
        child: null,
        held: false,
        paused: false,
        exits: 0,
        restarts: 0,
        restartTimer: null,
      });
      this.spawnNode(id, this.ids);
    }
    this.peer = await natsConnect({
      servers: this.urls,
      user: 'peer',
      pass: natsCredentials('peer').pass,
      inboxPrefix: inboxPrefix('peer'),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 200,
    });
    await this.waitHealthy(60_000);
    const admin = await this.client({ user: 'admin', session: false });
    try {
      await devGrants(admin);
    } finally {
      await admin.close();
    }
  }

  private spawnNode(id: string, initial: readonly string[] | null): void {
    const p = this.nodes.get(id)!;
    const [, ...rest] = nodeArgs({
      id,
      data: this.dataDir(id),
      nats: [this.urls[this.ids.indexOf(id)]!, ...this.urls.filter((_, j) => this.ids[j] !== id)],
      cluster: this.opts.name,
      initialCluster: initial,
      flags: ['--chaos', ...(this.opts.flags ?? [])],
    });
    const args = [this.bin, ...rest];
    const out = openSync(path.join(this.opts.dir, 'logs', `${id}.log`), 'a');
    const wrapper = this.network?.exec(id) ?? [];
    const cmd = wrapper.length > 0 ? wrapper[0]! : process.execPath;
    const argv = wrapper.length > 0 ? [...wrapper.slice(1), process.execPath, ...args] : args;
    const child = spawn(cmd, argv, {
      stdio: ['ignore', out, out],
      env: { ...process.env, ENSEMBLE_PEER_PASSWORD: natsCredentials('peer').pass },
    });
    closeSync(out);
    adopt(child);
    p.child = child;
    p.paused = false;
    child.once('exit', (code, signal) => {
      if (p.child !== child) return;
      p.child = null;
      p.exits++;
      if (this.stopped || p.held) return;
      this.crashes.push({ node: id, at: Date.now(), code, signal });
      this.log(`${id} exited (${signal ?? `code ${code}`}): restarting`);
      p.restartTimer = setTimeout(() => {
        p.restartTimer = null;
        if (!this.stopped && !p.held && p.child === null) {
          p.restarts++;
          this.spawnNode(id, this.ids);
        }
      }, 500);
    });
  }

  running(id: string): boolean {
    return this.nodes.get(id)?.child != null;
  }

  pid(id: string): number | null {
    return this.nodes.get(id)?.child?.pid ?? null;
  }

  /** Sends `signal` to node `id` and holds it down (no restart) until `start(id)`. */
  async kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.nodes.get(id)!;
    p.held = true;
    if (p.restartTimer) clearTimeout(p.restartTimer);
    const child = p.child;
    if (child === null) return;
    if (p.paused) child.kill('SIGCONT');
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
  }

  /** Starts node `id` again from its data (if it is not running) and lets it be restarted. */
  start(id: string): void {
    const p = this.nodes.get(id)!;
    p.held = false;
    if (p.child === null) {
      p.restarts++;
      this.spawnNode(id, this.ids);
    }
  }

  /** Holds node `id` down if it exits (a disk fault), without signalling it. */
  hold(id: string, held: boolean): void {
    this.nodes.get(id)!.held = held;
  }

  pause(id: string): void {
    const p = this.nodes.get(id)!;
    if (p.child === null || p.paused) return;
    p.child.kill('SIGSTOP');
    p.paused = true;
  }

  resume(id: string): void {
    const p = this.nodes.get(id)!;
    if (p.child === null || !p.paused) return;
    p.child.kill('SIGCONT');
    p.paused = false;
  }

  async client(options: { user?: string; session?: boolean; timeoutMs?: number } = {}): Promise<Client> {
    const user = options.user ?? 'client';
    return connect({
      servers: this.urls,
      cluster: this.opts.name,
      user,
      pass: natsCredentials(user as 'client').pass,
      timeoutMs: options.timeoutMs ?? 5000,
      session: options.session ?? false,
    });
  }

  /** A chaos admin op of node `id` (`P.node.<id>.admin.<op>`), as the peer user. */
  async admin<T>(id: string, op: string, body: unknown, timeoutMs = 5000): Promise<T> {
    if (this.peer === null) throw new Error('not started');
    const S = subjects({ cluster: this.opts.name });
    const msg = await this.peer.request(
      S.nodeAdmin(id, op),
      encodeEnvelope(body, { cluster: this.opts.name }),
      {
        timeout: timeoutMs,
      },
    );
    const r = decodeReply<T>(msg.data, { cluster: this.opts.name });
    if (!r.ok) throw r.error;
    return r.result;
  }

  /** Status of every running, unpaused node (null where one does not answer). */
  async statuses(c: Client): Promise<Map<string, NodeStatus | null>> {
    const out = new Map<string, NodeStatus | null>();
    await Promise.all(
      this.ids.map(async (id) => {
        const p = this.nodes.get(id)!;
        if (p.child === null || p.paused) return out.set(id, null);
        out.set(id, await c.status(id).catch(() => null));
      }),
    );
    return out;
  }

  /**
   * Resolves once every node runs, all name one leader, and each has applied what the leader
   * had committed when asked; the leader's id. Throws after `timeoutMs`.
   */
  async waitHealthy(timeoutMs: number): Promise<string> {
    const c = await this.client({ timeoutMs: 1500 });
    let last = '';
    // The leader's commit index when first seen agreed on: every node must apply that far.
    let target = null as { leader: string; index: number } | null;
    const healthy = async (): Promise<string | null> => {
      const all = await this.statuses(c);
      const views = [...all.values()];
      const leader = views[0]?.leader ?? null;
      if (leader !== null && views.every((s) => s !== null && s.leader === leader)) {
        if (target?.leader !== leader) target = { leader, index: all.get(leader)!.commitIndex };
        if (views.every((s) => s!.appliedIndex >= target!.index)) return leader;
      } else target = null;
      last = [...all]
        .map(
          ([id, s]) =>
            `${id}: ${s === null ? 'silent' : `${s.role} leader=${s.leader} applied=${s.appliedIndex}`}`,
        )
        .join('; ');
      return null;
    };
    try {
      return await waitFor(healthy, { timeoutMs, intervalMs: 100, what: 'the cluster is whole' });
    } catch (err) {
      throw err instanceof WaitTimeoutError
        ? new Error(`cluster not healthy within ${timeoutMs} ms (${last})`)
        : err;
    } finally {
      await c.close();
    }
  }

  /** The leader most nodes name right now, or null. */
  async leader(): Promise<string | null> {
    const c = await this.client({ timeoutMs: 1000 });
    try {
      const views = [...(await this.statuses(c)).values()].filter((s): s is NodeStatus => s !== null);
      const counts = new Map<string, number>();
      for (const s of views) if (s.leader) counts.set(s.leader, (counts.get(s.leader) ?? 0) + 1);
      let best: string | null = null;
      for (const [id, n] of counts) if (best === null || n > counts.get(best)!) best = id;
      return best;
    } finally {
      await c.close();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Partitions: links between nodes cut in the network (netns), or by each node's transport
  // filter (the chaos admin op `filter`) where namespaces are not available.

  /** Cuts every link between nodes of different groups (both ways). */
  async partition(groups: readonly (readonly string[])[]): Promise<void> {
    if (this.network) return this.network.partition(groups.map((g) => [...g]));
    const groupOf = new Map<string, number>();
    groups.forEach((g, i) => {
      for (const id of g) groupOf.set(id, i);
    });
    await this.filterAll((id) =>
      this.ids
        .filter((o) => o !== id && groupOf.has(o) && groupOf.has(id) && groupOf.get(o) !== groupOf.get(id))
        .map((peer) => ({ peer, direction: 'both', drop: 1 })),
    );
  }

  /** Drops `lossPct` of what `id` sends (one way), and delays it by `delayMs`. */
  async degrade(id: string, o: { readonly delayMs?: number; readonly lossPct?: number }): Promise<void> {
    if (this.network) return this.network.netem(id, { ...o, direction: 'egress' });
    await this.filterAll((n) =>
      n === id
        ? this.ids
            .filter((o2) => o2 !== id)
            .map((peer) => ({
              peer,
              direction: 'out',
              drop: (o.lossPct ?? 0) / 100,
              delayMs: o.delayMs ?? 0,
            }))
        : [],
    );
  }

  /** Cuts what `from` sends to `to` (one way). */
  async cut(from: string, to: string): Promise<void> {
    if (this.network) return this.network.cut(from, to);
    await this.filterAll((n) => (n === from ? [{ peer: to, direction: 'out', drop: 1 }] : []));
  }

  async heal(): Promise<void> {
    if (this.network) return this.network.heal();
    await this.filterAll(() => []);
  }

  private async filterAll(rules: (id: string) => unknown[]): Promise<void> {
    await Promise.all(
      this.ids.map((id) =>
        this.running(id) ? this.admin(id, 'filter', { rules: rules(id) }).catch(() => {}) : Promise.resolve(),
      ),
    );
  }

  describeNetwork(): string {
    return this.network?.describe() ?? 'transport filter';
  }

  // ---------------------------------------------------------------------------------------------
  // Disk.

  get canBreakDisks(): boolean {
    return this.disks.size > 0;
  }

  /**
   * Breaks node `id`'s disk (read-only, or full) and holds the node down: it should stop by
   * itself (crash-only) at its next write.
   */
  async breakDisk(id: string, how: 'read-only' | 'full'): Promise<void> {
    const disk = this.disks.get(id)!;
    this.hold(id, true);
    if (how === 'full') await disk.fill();
    else await disk.break();
  }

  /**
   * Mends node `id`'s disk and starts it again; returns false if the node had not stopped by
   * itself (it is killed then: a node that cannot write must not stay up).
   */
  async mendDisk(id: string): Promise<boolean> {
    const stopped = !this.running(id);
    if (!stopped) await this.kill(id);
    await this.disks.get(id)!.mend();
    this.start(id);
    return stopped;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const p of this.nodes.values()) if (p.restartTimer) clearTimeout(p.restartTimer);
    await Promise.all(
      [...this.nodes.values()].map(async (p) => {
        const c = p.child;
        if (c === null) return;
        if (p.paused) c.kill('SIGCONT');
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        await exited;
      }),
    );
    await this.peer?.close().catch(() => {});
    await Promise.all(this.nats.map((s) => s.stop().catch(() => {})));
    await this.network?.destroy();
    if (this.disks.size > 0) await releaseDisks();
  }
}
