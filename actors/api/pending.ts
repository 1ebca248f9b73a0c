/**
 * Every request a node holds while the log or the machine settles it, each with a deadline:
 * writes (until applied at the index they got), membership changes (until applied), read batches
 * (until the ReadIndex round and the applier are through), leader transfers (until the role
 * changes). A sweep answers TIMEOUT to whatever outlives its deadline, so no request waits forever
 * and no table grows without bound. Nothing here knows NATS: it holds `Reply`s.
 */
import { type EnsembleError, TimeoutError } from '../../protocol/index.ts';
import type { Answer, Reply } from './reply.ts';

export interface PendingWrite {
  readonly id: string;
  readonly op: string;
  readonly reply: Reply;
  readonly deadline: number;
  /** What the answer adds (a session's id and secret for `sessionOpen`). */
  readonly extra?: Record<string, unknown>;
  /** Set once the machine appended it: the index and term it got. */
  index?: number;
  term?: number;
}

export interface PendingChange {
  readonly id: string;
  readonly reply: Reply;
  readonly deadline: number;
  /** Set once the configuration entry is appended: answered when applied. */
  index?: number;
}

/** A linearizable read waiting for its ReadIndex; `done` instead of `serve` for a barrier. */
export type PendingRead =
  | { readonly serve: () => void; readonly reply: Reply }
  | { readonly done: (ok: boolean) => void };

export interface PendingTransfer {
  readonly to: string;
  readonly reply: Reply;
  readonly deadline: number;
}

const TIMEOUTS = {
  write: 'the write did not commit in time; it may still apply: retry (exactly-once with a session)',
  change: 'the membership change did not commit in time',
  read: 'the read could not confirm leadership in time; retry',
  transfer: 'leader transfer did not finish in time',
};

export class PendingTable {
  readonly writes = new Map<string, PendingWrite>();
  readonly byIndex = new Map<number, PendingWrite>();
  readonly changes = new Map<string, PendingChange>();
  private readonly reads = new Map<string, { readonly deadline: number; readonly batch: PendingRead[] }>();
  transfer: PendingTransfer | null = null;
  private nextId = 0;
  private sweeper: NodeJS.Timeout | null = null;

  constructor(
    private readonly answer: Answer,
    /** How long a request may wait for the log or the machine before TIMEOUT. */
    readonly timeoutMs: number,
    /** The clock deadlines are read on (the simulator's is virtual). */
    private readonly now: () => number = () => performance.now(),
  ) {}

  id(kind: string): string {
    return `${kind}${++this.nextId}`;
  }

  deadline(): number {
    return this.now() + this.timeoutMs;
  }

  /** Starts the sweep (once; a restarted ingress calls it again). */
  start(): void {
    if (this.sweeper !== null) return;
    this.sweeper = setInterval(() => this.sweep(), Math.min(250, this.timeoutMs / 4));
    this.sweeper.unref();
  }

  addWrite(w: Omit<PendingWrite, 'id' | 'deadline'>): string {
    const id = this.id('w');
    this.writes.set(id, { ...w, id, deadline: this.deadline() });
    return id;
  }

  /** The machine appended write `id` at `index` in `term`. */
  placed(id: string, index: number, term: number): void {
    const w = this.writes.get(id);
    if (w === undefined) return;
    w.index = index;
    w.term = term;
    this.byIndex.set(index, w);
  }

  /** Takes write `id` out (refused, or answered elsewhere). */
  takeWrite(id: string): PendingWrite | undefined {
    const w = this.writes.get(id);
    if (w === undefined) return undefined;
    this.writes.delete(id);
    if (w.index !== undefined) this.byIndex.delete(w.index);
    return w;
  }

  /** Takes the write placed at `index`, if any. */
  takeAt(index: number): PendingWrite | undefined {
    const w = this.byIndex.get(index);
    if (w === undefined) return undefined;
    this.byIndex.delete(index);
    this.writes.delete(w.id);
    return w;
  }

  addReads(batch: PendingRead[]): string {
    const id = this.id('r');
    this.reads.set(id, { deadline: this.deadline(), batch });
    return id;
  }

  takeReads(id: string): PendingRead[] | undefined {
    const r = this.reads.get(id);
    this.reads.delete(id);
    return r?.batch;
  }

  addChange(reply: Reply): string {
    const id = this.id('c');
    this.changes.set(id, { id, reply, deadline: this.deadline() });
    return id;
  }

  /** Answers every request held (the node stops). */
  drain(error: EnsembleError): void {
    for (const w of this.writes.values()) this.answer(w.reply, { error });
    for (const c of this.changes.values()) this.answer(c.reply, { error });
    for (const { batch } of this.reads.values()) settleReads(batch, this.answer, error);
    if (this.transfer) this.answer(this.transfer.reply, { error });
    this.writes.clear();
    this.byIndex.clear();
    this.changes.clear();
    this.reads.clear();
    this.transfer = null;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
  }

  /** Answers TIMEOUT to everything past its deadline. */
  sweep(now = this.now()): void {
    for (const w of this.writes.values()) {
      if (w.deadline > now) continue;
      this.takeWrite(w.id);
      this.answer(w.reply, { error: new TimeoutError(TIMEOUTS.write) });
    }
    for (const c of this.changes.values()) {
      if (c.deadline > now) continue;
      this.changes.delete(c.id);
      this.answer(c.reply, { error: new TimeoutError(TIMEOUTS.change) });
    }
    for (const [id, r] of this.reads) {
      if (r.deadline > now) continue;
      this.reads.delete(id);
      settleReads(r.batch, this.answer, new TimeoutError(TIMEOUTS.read));
    }
    if (this.transfer !== null && this.transfer.deadline <= now) {
      this.answer(this.transfer.reply, { error: new TimeoutError(TIMEOUTS.transfer) });
      this.transfer = null;
    }
  }

  /** How many requests of each kind are held (metrics, tests). */
  get sizes(): { writes: number; changes: number; readBatches: number; transfers: number } {
    return {
      writes: this.writes.size,
      changes: this.changes.size,
      readBatches: this.reads.size,
      transfers: this.transfer === null ? 0 : 1,
    };
  }
}

/** Fails a read batch: readers get `error`, barriers learn it did not pass. */
export function settleReads(batch: readonly PendingRead[], answer: Answer, error: EnsembleError): void {
  for (const p of batch) {
    if ('done' in p) p.done(false);
    else answer(p.reply, { error });
  }
}
