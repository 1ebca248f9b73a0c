/**
 * A shared integer (key `/counters/<name>`, its value in decimal text so any client can read
 * it): `add` reads it and writes the sum in a txn that holds only if nobody wrote in between,
 * retrying until it does. Each write is exactly-once under the session, so a retry after a
 * timeout or a leader change never adds twice.
 */
import type { Client } from '../index.ts';
import type { Session } from '../session.ts';
import { type RecipeOptions, recipePath, text } from './common.ts';

export class Counter {
  readonly path: string;
  private readonly session: Session | undefined;

  /** @internal use `client.counter(name)` */
  constructor(
    private readonly client: Client,
    name: string,
    options: RecipeOptions = {},
  ) {
    this.path = recipePath('counters', name);
    this.session = options.session;
  }

  /** The value (0 if never written). */
  async get(): Promise<number> {
    return parse(this.path, (await this.client.get(this.path))?.value);
  }

  /** Adds `delta` (default 1) atomically; returns the new value. */
  async add(delta = 1): Promise<number> {
    if (!Number.isSafeInteger(delta))
      throw new RangeError(`counter: delta must be a safe integer, got ${delta}`);
    for (;;) {
      this.client.checkOpen();
      const kv = await this.client.get(this.path);
      const next = parse(this.path, kv?.value) + delta;
      if (!Number.isSafeInteger(next))
        throw new RangeError(`counter ${this.path} would leave the safe integers`);
      const r = await this.client.txn({
        compare: [{ key: this.path, target: 'version', result: 'eq', value: kv?.version ?? 0 }],
        success: [{ op: 'put', key: this.path, value: new TextEncoder().encode(String(next)) }],
        ...(this.session ? { session: this.session } : {}),
      });
      if (r.succeeded) return next;
    }
  }

  /** Sets the value. */
  async set(value: number): Promise<void> {
    if (!Number.isSafeInteger(value))
      throw new RangeError(`counter: value must be a safe integer, got ${value}`);
    await this.client.put(this.path, String(value), this.session ? { session: this.session } : {});
  }
}

function parse(path: string, v: Uint8Array | undefined): number {
  if (v === undefined) return 0;
  const n = Number(text(v));
  if (!Number.isSafeInteger(n))
    throw new TypeError(`counter ${path} holds ${JSON.stringify(text(v))}, not an integer`);
  return n;
}
