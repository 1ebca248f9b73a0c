/**
 * A counting semaphore (Curator's `InterProcessSemaphoreV2`): at most `permits` holders at a
 * time, served in arrival order. Each request is a sequential ephemeral key under
 * `/semaphores/<name>/`; a request holds a permit while fewer than `permits` requests are ahead
 * of it. New requests only join at the end and the line only shrinks, so once a request holds, it
 * holds until it releases or its session ends: a holder that dies frees its permit with its
 * session. Every party must use the same `permits`. A permit has a fencing token and a fence,
 * as a lock hold does.
 */

import { SessionLostError } from '../errors.ts';
import type { Client } from '../index.ts';
import type { Session } from '../session.ts';
import {
  bySeq,
  dropKey,
  follow,
  orUndo,
  type RecipeOptions,
  recipePath,
  seqOf,
  takeTicket,
  waitSignal,
} from './common.ts';
import { type AcquireOptions, LockHold } from './lock.ts';

/** A held permit: release it (or `await using` it); `guard()` fences writes as a lock's does. */
export class Permit extends LockHold {}

export class Semaphore {
  readonly path: string;
  private readonly session: Session;

  /** @internal use `client.semaphore(name, permits)` */
  constructor(
    private readonly client: Client,
    name: string,
    readonly permits: number,
    options: RecipeOptions = {},
  ) {
    if (!Number.isSafeInteger(permits) || permits < 1)
      throw new RangeError(`semaphore: permits must be a positive integer, got ${permits}`);
    this.path = recipePath('semaphores', name);
    this.session = options.session ?? client.needSession();
  }

  /** Waits for a permit. On timeout, abort, session loss or close the request is withdrawn. */
  async acquire(options: AcquireOptions = {}): Promise<Permit> {
    const signal = waitSignal(this.client, options, this.session);
    const ticket = await takeTicket(this.client, this.path, 'permit-', options.owner ?? '', this.session);
    return orUndo(
      async () => {
        for await (const { keys } of follow(this.client, `${this.path}/`, signal)) {
          const line = bySeq([...keys.values()].filter((k) => seqOf(k.key) >= 0));
          const at = line.findIndex((k) => k.key === ticket.key);
          if (at < 0)
            throw new SessionLostError(ticket.sessionId, `${ticket.key} is gone: its session ended`);
          if (at < this.permits) return new Permit(this.client, ticket, () => {});
        }
        throw new TypeError('unreachable: follow ends only by throwing');
      },
      () => dropKey(this.client, ticket.key, ticket.token, ticket.session),
    );
  }

  /** How many permits are held now (at most `permits`), and how many requests wait. */
  async usage(): Promise<{ readonly holders: number; readonly waiting: number }> {
    const { kvs } = await this.client.rangeAll(`${this.path}/`);
    const n = kvs.filter((kv) => seqOf(kv.key) >= 0).length;
    return { holders: Math.min(n, this.permits), waiting: Math.max(0, n - this.permits) };
  }
}
