/**
 * The conformance suite every `LogStore` passes (`MemoryLogStore` and `RocksLogStore`): one test
 * per contract of `storage/log/types.ts`, run against a harness that opens and restarts a store.
 */
import type { ExecutionContext, TestFn } from 'ava';
import type { Entry, SnapshotMeta } from '../../machines/raft/index.ts';
import { IdentityMismatchError, StorageFatalError } from '../errors.ts';
import { plain } from '../test-util.ts';
import type { LogStore } from './types.ts';

export interface LogHarness<S extends LogStore> {
  /** A new empty store, cleaned up when the test ends. */
  open(t: ExecutionContext): Promise<S>;
  /** Closes `store` and opens its medium again: the new store holds what was durable. */
  restart(t: ExecutionContext, store: S): Promise<S>;
  /** Makes the next synced write of `store` fail with an I/O error. */
  breakMedium(store: S): Promise<void>;
}

const config = { voters: ['a', 'b', 'c'], learners: [] };

/** Entries `[lo, hi)` of one term, with data derived from the index. */
export function run(lo: number, hi: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = lo; i < hi; i++)
    out.push({ index: i, term, type: 'normal', data: { i, bytes: new Uint8Array([i & 255]) } });
  return out;
}

const all = (s: LogStore) => plain(s.entries(s.firstIndex(), s.lastIndex() + 1));

export function logConformance<S extends LogStore>(test: TestFn, name: string, h: LogHarness<S>): void {
  const it = (title: string, body: (t: ExecutionContext) => Promise<void>) => test(`${name}: ${title}`, body);

  it('a new store is empty', async (t) => {
    const s = await h.open(t);
    t.is(s.firstIndex(), 1);
    t.is(s.lastIndex(), 0);
    t.is(s.term(0), 0);
    t.is(s.term(1), undefined);
    t.deepEqual(s.entries(1, 1), []);
    t.deepEqual(s.hardState(), { term: 0, vote: null, commit: 0 });
    t.is(s.snapshot(), null);
    t.is(s.identity(), null);
    t.deepEqual(await s.load(), {
      hardState: { term: 0, vote: null, commit: 0 },
      snapshot: null,
      entries: [],
    });
  });

  it('write persists entries and hard state; the mirror shows them only once durable', async (t) => {
    const s = await h.open(t);
    const entries = run(1, 4, 1);
    const done = s.write({ hardState: { term: 1, vote: 'a', commit: 0 }, entries });
    t.is(s.lastIndex(), 0, 'not visible before the write is durable');
    await done;
    t.is(s.lastIndex(), 3);
    t.is(s.term(3), 1);
    t.deepEqual(plain(s.entries(1, 4)), plain(entries));
    t.deepEqual(s.hardState(), { term: 1, vote: 'a', commit: 0 });
    const r = await h.restart(t, s);
    t.deepEqual(all(r), plain(entries));
    t.deepEqual(r.hardState(), { term: 1, vote: 'a', commit: 0 });
    const loaded = await r.load();
    t.deepEqual(plain(loaded.entries), plain(entries));
  });

  it('every entry type and data shape round-trips', async (t) => {
    const s = await h.open(t);
    const entries: Entry[] = [
      { index: 1, term: 1, type: 'noop' },
      { index: 2, term: 1, type: 'config', config },
      { index: 3, term: 2, type: 'normal', data: new Uint8Array([0, 1, 2, 255]) },
      { index: 4, term: 2, type: 'normal', data: { op: 'put', nested: [1, 'two', null, { x: 2 ** 40 }] } },
      { index: 5, term: 2, type: 'normal', data: null },
    ];
    await s.write({ entries });
    const r = await h.restart(t, s);
    t.deepEqual(all(r), plain(entries));
  });

  it('a write replaces the conflicting suffix from its first index', async (t) => {
    const s = await h.open(t);
    await s.write({ entries: run(1, 6, 1) });
    await s.write({ entries: run(3, 5, 2) });
    t.is(s.lastIndex(), 4);
    t.deepEqual(
      [1, 2, 3, 4, 5].map((i) => s.term(i)),
      [1, 1, 2, 2, undefined],
    );
    const r = await h.restart(t, s);
    t.is(r.lastIndex(), 4);
    t.deepEqual(all(r), plain([...run(1, 3, 1), ...run(3, 5, 2)]));
  });

  it('a hard state alone is durable', async (t) => {
    const s = await h.open(t);
    await s.write({ hardState: { term: 7, vote: null, commit: 0 }, entries: [] });
    await s.write({ hardState: { term: 8, vote: 'b', commit: 0 }, entries: [] });
    const r = await h.restart(t, s);
    t.deepEqual(r.hardState(), { term: 8, vote: 'b', commit: 0 });
    t.is(r.lastIndex(), 0);
  });

  it('calls resolve in call order', async (t) => {
    const s = await h.open(t);
    const order: number[] = [];
    const calls: Promise<void>[] = [];
    for (let i = 1; i <= 20; i++) {
      calls.push(s.write({ entries: run(i, i + 1, 1) }).then(() => void order.push(i)));
      if (i === 10) calls.push(s.compact({ index: 5, term: 1, config }).then(() => void order.push(100)));
    }
    await Promise.all(calls);
    t.deepEqual(order, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
  });

  it('group commit: calls made while a batch is in flight go out as one synced batch', async (t) => {
    const s = await h.open(t);
    const before = s.stats();
    const first = s.write({ entries: run(1, 2, 1) });
    const rest = [2, 3, 4, 5].map((i) => s.write({ entries: run(i, i + 1, 1) }));
    rest.push(s.write({ hardState: { term: 1, vote: 'a', commit: 1 }, entries: [] }));
    await Promise.all([first, ...rest]);
    const after = s.stats();
    t.is(after.batches - before.batches, 2);
    t.is(after.writes - before.writes, 6);
    t.is(s.lastIndex(), 5);
  });

  it('validation counts calls not yet durable', async (t) => {
    const s = await h.open(t);
    const a = s.write({ entries: run(1, 4, 1) });
    const b = s.write({ entries: run(4, 6, 1) });
    await Promise.all([a, b]);
    t.is(s.lastIndex(), 5);
  });

  it('programmer mistakes reject with TypeError and change nothing', async (t) => {
    const s = await h.open(t);
    await s.write({ hardState: { term: 3, vote: null, commit: 0 }, entries: run(1, 4, 2) });
    await t.throwsAsync(s.write({ entries: run(6, 7, 2) }), { instanceOf: TypeError }, 'gap');
    await t.throwsAsync(
      s.write({ entries: [...run(4, 5, 2), ...run(6, 7, 2)] }),
      { instanceOf: TypeError },
      'hole',
    );
    await t.throwsAsync(s.write({ entries: run(4, 5, 1) }), { instanceOf: TypeError }, 'term decreases');
    await t.throwsAsync(s.write({ hardState: { term: 2, vote: null, commit: 0 }, entries: [] }), {
      instanceOf: TypeError,
    });
    await t.throwsAsync(s.write({ hardState: { term: -1, vote: null, commit: 0 }, entries: [] }), {
      instanceOf: TypeError,
    });
    await t.throwsAsync(s.write({ entries: [{ index: 4, term: 2, type: 'normal', data: () => 1 }] }), {
      instanceOf: TypeError,
    });
    await s.compact({ index: 2, term: 2, config });
    await t.throwsAsync(s.write({ entries: run(2, 3, 2) }), { instanceOf: TypeError }, 'before firstIndex');
    t.is(s.lastIndex(), 3);
    t.deepEqual(s.hardState(), { term: 3, vote: null, commit: 0 });
  });

  it('entries() outside [firstIndex, lastIndex + 1] throws RangeError', async (t) => {
    const s = await h.open(t);
    await s.write({ entries: run(1, 6, 1) });
    await s.compact({ index: 2, term: 1, config });
    t.throws(() => s.entries(2, 4), { instanceOf: RangeError });
    t.throws(() => s.entries(3, 7), { instanceOf: RangeError });
    t.throws(() => s.entries(4, 3), { instanceOf: RangeError });
    t.deepEqual(
      s.entries(3, 6).map((e) => e.index),
      [3, 4, 5],
    );
    t.deepEqual(s.entries(6, 6), []);
  });

  it('compact keeps the entries after a snapshot that matches the log (§7)', async (t) => {
    const s = await h.open(t);
    await s.write({ entries: run(1, 11, 1) });
    const meta: SnapshotMeta = { index: 5, term: 1, config };
    await s.compact(meta);
    t.is(s.firstIndex(), 6);
    t.is(s.lastIndex(), 10);
    t.is(s.term(5), 1, 'term(firstIndex - 1) is the snapshot term');
    t.is(s.term(4), undefined);
    t.deepEqual(s.snapshot(), meta);
    const r = await h.restart(t, s);
    t.deepEqual(r.snapshot(), meta);
    t.is(r.firstIndex(), 6);
    t.deepEqual(all(r), plain(run(6, 11, 1)));
    const loaded = await r.load();
    t.deepEqual(loaded.snapshot, meta);
    t.is(loaded.entries.length, 5);
    await r.write({ entries: run(11, 12, 1) });
    t.is(r.lastIndex(), 11);
  });

  it('compact drops the whole log when the snapshot disagrees with it (§7)', async (t) => {
    const s = await h.open(t);
    await s.write({ entries: run(1, 11, 1) });
    await s.compact({ index: 5, term: 3, config });
    t.is(s.firstIndex(), 6);
    t.is(s.lastIndex(), 5);
    t.is(s.term(5), 3);
    const r = await h.restart(t, s);
    t.is(r.lastIndex(), 5);
    t.is(r.term(5), 3);
    await r.write({ entries: run(6, 8, 3) });
    t.is(r.lastIndex(), 7);
  });

  it('compact beyond the log drops it all; a stale compact is a no-op', async (t) => {
    const s = await h.open(t);
    await s.write({ entries: run(1, 4, 1) });
    await s.compact({ index: 20, term: 2, config });
    t.is(s.firstIndex(), 21);
    t.is(s.lastIndex(), 20);
    t.is(s.term(20), 2);
    await s.compact({ index: 10, term: 2, config });
    t.is(s.snapshot()?.index, 20);
    const r = await h.restart(t, s);
    t.is(r.firstIndex(), 21);
    t.deepEqual(await r.load(), {
      hardState: r.hardState(),
      snapshot: { index: 20, term: 2, config },
      entries: [],
    });
  });

  it('identity is recorded once, kept across restarts and checked', async (t) => {
    const s = await h.open(t);
    const id = await s.initIdentity({ clusterId: 'c1', nodeId: 'n1' });
    t.regex(id.incarnation, /^[0-9a-f]{16}$/);
    t.deepEqual(await s.initIdentity({ clusterId: 'c1', nodeId: 'n1' }), id);
    const r = await h.restart(t, s);
    t.deepEqual(r.identity(), id);
    t.deepEqual(await r.initIdentity({ clusterId: 'c1', nodeId: 'n1' }), id);
    await t.throwsAsync(r.initIdentity({ clusterId: 'c2', nodeId: 'n1' }), {
      instanceOf: IdentityMismatchError,
    });
    await t.throwsAsync(r.initIdentity({ clusterId: 'c1', nodeId: 'n2' }), {
      instanceOf: IdentityMismatchError,
    });
    await t.throwsAsync(r.initIdentity({ clusterId: '', nodeId: 'n2' }), { instanceOf: TypeError });
  });

  it('calls after close reject with STORAGE_FATAL', async (t) => {
    const s = await h.open(t);
    await s.write({ entries: run(1, 2, 1) });
    await s.close();
    await s.close();
    const err = await t.throwsAsync(s.write({ entries: run(2, 3, 1) }), { instanceOf: StorageFatalError });
    t.is(err?.code, 'STORAGE_FATAL');
    await t.throwsAsync(s.compact({ index: 1, term: 1, config }), { instanceOf: StorageFatalError });
  });

  it('an I/O failure fails the write, everything queued and every later call', async (t) => {
    const s = await h.open(t);
    await s.write({ entries: run(1, 3, 1) });
    await h.breakMedium(s);
    const a = s.write({ entries: run(3, 4, 1) });
    const b = s.write({ entries: run(4, 5, 1) });
    await t.throwsAsync(a, { instanceOf: StorageFatalError });
    await t.throwsAsync(b, { instanceOf: StorageFatalError });
    await t.throwsAsync(s.write({ hardState: { term: 5, vote: null, commit: 0 }, entries: [] }), {
      instanceOf: StorageFatalError,
    });
    t.is(s.lastIndex(), 2, 'the mirror keeps only what was durable');
  });
}
