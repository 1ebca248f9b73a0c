/**
 * Live configuration: the keys under a prefix as one typed object (values as UTF-8 text, names
 * relative to the prefix: `/config/app/db/url` under `/config/app` is `db/url`), read at one
 * revision, followed live (one snapshot per revision that touched the prefix: a multi-key update
 * arrives as one), and changed atomically (`set`: several keys in one txn; `update`: read,
 * change, write only if nothing read has changed since, retried).
 *
 * A schema (a function, or anything with `parse`, such as a zod schema) turns the raw strings
 * into `T`. A snapshot the schema refuses is not delivered to live followers: they keep the last
 * good one, and `onInvalid` hears about it, so a bad push cannot take a fleet down.
 */
import type { Compare, TxnOp } from '../../protocol/index.ts';
import { checkPrefix, defaultApiLimits } from '../../protocol/index.ts';
import type { Client } from '../index.ts';
import type { Session } from '../session.ts';
import { bytes, type Value } from '../util.ts';
import { follow, type LiveKey, text, type WaitOptions, waitSignal } from './common.ts';

export type ConfigSchema<T> = ((raw: Readonly<Record<string, string>>) => T) | { parse(raw: unknown): T };

export interface ConfigOptions<T> {
  readonly schema?: ConfigSchema<T>;
  /** Called with the error and the raw values when the schema refuses a live snapshot. */
  readonly onInvalid?: (error: unknown, raw: Readonly<Record<string, string>>) => void;
  /** The session writes are tagged with (default: the connection's). */
  readonly session?: Session;
}

export interface ConfigSnapshot<T> {
  /** The revision the snapshot was read at. */
  readonly revision: number;
  readonly values: T;
  readonly raw: Readonly<Record<string, string>>;
}

export class Config<T = Record<string, string>> {
  /** The prefix, ending with `/`. */
  readonly prefix: string;

  /** @internal use `client.config(prefix)` */
  constructor(
    private readonly client: Client,
    prefix: string,
    private readonly options: ConfigOptions<T> = {},
  ) {
    if (typeof prefix !== 'string' || !prefix.startsWith('/'))
      throw new TypeError(
        `config: the prefix must be a path such as /config/app, got ${JSON.stringify(prefix)}`,
      );
    const p = prefix.endsWith('/') ? prefix : `${prefix}/`;
    this.prefix = checkPrefix(p, defaultApiLimits.maxKeyBytes);
  }

  /** The configuration now (a linearizable read). Throws what the schema throws. */
  async get(): Promise<ConfigSnapshot<T>> {
    const { kvs, revision } = await this.client.rangeAll(this.prefix);
    const raw = this.rawOf(kvs);
    return { revision, raw, values: this.parse(raw) };
  }

  /**
   * The configuration now, then again after every revision that changed it, until the loop
   * breaks or `signal` aborts.
   */
  async *watch(options: Pick<WaitOptions, 'signal'> = {}): AsyncGenerator<ConfigSnapshot<T>> {
    for await (const { keys, revision } of follow(
      this.client,
      this.prefix,
      waitSignal(this.client, options),
    )) {
      const raw = this.rawOf(keys.values());
      let values: T;
      try {
        values = this.parse(raw);
      } catch (err) {
        this.options.onInvalid?.(err, raw);
        continue;
      }
      yield { revision, raw, values };
    }
  }

  /** Writes (or, with `null`, deletes) several keys in one revision. */
  async set(changes: Readonly<Record<string, Value | null>>): Promise<{ readonly revision: number }> {
    const r = await this.client.txn({ compare: [], success: this.ops(changes), ...this.session() });
    return { revision: r.revision };
  }

  /**
   * Reads the configuration, asks `change` what to write (`null` deletes), and writes it only if
   * no key it read changed (and no key it creates appeared) meanwhile; otherwise reads again.
   */
  async update(
    change: (current: ConfigSnapshot<T>) => Readonly<Record<string, Value | null>>,
  ): Promise<{ readonly revision: number }> {
    for (;;) {
      this.client.checkOpen();
      const { kvs, revision } = await this.client.rangeAll(this.prefix);
      const raw = this.rawOf(kvs);
      const changes = change({ revision, raw, values: this.parse(raw) });
      const compare: Compare[] = kvs.map((kv) => ({
        key: kv.key,
        target: 'modRevision',
        result: 'eq',
        value: kv.modRevision,
      }));
      for (const name of Object.keys(changes))
        if (!(name in raw))
          compare.push({ key: this.keyOf(name), target: 'exists', result: 'eq', value: false });
      const r = await this.client.txn({ compare, success: this.ops(changes), ...this.session() });
      if (r.succeeded) return { revision: r.revision };
    }
  }

  private session(): { session?: Session } {
    return this.options.session ? { session: this.options.session } : {};
  }

  private ops(changes: Readonly<Record<string, Value | null>>): TxnOp[] {
    return Object.entries(changes).map(([name, v]) =>
      v === null
        ? { op: 'delete', key: this.keyOf(name) }
        : { op: 'put', key: this.keyOf(name), value: bytes(v) },
    );
  }

  private keyOf(name: string): string {
    if (typeof name !== 'string' || name === '' || name.startsWith('/'))
      throw new TypeError(`config: a name is relative to ${this.prefix}, got ${JSON.stringify(name)}`);
    return this.prefix + name;
  }

  private rawOf(kvs: Iterable<LiveKey>): Record<string, string> {
    const raw: Record<string, string> = {};
    for (const kv of kvs) raw[kv.key.slice(this.prefix.length)] = text(kv.value);
    return raw;
  }

  private parse(raw: Record<string, string>): T {
    const s = this.options.schema;
    if (s === undefined) return raw as T;
    return typeof s === 'function' ? s(raw) : s.parse(raw);
  }
}
