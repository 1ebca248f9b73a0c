/**
 * Locks: a FIFO-fair mutex and a readers-writer lock, with fencing tokens.
 *
 * Each acquisition takes a ticket: a sequential ephemeral key under `/locks/<name>/` in the
 * holder's session. Tickets are served in the order they were given. A waiter watches only the
 * ticket just ahead of it that blocks it (a writer: the one before it; a reader: the nearest
 * writer before it), never the whole line, so a release wakes one waiter (no herd). A holder
 * whose process dies loses the lock when its session expires (TTL, plus an election timeout of
 * grace after a leader change).
 *
 * A lock alone is advisory: a holder paused past its TTL (GC, SIGSTOP, a VM migration) still
 * believes it holds (Jepsen's etcd 3.4.3 analysis). Writes that must be safe go through the
 * hold's fence: `hold.put()`, `hold.txn()`, or `hold.guard()` in your own txn, which succeed only
 * while the ticket, identified by its create revision (the fencing token), still exists.
 */
import { hostname } from 'node:os';
import type { Compare, KeyValue } from '../../protocol/index.ts';
import { NotHeldError } from '../errors.ts';
import type { Client, TxnSpec } from '../index.ts';
import type { Session } from '../session.ts';
import type { Value } from '../util.ts';
import {
  bySeq,
  dropKey,
  orUndo,
  type RecipeOptions,
  recipePath,
  seqOf,
  type Ticket,
  takeTicket,
  text,
  type WaitOptions,
  waitSignal,
  waitTurn,
} from './common.ts';

export type { RecipeOptions } from './common.ts';

export interface AcquireOptions extends WaitOptions {
  /** Stored in the ticket, for people looking at the line (default `<host>/<pid>`). */
  readonly owner?: Value;
}

type Mode = 'lock' | 'read' | 'write' | 'candidate';

/** Readers wait only for writers ahead of them; writers (and plain locks) for anyone ahead. */
function blockerFor(mode: Mode) {
  return (line: readonly KeyValue[], mine: KeyValue): KeyValue | null => {
    const i = line.indexOf(mine);
    for (let j = i - 1; j >= 0; j--) {
      const k = line[j]!;
      if (mode !== 'read' || !k.key.slice(k.key.lastIndexOf('/') + 1).startsWith('read-')) return k;
    }
    return null;
  };
}

/** A held lock: its ticket, fencing token and fence. Release it (or `await using` it). */
export class LockHold implements AsyncDisposable {
  /** @internal */
  protected released = false;
  /** Aborts (reason `SessionLostError`) when the session holding the lock is lost. */
  readonly signal: AbortSignal;

  /** @internal */
  constructor(
    protected readonly client: Client,
    protected readonly ticket: Ticket,
    private readonly onEnd: () => void,
  ) {
    this.signal = ticket.session.signal;
  }

  /** The ticket key that holds the lock. */
  get key(): string {
    return this.ticket.key;
  }

  /** The fencing token: the ticket's create revision; larger for every later holder. */
  get token(): number {
    return this.ticket.token;
  }

  /** False once released, or once the holding session was lost. */
  get held(): boolean {
    return !this.released && !this.signal.aborted;
  }

  /** A txn compare that holds only while this hold's ticket exists: add it to your own txn. */
  guard(): Compare {
    return { key: this.ticket.key, target: 'createRevision', result: 'eq', value: this.ticket.token };
  }

  /** A txn that applies `success` only while the lock is held (and `spec.compare` hold too). */
  txn(spec: Omit<TxnSpec, 'session'>) {
    return this.client.txn({
      ...spec,
      compare: [this.guard(), ...spec.compare],
      session: this.ticket.session,
    });
  }

  /** Writes `key` only while the lock is held; `NotHeldError` (and nothing written) otherwise. */
  async put(key: string, value: Value): Promise<{ readonly revision: number }> {
    const v = typeof value === 'string' ? new TextEncoder().encode(value) : value;
    const r = await this.txn({ compare: [], success: [{ op: 'put', key, value: v }] });
    if (!r.succeeded)
      throw new NotHeldError(this.ticket.key, `${this.ticket.key} no longer holds: nothing written`);
    return { revision: r.revision };
  }

  /** Deletes `key` only while the lock is held; `NotHeldError` otherwise. */
  async delete(key: string): Promise<{ readonly revision: number }> {
    const r = await this.txn({ compare: [], success: [{ op: 'delete', key }] });
    if (!r.succeeded)
      throw new NotHeldError(this.ticket.key, `${this.ticket.key} no longer holds: nothing deleted`);
    return { revision: r.revision };
  }

  /** Gives the lock up. `NotHeldError` if it was released before. */
  async release(): Promise<void> {
    if (this.released) throw new NotHeldError(this.ticket.key, `${this.ticket.key} was already released`);
    this.released = true;
    this.onEnd();
    if (this.signal.aborted) return; // the session is gone, and its keys with it
    await dropKey(this.client, this.ticket.key, this.ticket.token, this.ticket.session);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.released) await this.release().catch(() => {});
  }
}

/** A FIFO-fair distributed mutex (or one side of a readers-writer lock) with fencing tokens. */
export class Lock {
  /** The directory of the lock's tickets. */
  readonly path: string;
  private readonly session: Session;
  private current: LockHold | null = null;
  private acquiring = false;

  /** @internal use `client.lock(name)` */
  constructor(
    protected readonly client: Client,
    name: string,
    options: RecipeOptions = {},
    private readonly mode: Mode = 'lock',
    kind = 'locks',
  ) {
    this.path = recipePath(kind, name);
    this.session = options.session ?? client.needSession();
  }

  /**
   * Waits for the lock, in arrival order. On timeout (`TimeoutError`), abort (the signal's
   * reason), session loss (`SessionLostError`) or close (`ClosedError`) the ticket is withdrawn.
   */
  async acquire(options: AcquireOptions = {}): Promise<LockHold> {
    const signal = this.begin(options);
    return this.withTicket(options, (ticket) =>
      orUndo(
        async () => {
          await waitTurn(this.client, this.path, ticket, blockerFor(this.mode), signal);
          return this.hold(ticket);
        },
        () => dropKey(this.client, ticket.key, ticket.token, ticket.session),
      ),
    );
  }

  /** Takes the lock if nobody holds it or waits ahead; null (nothing left behind) otherwise. */
  async tryAcquire(options: Omit<AcquireOptions, 'timeout' | 'signal'> = {}): Promise<LockHold | null> {
    this.begin({});
    return this.withTicket(options, async (ticket) => {
      const line = await this.line();
      const mine = line.find((kv) => kv.key === ticket.key);
      if (mine !== undefined && blockerFor(this.mode)(line, mine) === null) return this.hold(ticket);
      await dropKey(this.client, ticket.key, ticket.token, ticket.session);
      return null;
    });
  }

  /** Takes a ticket and hands it to `use`; this object may acquire again afterwards. */
  private async withTicket<T>(options: AcquireOptions, use: (ticket: Ticket) => Promise<T>): Promise<T> {
    try {
      const owner = options.owner ?? defaultOwner();
      return await use(await takeTicket(this.client, this.path, `${this.mode}-`, owner, this.session));
    } finally {
      this.acquiring = false;
    }
  }

  /** Releases the hold this object took. `NotHeldError` when it holds nothing. */
  async release(): Promise<void> {
    if (this.current === null) throw new NotHeldError(this.path, `${this.path} is not held by this lock`);
    await this.current.release();
  }

  /** The tickets in line now, first (a holder) first: key, fencing token, owner. */
  async waiters(): Promise<{ readonly key: string; readonly token: number; readonly owner: string }[]> {
    return (await this.line()).map((kv) => ({
      key: kv.key,
      token: kv.createRevision,
      owner: text(kv.value),
    }));
  }

  private async line(): Promise<KeyValue[]> {
    const { kvs } = await this.client.rangeAll(`${this.path}/`);
    return bySeq(kvs.filter((kv) => seqOf(kv.key) >= 0));
  }

  private begin(options: WaitOptions): AbortSignal {
    if (this.acquiring || this.current?.held)
      throw new TypeError(
        `${this.path}: this lock object is already held or acquiring; use another lock() object per holder`,
      );
    const signal = waitSignal(this.client, options, this.session);
    this.acquiring = true;
    return signal;
  }

  /** @internal The hold object for a ticket at the head of the line. */
  protected makeHold(ticket: Ticket, onEnd: () => void): LockHold {
    return new LockHold(this.client, ticket, onEnd);
  }

  private hold(ticket: Ticket): LockHold {
    const h = this.makeHold(ticket, () => {
      if (this.current === h) this.current = null;
    });
    this.current = h;
    return h;
  }
}

/** Shared readers, one writer at a time, served in arrival order (no writer starves). */
export class ReadWriteLock {
  readonly read: Lock;
  readonly write: Lock;
  readonly path: string;

  /** @internal use `client.readWriteLock(name)` */
  constructor(client: Client, name: string, options: RecipeOptions = {}) {
    this.read = new Lock(client, name, options, 'read');
    this.write = new Lock(client, name, options, 'write');
    this.path = this.read.path;
  }
}

let owner: string | null = null;
function defaultOwner(): string {
  owner ??= `${hostname()}/${process.pid}`;
  return owner;
}
