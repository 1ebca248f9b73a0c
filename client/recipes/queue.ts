/**
 * A distributed FIFO queue whose items are each completed exactly once, across consumer
 * crashes (Curator's `DistributedQueue` with lock-safe consumption).
 *
 * Items are persistent sequential keys `/queues/<name>/items/item-NNNNNNNNNN`. A consumer
 * `take()`s the oldest unclaimed item by writing, in one txn that holds only while the item
 * exists and nobody claimed it, the ephemeral claim `/queues/<name>/claims/item-NNNNNNNNNN` in
 * its session. `ack()` deletes item and claim in one txn that holds only while the claim is
 * still this consumer's, together with any writes the application adds (`ack([...ops])`), so the
 * effect of handling an item and its completion commit together or not at all. A consumer that
 * dies loses its claims with its session and the items go back to the queue, in their place: an
 * item may be handed out again, but it is completed once.
 */
import type { TxnOp } from '../../protocol/index.ts';
import { NotHeldError } from '../errors.ts';
import type { Client } from '../index.ts';
import type { Session } from '../session.ts';
import { bytes, type Value } from '../util.ts';
import {
  bySeq,
  follow,
  type RecipeOptions,
  recipePath,
  seqOf,
  text,
  type WaitOptions,
  waitSignal,
} from './common.ts';

export type TakeOptions = WaitOptions;

/** A claimed item: handle it, then `ack()` (or `release()` to hand it back). */
export class QueueItem {
  private done = false;
  /** Aborts (reason `SessionLostError`) when the claim's session is lost: the item may go to another consumer. */
  readonly signal: AbortSignal;

  /** @internal */
  constructor(
    private readonly client: Client,
    /** The item's key. */
    readonly key: string,
    readonly value: Uint8Array,
    private readonly claim: string,
    /** The claim's create revision: a fencing token for this delivery. */
    readonly token: number,
    private readonly session: Session,
  ) {
    this.signal = session.signal;
  }

  /** The value as UTF-8 text. */
  get text(): string {
    return text(this.value);
  }

  /**
   * Completes the item: deletes it and the claim, and applies `ops` in the same txn, only while
   * the claim is still held. `NotHeldError` (nothing written) if it is not.
   */
  async ack(ops: readonly TxnOp[] = []): Promise<{ readonly revision: number }> {
    const r = await this.settle([{ op: 'delete', key: this.key }, ...ops]);
    return { revision: r };
  }

  /** Hands the item back to the queue, in its place. */
  async release(): Promise<void> {
    await this.settle([]);
  }

  private async settle(ops: readonly TxnOp[]): Promise<number> {
    if (this.done) throw new NotHeldError(this.claim, `${this.key} was already settled`);
    this.done = true;
    const r = await this.client.txn({
      compare: [{ key: this.claim, target: 'createRevision', result: 'eq', value: this.token }],
      success: [{ op: 'delete', key: this.claim }, ...ops],
      session: this.session,
    });
    if (!r.succeeded)
      throw new NotHeldError(
        this.claim,
        `the claim on ${this.key} was lost (its session ended): nothing written`,
      );
    return r.revision;
  }
}

export class Queue {
  readonly path: string;
  private readonly session: Session;

  /** @internal use `client.queue(name)` */
  constructor(
    private readonly client: Client,
    name: string,
    options: RecipeOptions = {},
  ) {
    this.path = recipePath('queues', name);
    this.session = options.session ?? client.needSession();
  }

  private get items(): string {
    return `${this.path}/items/`;
  }

  private get claims(): string {
    return `${this.path}/claims/`;
  }

  /** Appends an item; returns its key. */
  async put(value: Value): Promise<string> {
    return (await this.client.createSequential(`${this.items}item-`, bytes(value), { session: this.session }))
      .key;
  }

  /**
   * Claims the oldest unclaimed item, waiting for one if there is none. On timeout or abort
   * nothing is claimed.
   */
  async take(options: TakeOptions = {}): Promise<QueueItem> {
    const signal = waitSignal(this.client, options, this.session);
    for await (const { keys } of follow(this.client, `${this.path}/`, signal)) {
      const all = [...keys.values()];
      const claimed = new Set(
        all.filter((k) => k.key.startsWith(this.claims)).map((k) => k.key.slice(this.claims.length)),
      );
      const free = bySeq(all.filter((k) => k.key.startsWith(this.items) && seqOf(k.key) >= 0)).filter(
        (k) => !claimed.has(k.key.slice(this.items.length)),
      );
      for (const item of free) {
        signal.throwIfAborted();
        const claim = this.claims + item.key.slice(this.items.length);
        const r = await this.client.txn({
          compare: [
            { key: item.key, target: 'createRevision', result: 'eq', value: item.createRevision },
            { key: claim, target: 'exists', result: 'eq', value: false },
          ],
          success: [{ op: 'put', key: claim, value: new Uint8Array(), ephemeral: true }],
          session: this.session,
        });
        const put = r.results[0];
        if (r.succeeded && put?.op === 'put')
          return new QueueItem(this.client, item.key, item.value, claim, put.kv.createRevision, this.session);
      }
    }
    throw new TypeError('unreachable: follow ends only by throwing');
  }

  /** Items waiting (claimed or not). */
  async size(): Promise<{ readonly items: number; readonly claimed: number }> {
    const { kvs } = await this.client.rangeAll(`${this.path}/`);
    return {
      items: kvs.filter((kv) => kv.key.startsWith(this.items)).length,
      claimed: kvs.filter((kv) => kv.key.startsWith(this.claims)).length,
    };
  }
}
