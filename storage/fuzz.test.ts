/**
 * Fuzzing what the storage reads back, with fast-check: the record decoders of the log store
 * (entries, hard state, snapshot meta, identity) and of the key tree (keys, events, sessions,
 * answers, meta, grants), the keys, whole tree dumps (parseDump) and the commands a log entry
 * carries into apply. Inputs are random bytes, valid records with flipped, cut and inserted
 * bytes, and records of the right format version whose fields are anything at all. A decoder
 * either returns a value that encodes back to what it read, or throws `CorruptedError`: never a
 * `TypeError`, `RangeError` or anything else (storage errors stop the node, so a crash on a bad
 * record is the difference between a clear message and a mystery). And whatever commands apply
 * sees, the tree it leaves dumps and restores to itself.
 */
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import test from 'ava';
import fc from 'fast-check';
import type { Entry, HardState, SnapshotMeta } from '../machines/raft/index.ts';
import { type ApiLimits, EnsembleError, encodeCbor } from '../protocol/index.ts';
import {
  decode,
  decodeRecord,
  encode,
  encodeRecord,
  FORMAT_VERSION,
  indexKey,
  readIndexKey,
  readStringKey,
  stringKey,
} from './codec.ts';
import { CorruptedError } from './errors.ts';
import {
  decodeEntry,
  decodeHardState,
  decodeIdentity,
  decodeSnapshotMeta,
  encodeEntry,
  encodeHardState,
  encodeIdentity,
  encodeSnapshotMeta,
} from './log/records.ts';
import type { NodeIdentity } from './log/types.ts';
import { freeze } from './tree/data.ts';
import { MemoryTree } from './tree/memory.ts';
import {
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
} from './tree/records.ts';
import { dumpChunks, parseDump } from './tree/snapshot.ts';

fc.configureGlobal({ includeErrorInReport: true });

/** Runs `fn`: its value, or the CorruptedError it threw; anything else fails the property. */
function corruptOr<T>(fn: () => T): { ok: true; value: T } | { ok: false; error: CorruptedError } {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    assert.ok(
      err instanceof CorruptedError,
      `threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`,
    );
    assert.equal(err.code, 'CORRUPTED');
    assert.ok(err instanceof EnsembleError, 'a corruption is an EnsembleError');
    return { ok: false, error: err };
  }
}

/** Comparable form: bytes as hex whatever their class. */
function norm(v: unknown): unknown {
  if (v instanceof Uint8Array) return `bytes:${Buffer.from(v).toString('hex')}`;
  if (Array.isArray(v)) return v.map(norm);
  if (typeof v === 'object' && v !== null)
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]));
  return v;
}

/** Byte edits: set, insert or delete a byte at a position, then cut some off the end. */
const edits = fc.record({
  ops: fc.array(fc.tuple(fc.nat(), fc.nat(255), fc.constantFrom('set', 'insert', 'delete')), {
    minLength: 1,
    maxLength: 6,
  }),
  cut: fc.nat(4),
});

function edit(bytes: Uint8Array, e: { ops: readonly [number, number, string][]; cut: number }): Uint8Array {
  const b = [...bytes];
  for (const [i, x, how] of e.ops) {
    const at = i % (b.length + 1);
    if (how === 'set' && b.length > 0) b[at % b.length] = x;
    else if (how === 'insert') b.splice(at, 0, x);
    else b.splice(at, 1);
  }
  return new Uint8Array(b.slice(0, Math.max(0, b.length - e.cut)));
}

/** Values a decoder may meet in a field: anything CBOR (and cbor-x's tags) can carry. */
const anyField = fc.oneof(
  fc.anything({
    maxDepth: 2,
    maxKeys: 4,
    withBigInt: true,
    withDate: true,
    withMap: true,
    withSet: true,
    withTypedArray: true,
    withNullPrototype: true,
    stringUnit: 'binary',
  }),
  fc.constantFrom<unknown>(
    -1,
    0,
    1,
    0.5,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    2 ** 53,
    Number.MAX_SAFE_INTEGER,
    '',
    '/a',
    null,
    true,
    false,
    [],
    [[], []],
    [['a'], [1]],
    new Uint8Array(0),
    { code: 'X', message: 'm' },
    { op: 'put' },
  ),
);

/** Records of the right version but with fields of any kind. */
const anyRecord = fc.array(anyField, { maxLength: 6 }).map((fields) => {
  try {
    return encodeRecord(...fields);
  } catch {
    return encodeRecord('unencodable');
  }
});

/** Random bytes, mutated valid records, and right-version records of anything. */
const recordBytes = (valid: fc.Arbitrary<Uint8Array>) =>
  fc.oneof(
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 64 }) },
    { weight: 4, arbitrary: fc.tuple(valid, edits).map(([b, e]) => edit(b, e)) },
    { weight: 3, arbitrary: anyRecord },
    {
      weight: 1,
      arbitrary: fc.array(anyField, { maxLength: 6 }).map((f) => new Uint8Array(encodeCbor([2, ...f]))),
    },
  );

// ---------------------------------------------------------------------------------------------
// The log store's records

const nat = fc.nat({ max: 2 ** 40 });
const nodeId = fc.stringMatching(/^[a-z0-9-]{1,8}$/);
const config = fc.record({
  voters: fc.array(nodeId, { maxLength: 4 }),
  learners: fc.array(nodeId, { maxLength: 2 }),
});

const entry: fc.Arbitrary<Entry> = fc.oneof(
  fc.record({
    index: fc.constant(7),
    term: nat,
    type: fc.constant('normal' as const),
    data: fc.uint8Array({ maxLength: 16 }),
  }),
  fc.record({ index: fc.constant(7), term: nat, type: fc.constant('noop' as const) }),
  fc.record({ index: fc.constant(7), term: nat, type: fc.constant('config' as const), config }),
);
const hardState: fc.Arbitrary<HardState> = fc.record({
  term: nat,
  vote: fc.option(nodeId, { nil: null }),
  commit: nat,
});
const snapshotMeta: fc.Arbitrary<SnapshotMeta> = fc.record({ index: nat, term: nat, config });
const identity: fc.Arbitrary<NodeIdentity> = fc.record({
  clusterId: fc.string({ maxLength: 12 }),
  nodeId,
  incarnation: fc.string({ maxLength: 12 }),
});

interface Codec<T> {
  readonly name: string;
  readonly valid: fc.Arbitrary<T>;
  readonly encode: (v: T) => Uint8Array;
  readonly decode: (b: Uint8Array) => T;
}

const logCodecs: readonly Codec<unknown>[] = [
  { name: 'entry', valid: entry, encode: (e) => encodeEntry(e as Entry), decode: (b) => decodeEntry(b, 7) },
  {
    name: 'hard state',
    valid: hardState,
    encode: (h) => encodeHardState(h as HardState),
    decode: decodeHardState,
  },
  {
    name: 'snapshot meta',
    valid: snapshotMeta,
    encode: (m) => encodeSnapshotMeta(m as SnapshotMeta),
    decode: decodeSnapshotMeta,
  },
  {
    name: 'identity',
    valid: identity,
    encode: (i) => encodeIdentity(i as NodeIdentity),
    decode: decodeIdentity,
  },
] as readonly Codec<unknown>[];

for (const c of logCodecs) {
  test(`log store ${c.name} records: valid ones round-trip; random, mutated and ill-typed ones are CorruptedError`, (t) => {
    fc.assert(
      fc.property(c.valid, (v) => {
        assert.deepStrictEqual(norm(c.decode(c.encode(v))), norm(v));
      }),
      { numRuns: 300 },
    );
    let refused = 0;
    fc.assert(
      fc.property(recordBytes(c.valid.map(c.encode)), (bytes) => {
        const r = corruptOr(() => c.decode(bytes));
        if (!r.ok) refused++;
        // What decodes encodes back to a record that decodes the same.
        else assert.deepStrictEqual(norm(c.decode(c.encode(r.value))), norm(r.value));
      }),
      { numRuns: 1500 },
    );
    t.true(refused > 500, `${refused} refused`);
  });
}

test('an entry stored under another index, or of an unknown type, is CorruptedError', (t) => {
  const bytes = encodeEntry({ index: 7, term: 1, type: 'noop' });
  t.throws(() => decodeEntry(bytes, 8), { instanceOf: CorruptedError });
  t.throws(() => decodeEntry(encodeRecord(7, 1, 3, null), 7), { instanceOf: CorruptedError });
  t.throws(() => decodeEntry(encodeRecord(7, 1, 2, [['a'], 'b']), 7), { instanceOf: CorruptedError });
  t.throws(() => decodeHardState(encodeRecord(-1, null, 0)), { instanceOf: CorruptedError });
  t.throws(() => decodeSnapshotMeta(encode([FORMAT_VERSION + 1, 1, 1, [], []])), {
    instanceOf: CorruptedError,
  });
});

// ---------------------------------------------------------------------------------------------
// The byte-level helpers

test('decode, decodeRecord, readIndexKey and readStringKey: anything in, a value or CorruptedError out', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 48 }), fc.nat(8), fc.nat(255), (bytes, length, tag) => {
      corruptOr(() => decode(bytes, 'fuzz'));
      const r = corruptOr(() => decodeRecord(bytes, length, 'fuzz'));
      if (r.ok) {
        assert.equal(r.value.length, length);
        assert.equal(r.value[0], FORMAT_VERSION);
      }
      const k = corruptOr(() => readIndexKey(bytes, tag));
      if (k.ok) {
        assert.ok(Number.isSafeInteger(k.value) && k.value >= 0, `index ${k.value}`);
        assert.deepStrictEqual([...indexKey(tag, k.value)], [...bytes]);
      }
      const s = corruptOr(() => readStringKey(bytes));
      if (s.ok && bytes.length > 0) assert.deepStrictEqual([...stringKey(bytes[0]!, s.value)], [...bytes]);
    }),
    { numRuns: 3000 },
  );
  fc.assert(
    fc.property(fc.nat(255), fc.maxSafeNat(), (tag, index) => {
      assert.equal(readIndexKey(indexKey(tag, index), tag), index);
    }),
    { numRuns: 500 },
  );
  t.pass();
});

// ---------------------------------------------------------------------------------------------
// The key tree's records (fields of a decoded record)

const key = fc
  .array(fc.constantFrom('a', 'b', 'x-1', 'é'), { minLength: 1, maxLength: 3 })
  .map((s) => `/${s.join('/')}`);
const kv = fc
  .record({
    key,
    value: fc.uint8Array({ maxLength: 8 }),
    version: fc.integer({ min: 1, max: 2 ** 40 }),
    createRevision: nat,
    d: nat,
    session: fc.option(fc.string({ minLength: 1, maxLength: 6 }), { nil: null }),
  })
  .map(({ d, ...k }) => ({ ...k, modRevision: k.createRevision + d }));
const event = fc
  .oneof(
    kv.map((k) => ({
      type: 'put' as const,
      key: k.key,
      revision: Math.max(1, k.modRevision),
      kv: {
        ...k,
        modRevision: Math.max(1, k.modRevision),
        createRevision: Math.min(k.createRevision, Math.max(1, k.modRevision)),
      },
      prev: null,
    })),
    fc
      .tuple(kv, fc.integer({ min: 1, max: 2 ** 40 }))
      .map(([k, revision]) => ({ type: 'delete' as const, key: k.key, revision, kv: null, prev: k })),
  )
  .map((e) => ({ ...e, value: e.kv?.value ?? null, prevValue: e.prev?.value ?? null }));
const session = fc.record(
  {
    id: fc.string({ minLength: 1, maxLength: 8 }),
    secret: fc.uint8Array({ minLength: 1, maxLength: 8 }),
    ttlMs: nat,
    lowSeq: nat,
    owner: fc.stringMatching(/^[a-z]{1,6}$/),
  },
  { requiredKeys: ['id', 'secret', 'ttlMs', 'lowSeq'] },
);
const outcome = fc.record({
  seq: nat,
  outcome: fc.oneof(
    fc.record({
      ok: fc.constant(true as const),
      revision: nat,
      result: fc.record({ op: fc.constantFrom('put', 'delete'), deleted: nat }),
    }),
    fc.record({
      ok: fc.constant(false as const),
      revision: nat,
      error: fc.record({ code: fc.constantFrom('EXISTS', 'BAD_PATH'), message: fc.string({ maxLength: 8 }) }),
    }),
  ),
});
const meta = fc
  .record({ appliedIndex: nat, revision: nat, c: nat, raftMeta: fc.option(snapshotMeta, { nil: null }) })
  .map(({ c, ...m }) => ({ ...m, compactRevision: Math.min(c, m.revision) }));
const perm = fc.record({ read: fc.boolean(), write: fc.boolean() });

/** One tree record: how it is written as fields, how it is read back. */
interface FieldCodec {
  readonly name: string;
  readonly valid: fc.Arbitrary<unknown>;
  readonly fields: (v: never) => unknown[];
  readonly read: (f: unknown[]) => unknown;
}

const fieldCodecs: readonly FieldCodec[] = [
  {
    name: 'kv',
    valid: kv,
    fields: (k: Parameters<typeof kvFields>[0]) => kvFields(k),
    read: (f) => readKv('/k', f, 'kv'),
  },
  {
    name: 'event',
    valid: event,
    fields: (e: Parameters<typeof eventFields>[0]) => eventFields(e),
    read: (f) => readEvent(f, 'event'),
  },
  {
    name: 'session',
    valid: session,
    fields: (s: Parameters<typeof sessionFields>[0]) => sessionFields(s),
    read: (f) => readSession(f, 'session'),
  },
  {
    name: 'answer',
    valid: outcome,
    fields: (x: ReturnType<typeof readOutcome>) => outcomeFields(x.seq, x.outcome),
    read: (f) => readOutcome(f, 'answer'),
  },
  {
    name: 'meta',
    valid: meta,
    fields: (m: Parameters<typeof metaFields>[0]) => metaFields(m),
    read: (f) => readMeta(f, 'meta'),
  },
  {
    name: 'perm',
    valid: perm,
    fields: (p: Parameters<typeof permFields>[0]) => permFields(p),
    read: (f) => readPerm(f, 'perm'),
  },
];

/** Replaces, drops or adds one field of a record (nested ones too). */
const fieldMutation = fc.record({
  at: fc.nat(),
  how: fc.constantFrom('replace', 'delete', 'add'),
  value: anyField,
});

/** A copy of the arrays in `v` (what mutateFields writes into; values it inserts are copied too). */
const copyArrays = (v: unknown): unknown => (Array.isArray(v) ? v.map(copyArrays) : v);

function mutateFields(f: unknown[], ms: readonly { at: number; how: string; value: unknown }[]): unknown[] {
  const root = copyArrays(f) as unknown[];
  for (const m0 of ms) {
    const m = { ...m0, value: copyArrays(m0.value) };
    const arrays: unknown[][] = [];
    const walk = (v: unknown) => {
      if (!Array.isArray(v)) return;
      arrays.push(v);
      v.forEach(walk);
    };
    walk(root);
    const a = arrays[m.at % arrays.length]!;
    const i = a.length === 0 ? 0 : Math.floor(m.at / arrays.length) % a.length;
    if (m.how === 'replace') a[i] = m.value;
    else if (m.how === 'delete') a.splice(i, 1);
    else a.splice(i, 0, m.value);
  }
  return root;
}

for (const c of fieldCodecs) {
  test(`tree ${c.name} records: valid fields read back the same; mutated and random fields are CorruptedError`, (t) => {
    fc.assert(
      fc.property(c.valid, (v) => {
        const f = c.fields(v as never);
        const back = c.read(decode(encode(f), c.name) as unknown[]);
        assert.deepStrictEqual(norm(c.fields(back as never)), norm(f));
      }),
      { numRuns: 300 },
    );
    let refused = 0;
    fc.assert(
      fc.property(
        fc.oneof(
          {
            weight: 3,
            arbitrary: fc
              .tuple(c.valid, fc.array(fieldMutation, { minLength: 1, maxLength: 3 }))
              .map(([v, ms]) => mutateFields(c.fields(v as never), ms)),
          },
          { weight: 1, arbitrary: fc.array(anyField, { maxLength: 6 }) },
          {
            weight: 1,
            arbitrary: fc.tuple(c.valid, edits).map(([v, e]) => {
              const r = corruptOr(() => decode(edit(encode(c.fields(v as never)), e), c.name));
              return r.ok && Array.isArray(r.value) ? r.value : [];
            }),
          },
        ),
        (f) => {
          const r = corruptOr(() => c.read(f));
          if (!r.ok) refused++;
          else {
            // What reads back writes back, and reads the same again.
            const f2 = c.fields(r.value as never);
            assert.deepStrictEqual(norm(c.read(decode(encode(f2), c.name) as unknown[])), norm(r.value));
          }
        },
      ),
      { numRuns: 1500 },
    );
    t.true(refused > 300, `${refused} refused`);
  });
}

// ---------------------------------------------------------------------------------------------
// Commands into apply, and the dumps of what it leaves

const L: Partial<ApiLimits> = {
  maxKeyBytes: 32,
  maxValueBytes: 16,
  maxRequestBytes: 4096,
  maxTxnOps: 6,
  maxPathDepth: 4,
};

const sessionIds = fc.constantFrom('s1', 's2', 's3');
const user = fc.constantFrom('alice', 'bob');
const tag = fc
  .record({ session: sessionIds, seq: fc.nat(6), back: fc.nat(3) })
  .map(({ session, seq, back }) => ({ session, seq, lowSeq: Math.max(0, seq - back) }));
const value = fc.uint8Array({ maxLength: 6 });
const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined, freq: 3 });
const txnOp = fc.oneof(
  fc.record({
    op: fc.constant('put'),
    key,
    value,
    ifAbsent: maybe(fc.constant(true)),
    ifVersion: maybe(fc.nat(3)),
  }),
  fc.record({ op: fc.constant('delete'), key, subtree: maybe(fc.constant(true)) }),
  fc.record({ op: fc.constant('get'), key }),
);

/** Commands as a proposer makes them (the tree re-checks them all the same). */
const command: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({
    op: fc.constant('put'),
    key,
    value,
    ifAbsent: maybe(fc.constant(true)),
    ifVersion: maybe(fc.nat(3)),
    ephemeral: maybe(fc.constant(true)),
    client: tag,
  }),
  fc.record({ op: fc.constant('put'), key, value }),
  fc.record({
    op: fc.constant('delete'),
    key: fc.oneof(key, fc.constant('/')),
    subtree: fc.constant(true),
    client: maybe(tag),
  }),
  fc.record({ op: fc.constant('delete'), key, ifVersion: maybe(fc.nat(3)) }),
  fc.record({
    op: fc.constant('createSequential'),
    prefix: fc.constantFrom('/q/', '/q/job-', '/a'),
    value,
    client: maybe(tag),
  }),
  fc.record({
    op: fc.constant('txn'),
    compare: fc.array(
      fc.record({
        key,
        target: fc.constantFrom('version', 'modRevision'),
        result: fc.constantFrom('eq', 'gt', 'lt'),
        value: fc.nat(4),
      }),
      { maxLength: 2 },
    ),
    success: fc.array(txnOp, { maxLength: 2 }),
    failure: fc.array(txnOp, { maxLength: 2 }),
    client: maybe(tag),
  }),
  fc.record({
    op: fc.constant('sessionOpen'),
    id: sessionIds,
    secret: fc.constant(new Uint8Array([1])),
    ttlMs: fc.constant(5000),
    owner: maybe(user),
  }),
  fc.record({ op: fc.constantFrom('sessionClose', 'sessionExpire'), id: sessionIds }),
  fc.record({ op: fc.constant('compact'), revision: fc.nat(12) }),
  fc.record({
    op: fc.constant('authGrant'),
    user,
    prefix: fc.constantFrom('/', '/a', '/q/'),
    read: maybe(fc.boolean()),
    write: maybe(fc.boolean()),
  }),
  fc.record({ op: fc.constant('authRevoke'), user, prefix: fc.constantFrom('/', '/a', '/q/') }),
);

/** What a log entry may hold: commands, their mutations, their bytes mutated, anything at all. */
const entryData: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 8, arbitrary: command },
  { weight: 2, arbitrary: command.map((c) => encodeCbor(c)) },
  { weight: 2, arbitrary: fc.tuple(command, edits).map(([c, e]) => edit(encodeCbor(c), e)) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        command,
        fc.constantFrom('key', 'value', 'client', 'op', 'revision', 'id', 'prefix', 'success', 'user'),
        anyField,
      )
      .map(([c, field, v]) => ({ ...c, [field]: v })),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 32 }) },
  { weight: 1, arbitrary: anyField },
);

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Uint8Array[] = [];
  for await (const c of chunks) out.push(c);
  return Buffer.concat(out);
}

test('apply takes whatever a log entry holds: typed outcomes, and the tree it leaves dumps and restores to itself', async (t) => {
  const codes = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(fc.array(entryData, { minLength: 1, maxLength: 25 }), async (data) => {
      const tree = new MemoryTree({ limits: L });
      let revision = 0;
      data.forEach((d, i) => {
        const o = tree.applyNow(i + 1, d);
        assert.ok(o !== null, 'an entry after the applied index was not applied');
        const code = o.ok ? 'OK' : o.error.code;
        codes.set(code, (codes.get(code) ?? 0) + 1);
        if (!o.ok) {
          assert.ok(o.error instanceof EnsembleError, `untyped outcome ${String(o.error)}`);
          assert.doesNotThrow(() => encodeCbor(o.error.toWire()), 'the error cannot be stored');
        }
        assert.equal(tree.appliedIndex, i + 1);
        assert.ok(tree.revision >= revision, 'the revision went back');
        assert.ok(tree.compactRevision <= tree.revision, 'compacted beyond the revision');
        revision = tree.revision;
      });
      // The dump of that state parses, and dumps again to the same bytes.
      tree.syncNow();
      const bytes = await collect(dumpChunks(tree.durableState, 64));
      const parsed = await parseDump([bytes]);
      const again = await collect(dumpChunks(freeze(parsed, tree.durableState.meta.raftMeta), 64));
      assert.ok(again.equals(bytes), 'a parsed dump dumps to other bytes');
    }),
    { numRuns: 300 },
  );
  for (const code of ['OK', 'BAD_REQUEST', 'SESSION_EXPIRED'])
    t.true(codes.has(code), `reached ${code}: ${[...codes]}`);
});

/** A tree with some of everything: keys, history, sessions with answers and owners, counters, grants. */
async function sampleDump(seed: readonly Record<string, unknown>[]): Promise<Buffer> {
  const tree = new MemoryTree({ limits: L });
  const base: Record<string, unknown>[] = [
    { op: 'sessionOpen', id: 's1', secret: new Uint8Array([1]), ttlMs: 5000, owner: 'alice' },
    { op: 'put', key: '/a', value: new Uint8Array([1]) },
    {
      op: 'put',
      key: '/e',
      value: new Uint8Array([2]),
      ephemeral: true,
      client: { session: 's1', seq: 1, lowSeq: 1 },
    },
    { op: 'createSequential', prefix: '/q/', value: new Uint8Array([3]) },
    { op: 'authGrant', user: 'bob', prefix: '/a', read: true },
    ...seed,
  ];
  base.forEach((c, i) => {
    tree.applyNow(i + 1, c);
  });
  tree.syncNow();
  return collect(dumpChunks(tree.durableState, 32));
}

/** Splits a dump into its frames (4-byte length, CBOR body). */
function frames(dump: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < dump.length; ) {
    const n = dump.readUInt32BE(at);
    out.push(dump.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return out;
}

/** Joins frame bodies into a dump, with a correct end frame (count and CRC) for what precedes it. */
function join(bodies: readonly Uint8Array[]): Buffer {
  const parts: Buffer[] = [];
  for (const b of bodies) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length, 0);
    parts.push(len, Buffer.from(b));
  }
  const head = Buffer.concat(parts);
  const end = encode([6, bodies.length, crc32(head)]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(end.length, 0);
  return Buffer.concat([head, len, end]);
}

async function parses(chunks: Iterable<Uint8Array>): Promise<boolean> {
  try {
    await parseDump(chunks);
    return true;
  } catch (err) {
    assert.ok(
      err instanceof CorruptedError,
      `parseDump threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`,
    );
    return false;
  }
}

test('parseDump: dumps with flipped, cut and inserted bytes, cut anywhere into chunks, are CorruptedError', async (t) => {
  let refused = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(command, { maxLength: 6 }),
      edits,
      fc.array(fc.nat(400), { maxLength: 4 }),
      async (seed, e, cuts) => {
        const dump = edit(await sampleDump(seed), e);
        const at = [...new Set(cuts.map((c) => c % (dump.length + 1)))].sort((a, b) => a - b);
        const chunks = [0, ...at].map((from, i) => dump.subarray(from, at[i] ?? dump.length));
        if (!(await parses(chunks))) refused++;
      },
    ),
    { numRuns: 500 },
  );
  t.true(refused > 400, `${refused} refused`);
  t.true(await parses([await sampleDump([])]), 'an untouched dump parses');
});

test('parseDump: frames with any content, framed and checksummed correctly, are CorruptedError or a state that dumps to itself', async (t) => {
  let accepted = 0;
  let refused = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(command, { maxLength: 4 }),
      fc.array(
        fc.record({
          at: fc.nat(),
          how: fc.constantFrom('fields', 'drop', 'duplicate', 'swap', 'replace'),
          ms: fc.array(fieldMutation, { minLength: 1, maxLength: 2 }),
          any: fc.array(anyField, { maxLength: 6 }),
        }),
        { minLength: 1, maxLength: 3 },
      ),
      async (seed, changes) => {
        const bodies = frames(await sampleDump(seed)).slice(0, -1) as Uint8Array[];
        for (const c of changes) {
          const i = c.at % bodies.length;
          const item = decode(bodies[i]!, 'frame') as unknown[];
          try {
            if (c.how === 'fields') bodies[i] = encode(mutateFields(item, c.ms));
            else if (c.how === 'replace') bodies[i] = encode([item[0], ...(copyArrays(c.any) as unknown[])]);
          } catch {
            return; // a value CBOR cannot carry (a bigint beyond 64 bits)
          }
          switch (c.how) {
            case 'drop':
              bodies.splice(i, 1);
              break;
            case 'duplicate':
              bodies.splice(i, 0, bodies[i]!);
              break;
            case 'swap':
              bodies.splice(i, 2, ...bodies.slice(i, i + 2).reverse());
              break;
          }
          if (bodies.length === 0) return;
        }
        let body: Buffer;
        try {
          body = join(bodies);
        } catch {
          return; // a mutation CBOR cannot carry
        }
        let data: Awaited<ReturnType<typeof parseDump>>;
        try {
          data = await parseDump([body]);
        } catch (err) {
          assert.ok(
            err instanceof CorruptedError,
            `parseDump threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`,
          );
          refused++;
          return;
        }
        accepted++;
        // What a dump restores is a state that dumps and parses again to the same.
        const again = await collect(dumpChunks(freeze(data, data.raftMeta), 64));
        const back = await parseDump([again]);
        const third = await collect(dumpChunks(freeze(back, back.raftMeta), 64));
        assert.ok(third.equals(again), 'a restored state does not dump to itself');
      },
    ),
    { numRuns: 600 },
  );
  t.true(refused > 100, `${refused} refused, ${accepted} accepted`);
  t.true(accepted > 10, `${refused} refused, ${accepted} accepted`);
});

test('a MemoryTree restores only dumps that parse: a refused restore leaves the tree as it was', async (t) => {
  const dump = await sampleDump([]);
  let survived = 0;
  await fc.assert(
    fc.asyncProperty(edits, async (e) => {
      const tree = new MemoryTree({ limits: L });
      tree.applyNow(1, { op: 'put', key: '/keep', value: new Uint8Array([9]) });
      try {
        await tree.restore([edit(dump, e)]);
      } catch (err) {
        assert.ok(err instanceof CorruptedError, `restore threw ${String(err)}`);
        assert.equal(tree.get('/keep')?.value[0], 9, 'a refused restore changed the tree');
        assert.equal(tree.appliedIndex, 1, 'a refused restore moved the applied index');
        return;
      }
      // An edit the dump survived (rare: one inside a value, say): the tree is the dump's now.
      survived++;
      assert.equal(tree.get('/keep'), null, 'a restore kept a key the dump does not hold');
    }),
    { numRuns: 200 },
  );
  t.true(survived < 100, `${survived} mutated dumps restored`);
});
