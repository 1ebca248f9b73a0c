/**
 * The storage writer: carries out the Raft machine's effects in Raft's order.
 *
 * - `persist` goes straight to the LogStore, which groups whatever piles up while a synced
 *   batch is in flight into the next one (group commit); completions arrive in call order and
 *   are fed back as `raft.persisted`.
 * - `send` with `afterPersist` waits until every write issued before it is durable (votes and
 *   append answers leave only after persist, Figure 2); other sends leave at once (the leader
 *   replicates while its own write is in flight, thesis §10.2.1).
 * - `restore` waits for earlier writes, replaces the key tree from the snapshot stream (all or
 *   nothing), then resets the log to the snapshot; later writes wait for it.
 * - `apply`, reads, proposals and snapshots go to the applier and the API.
 *
 * Any storage failure is fatal: the node stops and restarts from disk (never retry an fsync).
 */
import type { Effect, EffectOf, Message, NodeId, RaftEvent, SnapshotMeta } from '../machines/raft/index.ts';
import type { LogStore } from '../storage/index.ts';

export interface DriverPorts {
  /** Delivers an event to the Raft machine. */
  readonly raft: (event: RaftEvent) => void;
  readonly log: LogStore;
  /** Sends one message to a peer (the transport batches per peer). */
  readonly send: (to: NodeId, message: Message) => void;
  /** Ships a snapshot to a peer (the transport streams it in chunks). */
  readonly sendSnapshot: (to: NodeId, message: EffectOf<'sendSnapshot'>['message']) => void;
  /** Replaces the state machine with a received snapshot; resolves once durable. */
  readonly restore: (snapshot: SnapshotMeta, data: unknown) => Promise<void>;
  /** Effects for the applier and the API: apply, proposals, reads, snapshots, role changes. */
  readonly forward: (effect: Effect) => void;
  /** A storage failure: the node must stop. */
  readonly fatal: (error: unknown) => void;
}

export class Driver {
  private issued = 0;
  private completed = 0;
  private held: { barrier: number; to: NodeId; message: Message }[] = [];
  /** Set while a restore runs: writes issued meanwhile wait for it. */
  private gate: Promise<void> | null = null;
  private last: Promise<void> = Promise.resolve();
  private failed = false;
  /** Snapshots installed (restores made durable). */
  restores = 0;

  constructor(private readonly ports: DriverPorts) {}

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
        return this.restoreSnapshot(e);
      case 'send':
        if (e.afterPersist && this.completed < this.issued) {
          this.held.push({ barrier: this.issued, to: e.to, message: e.message });
        } else {
          this.ports.send(e.to, e.message);
        }
        return;
      case 'sendSnapshot':
        return this.ports.sendSnapshot(e.to, e.message);
      default:
        this.ports.forward(e);
    }
  }

  private persist(e: EffectOf<'persist'>): void {
    const seq = ++this.issued;
    const lastEntry = e.entries[e.entries.length - 1];
    const write = () =>
      this.ports.log.write(
        e.hardState ? { hardState: e.hardState, entries: e.entries } : { entries: e.entries },
      );
    const done = this.gate === null ? write() : this.gate.then(write);
    this.last = done;
    done.then(
      () => {
        this.completed = seq;
        if (lastEntry !== undefined)
          this.ports.raft({ type: 'raft.persisted', index: lastEntry.index, term: lastEntry.term });
        this.release();
      },
      (err) => this.fail(err),
    );
  }

  private restoreSnapshot(e: EffectOf<'restore'>): void {
    const seq = ++this.issued;
    const before = this.last;
    const done = before.then(async () => {
      await this.ports.restore(e.snapshot, e.data);
      await this.ports.log.compact(e.snapshot);
    });
    const gate = done.then(
      () => {
        if (this.gate === gate) this.gate = null;
      },
      () => {},
    );
    this.gate = gate;
    this.last = done;
    done.then(
      () => {
        this.completed = seq;
        this.restores++;
        this.ports.raft({ type: 'raft.persisted', index: e.snapshot.index, term: e.snapshot.term });
        this.release();
      },
      (err) => this.fail(err),
    );
  }

  private release(): void {
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
    this.ports.fatal(err);
  }
}
