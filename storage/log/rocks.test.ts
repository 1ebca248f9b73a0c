import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { encode, FORMAT_VERSION } from '../codec.ts';
import { CorruptedError, StorageFatalError } from '../errors.ts';
import { RocksDb } from '../rocks/db.ts';
import { tempDir } from '../test-util.ts';
import { logConformance, run } from './conformance.ts';
import { entryKey, HARD_KEY } from './records.ts';
import { RocksLogStore } from './rocks.ts';

const dirs = new WeakMap<RocksLogStore, string>();

logConformance<RocksLogStore>(test, 'RocksLogStore', {
  open: async (t) => {
    const dir = await tempDir(t);
    const s = await RocksLogStore.open(dir);
    dirs.set(s, dir);
    t.teardown(() => s.close());
    return s;
  },
  restart: async (t, s) => {
    const dir = dirs.get(s)!;
    await s.close();
    const r = await RocksLogStore.open(dir);
    dirs.set(r, dir);
    t.teardown(() => r.close());
    return r;
  },
  breakMedium: (s) => s.db.close(),
});

async function withRaw(dir: string, body: (db: RocksDb) => Promise<void>): Promise<void> {
  const db = await RocksDb.open(dir);
  try {
    await body(db);
  } finally {
    await db.close();
  }
}

test('RocksLogStore: an undecodable entry is CORRUPTED on open', async (t) => {
  const dir = await tempDir(t);
  const s = await RocksLogStore.open(dir);
  await s.write({ entries: run(1, 4, 1) });
  await s.close();
  await withRaw(dir, (db) =>
    db.batch([{ type: 'put', key: entryKey(2), value: Buffer.from([0xff, 0x00]) }], true),
  );
  const err = await t.throwsAsync(RocksLogStore.open(dir), { instanceOf: CorruptedError });
  t.is(err?.code, 'CORRUPTED');
});

test('RocksLogStore: an entry stored under another index is CORRUPTED', async (t) => {
  const dir = await tempDir(t);
  const s = await RocksLogStore.open(dir);
  await s.write({ entries: run(1, 4, 1) });
  await s.close();
  const wrong = encode([FORMAT_VERSION, 7, 1, 1, null]);
  await withRaw(dir, (db) => db.batch([{ type: 'put', key: entryKey(2), value: wrong }], true));
  await t.throwsAsync(RocksLogStore.open(dir), { instanceOf: CorruptedError, message: /index 7/ });
});

test('RocksLogStore: a gap in the log is CORRUPTED, not skipped', async (t) => {
  const dir = await tempDir(t);
  const s = await RocksLogStore.open(dir);
  await s.write({ entries: run(1, 5, 1) });
  await s.close();
  await withRaw(dir, (db) => db.batch([{ type: 'del', key: entryKey(3) }], true));
  await t.throwsAsync(RocksLogStore.open(dir), { instanceOf: CorruptedError, message: /gap/ });
});

test('RocksLogStore: a record of an unknown format version is CORRUPTED', async (t) => {
  const dir = await tempDir(t);
  await withRaw(dir, (db) =>
    db.batch([{ type: 'put', key: HARD_KEY, value: encode([99, 1, null, 0]) }], true),
  );
  await t.throwsAsync(RocksLogStore.open(dir), { instanceOf: CorruptedError, message: /format version 99/ });
});

test('RocksLogStore: an unusable directory is STORAGE_FATAL', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'a-file');
  await writeFile(file, 'not a directory');
  const err = await t.throwsAsync(RocksLogStore.open(join(file, 'log')), { instanceOf: StorageFatalError });
  t.truthy(err?.cause);
});

test('RocksLogStore: compacted entries are deleted from disk', async (t) => {
  const dir = await tempDir(t);
  const s = await RocksLogStore.open(dir);
  await s.write({ entries: run(1, 101, 1) });
  await s.compact({ index: 90, term: 1, config: { voters: ['a'], learners: [] } });
  await s.close();
  const keys: number[] = [];
  await withRaw(dir, (db) =>
    db.scan({ gte: entryKey(0), lte: entryKey(1000) }, (k) => {
      keys.push(k.readUInt32BE(5));
      return undefined;
    }),
  );
  t.deepEqual(keys, [91, 92, 93, 94, 95, 96, 97, 98, 99, 100]);
});
