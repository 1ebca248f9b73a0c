/**
 * Raft's safety properties (Figure 3 of the paper, plus durability, linearizable reads and the
 * membership rules), checked continuously as the simulation runs, against the checker's own
 * model of the logs (oracle.ts), never the implementation's log view or configuration code:
 *
 * - election-safety: at most one leader per term; a node's durable vote never changes within
 *   a term (§5.2).
 * - election-quorum: a new leader holds granted votes, delivered to it, from a majority of the
 *   voters of the configuration in its own log (§5.2, thesis §4.1).
 * - vote-durability: when a leader wins, every vote it counted is on its voter's disk (the
 *   voter's durable term is past the election's, or equal with the vote for the winner), so
 *   no crash lets a voter vote again in that term (§5.1, Figure 2).
 * - durability: when an index first becomes committed (any node's commit index covers it), a
 *   majority of the configuration in force holds it on disk; no disk ever loses a committed
 *   entry afterwards (overwritten, truncated, replaced by a snapshot); every answer a node
 *   sends (granted vote, append or snapshot acknowledgement) vouches only for what is already
 *   on its disk (§5.1, thesis §10.2.1).
 * - log-matching: an (index, term) pair names one entry, always preceded by the same term.
 * - leader-append-only: a leader never overwrites or deletes its own entries.
 * - leader-completeness: a new leader of term T holds every entry committed in a term before T
 *   (§5.4, Figure 3; a leader elected late, its votes delivered after a pause, may lack what
 *   later terms committed).
 * - state-machine-safety: commit claims agree on every index, and a node applies only the
 *   committed entry at each index, in order.
 * - commit-regressed, applied-regressed: within one life of a node its commit index and its
 *   state machine's applied index never go backwards (a restart may replay from the snapshot).
 * - membership: a leader appends a configuration entry only when the previous one in its log is
 *   committed and an entry of its own term is committed, and changes one voter at a time
 *   (thesis §4.1 and the 2015 correction to single-server changes).
 * - linearizable-read: a ReadIndex read returns a state at least as new as anything any
 *   operation returned before the read began (thesis §6.4).
 */
import type { Effect, Entry, Message } from '../../machines/raft/index.ts';
import type { SimNode, Simulation } from './cluster.ts';
import { CommittedLog, describeConfig, digest, isQuorum, ShadowLog, voterChanges } from './oracle.ts';

export interface Violation {
  readonly property: string;
  readonly detail: string;
  readonly time: number;
  readonly step: number;
}

/** Which layers of checks run; all by default. Teeth tests turn some off to show that the
 * others catch a bug too. */
export interface CheckOptions {
  /** Answers checked as they leave a node (durability of what they vouch for). */
  readonly sendChecks?: boolean;
  /** The membership-change rules checked directly on each new configuration entry. */
  readonly membershipRules?: boolean;
  /** Each read checked directly: it returns state no older than what had returned before it
   * began (without it, only the workload's history check sees a stale read). */
  readonly readFloor?: boolean;
}

/** What the checker knows of one node in its current life. */
interface NodeView {
  life: number;
  log: ShadowLog;
  /** The node's commit index at its last step (its latest claim). */
  commit: number;
  applied: number;
  /** The term the node leads, or -1. */
  leads: number;
}

const TERM_BITS = 2 ** 24;

/** An answer that tells the leader an index is durable here. */
function isAck(
  m: Message,
): m is Extract<Message, { type: 'raft.appendResult' | 'raft.installSnapshotResult' }> {
  return (m.type === 'raft.appendResult' && m.success) || m.type === 'raft.installSnapshotResult';
}

export class Checker {
  readonly violations: Violation[] = [];
  stopped = false;
  elections = 0;
  maxReturned = 0;
  private readonly leaders = new Map<number, string>();
  /** index * TERM_BITS + term -> the entry's digest and its predecessor's term. */
  private readonly entries = new Map<number, { fp: number; prevTerm: number }>();
  private readonly committed: CommittedLog;
  private readonly views = new Map<string, NodeView>();
  /** `${candidate}@${term}` -> voters whose granted (real) vote was delivered to it. */
  private readonly grants = new Map<string, Set<string>>();
  private appliedMax = 0;
  /** Acknowledgements sent, and the term of the entry each vouches for. */
  private readonly vouched = new WeakMap<Message, number>();
  private readonly sendChecks: boolean;
  private readonly membershipRules: boolean;
  private readonly readFloor: boolean;

  constructor(
    private readonly sim: Simulation,
    private readonly stopOnViolation: boolean,
    boot: { index: number; term: number; config: { voters: readonly string[]; learners: readonly string[] } },
    checks: CheckOptions = {},
  ) {
    this.committed = new CommittedLog(boot);
    this.sendChecks = checks.sendChecks ?? true;
    this.membershipRules = checks.membershipRules ?? true;
    this.readFloor = checks.readFloor ?? true;
  }

  violate(property: string, detail: string): void {
    this.violations.push({ property, detail, time: this.sim.now, step: this.sim.steps });
    this.sim.trace(`VIOLATION ${property}: ${detail}`);
    if (this.stopOnViolation) this.stopped = true;
  }

  /** The checker's model of `node`'s log (the nemesis reads configurations from it). */
  logOf(node: SimNode): ShadowLog {
    return this.view(node).log;
  }

  /** The highest index any node has claimed committed. */
  get maxCommitted(): number {
    return this.committed.max;
  }

  /** The term of the entry committed at `index`, or undefined while none is. */
  committedTerm(index: number): number | undefined {
    return this.committed.term(index);
  }

  // -------------------------------------------------------------------------------------------
  // Hooks.

  /** A node (re)started from its disk: what was in flight is gone. */
  onBoot(node: SimNode): void {
    this.views.set(node.id, {
      life: node.life,
      log: ShadowLog.fromDisk(node.disk),
      commit: -1,
      applied: node.sm.applied,
      leads: -1,
    });
  }

  /** After every machine step, before its effects are carried out: the writes it issued,
   * the roles it took, and the commit index it now claims. */
  observe(node: SimNode, effects: readonly Effect[]): void {
    const v = this.view(node);
    for (const e of effects) {
      if (e.type === 'persist') this.onWrite(node, v, e.entries);
      else if (e.type === 'restore') v.log.reset(e.snapshot);
      else if (e.type === 'roleChanged') {
        if (e.role === 'leader') this.onLeader(node, v, e.term);
        v.leads = e.role === 'leader' ? e.term : -1;
      } else if (e.type === 'send' && isAck(e.message)) {
        // What it vouches for is the entry the node held when it answered; a later write may
        // replace it before the answer leaves (held behind the earlier write).
        const t = v.log.term(e.message.index);
        if (t !== undefined) this.vouched.set(e.message, t);
      }
      if (this.stopped) return;
    }
    this.claim(node, v, node.snap!.context.commit);
  }

  /** A message reached `node` (it is about to step on it). */
  onDeliver(node: SimNode, m: Message): void {
    if (m.type !== 'raft.voteResult' || !m.granted || m.preVote) return;
    const key = `${node.id}@${m.term}`;
    let set = this.grants.get(key);
    if (set === undefined) this.grants.set(key, (set = new Set()));
    set.add(m.from);
  }

  /** A message leaves `from`: an answer may vouch only for what is on `from`'s disk. */
  onSend(from: SimNode, to: string, m: Message): void {
    if (!this.sendChecks) return;
    const disk = from.disk;
    if (m.type === 'raft.voteResult') {
      if (!m.granted || m.preVote) return;
      const hs = disk.hardState;
      if (hs.term > m.term || (hs.term === m.term && hs.vote === to)) return;
      this.violate(
        'durability',
        `${from.id} grants its vote to ${to} in term ${m.term} while its disk holds term ${hs.term} vote ${hs.vote ?? 'none'}`,
      );
    } else if (isAck(m)) {
      const i = m.index;
      if (i <= disk.snapshot.index) return;
      const t = this.vouched.get(m) ?? this.view(from).log.term(i);
      if (t === undefined || disk.holds(i, t)) return;
      this.violate('durability', `${from.id} acknowledges index ${i}/${t} to ${to} before it is on its disk`);
    }
  }

  /** A write of `node` is about to become durable (its disk changes next). */
  beforeDiskWrite(node: SimNode, effect: Extract<Effect, { type: 'persist' } | { type: 'restore' }>): void {
    const disk = node.disk;
    let from: number;
    let replaced: readonly Entry[];
    if (effect.type === 'persist') {
      const hs = effect.hardState;
      const old = disk.hardState;
      if (hs !== undefined && hs.term === old.term && old.vote !== null && hs.vote !== old.vote) {
        this.violate(
          'election-safety',
          `${node.id} votes for ${old.vote} then ${hs.vote ?? 'none'} in term ${hs.term} (durable)`,
        );
        return;
      }
      if (hs !== undefined && hs.term < old.term) {
        this.violate('durability', `${node.id} writes term ${hs.term} over its durable term ${old.term}`);
        return;
      }
      if (effect.entries.length === 0) return;
      from = effect.entries[0]!.index;
      replaced = effect.entries;
    } else {
      from = effect.snapshot.index + 1;
      replaced = [];
    }
    const top = Math.min(disk.log.lastIndex(), this.committed.max);
    for (let i = Math.max(from, disk.snapshot.index + 1); i <= top; i++) {
      const t = this.committed.term(i);
      if (t === undefined || !disk.holds(i, t)) continue;
      if (replaced[i - from]?.term === t) continue;
      this.violate(
        'durability',
        `committed ${i}/${t} erased from ${node.id}'s disk by a ${effect.type === 'persist' ? `write from ${from}` : `snapshot at ${from - 1}`}`,
      );
      return;
    }
  }

  /** State machine safety, for each entry a node applies. */
  onApply(node: SimNode, e: Entry): void {
    const t = this.committed.term(e.index);
    if (t === undefined) {
      this.violate('state-machine-safety', `${node.id} applies ${e.index}/${e.term}, never committed`);
      return;
    }
    if (t !== e.term || this.committed.digest(e.index) !== digest(e)) {
      this.violate(
        'state-machine-safety',
        `${node.id} applies ${e.index}/${e.term}, but ${e.index}/${t} committed`,
      );
      return;
    }
    if (e.index > this.appliedMax) {
      this.appliedMax = e.index;
      this.sim.stats.commits++;
    }
  }

  onRead(node: SimNode, id: string, returned: number, floor: number): void {
    if (this.readFloor && returned < floor) {
      this.violate(
        'linearizable-read',
        `${node.id} read ${id} returned state ${returned}, older than ${floor}`,
      );
    }
  }

  onReturned(index: number): void {
    if (index > this.maxReturned) this.maxReturned = index;
  }

  /** After every agenda item: applied indexes only move forward within a life. */
  afterItem(): void {
    for (const node of this.sim.nodes.values()) {
      if (!node.up) continue;
      const v = this.views.get(node.id);
      if (v === undefined || v.life !== node.life) continue;
      const a = node.sm.applied;
      if (a < v.applied) {
        this.violate('applied-regressed', `${node.id}'s state machine went back from ${v.applied} to ${a}`);
        return;
      }
      v.applied = a;
    }
  }

  /** After the run: every live node's log agrees with the committed history up to its own
   * commit index (past it, a node may hold a stale suffix: a removed node keeps one forever). */
  finalCheck(): void {
    for (const n of this.sim.nodes.values()) {
      if (!n.up) continue;
      const v = this.view(n);
      const log = v.log;
      const top = Math.min(v.commit, log.last(), this.committed.max);
      for (let i = Math.max(log.base + 1, top - 50); i <= top; i++) {
        const t = this.committed.term(i);
        if (t !== undefined && log.term(i) !== t) {
          this.violate('state-machine-safety', `${n.id} holds ${i}/${log.term(i)} but ${i}/${t} committed`);
          return;
        }
      }
    }
  }

  // -------------------------------------------------------------------------------------------

  private view(node: SimNode): NodeView {
    const v = this.views.get(node.id);
    if (v !== undefined && v.life === node.life) return v;
    this.onBoot(node);
    return this.views.get(node.id)!;
  }

  /** Log matching, leader append-only and the membership rules, on every write issued. */
  private onWrite(node: SimNode, v: NodeView, entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const log = v.log;
    const first = entries[0]!.index;
    if (v.leads >= 0 && first <= log.last()) {
      this.violate(
        'leader-append-only',
        `leader ${node.id} of term ${v.leads} rewrites from ${first} (last ${log.last()})`,
      );
      return;
    }
    let prevTerm = log.term(first - 1) ?? -1;
    for (const e of entries) {
      const key = e.index * TERM_BITS + e.term;
      const fp = digest(e);
      const seen = this.entries.get(key);
      if (seen === undefined) {
        this.entries.set(key, { fp, prevTerm });
        if (e.type === 'config' && v.leads === e.term && this.membershipRules) {
          this.checkChange(node, log, e);
          if (this.stopped) return;
        }
      } else if (seen.fp !== fp || seen.prevTerm !== prevTerm) {
        this.violate(
          'log-matching',
          `${node.id} holds a different entry ${e.index}/${e.term} (or a different predecessor)`,
        );
        return;
      }
      prevTerm = e.term;
    }
    if (!log.write(entries)) {
      this.violate(
        'log-matching',
        `${node.id} writes from ${first} with its log at ${log.base}..${log.last()}`,
      );
    }
  }

  /** A leader creates configuration entry `e` (thesis §4.1, Ongaro's 2015 correction). */
  private checkChange(node: SimNode, log: ShadowLog, e: Entry & { type: 'config' }): void {
    const prevIndex = log.configs.indexAt(e.index - 1);
    const prev = log.configs.at(e.index - 1);
    if (prevIndex > this.committed.max) {
      this.violate(
        'membership',
        `leader ${node.id} appends ${describeConfig(e.config)} at ${e.index} while ${describeConfig(prev)} at ${prevIndex} is uncommitted (committed ${this.committed.max})`,
      );
    } else if (!this.committed.termsCommitted.has(e.term)) {
      this.violate(
        'membership',
        `leader ${node.id} appends ${describeConfig(e.config)} at ${e.index} before any entry of its term ${e.term} committed`,
      );
    } else if (voterChanges(prev, e.config) > 1) {
      this.violate(
        'membership',
        `leader ${node.id} changes ${describeConfig(prev)} to ${describeConfig(e.config)} at once`,
      );
    }
  }

  /** Election safety, quorum, vote durability and leader completeness when `node` wins. */
  private onLeader(node: SimNode, v: NodeView, term: number): void {
    this.elections++;
    const other = this.leaders.get(term);
    if (other !== undefined && other !== node.id) {
      this.violate('election-safety', `${node.id} and ${other} both lead term ${term}`);
      return;
    }
    this.leaders.set(term, node.id);
    const voters = v.log.configs.latest().voters;
    const granted = this.grants.get(`${node.id}@${term}`);
    const counted = (id: string) => id === node.id || granted?.has(id) === true;
    if (!isQuorum(voters, counted)) {
      this.violate(
        'election-quorum',
        `${node.id} leads term ${term} with votes from [${voters.filter(counted).join(',')}] of [${voters.join(',')}]`,
      );
      return;
    }
    for (const id of voters) {
      if (!counted(id)) continue;
      const hs = this.sim.nodes.get(id)!.disk.hardState;
      if (hs.term > term || (hs.term === term && hs.vote === node.id)) continue;
      this.violate(
        'vote-durability',
        `${node.id} wins term ${term} with ${id}'s vote, but ${id}'s disk holds term ${hs.term} vote ${hs.vote ?? 'none'}`,
      );
      return;
    }
    const log = v.log;
    for (let i = log.base + 1; i <= this.committed.max; i++) {
      const t = this.committed.term(i);
      if (t === undefined || this.committed.committedIn(i)! >= term || log.term(i) === t) continue;
      this.violate(
        'leader-completeness',
        `${node.id} leads term ${term} without ${i}/${t}, committed in term ${this.committed.committedIn(i)} (its last ${log.last()})`,
      );
      return;
    }
  }

  /** `node`'s commit index is `commit` after a step: whatever it newly covers is committed,
   * and must agree with what other nodes committed there. An index committed for the first
   * time must be on the disks of a majority of the configuration the commit was counted in:
   * the committed one at that index, or the latest in the claimer's log (thesis §4.1). */
  private claim(node: SimNode, v: NodeView, commit: number): void {
    if (v.commit < 0) {
      v.commit = commit; // a restart: the durable commit index was claimed in an earlier life
      return;
    }
    if (commit < v.commit) {
      this.violate('commit-regressed', `${node.id}'s commit index went back from ${v.commit} to ${commit}`);
      v.commit = commit;
      return;
    }
    const log = v.log;
    if (commit > log.last()) {
      this.violate(
        'state-machine-safety',
        `${node.id} claims commit ${commit} past its last entry ${log.last()}`,
      );
      return;
    }
    for (let i = Math.max(v.commit, log.base) + 1; i <= commit; i++) {
      const e = log.entry(i)!;
      const t = this.committed.term(i);
      if (t !== undefined) {
        if (t !== e.term || this.committed.digest(i) !== digest(e)) {
          this.violate(
            'state-machine-safety',
            `${node.id} commits ${i}/${e.term}, another node committed ${i}/${t}`,
          );
          return;
        }
        continue;
      }
      this.committed.add(e, v.leads >= 0 ? v.leads : node.snap!.context.term);
      const holds = (id: string) => this.sim.nodes.get(id)?.disk.holds(i, e.term) === true;
      const atIndex = this.committed.configs.at(i);
      const latest = log.configs.latest();
      if (!isQuorum(atIndex.voters, holds) && !isQuorum(latest.voters, holds)) {
        const holders = [...this.sim.nodes.values()].filter((n) => holds(n.id)).map((n) => n.id);
        this.violate(
          'durability',
          `${node.id} commits ${i}/${e.term} while it is durable only on [${holders.join(',')}] (configurations ${describeConfig(atIndex)}, ${describeConfig(latest)})`,
        );
        return;
      }
    }
    v.commit = commit;
  }
}
