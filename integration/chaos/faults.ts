/**
 * The faults of a chaos run, by kind, and the schedule that injects them one at a time:
 * inject, hold for a while (longer than an election timeout), heal, then wait until the cluster
 * is whole again (every node up, one leader, everyone caught up) before a quiet pause and the
 * next fault. A cluster that is not whole again within `recoverMs` of a heal is a violation
 * (liveness), reported with every node's view.
 *
 * Kinds (`--faults`):
 * - kill: `kill -9` of the leader, a follower or any node, restarted after the hold; now and
 *   then every node at once.
 * - pause: SIGSTOP of the leader or a follower past the election timeout, then SIGCONT (a paused
 *   leader that wakes must not serve stale reads nor acknowledge what it cannot commit: the
 *   histories check that).
 * - actor: a named actor stopped inside a live node through the chaos admin subject; its policy
 *   restarts it or stops the node (crash-only), which the run then restarts.
 * - nats: the NATS server of the leader's node killed and restarted, or all of them.
 * - partition: the leader alone in a minority, a random minority, a bridge node, one-way cuts,
 *   added latency with packet loss (network namespaces, or the nodes' transport filters).
 * - disk: a node's data directory remounted read-only, or filled; the node stops (crash-only)
 *   and is started again once the disk is back.
 */
import type { ChaosCluster } from './cluster.ts';

export const FAULT_KINDS = ['kill', 'pause', 'actor', 'nats', 'partition', 'disk'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

const ACTORS = ['transport', 'api', 'sessions', 'watches', 'ticker', 'executor', 'raft'] as const;

export interface FaultRecord {
  readonly kind: FaultKind;
  /** What was done, e.g. "kill -9 leader n2". */
  readonly what: string;
  /** Epoch ms of the injection, the heal, and the cluster being whole again (null: never). */
  readonly at: number;
  healedAt: number;
  recoveredAt: number | null;
  /** The leader was killed (or paused): client-seen gaps are measured from `at`. */
  readonly leaderLost: boolean;
}

interface Injected {
  readonly what: string;
  readonly leaderLost: boolean;
  heal(): Promise<void>;
}

export interface ScheduleOptions {
  readonly kinds: readonly FaultKind[];
  /** A seeded random source in [0, 1). */
  readonly random: () => number;
  /** Election timeout of the nodes (holds are longer). */
  readonly electionMs: number;
  readonly recoverMs: number;
  /** Take the kinds in turn instead of at random (a short run then meets every kind). */
  readonly roundRobin?: boolean;
  readonly log: (line: string) => void;
}

const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class FaultSchedule {
  readonly records: FaultRecord[] = [];
  readonly violations: string[] = [];
  private readonly r: () => number;
  private turn = 0;

  constructor(
    private readonly cluster: ChaosCluster,
    private readonly o: ScheduleOptions,
  ) {
    this.r = o.random;
  }

  private pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.r() * xs.length)]!;
  }

  /** A hold between 3 election timeouts and 3 s more. */
  private holdMs(): number {
    return 3 * this.o.electionMs + Math.floor(this.r() * 3000);
  }

  /** Injects faults one after another until `until` (epoch ms) or `signal` aborts. */
  async run(until: number, signal?: AbortSignal): Promise<void> {
    while (now() < until && !signal?.aborted) {
      await sleep(1000 + Math.floor(this.r() * 1500));
      if (now() >= until || signal?.aborted) break;
      const kind = this.o.roundRobin
        ? this.o.kinds[this.turn++ % this.o.kinds.length]!
        : this.pick(this.o.kinds);
      const leader = await this.cluster.leader().catch(() => null);
      let injected: Injected;
      try {
        injected = await this.inject(kind, leader);
      } catch (err) {
        this.o.log(`fault ${kind} could not be injected: ${String(err)}`);
        continue;
      }
      const rec: FaultRecord = {
        kind,
        what: injected.what,
        at: now(),
        healedAt: 0,
        recoveredAt: null,
        leaderLost: injected.leaderLost,
      };
      this.records.push(rec);
      this.o.log(`fault ${this.records.length}: ${injected.what}`);
      await sleep(this.holdMs());
      await injected.heal();
      rec.healedAt = now();
      try {
        await this.cluster.waitHealthy(this.o.recoverMs);
        rec.recoveredAt = now();
        this.o.log(`  healed; whole again after ${Math.round(rec.recoveredAt - rec.healedAt)} ms`);
      } catch (err) {
        this.violations.push(
          `not whole again ${this.o.recoverMs} ms after healing "${injected.what}": ${String(err)}`,
        );
        this.o.log(`  NOT whole again: ${String(err)}`);
        return;
      }
    }
  }

  private async inject(kind: FaultKind, leader: string | null): Promise<Injected> {
    const c = this.cluster;
    const ids = c.ids;
    const followers = ids.filter((id) => id !== leader);
    const lead = leader ?? this.pick(ids);
    switch (kind) {
      case 'kill': {
        const r = this.r();
        if (r < 0.1) {
          await Promise.all(ids.map((id) => c.kill(id)));
          return {
            what: 'kill -9 every node',
            leaderLost: true,
            heal: async () => {
              for (const id of ids) c.start(id);
            },
          };
        }
        const target = r < 0.6 ? lead : r < 0.85 ? this.pick(followers) : this.pick(ids);
        await c.kill(target);
        return {
          what: `kill -9 ${target === leader ? 'leader' : 'follower'} ${target}`,
          leaderLost: target === leader,
          heal: async () => c.start(target),
        };
      }
      case 'pause': {
        const target = this.r() < 0.6 ? lead : this.pick(followers);
        c.pause(target);
        return {
          what: `SIGSTOP ${target === leader ? 'leader' : 'follower'} ${target}`,
          leaderLost: target === leader,
          heal: async () => c.resume(target),
        };
      }
      case 'actor': {
        const target = this.r() < 0.5 ? lead : this.pick(followers);
        const actor = this.pick(ACTORS);
        const r = await c.admin<{ policy: string }>(target, 'stopActor', { actor });
        return {
          what: `stop actor ${actor} of ${target === leader ? 'leader' : 'follower'} ${target} (${r.policy})`,
          leaderLost: target === leader && r.policy === 'crash',
          heal: async () => {},
        };
      }
      case 'nats': {
        if (this.r() < 0.25) {
          await Promise.all(c.nats.map((s) => s.kill()));
          return {
            what: 'kill every NATS server',
            leaderLost: false,
            heal: async () => {
              await Promise.all(c.nats.map((s) => s.restart()));
            },
          };
        }
        const i = ids.indexOf(this.r() < 0.6 ? lead : this.pick(followers));
        await c.nats[i]!.kill();
        return {
          what: `kill the NATS server of ${ids[i] === leader ? 'leader' : 'follower'} ${ids[i]}`,
          leaderLost: false,
          heal: async () => c.nats[i]!.restart(),
        };
      }
      case 'partition':
        return this.partition(leader, lead, followers);
      case 'disk': {
        if (!c.canBreakDisks) throw new Error('disk faults need tmpfs data directories (root)');
        const target = this.r() < 0.5 ? lead : this.pick(followers);
        const how = this.r() < 0.5 ? 'full' : 'read-only';
        await c.breakDisk(target, how);
        const what = `${how === 'full' ? 'fill' : 'read-only'} the disk of ${target === leader ? 'leader' : 'follower'} ${target}`;
        return {
          what,
          leaderLost: target === leader,
          heal: async () => {
            // A read-only disk fails the node's next write, so it must have stopped. A full one may
            // not have: RocksDB writes on into space it preallocated, durably, which is healthy.
            const stopped = await c.mendDisk(target);
            if (!stopped && how === 'read-only')
              this.violations.push(`${target} was still up after "${what}" (not crash-only)`);
            if (!stopped && how === 'full')
              this.o.log(`  ${target} kept running on its full disk (preallocated space)`);
          },
        };
      }
    }
  }

  private async partition(
    leader: string | null,
    lead: string,
    followers: readonly string[],
  ): Promise<Injected> {
    const c = this.cluster;
    const ids = c.ids;
    const r = this.r();
    const role = (id: string) => (id === leader ? `leader ${id}` : id);
    const heal = () => c.heal();
    if (r < 0.3) {
      await c.partition([[lead], followers]);
      return { what: `partition: ${role(lead)} alone | ${followers.join(',')}`, leaderLost: true, heal };
    }
    if (r < 0.5) {
      const minority = [this.pick(ids)];
      const rest = ids.filter((id) => !minority.includes(id));
      await c.partition([minority, rest]);
      return {
        what: `partition: ${role(minority[0]!)} | ${rest.join(',')}`,
        leaderLost: minority.includes(lead),
        heal,
      };
    }
    if (r < 0.65 && ids.length >= 3) {
      // A bridge: one node reaches everyone, the others only it.
      const bridge = this.pick(ids);
      const others = ids.filter((id) => id !== bridge);
      for (let i = 0; i < others.length; i++)
        for (let j = 0; j < others.length; j++) if (i !== j) await c.cut(others[i]!, others[j]!);
      return {
        what: `bridge: only ${role(bridge)} reaches ${others.join(',')}`,
        leaderLost: bridge !== lead,
        heal,
      };
    }
    if (r < 0.8) {
      const to = this.pick(followers);
      await c.cut(lead, to);
      return { what: `one-way cut ${role(lead)} -> ${to}`, leaderLost: false, heal };
    }
    const target = this.pick(ids);
    const delayMs = 20 + Math.floor(this.r() * 80);
    const lossPct = 5 + Math.floor(this.r() * 25);
    await c.degrade(target, { delayMs, lossPct });
    return {
      what: `${role(target)} sends with +${delayMs} ms and ${lossPct}% loss`,
      leaderLost: false,
      heal,
    };
  }
}
