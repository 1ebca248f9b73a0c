/**
 * The conformance suite every `KeyTree` passes (`MemoryTree` and `RocksTree`), one test per
 * contract of `storage/tree/types.ts`, against a harness that opens and restarts a tree.
 */
import type { ExecutionContext, TestFn } from 'ava';
import type { Command } from '../../protocol/index.ts';
import { encode } from '../codec.ts';
import type { ApplyOutcome, CommandResult, KeyTree, TreeSnapshot } from './types.ts';

export interface TreeHarness<T extends KeyTree> {
  /** A new empty tree, closed and cleaned up when the test ends. */
  open(t: ExecutionContext): Promise<T>;
  /** A tree holding what `tree` left durable after `sync()` (close and reopen, or crash). */
  restart(t: ExecutionContext, tree: T): Promise<T>;
}

export const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
export const text = (b: Uint8Array | null | undefined): string | null =>
  b === null || b === undefined ? null : new TextDecoder().decode(b);

/** Applies commands at consecutive log indexes. */
export class Driver {
  index: number;
  constructor(
    readonly tree: KeyTree,
    index = tree.appliedIndex,
  ) {
    this.index = index;
  }
  async run(cmd: Command | Uint8Array | unknown): Promise<ApplyOutcome> {
    const out = await this.tree.apply(++this.index, cmd);
    if (out === null) throw new Error(`index ${this.index} was already applied`);
    return out;
  }
  async ok(cmd: Command): Promise<CommandResult & { revision: number }> {
    const out = await this.run(cmd);
    if (!out.ok) throw new Error(`${cmd.op} failed: ${out.error.code} ${out.error.message}`);
    return { ...out.result, revision: out.revision };
  }
  async code(cmd: unknown): Promise<string> {
    const out = await this.run(cmd);
    return out.ok ? 'OK' : out.error.code;
  }
  put(key: string, value: string, extra: Partial<Command> = {}) {
    return this.ok({ op: 'put', key, value: bytes(value), ...extra } as Command);
  }
}

export async function dumpOf(snap: TreeSnapshot): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of snap) parts.push(c);
  return Buffer.concat(parts);
}

const client = (session: string, seq: number, lowSeq = seq) => ({ session, seq, lowSeq });

export function treeConformance<T extends KeyTree>(test: TestFn, name: string, h: TreeHarness<T>): void {
  const it = (title: string, body: (t: ExecutionContext) => Promise<void>) => test(`${name}: ${title}`, body);

  it('put and get: version, createRevision, modRevision and the global revision', async (t) => {
    const d = new Driver(await h.open(t));
    t.is(d.tree.revision, 0);
    t.is(d.tree.get('/a'), null);
    const r1 = await d.put('/a', 'one');
    t.is(r1.revision, 1);
    const r2 = await d.put('/b', 'two');
    const r3 = await d.put('/a', 'uno');
    t.is(r3.revision, 3);
    const a = d.tree.get('/a');
    t.like(a, { key: '/a', version: 2, createRevision: 1, modRevision: 3, session: null });
    t.is(text(a?.value), 'uno');
    t.like(d.tree.get('/b'), { version: 1, createRevision: 2, modRevision: r2.revision });
    t.is(d.tree.revision, 3);
    t.is(d.tree.appliedIndex, 3);
  });

  it('parents are implicit; listChildren names keys and implied folders in order', async (t) => {
    const d = new Driver(await h.open(t));
    for (const k of ['/a/b', '/a/b-x', '/a/b/c/d', '/a/c', '/z', '/a/b/e']) await d.put(k, k);
    t.is(d.tree.get('/a'), null, 'no parent key was made');
    t.deepEqual(d.tree.listChildren('/a').names, ['b', 'b-x', 'c']);
    t.deepEqual(d.tree.listChildren('/').names, ['a', 'z']);
    t.deepEqual(d.tree.listChildren('/a/b').names, ['c', 'e']);
    t.deepEqual(d.tree.listChildren('/nothing').names, []);
    const page1 = d.tree.listChildren('/a', { limit: 2 });
    t.deepEqual(page1, { names: ['b', 'b-x'], more: true, revision: 6 });
    const page2 = d.tree.listChildren('/a', { limit: 2, after: 'b-x' });
    t.deepEqual(page2, { names: ['c'], more: false, revision: 6 });
  });

  it('range by raw prefix, in path order, with limit and continuation', async (t) => {
    const d = new Driver(await h.open(t));
    for (const k of ['/a/bz', '/a/b/c', '/a/b', '/a/b-x', '/a/a', '/b']) await d.put(k, k);
    const keys = (r: { kvs: { key: string }[] }) => r.kvs.map((kv) => kv.key);
    t.deepEqual(keys(d.tree.range('/a/b')), ['/a/b', '/a/b/c', '/a/b-x', '/a/bz']);
    t.deepEqual(keys(d.tree.range('/a/b/')), ['/a/b/c']);
    t.deepEqual(keys(d.tree.range('/')), ['/a/a', '/a/b', '/a/b/c', '/a/b-x', '/a/bz', '/b']);
    const p1 = d.tree.range('/a', { limit: 2 });
    t.deepEqual(keys(p1), ['/a/a', '/a/b']);
    t.true(p1.more);
    const p2 = d.tree.range('/a', { limit: 2, after: '/a/b' });
    t.deepEqual(keys(p2), ['/a/b/c', '/a/b-x']);
    const p3 = d.tree.range('/a', { limit: 2, after: '/a/b-x' });
    t.deepEqual(keys(p3), ['/a/bz']);
    t.false(p3.more);
  });

  it('invalid paths are BAD_PATH or TOO_LARGE outcomes that consume no revision', async (t) => {
    const d = new Driver(await h.open(t));
    await d.put('/ok', 'x');
    for (const key of [
      'a',
      '/a/',
      '//a',
      '/a//b',
      '/a/./b',
      '/a/../b',
      '/',
      '/a\u0000b',
      '/a\nb',
      '/\ud800',
    ]) {
      t.is(await d.code({ op: 'put', key, value: bytes('v') }), 'BAD_PATH', JSON.stringify(key));
    }
    t.is(await d.code({ op: 'put', key: `/${'k'.repeat(5000)}`, value: bytes('v') }), 'TOO_LARGE');
    t.is(d.tree.revision, 1);
    t.is(d.tree.appliedIndex, d.index, 'the applied index advances on errors');
    t.throws(() => d.tree.get('no-slash'), { code: 'BAD_PATH' } as never);
    t.throws(() => d.tree.range('x'), { code: 'BAD_PATH' } as never);
  });

  it('put ifAbsent / ifVersion: EXISTS and VERSION_MISMATCH', async (t) => {
    const d = new Driver(await h.open(t));
    await d.ok({ op: 'put', key: '/k', value: bytes('1'), ifAbsent: true });
    t.is(await d.code({ op: 'put', key: '/k', value: bytes('2'), ifAbsent: true }), 'EXISTS');
    const mismatch = await d.run({ op: 'put', key: '/k', value: bytes('2'), ifVersion: 5 });
    t.false(mismatch.ok);
    if (!mismatch.ok) t.like(mismatch.error.toWire(), { code: 'VERSION_MISMATCH', expected: 5, actual: 1 });
    await d.ok({ op: 'put', key: '/k', value: bytes('2'), ifVersion: 1 });
    await d.ok({ op: 'put', key: '/new', value: bytes('n'), ifVersion: 0 });
    t.is(await d.code({ op: 'put', key: '/new', value: bytes('n'), ifVersion: 0 }), 'VERSION_MISMATCH');
    t.is(d.tree.revision, 3);
    t.is(text(d.tree.get('/k')?.value), '2');
  });

  it('delete a key, a missing key, a subtree, everything', async (t) => {
    const d = new Driver(await h.open(t));
    for (const k of ['/a', '/a/b', '/a/b/c', '/a-b', '/x']) await d.put(k, k);
    t.like(await d.ok({ op: 'delete', key: '/nope' }), { deleted: 0, revision: 5 });
    t.is(await d.code({ op: 'delete', key: '/x', ifVersion: 2 }), 'VERSION_MISMATCH');
    t.like(await d.ok({ op: 'delete', key: '/x', ifVersion: 1 }), { deleted: 1, revision: 6 });
    t.like(await d.ok({ op: 'delete', key: '/a', subtree: true }), { deleted: 3, revision: 7 });
    t.deepEqual(
      d.tree.range('/').kvs.map((kv) => kv.key),
      ['/a-b'],
    );
    const events = d.tree.eventsSince(7).events;
    t.deepEqual(
      events.map((e) => [e.type, e.key, e.revision, text(e.prevValue)]),
      [
        ['delete', '/a', 7, '/a'],
        ['delete', '/a/b', 7, '/a/b'],
        ['delete', '/a/b/c', 7, '/a/b/c'],
      ],
    );
    t.like(await d.ok({ op: 'delete', key: '/', subtree: true }), { deleted: 1 });
    t.deepEqual(d.tree.range('/').kvs, []);
    t.is(await d.code({ op: 'delete', key: '/' }), 'BAD_PATH');
  });

  it('createSequential: 10-digit suffix from a per-parent counter, never reused', async (t) => {
    const d = new Driver(await h.open(t));
    const seq = async (prefix: string) => {
      const r = await d.ok({ op: 'createSequential', prefix, value: bytes('') });
      return r.op === 'createSequential' ? r.kv.key : '';
    };
    t.is(await seq('/locks/lock-'), '/locks/lock-0000000000');
    t.is(await seq('/locks/lock-'), '/locks/lock-0000000001');
    t.is(await seq('/locks/other-'), '/locks/other-0000000002', 'the counter belongs to the parent');
    t.is(await seq('/queue/'), '/queue/0000000000');
    await d.ok({ op: 'delete', key: '/locks', subtree: true });
    t.is(await seq('/locks/lock-'), '/locks/lock-0000000003', 'not reused after deletes');
    await d.put('/q/0000000000', 'taken');
    t.is(await seq('/q/'), '/q/0000000001', 'a number taken by a plain put is skipped');
    t.is(await d.code({ op: 'createSequential', prefix: 'bad', value: bytes('') }), 'BAD_PATH');
  });

  it('ephemeral keys: owned by the session, refused without one, nothing below them', async (t) => {
    const d = new Driver(await h.open(t));
    await d.ok({ op: 'sessionOpen', id: 's1', secret: bytes('secret'), ttlMs: 5000 });
    t.is(await d.code({ op: 'put', key: '/e', value: bytes('v'), ephemeral: true }), 'BAD_REQUEST');
    const r = await d.ok({
      op: 'put',
      key: '/svc/e',
      value: bytes('v'),
      ephemeral: true,
      client: client('s1', 1),
    });
    t.like(r, { op: 'put', kv: { session: 's1' } });
    t.is(await d.code({ op: 'put', key: '/svc/e/child', value: bytes('v') }), 'BAD_PATH');
    t.is(await d.code({ op: 'createSequential', prefix: '/svc/e/n-', value: bytes('v') }), 'BAD_PATH');
    await d.put('/dir/child', 'v');
    t.is(
      await d.code({ op: 'put', key: '/dir', value: bytes('v'), ephemeral: true, client: client('s1', 2) }),
      'BAD_PATH',
      'a key with keys below cannot become ephemeral',
    );
    t.is(
      await d.code({ op: 'put', key: '/x', value: bytes('v'), client: client('nobody', 1) }),
      'SESSION_EXPIRED',
    );
    t.like(d.tree.session('s1'), { id: 's1', ttlMs: 5000, ephemeralKeys: 1 });
    await d.put('/svc/e', 'persistent now');
    t.like(d.tree.session('s1'), { ephemeralKeys: 0 }, 'a put without ephemeral detaches the key');
  });

  it('session close and expiry delete its ephemeral keys in one revision', async (t) => {
    const d = new Driver(await h.open(t));
    await d.ok({ op: 'sessionOpen', id: 's1', secret: bytes('a'), ttlMs: 100 });
    await d.ok({ op: 'sessionOpen', id: 's2', secret: bytes('b'), ttlMs: 100 });
    t.is(d.tree.revision, 0, 'opening a session changes no key');
    for (const [k, s, n] of [
      ['/e/1', 's1', 1],
      ['/e/2', 's1', 2],
      ['/e/3', 's2', 1],
    ] as const) {
      await d.ok({ op: 'put', key: k, value: bytes(k), ephemeral: true, client: client(s, n) });
    }
    const expired = await d.ok({ op: 'sessionExpire', id: 's1' });
    t.like(expired, { op: 'sessionExpire', deleted: 2, revision: 4 });
    t.deepEqual(
      d.tree.eventsSince(4).events.map((e) => [e.type, e.key, e.revision]),
      [
        ['delete', '/e/1', 4],
        ['delete', '/e/2', 4],
      ],
    );
    t.is(d.tree.session('s1'), null);
    t.is(await d.code({ op: 'sessionExpire', id: 's1' }), 'SESSION_EXPIRED');
    t.like(await d.ok({ op: 'sessionClose', id: 's2' }), { deleted: 1, revision: 5 });
    t.deepEqual(d.tree.sessions(), []);
    t.deepEqual(d.tree.range('/').kvs, []);
  });

  it('sessionOpen: a retry with the same secret succeeds, another secret is EXISTS', async (t) => {
    const d = new Driver(await h.open(t));
    await d.ok({ op: 'sessionOpen', id: 's', secret: bytes('a'), ttlMs: 100 });
    await d.ok({ op: 'sessionOpen', id: 's', secret: bytes('a'), ttlMs: 100 });
    t.is(await d.code({ op: 'sessionOpen', id: 's', secret: bytes('b'), ttlMs: 100 }), 'EXISTS');
    t.is(await d.code({ op: 'sessionOpen', id: 'bad id', secret: bytes('b'), ttlMs: 100 }), 'BAD_REQUEST');
    t.is(await d.code({ op: 'sessionOpen', id: 't', secret: bytes('b'), ttlMs: 0 }), 'BAD_REQUEST');
  });

  it('txn: compares on every target choose the branch; one revision for all its writes', async (t) => {
    const d = new Driver(await h.open(t));
    await d.put('/k', 'v1');
    await d.put('/k', 'v2');
    const k = d.tree.get('/k')!;
    const yes = [
      { key: '/k', target: 'version', result: 'eq', value: 2 },
      { key: '/k', target: 'modRevision', result: 'eq', value: k.modRevision },
      { key: '/k', target: 'createRevision', result: 'lt', value: 2 },
      { key: '/k', target: 'value', result: 'eq', value: bytes('v2') },
      { key: '/k', target: 'value', result: 'gt', value: bytes('v1') },
      { key: '/k', target: 'exists', result: 'eq', value: true },
      { key: '/none', target: 'exists', result: 'ne', value: true },
      { key: '/none', target: 'version', result: 'eq', value: 0 },
    ] as const;
    for (const c of yes) {
      const r = await d.ok({ op: 'txn', compare: [c], success: [], failure: [] });
      t.true(r.op === 'txn' && r.succeeded, JSON.stringify(c));
    }
    const no = await d.ok({
      op: 'txn',
      compare: [{ key: '/none', target: 'value', result: 'ne', value: bytes('x') }],
      success: [],
      failure: [],
    });
    t.true(no.op === 'txn' && !no.succeeded, 'a value compare with an absent key is false');
    const r = await d.ok({
      op: 'txn',
      compare: [{ key: '/k', target: 'version', result: 'eq', value: 2 }],
      success: [
        { op: 'put', key: '/a', value: bytes('A') },
        { op: 'get', key: '/a' },
        { op: 'delete', key: '/k' },
      ],
      failure: [{ op: 'put', key: '/never', value: bytes('x') }],
    });
    t.is(r.revision, 3);
    t.true(r.op === 'txn' && r.succeeded);
    if (r.op === 'txn') {
      t.like(r.results[0], { op: 'put', kv: { key: '/a', modRevision: 3 } });
      const got = r.results[1];
      t.is(got?.op === 'get' ? text(got.kv?.value) : null, 'A', 'a get sees the puts before it');
      t.like(r.results[2], { op: 'delete', deleted: 1 });
    }
    const e = await d.ok({
      op: 'txn',
      compare: [{ key: '/k', target: 'exists', result: 'eq', value: true }],
      success: [],
      failure: [{ op: 'put', key: '/else', value: bytes('E') }],
    });
    t.true(e.op === 'txn' && !e.succeeded);
    t.is(text(d.tree.get('/else')?.value), 'E');
    t.is(d.tree.get('/never'), null);
  });

  it('txn is atomic: a failing op undoes the ops before it and consumes no revision', async (t) => {
    const d = new Driver(await h.open(t));
    await d.put('/keep', 'k');
    await d.put('/dir/x', 'x');
    const before = d.tree.revision;
    for (const bad of [
      { op: 'put', key: '/keep', value: bytes('v'), ifVersion: 9 },
      { op: 'put', key: '/keep', value: bytes('v'), ifAbsent: true },
    ] as const) {
      const out = await d.run({
        op: 'txn',
        compare: [],
        success: [
          { op: 'put', key: '/keep', value: bytes('changed') },
          { op: 'delete', key: '/dir', subtree: true },
          { op: 'put', key: '/new', value: bytes('n') },
          bad,
        ],
        failure: [],
      });
      t.false(out.ok);
      t.is(out.revision, before);
    }
    t.is(d.tree.revision, before);
    t.is(text(d.tree.get('/keep')?.value), 'k');
    t.not(d.tree.get('/dir/x'), null);
    t.is(d.tree.get('/new'), null);
    t.deepEqual(d.tree.eventsSince(before + 1).events, []);
  });

  it('exactly-once: a retried sequence is answered from the table, not applied again (thesis §6.3)', async (t) => {
    const d = new Driver(await h.open(t));
    await d.ok({ op: 'sessionOpen', id: 's', secret: bytes('x'), ttlMs: 100 });
    const first = await d.run({ op: 'put', key: '/c', value: bytes('1'), client: client('s', 1, 1) });
    const again = await d.run({ op: 'put', key: '/c', value: bytes('1'), client: client('s', 1, 1) });
    t.true(again.replayed);
    t.deepEqual({ ...again, replayed: false }, first);
    t.is(d.tree.get('/c')?.version, 1, 'not applied twice');
    // Errors are answered the same way, even when a retry would now succeed.
    const err = await d.run({
      op: 'put',
      key: '/c',
      value: bytes('x'),
      ifVersion: 7,
      client: client('s', 2, 1),
    });
    await d.put('/c', 'bump');
    await d.put('/c', 'bump');
    await d.put('/c', 'bump');
    await d.put('/c', 'bump');
    await d.put('/c', 'bump');
    const errAgain = await d.run({
      op: 'put',
      key: '/c',
      value: bytes('x'),
      ifVersion: 7,
      client: client('s', 2, 1),
    });
    t.false(err.ok);
    t.false(errAgain.ok);
    t.true(errAgain.replayed);
    t.is(d.tree.get('/c')?.version, 6);
    // Several in flight: 4 and 3 arrive out of order, then the client has seen up to 3.
    await d.run({ op: 'put', key: '/d', value: bytes('4'), client: client('s', 4, 1) });
    await d.run({ op: 'put', key: '/d', value: bytes('3'), client: client('s', 3, 1) });
    t.is(text(d.tree.get('/d')?.value), '3');
    await d.run({ op: 'put', key: '/e', value: bytes('5'), client: client('s', 5, 4) });
    t.is(d.tree.session('s')?.lowSeq, 4);
    t.is(await d.code({ op: 'put', key: '/d', value: bytes('3'), client: client('s', 3, 3) }), 'BAD_REQUEST');
    const four = await d.run({ op: 'put', key: '/d', value: bytes('4'), client: client('s', 4, 4) });
    t.true(four.replayed, 'answers at and above the low mark are kept');
    await d.ok({ op: 'sessionClose', id: 's' });
    t.is(
      await d.code({ op: 'put', key: '/d', value: bytes('4'), client: client('s', 4, 4) }),
      'SESSION_EXPIRED',
      'the table went with the session',
    );
  });

  it('apply is idempotent by log index; gaps are allowed; bad indexes are TypeError', async (t) => {
    const tree = await h.open(t);
    t.truthy(await tree.apply(1, { op: 'put', key: '/a', value: bytes('1') }));
    t.truthy(await tree.apply(5, { op: 'put', key: '/b', value: bytes('2') }));
    t.is(await tree.apply(5, { op: 'put', key: '/c', value: bytes('3') }), null);
    t.is(await tree.apply(2, { op: 'put', key: '/a', value: bytes('again') }), null);
    t.is(tree.appliedIndex, 5);
    t.is(tree.revision, 2);
    t.is(tree.get('/c'), null);
    await t.throwsAsync(tree.apply(0, {}), { instanceOf: TypeError });
    await t.throwsAsync(tree.apply(1.5, {}), { instanceOf: TypeError });
  });

  it('malformed commands are typed outcomes, never a crash', async (t) => {
    const d = new Driver(await h.open(t));
    t.is(await d.code(null), 'BAD_REQUEST');
    t.is(await d.code(42), 'BAD_REQUEST');
    t.is(await d.code([1, 2]), 'BAD_REQUEST');
    t.is(await d.code({ op: 'frobnicate' }), 'UNKNOWN_OP');
    t.is(await d.code({ op: 'put', key: '/a' }), 'BAD_REQUEST');
    t.is(await d.code({ op: 'put', key: '/a', value: 42 }), 'BAD_REQUEST');
    // The requests' rule (protocol/schema.ts): a text value is taken as its UTF-8 bytes.
    t.is(await d.code({ op: 'put', key: '/text', value: 'as text' }), 'OK');
    t.is(await d.code({ op: 'put', key: 7, value: bytes('x') }), 'BAD_REQUEST');
    t.is(await d.code({ op: 'put', key: '/a', value: bytes('x'), ifVersion: -1 }), 'BAD_REQUEST');
    t.is(await d.code({ op: 'put', key: '/a', value: bytes('x'), client: { session: 's' } }), 'BAD_REQUEST');
    t.is(
      await d.code({ op: 'txn', compare: [{ key: '/a', target: 'size', result: 'eq', value: 1 }] }),
      'BAD_REQUEST',
    );
    t.is(await d.code({ op: 'txn', success: [{ op: 'watch', key: '/a' }] }), 'UNKNOWN_OP');
    t.is(await d.code({ op: 'put', key: '/a', value: new Uint8Array(1.5 * 1024 * 1024 + 1) }), 'TOO_LARGE');
    const many = Array.from({ length: 129 }, () => ({ op: 'get', key: '/a' }));
    t.is(await d.code({ op: 'txn', success: many }), 'TOO_LARGE');
    t.is(await d.code(new Uint8Array([0xff, 0x00, 0x13])), 'BAD_REQUEST');
    t.is(await d.code(encode({ op: 'put', key: '/enc', value: bytes('cbor') })), 'OK');
    t.is(text(d.tree.get('/enc')?.value), 'cbor');
    t.is(d.tree.revision, 2, 'only the two well-formed puts changed the tree');
  });

  it('history: eventsSince with filters, a limit cut at a whole revision, COMPACTED below the mark', async (t) => {
    const d = new Driver(await h.open(t));
    await d.put('/a/1', 'x');
    await d.put('/a/1', 'y');
    await d.put('/b', 'z');
    await d.ok({ op: 'delete', key: '/a', subtree: true });
    await d.put('/a', 'top');
    const all = d.tree.eventsSince(1);
    t.deepEqual(
      all.events.map((e) => [e.type, e.key, e.revision, text(e.value), text(e.prevValue)]),
      [
        ['put', '/a/1', 1, 'x', null],
        ['put', '/a/1', 2, 'y', 'x'],
        ['put', '/b', 3, 'z', null],
        ['delete', '/a/1', 4, null, 'y'],
        ['put', '/a', 5, 'top', null],
      ],
    );
    t.is(all.next, 6);
    const key = (f: Parameters<KeyTree['eventsSince']>[1]) =>
      d.tree.eventsSince(1, f).events.map((e) => e.revision);
    t.deepEqual(key({ key: '/a/1' }), [1, 2, 4]);
    t.deepEqual(key({ prefix: '/a' }), [1, 2, 4, 5]);
    t.deepEqual(key({ subtree: '/a' }), [1, 2, 4, 5]);
    t.deepEqual(key({ subtree: '/b' }), [3]);
    const page = d.tree.eventsSince(2, undefined, { limit: 1 });
    t.deepEqual(
      page.events.map((e) => e.revision),
      [2],
    );
    t.is(page.next, 3);
    await d.ok({ op: 'compact', revision: 3 });
    t.is(d.tree.compactRevision, 3);
    t.throws(() => d.tree.eventsSince(3), { code: 'COMPACTED' } as never);
    const err = t.throws(() => d.tree.get('/b', { revision: 2 }));
    t.like((err as unknown as { toWire(): object }).toWire(), { code: 'COMPACTED', compactRevision: 3 });
    t.deepEqual(
      d.tree.eventsSince(4).events.map((e) => e.revision),
      [4, 5],
    );
    t.is(await d.code({ op: 'compact', revision: 3 }), 'COMPACTED');
    t.is(await d.code({ op: 'compact', revision: 99 }), 'BAD_REQUEST');
  });

  it('reads at a past revision see the tree as it was', async (t) => {
    const d = new Driver(await h.open(t));
    await d.put('/a', '1'); // 1
    await d.put('/b', '1'); // 2
    await d.put('/a/x', '1'); // 3
    await d.put('/a', '2'); // 4
    await d.ok({ op: 'delete', key: '/b' }); // 5
    await d.put('/c', '1'); // 6
    t.is(text(d.tree.get('/a', { revision: 3 })?.value), '1');
    t.is(d.tree.get('/a', { revision: 3 })?.version, 1);
    t.is(text(d.tree.get('/b', { revision: 4 })?.value), '1');
    t.is(d.tree.get('/b', { revision: 5 }), null);
    t.is(d.tree.get('/c', { revision: 5 }), null);
    t.is(d.tree.get('/a', { revision: 0 }), null);
    const keysAt = (rev: number) =>
      d.tree.range('/', { revision: rev }).kvs.map((kv) => `${kv.key}@${kv.modRevision}`);
    t.deepEqual(keysAt(2), ['/a@1', '/b@2']);
    t.deepEqual(keysAt(4), ['/a@4', '/a/x@3', '/b@2']);
    t.deepEqual(keysAt(6), ['/a@4', '/a/x@3', '/c@6']);
    t.deepEqual(d.tree.listChildren('/', { revision: 2 }).names, ['a', 'b']);
    t.deepEqual(d.tree.listChildren('/', { revision: 6 }).names, ['a', 'c']);
    t.deepEqual(d.tree.listChildren('/a', { revision: 2 }).names, []);
    const paged = d.tree.range('/', { revision: 4, limit: 2 });
    t.deepEqual(
      paged.kvs.map((kv) => kv.key),
      ['/a', '/a/x'],
    );
    t.deepEqual(
      d.tree.range('/', { revision: 4, limit: 2, after: '/a/x' }).kvs.map((kv) => kv.key),
      ['/b'],
    );
    t.throws(() => d.tree.get('/a', { revision: 7 }), { code: 'BAD_REQUEST' } as never);
  });

  it('restart keeps everything that was synced', async (t) => {
    const d = new Driver(await h.open(t));
    await d.ok({ op: 'sessionOpen', id: 's', secret: bytes('x'), ttlMs: 100 });
    await d.ok({ op: 'put', key: '/e', value: bytes('e'), ephemeral: true, client: client('s', 1) });
    await d.ok({ op: 'createSequential', prefix: '/q/', value: bytes('q') });
    await d.put('/p', 'p');
    await d.put('/p', 'p2');
    await d.ok({ op: 'compact', revision: 2 });
    await d.tree.sync();
    const before = await dumpOf(await d.tree.snapshot());
    const r = await h.restart(t, d.tree as T);
    t.is(r.appliedIndex, d.index);
    t.true(before.equals(await dumpOf(await r.snapshot())), 'same dump after restart');
    t.like(r.session('s'), { ephemeralKeys: 1 });
    const d2 = new Driver(r);
    const again = await d2.run({
      op: 'put',
      key: '/e',
      value: bytes('e'),
      ephemeral: true,
      client: client('s', 1),
    });
    t.true(again.replayed, 'the exactly-once table survives');
    t.like(await d2.ok({ op: 'createSequential', prefix: '/q/', value: bytes('q') }), {
      kv: { key: '/q/0000000001' },
    });
  });

  it('snapshot and restore: byte-identical dump, capped chunks, history and sessions kept', async (t) => {
    const d = new Driver(await h.open(t));
    await d.ok({ op: 'sessionOpen', id: 's', secret: bytes('x'), ttlMs: 100 });
    for (let i = 0; i < 300; i++) await d.put(`/k/${i % 37}/${i}`, `value-${i}`.repeat(i % 5));
    await d.ok({ op: 'put', key: '/e', value: bytes('e'), ephemeral: true, client: client('s', 1) });
    await d.ok({ op: 'createSequential', prefix: '/q/', value: bytes('q') });
    await d.ok({ op: 'compact', revision: 100 });
    const raftMeta = { index: d.index, term: 3, config: { voters: ['a', 'b'], learners: ['c'] } };
    const snap = await d.tree.snapshot({ chunkBytes: 1000, raftMeta });
    t.is(snap.appliedIndex, d.index);
    const chunks: Uint8Array[] = [];
    for await (const c of snap) chunks.push(c);
    t.true(chunks.length > 3);
    t.true(chunks.every((c) => c.length <= 1000));
    const source = Buffer.concat(chunks);
    t.true(source.equals(await dumpOf(snap)), 'a snapshot can be read twice');
    await d.put('/after', 'not in the snapshot');
    t.true(source.equals(await dumpOf(snap)), 'later applies do not change a snapshot');

    const other = await h.open(t);
    await new Driver(other).put('/old', 'replaced');
    const info = await other.restore(chunks);
    t.deepEqual(info, { appliedIndex: snap.appliedIndex, revision: snap.revision, raftMeta });
    t.true(source.equals(await dumpOf(await other.snapshot({ chunkBytes: 777, raftMeta }))));
    t.is(other.get('/old'), null);
    t.is(other.compactRevision, 100);
    t.is(other.eventsSince(101).events.length, snap.revision - 100);
    t.like(other.session('s'), { ephemeralKeys: 1 });
    await t.throwsAsync(d.tree.snapshot({ raftMeta: { ...raftMeta, index: 1 } }), { instanceOf: TypeError });
    const r = await h.restart(t, other as T);
    t.true(source.equals(await dumpOf(await r.snapshot({ raftMeta }))), 'a restore is durable');
  });

  it('a txn whose gets would answer more than a page is TOO_LARGE and changes nothing', async (t) => {
    const d = new Driver(await h.open(t));
    const big = new Uint8Array(900 * 1024);
    await d.ok({ op: 'put', key: '/b1', value: big });
    await d.ok({ op: 'put', key: '/b2', value: big });
    const rev = d.tree.revision;
    const get = (key: string) => ({ op: 'get' as const, key });
    t.is(
      await d.code({
        op: 'txn',
        compare: [],
        success: [{ op: 'put', key: '/x', value: bytes('1') }, get('/b1'), get('/b2'), get('/b1')],
        failure: [],
      }),
      'TOO_LARGE',
    );
    t.is(d.tree.revision, rev);
    t.is(d.tree.get('/x'), null, 'nothing applied');
    t.is(
      await d.code({
        op: 'txn',
        compare: [],
        success: [{ op: 'put', key: '/b3', value: big }, get('/b3'), get('/b1'), get('/b2')],
        failure: [],
      }),
      'TOO_LARGE',
      'a put earlier in the branch counts at its new size',
    );
    const ok = await d.ok({ op: 'txn', compare: [], success: [get('/b1'), get('/b2')], failure: [] });
    t.like(ok, { op: 'txn', succeeded: true });
  });

  it('grants: set, replaced, revoked; kept across restart and through snapshot and restore', async (t) => {
    const d = new Driver(await h.open(t));
    await d.put('/a', '1');
    const rev = d.tree.revision;
    t.like(await d.ok({ op: 'authGrant', user: 'ann', prefix: '/app/', read: true, write: true }), {
      op: 'authGrant',
      user: 'ann',
      prefix: '/app/',
      revision: rev,
    });
    await d.ok({ op: 'authGrant', user: 'ann', prefix: '/', read: true });
    await d.ok({ op: 'authGrant', user: 'bob', prefix: '/b', write: true });
    await d.ok({ op: 'authGrant', user: 'ann', prefix: '/app/', read: true, write: false });
    t.is(d.tree.revision, rev, 'grants change no key');
    t.deepEqual(d.tree.grants('ann'), [
      { user: 'ann', prefix: '/', read: true, write: false },
      { user: 'ann', prefix: '/app/', read: true, write: false },
    ]);
    t.like(await d.ok({ op: 'authRevoke', user: 'bob', prefix: '/b' }), { revoked: true });
    t.like(await d.ok({ op: 'authRevoke', user: 'bob', prefix: '/b' }), { revoked: false });
    t.deepEqual(d.tree.grants('bob'), []);
    await d.ok({ op: 'authGrant', user: 'cy', prefix: '/c/', read: true, write: true });
    t.deepEqual(
      d.tree.grants().map((g) => `${g.user} ${g.prefix}`),
      ['ann /', 'ann /app/', 'cy /c/'],
    );
    t.is(await d.code({ op: 'authGrant', user: 'bad user', prefix: '/' }), 'BAD_REQUEST');
    t.is(await d.code({ op: 'authGrant', user: 'x', prefix: 'no-slash' }), 'BAD_PATH');
    await d.tree.sync();
    const r = await h.restart(t, d.tree as T);
    t.deepEqual(r.grants(), d.tree.grants(), 'grants survive a restart');
    const dump = await dumpOf(await r.snapshot());
    const other = await h.open(t);
    await new Driver(other).ok({ op: 'authGrant', user: 'gone', prefix: '/', read: true });
    await other.restore([dump]);
    t.deepEqual(other.grants(), d.tree.grants(), 'a restore replaces the grants');
  });

  it('key creators: a client write records who created each new key; kept across restart and snapshot', async (t) => {
    const d = new Driver(await h.open(t));
    await d.ok({ op: 'put', key: '/a', value: bytes('1'), user: 'ann' });
    await d.ok({ op: 'put', key: '/b', value: bytes('1'), user: 'ann' });
    await d.ok({ op: 'put', key: '/a', value: bytes('2'), user: 'bob' });
    await d.ok({ op: 'createSequential', prefix: '/q/i-', value: bytes('x'), user: 'bob' });
    await d.ok({
      op: 'txn',
      compare: [],
      success: [
        { op: 'put', key: '/t1', value: bytes('x') },
        { op: 'put', key: '/t2', value: bytes('x') },
      ],
      failure: [],
      user: 'cy',
    });
    await d.put('/peer', 'no user');
    t.is(d.tree.keysOf('ann'), 2, 'an overwrite by bob leaves /a to ann');
    t.is(d.tree.keysOf('bob'), 1);
    t.is(d.tree.keysOf('cy'), 2);
    await d.ok({ op: 'delete', key: '/t1' });
    await d.ok({ op: 'delete', key: '/a' });
    t.is(d.tree.keysOf('ann'), 1);
    t.is(d.tree.keysOf('cy'), 1);
    await d.ok({ op: 'put', key: '/a', value: bytes('3'), user: 'bob' });
    t.is(d.tree.keysOf('bob'), 2, 'a key created again belongs to its new creator');
    await d.tree.sync();
    const r = await h.restart(t, d.tree as T);
    for (const u of ['ann', 'bob', 'cy']) t.is(r.keysOf(u), d.tree.keysOf(u), `${u} after restart`);
    const other = await h.open(t);
    await other.restore([await dumpOf(await r.snapshot())]);
    for (const u of ['ann', 'bob', 'cy']) t.is(other.keysOf(u), d.tree.keysOf(u), `${u} after restore`);
    await new Driver(other).ok({ op: 'delete', key: '/', subtree: true });
    t.is(other.keysOf('bob'), 0, 'a subtree delete drops every creator below it');
  });

  it('a corrupted or truncated snapshot is CORRUPTED and leaves the old state', async (t) => {
    const d = new Driver(await h.open(t));
    for (let i = 0; i < 50; i++) await d.put(`/k/${i}`, `v${i}`);
    const good = await dumpOf(await d.tree.snapshot());
    const target = await h.open(t);
    await new Driver(target).put('/mine', 'stays');
    const before = await dumpOf(await target.snapshot());
    const flipped = Buffer.from(good);
    flipped[Math.floor(flipped.length / 2)]! ^= 0x40;
    const bad = [
      flipped,
      good.subarray(0, good.length - 3),
      good.subarray(0, 200),
      Buffer.concat([good, Buffer.from([0, 0, 0, 1, 0])]),
      Buffer.from('definitely not a snapshot'),
      Buffer.alloc(0),
    ];
    for (const b of bad) {
      await t.throwsAsync(target.restore([b]), { code: 'CORRUPTED' } as never);
    }
    t.true(before.equals(await dumpOf(await target.snapshot())));
    await t.notThrowsAsync(target.restore([good]));
  });

  it('a long subtree delete yields to the event loop; readers see it whole or not at all', async (t) => {
    const d = new Driver(await h.open(t));
    const n = 10_000;
    await d.ok({
      op: 'txn',
      compare: [],
      success: [{ op: 'put', key: '/big/0', value: bytes('0') }],
      failure: [],
    });
    for (let i = 1; i < n; i += 100) {
      const ops = Array.from({ length: Math.min(100, n - i) }, (_, j) => ({
        op: 'put' as const,
        key: `/big/${i + j}`,
        value: bytes('x'),
      }));
      await d.ok({ op: 'txn', compare: [], success: ops, failure: [] });
    }
    const revision = d.tree.revision;
    const seen: [number, number][] = [];
    let ticking = true;
    const tick = () => {
      seen.push([d.tree.revision, d.tree.range('/big/', { limit: 1 }).kvs.length]);
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const done = await d.ok({ op: 'delete', key: '/big', subtree: true });
    ticking = false;
    t.is(done.op === 'delete' ? done.deleted : 0, n);
    t.true(seen.length > 0, 'the event loop turned during the delete');
    t.true(
      seen.every(
        ([rev, found]) => (rev === revision && found === 1) || (rev === revision + 1 && found === 0),
      ),
      'no reader saw a half-applied delete',
    );
    t.is(d.tree.range('/big/').kvs.length, 0);
  });
}
