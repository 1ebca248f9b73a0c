/**
 * Barriers (Curator's `DistributedBarrier` and `DistributedDoubleBarrier`).
 *
 * - `barrier(name)`: one party `set()`s it, any number `wait()` until it is `remove()`d. The key
 *   `/barriers/<name>` is persistent by default (as Curator's); with `{ ephemeral: true }` it goes
 *   with the setter's session, so a setter that dies releases the waiters.
 * - `doubleBarrier(name, count)`: parties `enter()` and are released together once `count` of
 *   them are in; later they `leave()` and are released together once all have left. Each party is
 *   an ephemeral key under `/barriers/<name>/members/`; the first to see `count` members writes
 *   `/barriers/<name>/ready`, so all are released or none: a party that dies before the count is
 *   reached leaves the line with its session and releases nobody. Use a fresh name per round.
 */
import { ExistsError } from '../../protocol/index.ts';
import { SessionLostError } from '../errors.ts';
import type { Client } from '../index.ts';
import type { Session } from '../session.ts';
import {
  dropKey,
  follow,
  orUndo,
  type RecipeOptions,
  recipePath,
  type Ticket,
  takeTicket,
  type WaitOptions,
  waitGone,
  waitSignal,
} from './common.ts';

export interface BarrierOptions extends RecipeOptions {
  /** The barrier goes with the setter's session (default: it stays until removed). */
  readonly ephemeral?: boolean;
}

export class Barrier {
  readonly path: string;

  /** @internal use `client.barrier(name)` */
  constructor(
    private readonly client: Client,
    name: string,
    private readonly options: BarrierOptions = {},
  ) {
    this.path = recipePath('barriers', name);
  }

  /** Raises the barrier (no effect if it is up). */
  async set(): Promise<void> {
    const ephemeral = this.options.ephemeral === true;
    const session = this.options.session ?? (ephemeral ? this.client.needSession() : undefined);
    try {
      await this.client.put(this.path, 'set', { ifAbsent: true, ephemeral, ...(session ? { session } : {}) });
    } catch (err) {
      if (!(err instanceof ExistsError)) throw err;
    }
  }

  /** Lowers the barrier: every waiter is released. */
  async remove(): Promise<void> {
    await this.client.delete(this.path);
  }

  /** Whether the barrier is up. */
  async isSet(): Promise<boolean> {
    return (await this.client.get(this.path)) !== null;
  }

  /** Resolves once the barrier is down (at once if it is not up). */
  async wait(options: WaitOptions = {}): Promise<void> {
    const signal = waitSignal(this.client, options);
    const { kv, revision } = await this.client.read(this.path);
    if (kv !== null) await waitGone(this.client, this.path, revision, signal);
  }
}

export class DoubleBarrier {
  readonly path: string;
  private readonly session: Session;
  private ticket: Ticket | null = null;

  /** @internal use `client.doubleBarrier(name, count)` */
  constructor(
    private readonly client: Client,
    name: string,
    readonly count: number,
    options: RecipeOptions = {},
  ) {
    if (!Number.isSafeInteger(count) || count < 1)
      throw new RangeError(`doubleBarrier: count must be a positive integer, got ${count}`);
    this.path = recipePath('barriers', name);
    this.session = options.session ?? client.needSession();
  }

  private get members(): string {
    return `${this.path}/members/`;
  }

  private get ready(): string {
    return `${this.path}/ready`;
  }

  /** Enters and waits until `count` parties have entered. On timeout or abort it leaves again. */
  async enter(options: WaitOptions = {}): Promise<void> {
    if (this.ticket !== null) throw new TypeError(`${this.path}: already entered; leave() first`);
    const signal = waitSignal(this.client, options, this.session);
    const ticket = await takeTicket(this.client, `${this.path}/members`, 'm-', '', this.session);
    await orUndo(
      async () => {
        for await (const { keys } of follow(this.client, `${this.path}/`, signal)) {
          if (!keys.has(ticket.key))
            throw new SessionLostError(ticket.sessionId, `${ticket.key} is gone: its session ended`);
          if (keys.has(this.ready)) break;
          if ([...keys.keys()].filter((k) => k.startsWith(this.members)).length >= this.count) {
            await this.client.put(this.ready, String(this.count), { ifAbsent: true }).catch((err) => {
              if (!(err instanceof ExistsError)) throw err;
            });
            break;
          }
        }
      },
      () => dropKey(this.client, ticket.key, ticket.token, ticket.session),
    );
    this.ticket = ticket;
  }

  /** Leaves and waits until every party has left. */
  async leave(options: WaitOptions = {}): Promise<void> {
    const ticket = this.ticket;
    if (ticket === null) throw new TypeError(`${this.path}: not entered`);
    this.ticket = null;
    const signal = waitSignal(this.client, options);
    await dropKey(this.client, ticket.key, ticket.token, ticket.session);
    for await (const { keys } of follow(this.client, `${this.path}/`, signal)) {
      if (![...keys.keys()].some((k) => k.startsWith(this.members))) break;
    }
    await this.client.delete(this.ready);
  }
}
