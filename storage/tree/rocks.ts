/**
 * The key tree on RocksDB. Reads are served from memory (the same structures as `MemoryTree`);
 * RocksDB is the durable copy, loaded on open.
 *
 * Each apply's changes go into a pending batch together with the applied index (`meta`); the
 * batch is written unsynced as soon as the previous one is done (the synced Raft log already
 * makes them durable: after a crash, applies replay from the log and are idempotent by index).
 * `sync()` writes with `sync: true`, before the Raft log is compacted.
 *
 * Layout of directory `dir`: `CURRENT` names the generation in force (`[v, gen]`); `gen-<n>/` is
 * a RocksDB database. A restore fills `gen-<n+1>/`, syncs it, then atomically replaces `CURRENT`:
 * a crash leaves the old generation or the new one in force, and open deletes the other.
 *
 * Records (values `[v, ...]`): `k` + path → kv; `h` + revision + n → event; `s` + id → session;
 * `r` + id + 0 + seq → answer; `c` + parent → next sequence number; `m` `meta` → applied index,
 * revision, compaction revision, raft meta.
 */
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ApiLimits, KeyValue } from '../../protocol/index.ts';
import {
  check,
  decodeRecord,
  encodeRecord,
  indexKey,
  isIndex,
  readIndexKey,
  readStringKey,
  stringKey,
  yieldToEventLoop,
} from '../codec.ts';
import { CorruptedError, StorageFatalError, storageFatal } from '../errors.ts';
import { type ChainedBatch, RocksDb, removeDir, writeFileAtomic } from '../rocks/db.ts';
import { BaseTree, type Change } from './base.ts';
import {
  emptyData,
  grantRecords,
  keysFrom,
  linkEphemerals,
  metaOf,
  newSession,
  setGrant,
  type TreeData,
  type TreeMeta,
} from './data.ts';
import {
  ensure,
  eventFields,
  kvFields,
  metaFields,
  outcomeFields,
  permFields,
  readEvent,
  readKv,
  readMeta,
  readOutcome,
  readPerm,
  readSession,
  sessionFields,
} from './records.ts';

const KEY = 0x6b; // k
const EVENT = 0x68; // h
const SESSION = 0x73; // s
const RESULT = 0x72; // r
const COUNTER = 0x63; // c
const GRANT = 0x67; // g
const CREATOR = 0x75; // u
const META_KEY = stringKey(0x6d, 'meta');
/** Records written between yields to the event loop. */
const SLICE = 4096;

const keyKey = (path: string): Buffer => stringKey(KEY, path);
const sessionKey = (id: string): Buffer => stringKey(SESSION, id);
const counterKey = (parent: string): Buffer => stringKey(COUNTER, parent);
const creatorKey = (key: string): Buffer => stringKey(CREATOR, key);
/** A grant's key: user, a zero byte (never in a user name), prefix. */
const grantKey = (user: string, prefix: string): Buffer => stringKey(GRANT, `${user}\u0000${prefix}`);

function eventKey(revision: number, n: number): Buffer {
  const k = Buffer.allocUnsafe(13);
  indexKey(EVENT, revision).copy(k, 0);
  k.writeUInt32BE(n, 9);
  return k;
}

function resultKey(session: string, seq: number): Buffer {
  const id = Buffer.from(session, 'utf8');
  return Buffer.concat([Buffer.from([RESULT]), id, Buffer.from([0]), indexKey(0, seq).subarray(1)]);
}

const encodeMeta = (m: TreeMeta): Buffer => encodeRecord(...metaFields(m));

function fieldsOf(bytes: Uint8Array, what: string): unknown {
  return decodeRecord(bytes, 2, what)[1];
}

const range = (tag: number) => ({ gte: Buffer.from([tag]), lt: Buffer.from([tag + 1]) });

export interface RocksTreeOptions {
  readonly limits?: Partial<ApiLimits>;
  /**
   * Gather applied changes this long before writing them (unsynced), default
   * `DEFAULT_TREE_WRITE_DELAY_MS`; 0 writes each as soon as the previous write is done. Fewer,
   * larger writes cost less CPU, and fewer of the log's fsyncs find the tree's WAL data to flush
   * with them (ext4 data=ordered commits every file's dirty data of the transaction). Nothing
   * acknowledged depends on these writes: after a crash, applies replay from the synced log.
   */
  readonly writeDelayMs?: number;
}

export const DEFAULT_TREE_WRITE_DELAY_MS = 0;
/** A gathered batch this large is written at once, whatever the delay. */
const MAX_GATHERED = 20_000;

export class RocksTree extends BaseTree {
  private batch: ChainedBatch | null = null;
  /** A change is being put into `batch` (possibly across yields): do not write it yet. */
  private recording = false;
  private writing: Promise<void> | null = null;
  private lastMeta: TreeMeta;
  private pendingCompact: number | null = null;
  private garbage: Promise<void> = Promise.resolve();
  private gathered = 0;
  private delayTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly writeDelayMs: number;

  private constructor(
    readonly dir: string,
    private db: RocksDb,
    private gen: number,
    data: TreeData,
    options: RocksTreeOptions,
  ) {
    super(data, options.limits);
    this.lastMeta = metaOf(data);
    this.writeDelayMs = options.writeDelayMs ?? DEFAULT_TREE_WRITE_DELAY_MS;
  }

  /**
   * Opens (creating if needed) the tree in directory `dir` and loads it into memory. Throws
   * `StorageFatalError` on I/O failure, `CorruptedError` for a record that does not decode or
   * does not fit the others.
   */
  static async open(dir: string, options: RocksTreeOptions = {}): Promise<RocksTree> {
    const pointer = join(dir, 'CURRENT');
    let gen = 1;
    let fresh = false;
    try {
      await mkdir(dir, { recursive: true });
      const bytes = await readFile(pointer).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return null;
        throw err;
      });
      if (bytes === null) fresh = true;
      else {
        const [, g] = decodeRecord(bytes, 2, 'tree pointer');
        check(isIndex(g) && g >= 1, 'tree pointer');
        gen = g;
      }
      for (const name of await readdir(dir)) {
        if ((/^gen-\d+$/.test(name) && name !== `gen-${gen}`) || name === 'CURRENT.tmp') {
          await removeDir(join(dir, name));
        }
      }
    } catch (err) {
      if (err instanceof CorruptedError) throw err;
      throw storageFatal(`cannot open tree in ${dir}`, err);
    }
    const db = await RocksDb.open(join(dir, `gen-${gen}`));
    try {
      if (fresh) await writeFileAtomic(pointer, encodeRecord(gen));
      const data = await load(db);
      const tree = new RocksTree(dir, db, gen, data, options);
      if (data.compactRevision > 0) tree.collect(data.compactRevision);
      return tree;
    } catch (err) {
      await db.close().catch(() => {});
      throw err;
    }
  }

  /** Puts a change into the pending batch: at once when small, else yielding every `SLICE`. */
  protected record(change: Change): void | Promise<void> {
    if (this.failure) throw this.failure;
    const size =
      change.keys.size +
      change.events.length +
      change.sessions.length +
      change.results.length +
      change.counters.length +
      change.creators.length +
      change.grants.length;
    if (size >= SLICE) return this.recordSliced(change);
    try {
      const puts = this.puts(change);
      while (!puts.next().done) {}
    } catch (err) {
      const fatal = err instanceof StorageFatalError ? err : storageFatal('tree write', err);
      this.fail(fatal);
      throw fatal;
    }
    this.kick();
  }

  private async recordSliced(change: Change): Promise<void> {
    this.recording = true;
    try {
      let n = 0;
      for (const _ of this.puts(change)) if (++n % SLICE === 0) await yieldToEventLoop();
    } catch (err) {
      const fatal = err instanceof StorageFatalError ? err : storageFatal('tree write', err);
      this.fail(fatal);
      throw fatal;
    } finally {
      this.recording = false;
    }
    this.kick();
  }

  /** Puts one change into the pending batch, yielding after each key and event record. */
  private *puts(change: Change): Generator<void> {
    const b = (this.batch ??= this.db.chained());
    for (const [key, kv] of change.keys) {
      if (kv === null) b.del(keyKey(key));
      else b.put(keyKey(key), encodeRecord(kvFields(kv)));
      yield;
    }
    for (let i = 0; i < change.events.length; i++) {
      const e = change.events[i]!;
      b.put(eventKey(e.revision, i), encodeRecord(eventFields(e)));
      yield;
    }
    this.putRest(change, b);
  }

  /** Sessions, answers, counters, creators, grants, compaction and meta of one change. */
  private putRest(change: Change, b: ChainedBatch): void {
    for (const [id, s] of change.sessions) {
      if (s === null) b.del(sessionKey(id));
      else b.put(sessionKey(id), encodeRecord(sessionFields(s)));
    }
    for (const [id, seq, o] of change.results) {
      if (o === null) b.del(resultKey(id, seq));
      else b.put(resultKey(id, seq), encodeRecord(outcomeFields(seq, o)));
    }
    for (const [parent, next] of change.counters) b.put(counterKey(parent), encodeRecord(next));
    for (const [key, user] of change.creators) {
      if (user === null) b.del(creatorKey(key));
      else b.put(creatorKey(key), encodeRecord(user));
    }
    for (const [user, prefix, perm] of change.grants) {
      if (perm === null) b.del(grantKey(user, prefix));
      else b.put(grantKey(user, prefix), encodeRecord(permFields(perm)));
    }
    if (change.compactTo !== null) this.pendingCompact = change.compactTo;
    this.lastMeta = change.meta;
    this.gathered += change.keys.size + change.events.length + 1;
  }

  /** Writes the pending batch (unsynced) unless a write is in flight or a change is half in. */
  private kick(): void {
    if (this.writing !== null || this.recording || this.batch === null || this.failure) return;
    if (this.writeDelayMs > 0 && this.gathered < MAX_GATHERED) {
      this.delayTimer ??= setTimeout(() => {
        this.delayTimer = null;
        this.write();
      }, this.writeDelayMs);
      return;
    }
    this.write();
  }

  /** Writes the pending batch now (unsynced). */
  private write(): void {
    if (this.delayTimer !== null) clearTimeout(this.delayTimer);
    this.delayTimer = null;
    if (this.writing !== null || this.recording || this.batch === null || this.failure) return;
    this.gathered = 0;
    const b = this.batch;
    this.batch = null;
    b.put(META_KEY, encodeMeta(this.lastMeta));
    const compactTo = this.pendingCompact;
    this.pendingCompact = null;
    this.writing = this.db.write(b, false).then(
      () => {
        this.writing = null;
        if (compactTo !== null) this.collect(compactTo);
        this.kick();
      },
      (err: unknown) => {
        this.writing = null;
        this.fail(storageFatal('tree write', err));
      },
    );
  }

  /** Waits for the writes in flight, then writes what is pending (with `sync`, even if nothing). */
  private async drain(sync: boolean): Promise<void> {
    while (this.writing !== null) await this.writing;
    if (this.failure) throw this.failure;
    if (this.delayTimer !== null) clearTimeout(this.delayTimer);
    this.delayTimer = null;
    if (this.batch === null && !sync) return;
    const b = this.batch ?? this.db.chained();
    this.batch = null;
    this.gathered = 0;
    b.put(META_KEY, encodeMeta(this.lastMeta));
    const compactTo = this.pendingCompact;
    this.pendingCompact = null;
    try {
      await this.db.write(b, sync);
    } catch (err) {
      this.fail(storageFatal('tree write', err));
      throw this.failure;
    }
    if (compactTo !== null) this.collect(compactTo);
  }

  /** Deletes history at and below `revision` in the background (unsynced: it is garbage). */
  private collect(revision: number): void {
    const db = this.db;
    this.garbage = this.garbage
      .then(() => db.clear({ gte: eventKey(0, 0), lt: eventKey(revision + 1, 0) }))
      .catch((err: unknown) => this.fail(storageFatal('tree history cleanup', err)));
  }

  protected syncMedium(): Promise<void> {
    return this.drain(true);
  }

  protected async persistRestored(data: TreeData): Promise<void> {
    await this.drain(false);
    await this.garbage;
    const gen = this.gen + 1;
    const genDir = join(this.dir, `gen-${gen}`);
    await removeDir(genDir);
    const db = await RocksDb.open(genDir);
    try {
      await writeAll(db, data);
      await writeFileAtomic(join(this.dir, 'CURRENT'), encodeRecord(gen));
    } catch (err) {
      await db.close().catch(() => {});
      await removeDir(genDir).catch(() => {});
      const fatal = err instanceof StorageFatalError ? err : storageFatal('tree restore', err);
      this.fail(fatal);
      throw fatal;
    }
    const old = this.db;
    const oldDir = join(this.dir, `gen-${this.gen}`);
    this.db = db;
    this.gen = gen;
    this.lastMeta = metaOf(data);
    this.garbage = Promise.resolve();
    try {
      await old.close();
      await removeDir(oldDir);
    } catch (err) {
      this.fail(storageFatal('tree restore cleanup', err));
      throw this.failure;
    }
  }

  protected async closeMedium(): Promise<void> {
    if (!this.failure) await this.drain(false).catch(() => {});
    while (this.writing !== null) await this.writing;
    await this.garbage;
    await this.db.close();
  }
}

/** Writes a whole state into an empty database, in batches, the last one synced. */
async function writeAll(db: RocksDb, d: TreeData): Promise<void> {
  let b = db.chained();
  let n = 0;
  const put = async (key: Buffer, value: Buffer) => {
    b.put(key, value);
    if (++n % SLICE === 0) {
      await db.write(b, false);
      b = db.chained();
    }
  };
  for (const [key, kv] of d.keys.entries()) await put(keyKey(key), encodeRecord(kvFields(kv)));
  let prev = -1;
  let i = 0;
  for (const e of d.history) {
    i = e.revision === prev ? i + 1 : 0;
    prev = e.revision;
    await put(eventKey(e.revision, i), encodeRecord(eventFields(e)));
  }
  for (const s of d.sessions.values()) {
    await put(sessionKey(s.id), encodeRecord(sessionFields(s)));
    for (const [seq, o] of s.results) await put(resultKey(s.id, seq), encodeRecord(outcomeFields(seq, o)));
  }
  for (const [parent, next] of d.counters) await put(counterKey(parent), encodeRecord(next));
  for (const [user, prefix, perm] of grantRecords(d))
    await put(grantKey(user, prefix), encodeRecord(permFields(perm)));
  for (const [key, user] of d.creators) await put(creatorKey(key), encodeRecord(user));
  b.put(META_KEY, encodeMeta(metaOf(d)));
  await db.write(b, true);
}

async function load(db: RocksDb): Promise<TreeData> {
  const d = emptyData();
  const metaBytes = await db.get(META_KEY);
  if (metaBytes !== undefined) {
    const what = 'tree meta';
    Object.assign(d, readMeta(decodeRecord(metaBytes, 5, what).slice(1), what));
  }
  const keys: string[] = [];
  const kvs: KeyValue[] = [];
  // Keys as strings straight from the binding (1M keys: a Buffer each costs about 1 s more). The
  // bytes were written from a valid path and RocksDB checksums its blocks.
  await db.scan(
    range(KEY),
    (k: string, v) => {
      const key = k.slice(1);
      const kv = readKv(key, fieldsOf(v, `key ${key}`), `key ${key}`);
      ensure(kv.modRevision <= d.revision, `key ${key}`, 'modified after the revision');
      keys.push(key);
      kvs.push(kv);
      return undefined;
    },
    'string',
  );
  d.keys = keysFrom(keys, kvs);
  let last = d.compactRevision;
  await db.scan({ gte: eventKey(d.compactRevision + 1, 0), lt: Buffer.from([EVENT + 1]) }, (k, v) => {
    const revision = readIndexKey(k.subarray(0, 9), EVENT);
    const f = fieldsOf(v, `event ${revision}`);
    check(Array.isArray(f), `event ${revision}`);
    const e = readEvent(f, `event ${revision}`);
    ensure(
      e.revision === revision && revision >= last && revision <= d.revision,
      `event ${revision}`,
      'out of place',
    );
    d.history.push(e);
    last = revision;
    return undefined;
  });
  await db.scan(range(SESSION), (k, v) => {
    const id = readStringKey(k);
    const f = fieldsOf(v, `session ${id}`);
    check(Array.isArray(f), `session ${id}`);
    const s = readSession(f, `session ${id}`);
    ensure(s.id === id, `session ${id}`, 'stored under another id');
    d.sessions.set(id, newSession(s));
    return undefined;
  });
  await db.scan(range(RESULT), (k, v) => {
    const zero = k.indexOf(0, 1);
    ensure(zero > 0 && k.length === zero + 9, 'answer', 'malformed key');
    const id = k.subarray(1, zero).toString('utf8');
    const f = fieldsOf(v, `answer of ${id}`);
    check(Array.isArray(f), `answer of ${id}`);
    const { seq, outcome } = readOutcome(f, `answer of ${id}`);
    const s = d.sessions.get(id);
    ensure(s !== undefined, `answer of ${id}`, 'unknown session');
    s.results.set(seq, outcome);
    return undefined;
  });
  await db.scan(range(COUNTER), (k, v) => {
    const parent = readStringKey(k);
    const next = fieldsOf(v, `counter ${parent}`);
    check(isIndex(next), `counter ${parent}`);
    d.counters.set(parent, next);
    return undefined;
  });
  await db.scan(range(CREATOR), (k, v) => {
    const key = readStringKey(k);
    const user = fieldsOf(v, `creator of ${key}`);
    check(typeof user === 'string' && user !== '', `creator of ${key}`);
    ensure(d.keys.has(key), `creator of ${key}`, 'the key does not exist');
    d.creators.set(key, user);
    return undefined;
  });
  await db.scan(range(GRANT), (k, v) => {
    const name = readStringKey(k);
    const zero = name.indexOf('\u0000');
    ensure(zero > 0, 'grant', 'malformed key');
    const user = name.slice(0, zero);
    const prefix = name.slice(zero + 1);
    setGrant(d, user, prefix, readPerm(fieldsOf(v, `grant of ${user}`), `grant of ${user}`));
    return undefined;
  });
  linkEphemerals(d);
  return d;
}
