/**
 * What the recipes share: where their keys live, waiting with deadlines and abort signals, and
 * "queue tickets": sequential ephemeral keys that order waiters (Curator's and ZooKeeper's
 * recipes, etcd's `concurrency`). A waiter watches only the one key that blocks it (no herd), from
 * the revision it read, so a delete between the read and the watch is never missed.
 */
import {
  checkKey,
  defaultApiLimits,
  type KeyValue,
  SessionExpiredError,
  TimeoutError,
} from '../../protocol/index.ts';
import { ClosedError, SessionLostError } from '../errors.ts';
import type { Client } from '../index.ts';
import type { Session } from '../session.ts';
import { abortable } from '../util.ts';

export interface RecipeOptions {
  /** The session that holds what the recipe takes (default: the connection's own session). */
  readonly session?: Session;
}

export interface WaitOptions {
  /** Give up after this many milliseconds with a `TimeoutError` (nothing is left behind). */
  readonly timeout?: number;
  /** Give up when it aborts, with its reason (nothing is left behind). */
  readonly signal?: AbortSignal;
}

const SEQ_DIGITS = 10;

/**
 * The path of a recipe's keys: a name without a leading slash goes under `/<kind>/` (`orders` →
 * `/locks/orders`, `eu/orders` → `/locks/eu/orders`); a name with one is the path itself. Throws
 * `TypeError` for a name that is not a non-empty string, `BadPathError` for one that makes no
 * valid path (empty segments, `.` or `..`, control characters, too long).
 */
export function recipePath(kind: string, name: unknown): string {
  if (typeof name !== 'string' || name.trim() === '')
    throw new TypeError(`a ${kind} name must be a non-empty string, got ${JSON.stringify(name)}`);
  const path = name.startsWith('/') ? name : `/${kind}/${name}`;
  // Room for the recipe's own suffixes (`/lock-0000000001`).
  return checkKey(path, defaultApiLimits.maxKeyBytes - 32);
}

/** The number of a sequential key (its last 10 digits), or -1. */
export function seqOf(key: string): number {
  const tail = key.slice(-SEQ_DIGITS);
  return /^\d{10}$/.test(tail) ? Number(tail) : -1;
}

/** Keys in the order their sequence numbers were given (the order of arrival). */
export function bySeq<T extends { readonly key: string }>(kvs: readonly T[]): T[] {
  return [...kvs].sort((a, b) => seqOf(a.key) - seqOf(b.key));
}

/** One signal for a wait: the caller's, a deadline, the client's close and the session's loss. */
export function waitSignal(client: Client, options: WaitOptions, session?: Session): AbortSignal {
  const signals = [client.signal];
  if (options.signal) signals.push(options.signal);
  if (session) signals.push(session.signal);
  if (options.timeout !== undefined) {
    if (!(options.timeout >= 0)) throw new RangeError('timeout must be a non-negative number of ms');
    signals.push(deadline(options.timeout));
  }
  return AbortSignal.any(signals);
}

/** A signal that aborts with a `TimeoutError` after `ms`; its timer never keeps the process alive. */
function deadline(ms: number): AbortSignal {
  const ctl = new AbortController();
  setTimeout(() => ctl.abort(new TimeoutError(`gave up after ${ms} ms`)), ms).unref();
  return ctl.signal;
}

/** Waits until `key` is deleted at a revision after `afterRevision`. */
export async function waitGone(
  client: Client,
  key: string,
  afterRevision: number,
  signal: AbortSignal,
): Promise<void> {
  signal.throwIfAborted();
  const w = client.watch({ key }, { fromRevision: afterRevision + 1 });
  try {
    for (;;) {
      const r = await abortable(w.next(), signal);
      if (r.done) throw new ClosedError('the watch ended');
      if (r.value.type === 'delete') return;
    }
  } finally {
    void w.return();
  }
}

/**
 * A waiter's place in line: a sequential ephemeral key `dir/<prefix>NNNNNNNNNN` in `session`,
 * its create revision (the fencing token) and the session id that owns it.
 */
export interface Ticket {
  readonly key: string;
  readonly token: number;
  readonly session: Session;
  readonly sessionId: string;
}

export async function takeTicket(
  client: Client,
  dir: string,
  prefix: string,
  value: Uint8Array | string,
  session: Session,
): Promise<Ticket> {
  const r = await client.createSequential(`${dir}/${prefix}`, value, { ephemeral: true, session });
  return { key: r.key, token: r.createRevision, session, sessionId: r.session ?? '' };
}

/**
 * Waits until `blocker` names no key ahead of the ticket: each round reads the line (one
 * linearizable range) and watches only the blocking key. Throws `SessionLostError` if the
 * ticket itself is gone (its session expired).
 */
export async function waitTurn(
  client: Client,
  dir: string,
  ticket: Ticket,
  blocker: (line: readonly KeyValue[], mine: KeyValue) => KeyValue | null,
  signal: AbortSignal,
): Promise<void> {
  for (;;) {
    signal.throwIfAborted();
    const { kvs, revision } = await abortable(client.rangeAll(`${dir}/`), signal);
    const line = bySeq(kvs.filter((kv) => seqOf(kv.key) >= 0));
    const mine = line.find((kv) => kv.key === ticket.key);
    if (mine === undefined || mine.createRevision !== ticket.token)
      throw new SessionLostError(ticket.sessionId, `${ticket.key} is gone: its session ended`);
    const b = blocker(line, mine);
    if (b === null) return;
    await waitGone(client, b.key, revision, signal);
  }
}

/** Deletes `key` if it still has create revision `token` (so never somebody else's key). */
export async function dropKey(
  client: Client,
  key: string,
  token: number,
  session: Session,
): Promise<boolean> {
  const r = await client.txn({
    compare: [{ key, target: 'createRevision', result: 'eq', value: token }],
    success: [{ op: 'delete', key }],
    session,
  });
  return r.succeeded;
}

/** Runs `fn`; if it fails (a timeout, an abort), runs `undo` (best effort) and rethrows. */
export async function orUndo<T>(fn: () => Promise<T>, undo: () => Promise<unknown>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    await undo().catch(() => {});
    throw err;
  }
}

export const text = (v: Uint8Array): string => new TextDecoder().decode(v);

/** A key as recipes follow it. */
export interface LiveKey {
  readonly key: string;
  readonly value: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
}

/**
 * The keys under `prefix` as they change: the state read now, then the state after each revision
 * that touched the prefix (whole revisions: a txn's events together), until `signal` aborts
 * (its reason is thrown) or the loop breaks. The same `Map` is yielded each time, updated.
 *
 * A watch belongs to the connection's session and ends with it; when that session is lost and
 * reopened, following goes on from a fresh read under the new one (a wait that holds something
 * in the lost session has its signal aborted by then and stops instead).
 */
export async function* follow(
  client: Client,
  prefix: string,
  signal: AbortSignal,
): AsyncGenerator<{ readonly keys: Map<string, LiveKey>; readonly revision: number }> {
  const keys = new Map<string, LiveKey>();
  for (;;) {
    await abortable(client.needSession().runner.waitOpen(), signal);
    const { kvs, revision } = await abortable(client.rangeAll(prefix), signal);
    keys.clear();
    for (const kv of kvs) keys.set(kv.key, kv);
    yield { keys, revision };
    const w = client.watch({ prefix }, { fromRevision: revision + 1 });
    try {
      for (;;) {
        const r = await abortable(w.next(), signal);
        if (r.done) throw new ClosedError('the watch ended');
        const e = r.value;
        if (e.type === 'progress') continue;
        if (e.type === 'delete') keys.delete(e.key);
        else
          keys.set(e.key, {
            key: e.key,
            value: e.value ?? new Uint8Array(),
            createRevision: e.createRevision ?? e.revision,
            modRevision: e.modRevision ?? e.revision,
          });
        if (w.bufferedRevision !== e.revision) yield { keys, revision: e.revision };
      }
    } catch (err) {
      if (!(err instanceof SessionExpiredError) || signal.aborted) throw err;
    } finally {
      void w.return();
    }
  }
}
