/**
 * Liveness once the faults have healed (every node up, the network whole, clocks true, disks
 * sound), checked after every step of the healed phase:
 *
 * - `liveness` (settle): a leader is elected and commits a client write within
 *   SETTLE_TIMEOUTS of the longest election timeout, and then every voter of its configuration
 *   follows it, in its term, within FOLLOW_TIMEOUTS more.
 * - `term-inflation` (no disruption): with pre-vote and check-quorum on, once the cluster is
 *   healthy (and the sessions of dead clients have expired, so this fault of its own does not
 *   bear on their deadlines), a follower cut off for two election timeouts neither raises its
 *   term while alone (a pre-vote it cannot win changes nothing, thesis §9.6) nor deposes the
 *   leader when it comes back: the leader keeps its office and its term throughout.
 */
import type { SimNode, Simulation } from './cluster.ts';

/** Election timeouts from healing to a committed write. A crashed node restarts at the heal
 * and may need a snapshot; split votes cost a timeout each. */
const SETTLE_TIMEOUTS = 8;
/** Election timeouts for every voter to follow the leader once it commits. */
const FOLLOW_TIMEOUTS = 3;
/** Cut off for two of the longest election timeouts, the follower's own timer fires at least
 * twice (each timeout is drawn from [ET/2, ET)); back, one heartbeat round would show a
 * higher term to the leader, well within one more. */
const CUT_TIMEOUTS = 2;
const WATCH_TIMEOUTS = 1;

type Phase = 'settling' | 'following' | 'ready' | 'cut' | 'rejoined' | 'done';

export class Liveness {
  private phase: Phase = 'settling';
  private until = 0;
  private leader: SimNode | null = null;
  private term = 0;
  private cutOff: SimNode | null = null;

  constructor(
    private readonly sim: Simulation,
    private readonly opts: {
      /** The longest election timeout, ms. */
      readonly electionMs: number;
      /** Whether to cut a follower off and check it does not disrupt (pre-vote and check-quorum on). */
      readonly rejoin: boolean;
    },
  ) {}

  get done(): boolean {
    return this.phase === 'done';
  }

  onHeal(): void {
    this.phase = 'settling';
  }

  afterItem(): void {
    const sim = this.sim;
    const et = this.opts.electionMs;
    switch (this.phase) {
      case 'settling': {
        const acked = sim.probeAckedTime;
        if (acked < 0) {
          if (sim.now - sim.healedTime > SETTLE_TIMEOUTS * et) {
            sim.checker.violate(
              'liveness',
              `no write committed within ${SETTLE_TIMEOUTS} election timeouts (${SETTLE_TIMEOUTS * et} ms) of healing (leader: ${sim.currentLeader() ?? 'none'})`,
            );
          }
          return;
        }
        this.phase = 'following';
        this.until = sim.now + FOLLOW_TIMEOUTS * et;
        return;
      }
      case 'following': {
        const id = sim.currentLeader();
        const leader = id === null ? null : sim.nodes.get(id)!;
        const ready = leader !== null && this.followed(leader);
        if (!ready) {
          if (sim.now > this.until) {
            sim.checker.violate(
              'liveness',
              `voters do not all follow one leader ${FOLLOW_TIMEOUTS} election timeouts after a write committed (leader: ${id ?? 'none'}; ${this.describeTerms()})`,
            );
          }
          return;
        }
        this.phase = this.opts.rejoin ? 'ready' : 'done';
        return;
      }
      case 'ready': {
        // The cut is a fault of its own: it waits until the sessions of dead clients have
        // expired, whose timeliness the session checker judges on a healed cluster.
        if (sim.sessions !== null && !sim.sessions.settled()) return;
        const id = sim.currentLeader();
        const leader = id === null ? null : sim.nodes.get(id)!;
        if (leader === null || !this.followed(leader)) return;
        const voters = sim.configOf(leader).voters;
        const others = voters.filter((v) => v !== leader.id);
        if (voters.length < 3) {
          this.phase = 'done';
          return;
        }
        this.leader = leader;
        this.term = leader.snap!.context.term;
        this.cutOff = sim.nodes.get(others[sim.int(0, others.length - 1)]!)!;
        sim.trace(`liveness: cut ${this.cutOff.id} off from leader ${leader.id} of term ${this.term}`);
        sim.isolate(this.cutOff.id);
        this.phase = 'cut';
        this.until = sim.now + CUT_TIMEOUTS * et;
        return;
      }
      case 'cut': {
        if (sim.now < this.until) return;
        const x = this.cutOff!;
        const t = x.snap?.context.term ?? 0;
        if (t > this.term) {
          sim.checker.violate(
            'term-inflation',
            `${x.id} raised its term from ${this.term} to ${t} while cut off (pre-vote on)`,
          );
          return;
        }
        sim.trace(`liveness: ${x.id} rejoins`);
        sim.reconnect(x.id);
        this.phase = 'rejoined';
        this.until = sim.now + WATCH_TIMEOUTS * et;
        return;
      }
      case 'rejoined': {
        const l = this.leader!;
        const c = l.snap?.context;
        if (c === undefined || l.role !== 'leader' || c.term !== this.term) {
          sim.checker.violate(
            'term-inflation',
            `the healthy leader ${l.id} of term ${this.term} lost office while ${this.cutOff!.id} was cut off or after it rejoined (${this.describeTerms()})`,
          );
          return;
        }
        if (sim.now >= this.until) this.phase = 'done';
        return;
      }
      case 'done':
        return;
    }
  }

  /** The run ended (time limit) before the checks finished. */
  finish(): void {
    if (this.phase === 'following' || this.phase === 'settling') this.afterItem();
  }

  /** Every voter of the leader's configuration is up, in its term, knows it leads, and has
   * worked off the disk backlog the faults left (a follower whose answers wait behind slow
   * writes looks silent to check-quorum: healthy, but not yet). */
  private followed(leader: SimNode): boolean {
    const term = leader.snap!.context.term;
    for (const v of this.sim.configOf(leader).voters) {
      const n = this.sim.nodes.get(v);
      const c = n?.snap?.context;
      if (c === undefined || c.term !== term || c.leader !== leader.id || n!.writes.length > 1) return false;
    }
    return true;
  }

  private describeTerms(): string {
    return [...this.sim.nodes.values()]
      .map((n) => `${n.id}:${n.snap ? `${n.role![0]}${n.snap.context.term}` : 'down'}`)
      .join(' ');
  }
}
