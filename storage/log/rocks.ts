/**
 * The log store on RocksDB. Every batch is written with `sync: true` (the WAL is fsynced before
 * the promise resolves). Entries dropped by compaction are deleted lazily after the snapshot meta
 * is durable; a restart skips (and deletes) whatever such deletion left behind.
 */
import type { Entry, HardState, SnapshotMeta } from '../../machines/raft/index.ts';
import { readIndexKey } from '../codec.ts';
import { CorruptedError } from '../errors.ts';
import { type BatchOp, RocksDb } from '../rocks/db.ts';
import { type Batch, GroupCommitLog } from './base.ts';
import { initialHardState, LogMirror } from './mirror.ts';
import {
  decodeEntry,
  decodeHardState,
  decodeIdentity,
  decodeSnapshotMeta,
  ENTRY_TAG,
  encodeHardState,
  encodeIdentity,
  encodeSnapshotMeta,
  entryKey,
  HARD_KEY,
  IDENTITY_KEY,
  SNAPSHOT_KEY,
} from './records.ts';
import type { NodeIdentity } from './types.ts';

const ENTRIES_END = Buffer.from([ENTRY_TAG + 1]);

export class RocksLogStore extends GroupCommitLog {
  /** Deletions of compacted entries, one after another; a failure fails the store. */
  private garbage: Promise<void> = Promise.resolve();

  private constructor(
    readonly db: RocksDb,
    durable: LogMirror,
  ) {
    super(durable);
  }

  /**
   * Opens the store in directory `dir` (created if missing) and loads it.
   * Throws `StorageFatalError` on I/O failure, `CorruptedError` for an undecodable record or a
   * log with a gap.
   */
  static async open(dir: string): Promise<RocksLogStore> {
    const db = await RocksDb.open(dir);
    try {
      const mirror = await readAll(db);
      const store = new RocksLogStore(db, mirror);
      const snap = mirror.snapshot();
      if (snap !== null) store.collect(snap.index);
      return store;
    } catch (err) {
      await db.close().catch(() => {});
      throw err;
    }
  }

  protected persist(batch: Batch): Promise<void> {
    const ops: BatchOp[] = [];
    batch.ops.forEach((op, n) => {
      switch (op.kind) {
        case 'write': {
          const encoded = batch.encoded[n] ?? [];
          op.entries.forEach((e, k) => {
            ops.push({ type: 'put', key: entryKey(e.index), value: encoded[k]! });
          });
          for (let i = op.dropFrom; i <= op.dropTo; i++) ops.push({ type: 'del', key: entryKey(i) });
          if (op.hardState !== undefined) {
            ops.push({ type: 'put', key: HARD_KEY, value: encodeHardState(op.hardState) });
          }
          return;
        }
        case 'compact':
          ops.push({ type: 'put', key: SNAPSHOT_KEY, value: encodeSnapshotMeta(op.meta) });
          if (op.dropAll) {
            for (let i = op.meta.index + 1; i <= op.dropTo; i++) ops.push({ type: 'del', key: entryKey(i) });
          }
          return;
        case 'identity':
          ops.push({ type: 'put', key: IDENTITY_KEY, value: encodeIdentity(op.identity) });
          return;
      }
    });
    return this.db.batch(ops, true);
  }

  protected override afterDurable(batch: Batch): void {
    for (const op of batch.ops) if (op.kind === 'compact') this.collect(op.meta.index);
  }

  protected async closeMedium(): Promise<void> {
    await this.garbage.catch(() => {});
    await this.db.close();
  }

  /** Deletes entries `<= upTo` in the background (unsynced: they are garbage once compacted). */
  private collect(upTo: number): void {
    this.garbage = this.garbage
      .then(() => this.db.clear({ gte: entryKey(0), lte: entryKey(upTo) }))
      .catch((err: unknown) => {
        this.fail(err);
      });
  }
}

async function readAll(db: RocksDb): Promise<LogMirror> {
  const [hardBytes, snapBytes, identityBytes] = await Promise.all([
    db.get(HARD_KEY),
    db.get(SNAPSHOT_KEY),
    db.get(IDENTITY_KEY),
  ]);
  const hardState: HardState = hardBytes === undefined ? initialHardState : decodeHardState(hardBytes);
  const snapshot: SnapshotMeta | null = snapBytes === undefined ? null : decodeSnapshotMeta(snapBytes);
  const identity: NodeIdentity | null = identityBytes === undefined ? null : decodeIdentity(identityBytes);
  const entries: Entry[] = [];
  let expected = (snapshot?.index ?? 0) + 1;
  await db.scan({ gt: entryKey(expected - 1), lt: ENTRIES_END }, (key, value) => {
    const index = readIndexKey(key, ENTRY_TAG);
    if (index !== expected) {
      throw new CorruptedError(`log has a gap: found entry ${index} where ${expected} was expected`);
    }
    entries.push(decodeEntry(value, index));
    expected++;
    return undefined;
  });
  return LogMirror.from({ hardState, snapshot, entries, identity });
}
