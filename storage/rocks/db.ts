/**
 * A promise face for the `rocksdb` binding. Every I/O failure (open, write, sync, read, use after
 * close) surfaces as `StorageFatalError` with the binding's error as `cause`; nothing here retries.
 */
import { mkdir, open as openFile, rename, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import rocksdb, { type BatchOp, type ChainedBatch, type RangeOptions, type RocksDB } from 'rocksdb';
import { storageFatal } from '../errors.ts';

/**
 * The binding call under `rocksdb`'s iterator (5.2, as the lock file has it), for reading a
 * batch of entries whole (see `scan`): an upgrade that drops it fails at load, not in a scan.
 */
const iteratorNext = (
  createRequire(import.meta.url)('rocksdb/binding.js') as {
    iterator_next: (
      context: unknown,
      done: (err: Error | null, entries: Buffer[], finished: boolean) => void,
    ) => void;
  }
).iterator_next;
if (typeof iteratorNext !== 'function') throw new TypeError('rocksdb/binding.js has no iterator_next');

export type { BatchOp, ChainedBatch, RangeOptions };

export class RocksDb {
  /** Operations in the binding; `close` waits for them (closing under one crashes the binding). */
  private busy = 0;
  private drained: (() => void)[] = [];
  private closing: Promise<void> | null = null;

  private constructor(
    readonly location: string,
    /** The binding itself: for tests that spy on its write options. */
    readonly raw: RocksDB,
  ) {}

  /** Opens (creating if needed) the database at `location`. Throws `StorageFatalError`. */
  static async open(location: string): Promise<RocksDb> {
    try {
      await mkdir(location, { recursive: true });
    } catch (err) {
      throw storageFatal(`cannot create ${location}`, err);
    }
    const db = rocksdb(location);
    await new Promise<void>((resolve, reject) => {
      db.open({ createIfMissing: true, errorIfExists: false }, (err) =>
        err ? reject(storageFatal(`cannot open ${location}`, err)) : resolve(),
      );
    });
    return new RocksDb(location, db);
  }

  get isOpen(): boolean {
    return this.raw.status === 'open' && this.closing === null;
  }

  /**
   * Runs one binding call with a node-style callback, counted in `busy`. Rejects with
   * `StorageFatalError` when the database is closed or closing (the binding itself would crash).
   */
  private call<T>(
    what: string,
    body: (done: (err: Error | null | undefined, value?: T) => void) => void,
  ): Promise<T> {
    if (!this.isOpen)
      return Promise.reject(storageFatal(what, new Error(`database ${this.location} is not open`)));
    this.busy++;
    return new Promise<T>((resolve, reject) => {
      const done = (err: Error | null | undefined, value?: T) => {
        if (--this.busy === 0) for (const wake of this.drained.splice(0)) wake();
        if (err) reject(storageFatal(what, err));
        else resolve(value as T);
      };
      try {
        body(done);
      } catch (err) {
        done(err as Error);
      }
    });
  }

  /** The value at `key`, or `undefined`. Throws `StorageFatalError`. */
  get(key: Buffer): Promise<Buffer | undefined> {
    return this.call<Buffer | undefined>(`read from ${this.location}`, (done) =>
      this.raw.get(key, { asBuffer: true }, (err, value) =>
        err && /NotFound/i.test(err.message) ? done(null, undefined) : done(err, value),
      ),
    );
  }

  /** Writes `ops` atomically; with `sync` the write is on disk (WAL fsynced) when this resolves. */
  batch(ops: BatchOp[], sync: boolean): Promise<void> {
    return this.call<void>(`write to ${this.location}`, (done) => this.raw.batch(ops, { sync }, done));
  }

  /** A batch to fill op by op (possibly across turns of the event loop), then `write`. */
  chained(): ChainedBatch {
    if (!this.isOpen) throw storageFatal(`write to ${this.location}`, new Error('database is not open'));
    try {
      return this.raw.batch();
    } catch (err) {
      throw storageFatal(`write to ${this.location}`, err);
    }
  }

  write(batch: ChainedBatch, sync: boolean): Promise<void> {
    return this.call<void>(`write to ${this.location}`, (done) => batch.write({ sync }, done));
  }

  /**
   * Calls `onEntry` for each entry in `range`, in key order. An error thrown by `onEntry` (e.g.
   * `CorruptedError`) stops the scan and rejects with that error; I/O errors reject with
   * `StorageFatalError`. Returning `false` from `onEntry` stops the scan early.
   */
  async scan(
    range: RangeOptions,
    onEntry: (key: Buffer, value: Buffer) => boolean | undefined,
  ): Promise<void>;
  /** As above, with each key as the string of its UTF-8 bytes (cheaper than a Buffer each). */
  async scan(
    range: RangeOptions,
    onEntry: (key: string, value: Buffer) => boolean | undefined,
    keys: 'string',
  ): Promise<void>;
  async scan(
    range: RangeOptions,
    onEntryOf: (key: never, value: Buffer) => boolean | undefined,
    keys: 'buffer' | 'string' = 'buffer',
  ): Promise<void> {
    const onEntry = onEntryOf as (key: Buffer | string, value: Buffer) => boolean | undefined;
    let failure: unknown;
    await this.call<void>(`read from ${this.location}`, (done) => {
      const it = this.raw.iterator({
        ...range,
        highWaterMark: 256 * 1024,
        ...(keys === 'string' ? { keyAsBuffer: false } : {}),
      });
      const finish = (err?: Error | null) => it.end((endErr) => done(err ?? endErr));
      const context = (it as unknown as { context: unknown }).context;
      // A batch of up to 1000 entries at a time, taken whole, the way the iterator's own `next`
      // fills its cache, but without its `nextTick` per entry (a third of the load of a large
      // tree was spent there and idle).
      const batch = () =>
        iteratorNext(context, (err, entries, finished) => {
          if (err) return finish(err);
          try {
            // The binding lays a batch out last entry first: key, then value, from the end.
            for (let i = entries.length - 1; i > 0; i -= 2)
              if (onEntry(entries[i]!, entries[i - 1]!) === false) return finish();
          } catch (thrown) {
            failure = thrown;
            return finish();
          }
          if (finished) return finish();
          batch();
        });
      batch();
    });
    if (failure !== undefined) throw failure;
  }

  /** Deletes every key in `range`; not atomic and not synced (for garbage only). */
  clear(range: RangeOptions): Promise<void> {
    return this.call<void>(`clear in ${this.location}`, (done) => this.raw.clear(range, done));
  }

  /** Waits for operations in flight, then closes; idempotent. Throws `StorageFatalError`. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.busy > 0) await new Promise<void>((resolve) => this.drained.push(resolve));
      if (this.raw.status !== 'open') return;
      await new Promise<void>((resolve, reject) => {
        this.raw.close((err) => (err ? reject(storageFatal(`close ${this.location}`, err)) : resolve()));
      });
    })();
    return this.closing;
  }
}

/**
 * Replaces `path` with `data` so that a crash leaves either the old or the new content: write a
 * temporary file, fsync it, rename it over `path`, fsync the directory. Throws `StorageFatalError`.
 */
export async function writeFileAtomic(path: string, data: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp`;
  try {
    const fh = await openFile(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    await syncDir(dirname(path));
  } catch (err) {
    throw storageFatal(`cannot write ${path}`, err);
  }
}

/** Fsyncs a directory so that renames and new entries in it survive a power loss. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await openFile(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Removes a directory tree; throws `StorageFatalError`. */
export async function removeDir(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
  } catch (err) {
    throw storageFatal(`cannot remove ${dir}`, err);
  }
}
