/**
 * Fault schedules. Each seed runs one, chosen from the seed (`scheduleFor`), so any range of
 * seeds, such as the ones `npm test` sweeps, covers every schedule:
 *
 * - `random`: crashes, isolation, one-way cuts, splits, loss and duplication, membership changes
 *   and leader transfers at random: the mix the simulator always had, drawn exactly as before,
 *   so its seeds replay as they did. The schedules below that build on this mix (all but
 *   `figure8` and `staleReads`) add rare disk write failures and InstallSnapshot retries that
 *   arrive long after.
 * - `figure8`: the scenario of Figure 8 (§5.4.2), over and over: a leader takes many entries
 *   while cut off with a minority; the majority elects a leader that is cut off at once, holding
 *   entries of a newer term; the old side wins again and starts re-replicating its old-term
 *   entries; it crashes once a majority holds some of them but not yet an entry of its own term;
 *   then the other leader comes back with the majority.
 * - `staleReads`: a leader cut off from everyone, its clock slowed or its process paused past
 *   an election timeout, keeps receiving ReadIndex requests while a new leader commits writes.
 * - `noPreVote`: pre-vote off (check-quorum off on every other such seed), so real elections
 *   start from lagging, partitioned nodes; leader transfers while partitions stand (a transfer
 *   skips pre-vote anyway, thesis §3.10).
 * - `membership`: storms of add-learner, promote and remove (removed nodes come back),
 *   requested the moment a leader is elected and while a change is pending, with leaders
 *   crashing mid-change.
 * - `crashPersist`: slow disks, crashes aimed at nodes with writes in flight (a vote or an
 *   append acknowledgement waiting on its write), disk write failures (crash-only).
 * - `pauseSkew`: clocks that run at different rates and processes paused past the election
 *   timeout that resume with their old state, on top of the random faults.
 * - `snapshotCatchUp`: followers cut off until the leader has compacted past them catch up by
 *   snapshot, while retries of InstallSnapshot arrive long after: a follower must ignore a
 *   snapshot older than its commit index (§7).
 *
 * Schedules may read the nodes' state to aim (who leads, how far replication got); what they
 * do is always a fault a real cluster can suffer.
 */
import { type Configuration, nextRandom, type RaftOptions, seedFrom } from '../../machines/raft/index.ts';
import { type SimNode, type Simulation, TICK_MS } from './cluster.ts';
import { quorumSize } from './oracle.ts';

export type ScheduleName =
  | 'random'
  | 'figure8'
  | 'staleReads'
  | 'noPreVote'
  | 'membership'
  | 'crashPersist'
  | 'pauseSkew'
  | 'snapshotCatchUp';

export const scheduleNames: readonly ScheduleName[] = [
  'random',
  'figure8',
  'staleReads',
  'noPreVote',
  'membership',
  'crashPersist',
  'pauseSkew',
  'snapshotCatchUp',
];

/** Seeds rotate through the schedules, one slot each. */
const rotation = scheduleNames;

export function scheduleFor(seed: number): ScheduleName {
  return rotation[((seed % rotation.length) + rotation.length) % rotation.length]!;
}

export interface ScheduleSetup {
  readonly raft: Partial<RaftOptions>;
  /** Whether session clients run: their checker's expiry bound assumes every clock runs at the
   * true rate, no process stops and disks are fast, so schedules that break that leave them
   * out. */
  readonly sessions: boolean;
}

export function setupOf(name: ScheduleName, seed: number): ScheduleSetup {
  const alternate = Math.floor(seed / rotation.length) % 2 === 1;
  switch (name) {
    case 'noPreVote':
      return { raft: { preVote: false, checkQuorum: !alternate }, sessions: true };
    case 'staleReads':
      // Without check-quorum a cut-off leader never steps down by itself.
      return { raft: { checkQuorum: !alternate }, sessions: false };
    case 'pauseSkew':
      // Snapshots keep catch-up entries in the log here (as nodes do by default); elsewhere
      // they compact to the snapshot, so laggards need InstallSnapshot more often.
      return { raft: { snapshotCatchUpEntries: 12 }, sessions: false };
    case 'figure8':
    case 'crashPersist':
      return { raft: {}, sessions: false };
    default:
      return { raft: {}, sessions: true };
  }
}

export function makeNemesis(name: ScheduleName, sim: Simulation): Nemesis {
  switch (name) {
    case 'random':
      return new RandomNemesis(sim);
    case 'figure8':
      return new Figure8(sim);
    case 'staleReads':
      return new StaleReads(sim);
    case 'noPreVote':
      return new NoPreVote(sim);
    case 'membership':
      return new MembershipStorm(sim);
    case 'crashPersist':
      return new CrashPersist(sim);
    case 'pauseSkew':
      return new PauseSkew(sim);
    case 'snapshotCatchUp':
      return new SnapshotCatchUp(sim);
  }
}

// ---------------------------------------------------------------------------------------------

export abstract class Nemesis {
  private rng: number;
  private changeSeq = 0;
  /** Nodes removed from the configuration, and when. */
  protected readonly removed = new Map<string, number>();

  /** Whether the random mix also fails disk writes now and then (crash-only). */
  protected diskFailures = true;

  constructor(protected readonly sim: Simulation) {
    this.rng = seedFrom('nemesis', sim.opts.seed);
  }

  /** Injects the next fault; returns the ms until it is asked again. */
  abstract act(): number;

  /** After every agenda item while the faults last: scripted schedules react here. */
  afterItem(): void {}

  onHeal(): void {}

  protected random(): number {
    const [v, s] = nextRandom(this.rng);
    this.rng = s;
    return v;
  }

  protected int(lo: number, hi: number): number {
    return lo + Math.floor(this.random() * (hi - lo + 1));
  }

  protected pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[Math.floor(this.random() * items.length)];
  }

  protected get all(): SimNode[] {
    return [...this.sim.nodes.values()];
  }

  /** The longest election timeout, ms. */
  protected get electionMs(): number {
    return 2 * (this.sim.raftOptions.electionTicks ?? 10) * TICK_MS;
  }

  protected leader(): SimNode | null {
    const id = this.sim.currentLeader();
    return id === null ? null : this.sim.nodes.get(id)!;
  }

  protected config(node: SimNode): Configuration {
    return this.sim.configOf(node);
  }

  protected crash(node: SimNode, restartLo = 30, restartHi = 600): void {
    if (!node.up) return;
    this.sim.crash(node);
    this.sim.scheduleRestart(node, this.int(restartLo, restartHi));
  }

  /** The random mix of faults every schedule starts from (the weights are cumulative). */
  protected randomFault(
    w = { crash: 0.22, isolate: 0.34, cut: 0.44, split: 0.5, heal: 0.66, loss: 0.74, change: 0.88 },
  ): void {
    const sim = this.sim;
    const all = this.all;
    const roll = this.random();
    if (roll < w.crash) {
      const victim = this.pick(all.filter((n) => n.up));
      if (victim) this.crash(victim);
    } else if (roll < w.isolate) {
      const victim = this.pick(all)!;
      sim.trace(`nemesis: isolate ${victim.id}`);
      sim.isolate(victim.id);
    } else if (roll < w.cut) {
      const a = this.pick(all)!;
      const b = this.pick(all.filter((n) => n !== a))!;
      sim.trace(`nemesis: cut ${a.id} -> ${b.id} (one way)`);
      sim.cut(a.id, b.id);
    } else if (roll < w.split) {
      const shuffled = all.slice().sort(() => this.random() - 0.5);
      const left = new Set(shuffled.slice(0, this.int(1, shuffled.length - 1)).map((n) => n.id));
      sim.trace(`nemesis: split {${[...left].join(',')}} | rest`);
      sim.split(left);
    } else if (roll < w.heal) {
      sim.trace('nemesis: heal partitions');
      sim.healNetwork();
    } else if (roll < w.loss) {
      const loss = this.random() < 0.5 ? 0 : this.random() * 0.2;
      const dup = this.random() < 0.5 ? 0 : this.random() * 0.1;
      sim.setLoss(loss, dup);
      if (this.diskFailures) sim.faults.diskFailRate = this.random() < 0.2 ? 0.02 : 0;
      sim.trace(
        `nemesis: loss ${loss.toFixed(2)} dup ${dup.toFixed(2)} disk failures ${sim.faults.diskFailRate}`,
      );
    } else if (roll < w.change) {
      this.changeMembership(false);
    } else {
      this.transfer();
    }
  }

  protected transfer(): void {
    const leader = this.leader();
    if (leader === null) return;
    const to = this.pick(this.config(leader).voters.filter((v) => v !== leader.id));
    if (to === undefined) return;
    this.sim.trace(
      `nemesis: transfer leadership ${leader.id} -> ${to}${this.sim.partitioned ? ' (partitioned)' : ''}`,
    );
    this.sim.stats.transfers++;
    this.sim.local(leader, { type: 'raft.transferLeader', to });
  }

  /**
   * Asks the leader for one membership change: promote a learner, add an outsider as learner,
   * or remove a voter, keeping between n - 1 and n + 1 voters (and at least two). `storm`:
   * removed nodes may come back, learners may be removed, and the leader may remove itself.
   * `after`: the node the previous change named; this one removes another voter if it can, so
   * the pair changes two voters. Returns the node named, if a change was asked for.
   */
  protected changeMembership(storm: boolean, after?: string): string | undefined {
    const leader = this.leader();
    if (leader === null) return undefined;
    const sim = this.sim;
    const n = sim.opts.nodes;
    const config = this.config(leader);
    const members = new Set([...config.voters, ...config.learners]);
    const outsiders = [...sim.nodes.keys()].filter((id) => {
      if (members.has(id)) return false;
      const at = this.removed.get(id);
      return at === undefined || (storm && sim.now - at > 300);
    });
    let change: { type: 'addLearner' | 'promote' | 'remove'; node: string } | null = null;
    const others = config.voters.filter((v) => v !== leader.id && v !== after);
    const learner = config.learners[0];
    const ready = learner !== undefined && (!storm || this.caughtUp(leader, learner));
    if (after !== undefined && config.voters.length > 2 && others.length > 0) {
      change = { type: 'remove', node: this.pick(others)! };
    } else if (ready && !(storm && this.random() < 0.25)) {
      change = { type: 'promote', node: learner };
    } else if (learner !== undefined && (ready || this.random() < 0.2)) {
      change = { type: 'remove', node: learner };
    } else if (learner !== undefined && storm) {
      return undefined; // let it catch up first
    } else if (outsiders.length > 0 && config.voters.length <= n) {
      change = { type: 'addLearner', node: storm ? this.pick(outsiders)! : outsiders[0]! };
    } else if (config.voters.length > n - 1 && config.voters.length > 2) {
      const pool =
        storm && this.random() < 0.8 ? config.voters.filter((v) => v !== leader.id) : config.voters;
      change = { type: 'remove', node: this.pick(pool)! };
    }
    if (change === null) return undefined;
    if (change.type === 'remove') this.removed.set(change.node, sim.now);
    else this.removed.delete(change.node);
    sim.trace(`nemesis: ${change.type} ${change.node} via ${leader.id}`);
    sim.local(leader, { type: 'raft.changeMembership', id: `cc${++this.changeSeq}`, change });
    return change.node;
  }

  /** Whether the leader would promote `learner` now (thesis §4.2.1: caught up first). */
  private caughtUp(leader: SimNode, learner: string): boolean {
    const c = leader.snap!.context;
    const pr = c.progress[learner];
    return pr !== undefined && pr.match + c.opts.catchUpMargin >= this.sim.checker.logOf(leader).last();
  }

  /** Heals the network and restarts every crashed node. */
  protected healAll(): void {
    this.sim.healNetwork();
    for (const n of this.all) if (!n.up) this.sim.restart(n);
  }

  /** A leader every voter follows in its term, with an entry of its term committed. */
  protected stableLeader(): SimNode | null {
    const leader = this.leader();
    if (leader === null || this.sim.paused(leader)) return null;
    const c = leader.snap!.context;
    if (c.commit < c.termStart) return null;
    for (const v of this.config(leader).voters) {
      const vc = this.sim.nodes.get(v)?.snap?.context;
      if (vc === undefined || vc.term !== c.term || vc.leader !== leader.id) return null;
    }
    return leader;
  }
}

export class RandomNemesis extends Nemesis {
  protected override diskFailures = false;

  /** The simulation's own stream, as the mix always drew from. */
  protected override random(): number {
    return this.sim.random();
  }

  act(): number {
    this.randomFault();
    return this.int(40, 250);
  }
}

/** Pre-vote off: real elections from lagging nodes, transfers while partitioned. */
class NoPreVote extends Nemesis {
  private lagging: SimNode | null = null;
  private rejoinAt = 0;

  constructor(sim: Simulation) {
    super(sim);
    sim.faults.lateSnapshotRate = 0.3;
  }

  act(): number {
    const sim = this.sim;
    if (this.lagging !== null && sim.now >= this.rejoinAt) {
      sim.trace(`nemesis: ${this.lagging.id} rejoins`);
      sim.reconnect(this.lagging.id);
      this.lagging = null;
    }
    const roll = this.random();
    if (roll < 0.3 && this.lagging === null) {
      // A follower falls behind alone while its election timer runs, so its term races ahead
      // of its log; then it comes back and campaigns with both (§5.4.1 must stop it).
      const leader = this.leader();
      const victim = this.pick(this.all.filter((n) => n !== leader && n.up));
      if (victim !== undefined) {
        this.lagging = victim;
        this.rejoinAt = sim.now + this.int(1, 4) * this.electionMs;
        sim.trace(`nemesis: isolate follower ${victim.id} until ${this.rejoinAt}`);
        sim.isolate(victim.id);
      }
    } else if (roll < 0.45 && sim.partitioned) {
      this.transfer();
    } else {
      this.randomFault();
    }
    return this.int(40, 250);
  }
}

/**
 * Membership storms, and two aimed scenarios among them:
 * - a split mid-change: right after two changes in quick succession, the leader goes with a
 *   majority of its newest configuration that is a minority of the one before, if there is
 *   one (only a leader that let the second change in while the first was uncommitted has such
 *   a configuration, thesis §4.1);
 * - the 2015 scenario (Ongaro, raft-dev, "bug in single-server membership changes"): with an
 *   even number of voters C0, the leader L1 removes a voter `a` and is cut off at once, its new
 *   configuration C1 on its disk alone; the others elect L2, which at once asks to remove L1
 *   (C2); L2 is left with a majority of C2 that holds `a` (a minority of C0), L1 with the rest,
 *   a majority of C1. Only a leader that changes the configuration before an entry of its own
 *   term commits can commit anything on its side.
 */
class MembershipStorm extends Nemesis {
  private lastLeader = '';
  /** A split made right after a change holds until then. */
  private holdUntil = 0;
  private scene: { phase: 'elect' | 'split'; l1: SimNode; a: string; term: number; deadline: number } | null =
    null;
  private nextScene = 0;
  /** Every other membership seed plays the 2015 scenario between storms. */
  private readonly scenes = Math.floor(this.sim.opts.seed / rotation.length) % 2 === 0;

  act(): number {
    const sim = this.sim;
    if (this.scene !== null) {
      if (sim.now > this.scene.deadline) {
        sim.trace(`nemesis: 2015 scenario ends in phase ${this.scene.phase}`);
        this.scene = null;
        this.nextScene = sim.now + this.int(4, 10) * this.electionMs;
        this.healAll();
      }
      return 20;
    }
    if (sim.now < this.holdUntil) {
      if (this.random() < 0.3) this.changeMembership(true);
      return this.int(5, 60);
    }
    if (this.holdUntil > 0) {
      this.holdUntil = 0;
      this.healAll();
    }
    if (this.scenes && sim.now >= this.nextScene && this.startScene()) return 20;
    const roll = this.random();
    if (roll < 0.55) {
      const leader = this.leader();
      const before = leader === null ? null : this.config(leader);
      const first = this.changeMembership(true);
      // In quick succession: the next change arrives while the first is surely uncommitted.
      const second = this.random() < 0.5 ? this.changeMembership(true, first) : undefined;
      if (leader !== null && first !== undefined && second !== undefined) {
        const side = this.splitAcross(leader, before!);
        if (side !== null) sim.stats.scenarios++;
        if (side !== null || this.random() < 0.5) {
          const split = side ?? new Set([leader.id, first, second]);
          sim.trace(`nemesis: split {${[...split].join(',')}} | rest, mid-change`);
          sim.split(split);
          this.holdUntil = sim.now + this.int(2, 4) * this.electionMs;
        }
      }
    } else if (roll < 0.7) {
      // Mid-change: the leader goes down with its configuration entry perhaps on few disks.
      const leader = this.leader();
      if (leader !== null) this.crash(leader, 30, 300);
    } else if (roll < 0.8) this.transfer();
    else if (roll < 0.9) this.healAll();
    else this.randomFault();
    return this.int(5, 60);
  }

  override afterItem(): void {
    const leader = this.leader();
    if (leader === null) return;
    const term = leader.snap!.context.term;
    const key = `${leader.id}@${term}`;
    if (key === this.lastLeader) return;
    this.lastLeader = key;
    const scene = this.scene;
    if (scene === null) {
      // A change requested the moment a leader is elected, before its first entry commits.
      this.changeMembership(true);
    } else if (scene.phase === 'elect' && leader !== scene.l1 && term > scene.term) {
      this.splitFor2015(leader, scene);
    }
  }

  /** The leader's side after a pair of changes: a majority of its newest configuration whose
   * complement holds a majority of `before`, or null when there is none. */
  private splitAcross(leader: SimNode, before: Configuration): Set<string> | null {
    const after = this.config(leader);
    const side = new Set([leader.id, ...after.voters.filter((v) => !before.voters.includes(v))]);
    const count = (c: Configuration) => c.voters.filter((v) => side.has(v)).length;
    const oldRest = () => before.voters.length - count(before);
    for (const v of after.voters) {
      if (count(after) >= quorumSize(after.voters)) break;
      if (!side.has(v) && oldRest() - (before.voters.includes(v) ? 1 : 0) >= quorumSize(before.voters))
        side.add(v);
    }
    return count(after) >= quorumSize(after.voters) && oldRest() >= quorumSize(before.voters) ? side : null;
  }

  private startScene(): boolean {
    const sim = this.sim;
    const l1 = this.stableLeader();
    if (l1 === null) return false;
    const c0 = this.config(l1);
    const log = sim.checker.logOf(l1);
    if (
      c0.voters.length < 4 ||
      c0.voters.length % 2 !== 0 ||
      log.configs.latestIndex() > sim.checker.maxCommitted
    )
      return false;
    const a = this.pick(c0.voters.filter((v) => v !== l1.id))!;
    sim.local(l1, {
      type: 'raft.changeMembership',
      id: `s2015-${sim.now}`,
      change: { type: 'remove', node: a },
    });
    if (this.config(l1).voters.includes(a)) return false; // refused
    this.removed.set(a, sim.now);
    sim.trace(`nemesis: 2015 scenario: ${l1.id} removes ${a} and is cut off`);
    sim.isolate(l1.id);
    this.scene = {
      phase: 'elect',
      l1,
      a,
      term: l1.snap!.context.term,
      deadline: sim.now + 8 * this.electionMs,
    };
    return true;
  }

  private splitFor2015(l2: SimNode, scene: NonNullable<MembershipStorm['scene']>): void {
    const sim = this.sim;
    const c2 = this.config(l2).voters.filter((v) => v !== scene.l1.id);
    const side = new Set([l2.id, scene.a]);
    for (const v of c2.slice().sort(() => this.random() - 0.5)) {
      if (side.size >= quorumSize(c2)) break;
      side.add(v);
    }
    sim.stats.scenarios++;
    sim.trace(
      `nemesis: 2015 scenario: ${l2.id} removes ${scene.l1.id} at once; split {${[...side].join(',')}} | rest`,
    );
    sim.local(l2, {
      type: 'raft.changeMembership',
      id: `s2015-${sim.now}`,
      change: { type: 'remove', node: scene.l1.id },
    });
    this.removed.set(scene.l1.id, sim.now);
    sim.healNetwork();
    sim.split(side);
    scene.phase = 'split';
    scene.deadline = sim.now + 4 * this.electionMs;
  }
}

class CrashPersist extends Nemesis {
  constructor(sim: Simulation) {
    super(sim);
    sim.faults.diskLatency = [2, 25];
    sim.faults.diskFailRate = 0.01;
    sim.faults.lateSnapshotRate = 0.3;
  }

  act(): number {
    const roll = this.random();
    if (roll < 0.4) {
      // Crash a node while a write is in flight: what it has not made durable must not count.
      const busy = this.all.filter((n) => n.up && n.writes.length > 0);
      const victim = this.pick(busy);
      if (victim !== undefined) {
        this.sim.trace(`nemesis: crash ${victim.id} with ${victim.writes.length} writes in flight`);
        this.crash(victim, 20, 300);
      }
    } else this.randomFault();
    return this.int(20, 150);
  }
}

class PauseSkew extends Nemesis {
  constructor(sim: Simulation) {
    super(sim);
    sim.faults.lateSnapshotRate = 0.3;
    for (const n of this.all) this.skew(n);
  }

  private skew(n: SimNode): void {
    const rates = [0.5, 0.75, 1, 1, 1.5, 2, 3];
    n.tickMs = Math.round(TICK_MS * rates[this.int(0, rates.length - 1)]!);
  }

  act(): number {
    const roll = this.random();
    if (roll < 0.3) {
      const leader = this.leader();
      const victim =
        leader !== null && this.random() < 0.5 ? leader : this.pick(this.all.filter((n) => n.up));
      if (victim !== undefined) this.sim.pause(victim, this.int(this.electionMs / 2, 5 * this.electionMs));
    } else if (roll < 0.4) {
      const n = this.pick(this.all)!;
      this.skew(n);
      this.sim.trace(`nemesis: ${n.id} ticks every ${n.tickMs} ms`);
    } else this.randomFault();
    return this.int(40, 250);
  }
}

/** Followers fall behind the leader's snapshot and catch up by InstallSnapshot, whose retries
 * arrive long after, between the random faults. */
class SnapshotCatchUp extends Nemesis {
  private lagging: SimNode | null = null;
  private rejoinAt = 0;

  constructor(sim: Simulation) {
    super(sim);
    sim.faults.lateSnapshotRate = 0.7;
  }

  act(): number {
    const sim = this.sim;
    if (this.lagging !== null) {
      if (sim.now < this.rejoinAt) return 20;
      sim.trace(`nemesis: ${this.lagging.id} rejoins`);
      sim.reconnect(this.lagging.id);
      this.lagging = null;
      return this.int(100, 300);
    }
    if (this.random() < 0.5) {
      const leader = this.leader();
      const victim = this.pick(this.all.filter((n) => n !== leader && n.up));
      if (victim !== undefined) {
        // Long enough for the leader to take a snapshot past it (threshold 40 entries).
        this.lagging = victim;
        this.rejoinAt = sim.now + this.int(2, 5) * this.electionMs;
        sim.trace(`nemesis: cut ${victim.id} off until ${this.rejoinAt}`);
        sim.isolate(victim.id);
        return 20;
      }
    }
    this.randomFault();
    return this.int(40, 250);
  }
}

/** Cuts a leader off with its clock slowed or its process paused, and sends it reads. */
class StaleReads extends Nemesis {
  private phase: 'idle' | 'reading' = 'idle';
  private target: SimNode | null = null;
  private until = 0;

  act(): number {
    const sim = this.sim;
    if (this.phase === 'idle') {
      const leader = this.stableLeader();
      if (leader === null) {
        this.healAll();
        return 50;
      }
      this.target = leader;
      sim.isolate(leader.id);
      if (this.random() < 0.5) {
        leader.tickMs = TICK_MS * this.int(4, 8);
        sim.trace(`nemesis: ${leader.id} cut off, ticking every ${leader.tickMs} ms`);
      } else {
        sim.trace(`nemesis: ${leader.id} cut off`);
        sim.pause(leader, this.int(2 * this.electionMs, 4 * this.electionMs));
      }
      sim.stats.scenarios++;
      this.phase = 'reading';
      this.until = sim.now + this.int(5, 8) * this.electionMs;
      return 1;
    }
    const old = this.target!;
    if (sim.now >= this.until || !old.up) {
      sim.trace(`nemesis: ${old.id} back`);
      old.tickMs = TICK_MS;
      this.healAll();
      this.phase = 'idle';
      return this.int(100, 300);
    }
    sim.clientRead(old);
    // Writes through the new leader, so reads at the old one have something to miss.
    const leader = this.leader();
    if (leader !== null && leader !== old) sim.clientWrite(leader, 1);
    return this.int(3, 10);
  }
}

/**
 * Figure 8 (§5.4.2), scripted. Groups: the old leader with quorum - 2 partners (a minority),
 * the rest (a majority). Phases:
 *  isolate: the old side takes a burst of entries it cannot commit;
 *  elect:   the majority elects a leader, which is cut off the moment it wins (its entries of
 *           the newer term stay on its disk alone);
 *  return:  the old side and the remaining majority nodes reconnect; one of the old side wins;
 *  partial: it re-replicates its old-term entries in batches; once the leader knows a majority
 *           holds one of them but not an entry of its own term, it crashes and its partners are
 *           cut off;
 *  newer:   the cut-off leader rejoins the remaining nodes and can win their votes with its
 *           newer last term, replacing the old-term entries: they were never committed.
 */
class Figure8 extends Nemesis {
  private phase: 'idle' | 'elect' | 'return' | 'partial' | 'newer' = 'idle';
  private deadline = 0;
  private old = new Set<string>();
  private oldTerm = 0;
  private newer: SimNode | null = null;
  private newerTerm = 0;
  private returned: SimNode | null = null;
  /** Each swing node's last index when the old side came back. */
  private swingLast = new Map<string, number>();

  act(): number {
    const sim = this.sim;
    if (this.phase === 'idle') {
      const leader = this.stableLeader();
      if (leader === null) {
        this.healAll();
        return 50;
      }
      const voters = this.config(leader).voters;
      const q = quorumSize(voters);
      const others = voters.filter((v) => v !== leader.id).sort(() => this.random() - 0.5);
      this.old = new Set([leader.id, ...others.slice(0, q - 2)]);
      this.oldTerm = leader.snap!.context.term;
      sim.trace(`nemesis: figure 8 begins: {${[...this.old].join(',')}} cut off from the rest`);
      sim.split(this.old);
      const batch = sim.raftOptions.maxAppendEntries ?? 16;
      sim.clientWrite(leader, this.int(2 * batch + 4, 4 * batch));
      this.phase = 'elect';
      this.deadline = sim.now + 8 * this.electionMs;
      return 20;
    }
    if (sim.now > this.deadline) {
      sim.trace(`nemesis: figure 8 gives up in phase ${this.phase}`);
      this.healAll();
      this.phase = 'idle';
      return this.int(200, 500);
    }
    return 20;
  }

  override afterItem(): void {
    const sim = this.sim;
    switch (this.phase) {
      case 'elect': {
        const l = this.leader();
        if (l === null || this.old.has(l.id) || l.snap!.context.term <= this.oldTerm) return;
        this.newer = l;
        this.newerTerm = l.snap!.context.term;
        sim.healNetwork();
        sim.isolate(l.id);
        sim.clientWrite(l, this.int(1, 4));
        this.swingLast.clear();
        for (const v of this.config(l).voters) {
          if (!this.old.has(v) && v !== l.id) this.swingLast.set(v, this.lastOf(sim.nodes.get(v)!));
        }
        sim.trace(`nemesis: figure 8: ${l.id} leads term ${this.newerTerm} cut off; the old side returns`);
        this.phase = 'return';
        this.deadline = sim.now + 8 * this.electionMs;
        return;
      }
      case 'return': {
        const l = this.leader();
        if (l === null || l.snap!.context.term <= this.newerTerm) return;
        if (!this.old.has(l.id)) {
          this.deadline = 0; // a swing node won: the scenario did not happen this time
          return;
        }
        this.returned = l;
        this.phase = 'partial';
        return;
      }
      case 'partial': {
        const l = this.returned!;
        const c = l.snap?.context;
        if (c === undefined || l.role !== 'leader') {
          this.deadline = 0;
          return;
        }
        // What the leader believes a majority holds: its own durable entries and its peers'
        // acknowledged match indexes (thesis §10.2.1).
        const voters = this.config(l).voters;
        const matches = voters
          .map((v) => (v === l.id ? c.persisted : (c.progress[v]?.match ?? 0)))
          .sort((a, b) => b - a);
        const held = matches[quorumSize(voters) - 1] ?? 0;
        const swingLast = Math.min(...this.swingLast.values());
        if (held <= swingLast || held >= c.termStart) return;
        sim.trace(
          `nemesis: figure 8: ${l.id} knows a majority holds ${held} (< its term's first entry ${c.termStart}): crash`,
        );
        sim.stats.scenarios++;
        sim.isolate(l.id);
        this.crash(l, 3 * this.electionMs, 5 * this.electionMs);
        sim.reconnect(this.newer!.id);
        for (const id of this.old) if (id !== l.id) sim.isolate(id);
        this.phase = 'newer';
        this.deadline = sim.now + 8 * this.electionMs;
        return;
      }
      case 'newer': {
        const l = this.leader();
        if (l === null || l !== this.newer || l.snap!.context.commit < l.snap!.context.termStart) return;
        sim.trace(`nemesis: figure 8: ${l.id} leads again; heal`);
        this.healAll();
        this.phase = 'idle';
        return;
      }
      default:
        return;
    }
  }

  override onHeal(): void {
    this.phase = 'idle';
  }

  private lastOf(n: SimNode): number {
    return this.sim.checker.logOf(n).last();
  }
}
