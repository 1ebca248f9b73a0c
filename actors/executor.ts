/**
 * The one executor of the Raft machine's effects, for the node and for the simulator alike:
 * written against ports, so the node gives it RocksDB, NATS and its applier over the real key
 * tree, and the simulator an in-memory disk that completes writes on a virtual clock, a virtual
 * network and the in-memory key tree. Raft's order (Figure 2, thesis §10.2.1):
 *
 * - `persist` goes to the log, which groups whatever piles up while a synced batch is in flight
 *   (group commit); completions arrive in call order and are fed back as `raft.persisted`.
 * - `send` with `afterPersist` waits until every write issued before it is durable (votes and
 *   append answers leave only after persist); other sends leave at once (the leader replicates
 *   while its own write is in flight).
 * - `restore` waits for earlier writes, replaces the key tree from the snapshot (all or nothing),
 *   then resets the log to it; later writes wait for it.
 * - `apply` hands committed, durable entries to the applier (in order, one at a time);
 *   configuration entries also tell the transport who the members are.
 * - `snapshot` and `compact` go to the applier (the tree is made durable before the log drops
 *   what it covers).
 * - what concerns requests (`proposed`, `proposeFailed`, `readReady`, `readFailed`,
 *   `changeResult`, `roleChanged`) goes to `requests`.
 *
 * Any storage failure is fatal: the executor stops and reports it once (never retry an fsync).
 */
import type {
  Configuration,
  Effect,
  EffectOf,
  Message,
  NodeId,
  RaftEvent,
  SnapshotMeta,
} from '../machines/raft/index.ts';
import type { Persist } from '../storage/index.ts';
import { Applier, type ApplierPorts, type StateMachine } from './applier.ts';

/** The durable log, callback style: `done` is called once the write is durable, in call order. */
export interface LogPort {
  write(p: Persist, done: (err: unknown) => void): void;
  compact(snapshot: SnapshotMeta, done: (err: unknown) => void): void;
}

export interface ExecutorPorts {
  /** Delivers an event to the Raft machine. */
  readonly raft: (event: RaftEvent) => void;
  readonly log: LogPort;
  readonly tree: StateMachine;
  /** Sends one message to a peer (the transport batches per peer). */
  readonly send: (to: NodeId, message: Message) => void;
  /** Ships a snapshot to a peer (the transport streams it in chunks). */
  readonly sendSnapshot: (to: NodeId, message: EffectOf<'sendSnapshot'>['message']) => void;
  /** The members changed (a configuration entry was applied). */
  readonly members?: (config: Configuration) => void;
  /** Effects about requests: proposals, reads, membership results, role changes. */
  readonly requests: (effect: Effect) => void;
  /** Every applied entry with its outcome (see `Applier`). */
  readonly applied: ApplierPorts['applied'];
  /** A storage failure: the node must stop. */
  readonly fatal: (error: unknown) => void;
}

export class Executor {
  readonly applier: Applier;
  private issued = 0;
  private completed = 0;
  private held: { barrier: number; to: NodeId; message: Message }[] = [];
  /** A restore is in progress: later writes (and restores) wait in `waiting`, in order. */
  private blocked = false;
  private waiting: (() => void)[] = [];
  private failed = false;
  /** Snapshots installed (restores made durable). */
  restores = 0;

  constructor(
    private readonly ports: ExecutorPorts,
    /** The index the state machine has applied up to (from storage at start). */
    appliedIndex: number,
  ) {
    this.applier = new Applier(
      {
        raft: ports.raft,
        tree: ports.tree,
        compact: (snapshot, done) => ports.log.compact(snapshot, done),
        applied: ports.applied,
        fatal: (err) => this.fail(err),
      },
      appliedIndex,
    );
  }

  /** Writes issued and not yet durable. */
  get inFlight(): number {
    return this.issued - this.completed;
  }

  effect(e: Effect): void {
    if (this.failed) return;
    switch (e.type) {
      case 'persist':
        return this.persist(e);
      case 'restore':
        return this.restore(e);
      case 'send':
        if (e.afterPersist && this.completed < this.issued) {
          this.held.push({ barrier: this.issued, to: e.to, message: e.message });
        } else {
          this.ports.send(e.to, e.message);
        }
        return;
      case 'sendSnapshot':
        return this.ports.sendSnapshot(e.to, e.message);
      case 'apply':
        if (this.ports.members)
          for (const entry of e.entries) if (entry.type === 'config') this.ports.members(entry.config);
        return this.applier.apply(e);
      case 'snapshot':
        return this.applier.snapshot();
      case 'compact':
        return this.applier.compact(e.snapshot);
      default:
        return this.ports.requests(e);
    }
  }

  /** Runs `start` now, or, behind a restore in progress (or queued), once it is durable. */
  private inOrder(start: () => void): void {
    if (this.blocked) this.waiting.push(start);
    else start();
  }

  private persist(e: EffectOf<'persist'>): void {
    const seq = ++this.issued;
    const last = e.entries[e.entries.length - 1];
    const p: Persist = e.hardState ? { hardState: e.hardState, entries: e.entries } : { entries: e.entries };
    this.inOrder(() =>
      this.ports.log.write(p, (err) => {
        if (err) return this.fail(err);
        this.completed = seq;
        if (last !== undefined)
          this.ports.raft({ type: 'raft.persisted', index: last.index, term: last.term });
        this.release();
      }),
    );
  }

  /** Waits for every earlier write, replaces the tree, resets the log; writes after it wait. */
  private restore(e: EffectOf<'restore'>): void {
    const seq = ++this.issued;
    this.inOrder(() => {
      this.blocked = true;
      this.whenDurable(seq - 1, () =>
        this.applier.restore(e.data, e.snapshot.index, (err) => {
          if (err) return this.fail(err);
          this.ports.log.compact(e.snapshot, (err2) => {
            if (err2) return this.fail(err2);
            this.completed = seq;
            this.restores++;
            this.ports.raft({ type: 'raft.persisted', index: e.snapshot.index, term: e.snapshot.term });
            this.blocked = false;
            this.release();
            while (!this.blocked && this.waiting.length > 0) this.waiting.shift()!();
          });
        }),
      );
    });
  }

  private readonly durableWaiters: { seq: number; run: () => void }[] = [];

  private whenDurable(seq: number, run: () => void): void {
    if (this.completed >= seq) run();
    else this.durableWaiters.push({ seq, run });
  }

  private release(): void {
    if (this.durableWaiters.length > 0) {
      const ready = this.durableWaiters.filter((w) => w.seq <= this.completed);
      if (ready.length > 0) {
        this.durableWaiters.splice(
          0,
          this.durableWaiters.length,
          ...this.durableWaiters.filter((w) => w.seq > this.completed),
        );
        for (const w of ready) w.run();
      }
    }
    if (this.held.length === 0) return;
    let n = 0;
    while (n < this.held.length && this.held[n]!.barrier <= this.completed) n++;
    if (n === 0) return;
    const ready = this.held.splice(0, n);
    for (const h of ready) this.ports.send(h.to, h.message);
  }

  private fail(err: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.held = [];
    this.applier.stop();
    this.ports.fatal(err);
  }

  /** Stops: nothing more is executed (the node is stopping). */
  stop(): void {
    this.failed = true;
    this.applier.stop();
  }
}
