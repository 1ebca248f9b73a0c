/**
 * Leader election (etcd's `concurrency.Election`, Curator's `LeaderLatch`): candidates line up
 * as sequential ephemeral keys under `/elections/<name>/`; the first in line leads. A candidate
 * watches only the one ahead of it. The leader's fencing token is its key's create revision:
 * `leadership.guard()` (or `leadership.put()` / `txn()`) makes a write succeed only while it
 * still leads, so a leader that was paused past its session's TTL cannot write after a successor
 * took over. Anyone can ask who leads (`leader()`) or follow it (`observe()`).
 */
import { NotHeldError } from '../errors.ts';
import type { Client } from '../index.ts';
import type { Value } from '../util.ts';
import {
  bySeq,
  follow,
  type LiveKey,
  type RecipeOptions,
  seqOf,
  type Ticket,
  type WaitOptions,
  waitSignal,
} from './common.ts';
import { Lock, LockHold } from './lock.ts';

/** Who leads: the leader's key, fencing token, proclaimed value and session. */
export interface LeaderInfo {
  readonly key: string;
  readonly token: number;
  readonly value: Uint8Array;
  /** `value` as UTF-8 text. */
  readonly text: string;
}

/** A won election: the fence of a lock, and the leader's value to proclaim. */
export class Leadership extends LockHold {
  /** Replaces the leader's value (what `leader()` and `observe()` report), only while leading. */
  async proclaim(value: Value): Promise<void> {
    const v = typeof value === 'string' ? new TextEncoder().encode(value) : value;
    const r = await this.txn({
      compare: [],
      success: [{ op: 'put', key: this.key, value: v, ephemeral: true }],
    });
    if (!r.succeeded) throw new NotHeldError(this.key, `${this.key} no longer leads: nothing proclaimed`);
  }

  /** Steps down (the next candidate in line takes over). `NotHeldError` if done before. */
  resign(): Promise<void> {
    return this.release();
  }
}

class Candidates extends Lock {
  protected override makeHold(ticket: Ticket, onEnd: () => void): LockHold {
    return new Leadership(this.client, ticket, onEnd);
  }
}

const info = (kv: LiveKey): LeaderInfo => ({
  key: kv.key,
  token: kv.createRevision,
  value: kv.value,
  text: new TextDecoder().decode(kv.value),
});

export class Election {
  readonly path: string;
  private readonly line: Candidates;
  private current: Leadership | null = null;

  /** @internal use `client.election(name)` */
  constructor(
    private readonly client: Client,
    name: string,
    options: RecipeOptions = {},
  ) {
    this.line = new Candidates(client, name, options, 'candidate', 'elections');
    this.path = this.line.path;
  }

  /**
   * Stands for election with `value` and resolves once this candidate leads. On timeout, abort,
   * session loss or close the candidacy is withdrawn.
   */
  async campaign(value: Value, options: WaitOptions = {}): Promise<Leadership> {
    const l = (await this.line.acquire({ ...options, owner: value })) as Leadership;
    this.current = l;
    return l;
  }

  /** Steps down from the leadership this object won; `NotHeldError` if it holds none. */
  async resign(): Promise<void> {
    if (this.current === null || !this.current.held)
      throw new NotHeldError(this.path, `${this.path}: this election object does not lead`);
    await this.current.resign();
  }

  /** The current leader, or null when nobody stands. */
  async leader(): Promise<LeaderInfo | null> {
    const { kvs } = await this.client.rangeAll(`${this.path}/`);
    const first = bySeq(kvs.filter((kv) => seqOf(kv.key) >= 0))[0];
    return first ? info(first) : null;
  }

  /**
   * The leader now, then each change of leader or of its value, until `signal` aborts or the
   * loop breaks. `null` while nobody stands.
   */
  async *observe(options: Pick<WaitOptions, 'signal'> = {}): AsyncGenerator<LeaderInfo | null> {
    let last: LeaderInfo | null | undefined;
    for await (const { keys } of follow(this.client, `${this.path}/`, waitSignal(this.client, options))) {
      const first = bySeq([...keys.values()].filter((k) => seqOf(k.key) >= 0))[0];
      const now = first ? info(first) : null;
      if (last === undefined || now?.key !== last?.key || !sameBytes(now?.value, last?.value)) {
        last = now;
        yield now;
      }
    }
  }
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
