/**
 * A hand-driven cluster for unit tests: pure steps, an in-memory log, and nothing delivered or
 * persisted until the test says so. Tests read like the paper's scenarios.
 */
import type { Effect, RaftEvent } from './events.ts';
import {
  createRaftMachine,
  type RaftMachine,
  type RaftSnapshot,
  roleOf,
  startRaft,
  stepRaft,
} from './machine.ts';
import { MemoryLog } from './memory-log.ts';
import type { Message } from './messages.ts';
import type { LogView, RaftContext, RaftOptions } from './state.ts';
import type { HardState, NodeId, SnapshotMeta } from './types.ts';

export interface Sent {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly message: Message;
  readonly afterPersist: boolean;
}

export class TestNode {
  snap: RaftSnapshot;
  readonly log: MemoryLog;
  readonly machine: RaftMachine;
  /** Effects not yet acted on by the test, in emission order. */
  readonly pendingWrites: Extract<Effect, { type: 'persist' | 'restore' }>[] = [];
  readonly outbox: Sent[] = [];
  readonly effects: Effect[] = [];
  hardState: HardState = { term: 0, vote: null, commit: 0 };

  constructor(
    readonly id: NodeId,
    snapshot: SnapshotMeta,
    options: Partial<RaftOptions> = {},
    seed = 1,
  ) {
    this.log = new MemoryLog(snapshot);
    this.machine = createRaftMachine({ log: this.log });
    const [snap, effects] = startRaft(this.machine, { id, snapshot, seed, options });
    this.snap = snap;
    this.take(effects);
  }

  get ctx(): RaftContext {
    return this.snap.context;
  }

  /** The context with the node's log (for the log-reading helpers). */
  get view(): LogView {
    return { ...this.ctx, log: this.log };
  }

  get role(): string {
    return roleOf(this.snap);
  }

  get state(): string {
    return JSON.stringify(this.snap.value);
  }

  step(event: RaftEvent): Effect[] {
    const [snap, effects] = stepRaft(this.machine, this.snap, event);
    this.snap = snap;
    this.take(effects);
    return effects;
  }

  private take(effects: readonly Effect[]): void {
    for (const e of effects) {
      this.effects.push(e);
      if (e.type === 'persist' || e.type === 'restore') this.pendingWrites.push(e);
      if (e.type === 'send')
        this.outbox.push({ from: this.id, to: e.to, message: e.message, afterPersist: e.afterPersist });
      if (e.type === 'sendSnapshot')
        this.outbox.push({ from: this.id, to: e.to, message: e.message, afterPersist: false });
    }
  }

  /** Completes every write in flight, in order, reporting each as the runtime would. */
  persistAll(): void {
    while (this.pendingWrites.length > 0) {
      const w = this.pendingWrites.shift()!;
      if (w.type === 'persist') {
        if (w.hardState) this.hardState = w.hardState;
        this.log.write(w.entries);
        const last = w.entries[w.entries.length - 1];
        if (last) this.step({ type: 'raft.persisted', index: last.index, term: last.term });
      } else {
        this.log.reset(w.snapshot);
        this.step({ type: 'raft.persisted', index: w.snapshot.index, term: w.snapshot.term });
      }
    }
  }

  /** Takes and clears what the node has sent so far. */
  drain(): Sent[] {
    return this.outbox.splice(0);
  }

  effectsOf<T extends Effect['type']>(type: T): Extract<Effect, { type: T }>[] {
    return this.effects.filter((e): e is Extract<Effect, { type: T }> => e.type === type);
  }
}

export class TestCluster {
  readonly nodes = new Map<NodeId, TestNode>();
  /** Directed links that drop everything. */
  readonly cut = new Set<string>();

  constructor(ids: readonly NodeId[], options: Partial<RaftOptions> = {}) {
    const snapshot: SnapshotMeta = { index: 0, term: 0, config: { voters: ids, learners: [] } };
    for (const [i, id] of ids.entries()) this.nodes.set(id, new TestNode(id, snapshot, options, i + 1));
  }

  node(id: NodeId): TestNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new TypeError(`no node ${id}`);
    return n;
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}>${other}`);
      this.cut.add(`${other}>${id}`);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  /** Persists everywhere and delivers every message until the cluster is quiet. */
  settle(maxRounds = 100): void {
    for (let round = 0; round < maxRounds; round++) {
      let moved = false;
      for (const n of this.nodes.values()) n.persistAll();
      for (const n of this.nodes.values()) {
        for (const s of n.drain()) {
          moved = true;
          if (this.cut.has(`${s.from}>${s.to}`)) continue;
          const target = this.nodes.get(s.to);
          if (target) target.step(s.message);
        }
      }
      if (!moved) return;
    }
    throw new Error('cluster did not settle');
  }

  /** Starts an election at `id` at once (as a leader transfer would) and lets it finish. */
  elect(id: NodeId): void {
    const n = this.node(id);
    n.step({ type: 'raft.timeoutNow', term: n.ctx.term, from: id });
    this.settle();
  }

  tick(id: NodeId, times = 1): void {
    for (let i = 0; i < times; i++) this.node(id).step({ type: 'raft.tick' });
  }

  leaders(): TestNode[] {
    return [...this.nodes.values()].filter((n) => n.role === 'leader');
  }
}
