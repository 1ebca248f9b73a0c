/**
 * Raft's safety properties (Figure 3 of the paper, plus durability and linearizable reads),
 * checked as the simulation runs:
 * - election safety: at most one leader per term;
 * - log matching: an (index, term) pair names one entry, always preceded by the same term;
 * - leader append-only: a leader never overwrites or deletes its own entries;
 * - leader completeness: a new leader holds every entry committed before its term;
 * - state machine safety: no two nodes apply different entries at one index, and none skips;
 * - durability: when an entry first commits, a quorum holds it on disk (so no crash loses it);
 * - linearizable reads: a ReadIndex read returns a state at least as new as anything any
 *   operation returned before the read began.
 */
import type { Configuration, Effect, Entry, RaftSnapshot } from '../../machines/raft/index.ts';
import { configAt, currentConfig, lastIndex, quorum, termAt } from '../../machines/raft/state.ts';
import { fingerprint, type SimNode, type Simulation } from './cluster.ts';

export interface Violation {
  readonly property: string;
  readonly detail: string;
  readonly time: number;
  readonly step: number;
}

interface Committed {
  readonly term: number;
  readonly fp: number;
}

export class Checker {
  readonly violations: Violation[] = [];
  stopped = false;
  elections = 0;
  maxReturned = 0;
  private readonly leaders = new Map<number, string>();
  private readonly entries = new Map<string, { fp: number; prevTerm: number }>();
  private readonly committed = new Map<number, Committed>();
  private maxCommitted = 0;

  constructor(
    private readonly sim: Simulation,
    private readonly stopOnViolation: boolean,
  ) {}

  violate(property: string, detail: string): void {
    this.violations.push({ property, detail, time: this.sim.now, step: this.sim.steps });
    this.sim.trace(`VIOLATION ${property}: ${detail}`);
    if (this.stopOnViolation) this.stopped = true;
  }

  /** Election safety and leader completeness, when a node becomes leader. */
  onLeader(node: SimNode, term: number): void {
    this.elections++;
    const other = this.leaders.get(term);
    if (other !== undefined && other !== node.id) {
      this.violate('election-safety', `${node.id} and ${other} both lead term ${term}`);
      return;
    }
    this.leaders.set(term, node.id);
    const c = node.snap!.context;
    const last = lastIndex(c);
    if (last < this.maxCommitted) {
      this.violate(
        'leader-completeness',
        `${node.id} leads term ${term} with last ${last} < committed ${this.maxCommitted}`,
      );
      return;
    }
    for (const [index, e] of this.committed) {
      if (index <= c.snapshot.index) continue;
      if (termAt(c, index) !== e.term) {
        this.violate(
          'leader-completeness',
          `${node.id} leads term ${term} without committed ${index}/${e.term}`,
        );
        return;
      }
    }
  }

  /** Log matching and leader append-only, on every write a node starts. */
  onPersist(node: SimNode, effect: Extract<Effect, { type: 'persist' }>, before: RaftSnapshot | null): void {
    const entries = effect.entries;
    if (entries.length === 0) return;
    const c = node.snap!.context;
    const first = entries[0]!.index;
    if (before !== null) {
      const b = before.context;
      if (b.role === 'leader' && c.role === 'leader' && b.term === c.term && first <= lastIndex(b)) {
        this.violate(
          'leader-append-only',
          `leader ${node.id} rewrites from ${first} (last was ${lastIndex(b)})`,
        );
        return;
      }
    }
    let prevTerm = termAt(c, first - 1) ?? -1;
    for (const e of entries) {
      const key = `${e.index}/${e.term}`;
      const fp = fingerprint(e);
      const seen = this.entries.get(key);
      if (seen === undefined) this.entries.set(key, { fp, prevTerm });
      else if (seen.fp !== fp || seen.prevTerm !== prevTerm) {
        this.violate(
          'log-matching',
          `${node.id} holds a different entry ${key} (or a different predecessor)`,
        );
        return;
      }
      prevTerm = e.term;
    }
  }

  /** State machine safety and durability, for each applied entry. */
  onApply(node: SimNode, e: Entry): void {
    const fp = fingerprint(e);
    const seen = this.committed.get(e.index);
    if (seen !== undefined) {
      if (seen.term !== e.term || seen.fp !== fp) {
        this.violate(
          'state-machine-safety',
          `${node.id} applies ${e.index}/${e.term}, another node ${e.index}/${seen.term}`,
        );
      }
      return;
    }
    this.committed.set(e.index, { term: e.term, fp });
    if (e.index > this.maxCommitted) this.maxCommitted = e.index;
    this.sim.stats.commits++;
    const c = node.snap!.context;
    const configs: Configuration[] = [configAt(c, e.index), currentConfig(c)];
    const holders = [...this.sim.nodes.values()]
      .filter((n) => n.disk.holds(e.index, e.term))
      .map((n) => n.id);
    if (!configs.some((cfg) => cfg.voters.filter((v) => holders.includes(v)).length >= quorum(cfg))) {
      this.violate(
        'durability',
        `${e.index}/${e.term} committed while durable only on [${holders.join(',')}] (voters ${configs[0]!.voters.join(',')})`,
      );
    }
  }

  onRead(node: SimNode, id: string, returned: number, floor: number): void {
    if (returned < floor) {
      this.violate(
        'linearizable-read',
        `${node.id} read ${id} returned state ${returned}, older than ${floor}`,
      );
    }
  }

  onReturned(index: number): void {
    if (index > this.maxReturned) this.maxReturned = index;
  }

  /** After the run: every live node's state agrees with the committed history it applied. */
  finalCheck(): void {
    for (const n of this.sim.nodes.values()) {
      const c = n.snap?.context;
      if (!c) continue;
      const top = Math.min(n.sm.applied, this.maxCommitted);
      for (let i = Math.max(c.snapshot.index + 1, top - 50); i <= top; i++) {
        const t = termAt(c, i);
        const e = this.committed.get(i);
        if (t !== undefined && e !== undefined && t !== e.term) {
          this.violate('state-machine-safety', `${n.id} holds ${i}/${t} but ${i}/${e.term} committed`);
          return;
        }
      }
    }
  }
}
