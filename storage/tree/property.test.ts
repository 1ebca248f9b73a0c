/**
 * Property tests: random command sequences run against `MemoryTree` and `RocksTree` at the same
 * log indexes must give the same outcomes, the same reads and the same dump; the RocksDB tree
 * reopened from disk must dump the same; reads at past revisions must match what the tree read
 * at that revision; and the tree's invariants must hold after every step.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import test from 'ava';
import fc from 'fast-check';
import { encode } from '../codec.ts';
import { plain, tempDir } from '../test-util.ts';
import { dumpOf } from './conformance.ts';
import { MemoryTree } from './memory.ts';
import { childPrefix } from './path.ts';
import { RocksTree } from './rocks.ts';
import type { ApplyOutcome, KeyTree } from './types.ts';

const KEYS = ['/a', '/a/b', '/a/b/c', '/a/b-x', '/b', '/b/x', '/c'];
const SESSIONS = ['s1', 's2'];

const key = fc.constantFrom(...KEYS);
const value = fc.uint8Array({ maxLength: 6 });
const session = fc.constantFrom(...SESSIONS);
const clientT = fc.option(fc.record({ session, retry: fc.boolean(), lowBack: fc.nat(3) }), {
  nil: undefined,
});
const rarely = <T>(a: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: a });
const ifVersion = rarely(fc.nat(3));
const sometimes = rarely(fc.constant(true));

const putT = fc.record({
  op: fc.constant('put' as const),
  key,
  value,
  ifAbsent: sometimes,
  ifVersion,
  ephemeral: sometimes,
});
const deleteT = fc.record({ op: fc.constant('delete' as const), key, subtree: sometimes, ifVersion });
const getT = fc.record({ op: fc.constant('get' as const), key });
const compareT = fc.oneof(
  fc.record({
    key,
    target: fc.constantFrom('version', 'modRevision', 'createRevision'),
    result: fc.constantFrom('eq', 'ne', 'lt', 'gt'),
    value: fc.nat(6),
  }),
  fc.record({ key, target: fc.constant('value'), result: fc.constantFrom('eq', 'ne', 'lt', 'gt'), value }),
  fc.record({ key, target: fc.constant('exists'), result: fc.constantFrom('eq', 'ne'), value: fc.boolean() }),
);

/** A command with placeholders the runner resolves (client sequence numbers, compaction point). */
const templateT = fc.oneof(
  { weight: 6, arbitrary: fc.record({ cmd: putT, client: clientT }) },
  { weight: 3, arbitrary: fc.record({ cmd: deleteT, client: clientT }) },
  {
    weight: 2,
    arbitrary: fc.record({
      cmd: fc.record({
        op: fc.constant('createSequential' as const),
        prefix: fc.constantFrom('/q/', '/a/n-', '/b/x/'),
        value,
        ephemeral: fc.boolean(),
      }),
      client: clientT,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      cmd: fc.record({
        op: fc.constant('txn' as const),
        compare: fc.array(compareT, { maxLength: 2 }),
        success: fc.array(fc.oneof(putT, deleteT, getT), { maxLength: 3 }),
        failure: fc.array(fc.oneof(putT, deleteT, getT), { maxLength: 2 }),
      }),
      client: clientT,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      cmd: fc.record({
        op: fc.constant('sessionOpen' as const),
        id: session,
        secret: fc.constantFrom(new Uint8Array([1]), new Uint8Array([2])),
        ttlMs: fc.constant(1000),
      }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      cmd: fc.record({ op: fc.constantFrom('sessionClose' as const, 'sessionExpire' as const), id: session }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ compactBack: fc.nat(4) }) },
  { weight: 1, arbitrary: fc.record({ garbage: fc.oneof(fc.anything(), fc.uint8Array({ maxLength: 8 })) }) },
);

type Template = typeof templateT extends fc.Arbitrary<infer T> ? T : never;

const stepT = fc.record({ template: templateT, skip: fc.nat(2), replayOld: fc.boolean() });

const norm = (o: ApplyOutcome | null) =>
  o === null
    ? null
    : plain(o.ok ? o : { ok: false, revision: o.revision, replayed: o.replayed, error: o.error.toWire() });

function attempt<T>(f: () => T): unknown {
  try {
    return plain(f());
  } catch (err) {
    return { error: (err as { code?: string }).code ?? String(err) };
  }
}

/** Every read a client could make, at the current revision. */
function reads(tree: KeyTree) {
  return {
    revision: tree.revision,
    applied: tree.appliedIndex,
    compact: tree.compactRevision,
    keys: KEYS.map((k) => attempt(() => tree.get(k))),
    range: attempt(() => tree.range('/')),
    children: ['/', '/a', '/b', '/q'].map((p) => attempt(() => tree.listChildren(p))),
    events: attempt(() => tree.eventsSince(tree.compactRevision + 1)),
    sessions: plain(tree.sessions()),
  };
}

function checkInvariants(tree: KeyTree): string | null {
  const all = tree.range('/').kvs;
  for (const kv of all) {
    if (kv.modRevision > tree.revision || kv.createRevision > kv.modRevision) return `revisions of ${kv.key}`;
    if (kv.session !== null) {
      if (tree.session(kv.session) === null) return `${kv.key} owned by a closed session`;
      if (all.some((o) => o.key.startsWith(childPrefix(kv.key)))) return `a key below ephemeral ${kv.key}`;
    }
  }
  const events = tree.eventsSince(tree.compactRevision + 1).events;
  for (let i = 1; i < events.length; i++)
    if (events[i]!.revision < events[i - 1]!.revision) return 'history order';
  if (events.some((e) => e.revision <= tree.compactRevision || e.revision > tree.revision))
    return 'history bounds';
  return null;
}

test('random command sequences: MemoryTree and RocksTree agree, and RocksTree reloads the same', async (t) => {
  const root = await tempDir(t, 'ensemble-prop-');
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(stepT, { minLength: 10, maxLength: 80, size: 'max' }), async (steps) => {
      const mem = new MemoryTree();
      const dir = join(root, `run-${run++}`);
      let rocks = await RocksTree.open(dir);
      try {
        const seqs = new Map<string, number>();
        /** `range('/')` as read at each revision, to check later reads at that past revision. */
        const seen = new Map<number, unknown>();
        let index = 0;
        for (const id of SESSIONS) {
          index++;
          const open = { op: 'sessionOpen', id, secret: new Uint8Array([1]), ttlMs: 1000 };
          assert.deepEqual(norm(await mem.apply(index, open)), norm(await rocks.apply(index, open)));
        }
        for (const { template, skip, replayOld } of steps) {
          const cmd = resolve(template, mem, seqs);
          if (replayOld && index > 2) {
            // An index already applied (a replay after a restart) is a no-op on both.
            assert.equal(await mem.apply(index - 2, cmd), null);
            assert.equal(await rocks.apply(index - 2, cmd), null);
            continue;
          }
          index += skip === 2 ? 2 : 1;
          const a = await mem.apply(index, cmd);
          const b = await rocks.apply(index, cmd);
          assert.deepEqual(norm(a), norm(b), `outcome of ${JSON.stringify(plain(cmd))}`);
          if (a !== null && !a.replayed) assert.equal(a.revision, mem.revision);
          assert.deepEqual(reads(mem), reads(rocks));
          assert.equal(checkInvariants(mem), null);
          seen.set(mem.revision, plain(mem.range('/').kvs));
          for (const [rev, kvs] of seen) {
            if (rev < mem.compactRevision) continue;
            assert.deepEqual(
              plain(mem.range('/', { revision: rev }).kvs),
              kvs,
              `range at past revision ${rev}`,
            );
          }
        }
        const dm = await dumpOf(await mem.snapshot());
        assert.ok(dm.equals(await dumpOf(await rocks.snapshot())), 'same dump');
        await rocks.close();
        rocks = await RocksTree.open(dir);
        assert.ok(dm.equals(await dumpOf(await rocks.snapshot())), 'same dump after reopening');
        assert.deepEqual(reads(rocks), reads(mem));
        const restored = new MemoryTree();
        await restored.restore([dm]);
        assert.ok(dm.equals(await dumpOf(await restored.snapshot())), 'same dump after restore');
      } finally {
        await rocks.close();
        await mem.close();
      }
    }),
    { numRuns: 100, interruptAfterTimeLimit: 25_000 },
  );
  t.pass();
});

function resolve(template: Template, tree: KeyTree, seqs: Map<string, number>): unknown {
  if ('garbage' in template) return template.garbage;
  if ('compactBack' in template)
    return { op: 'compact', revision: Math.max(0, tree.revision - template.compactBack) };
  const { cmd } = template;
  const c = 'client' in template ? template.client : undefined;
  const base = dropUndefined(cmd);
  if (c === undefined) return base;
  const last = seqs.get(c.session) ?? 0;
  const seq = c.retry && last > 0 ? last : last + 1;
  seqs.set(c.session, seq);
  const cmdWithClient = {
    ...base,
    client: { session: c.session, seq, lowSeq: Math.max(0, seq - c.lowBack) },
  };
  // Half the time send the CBOR bytes, as a log entry would carry them.
  return seq % 2 === 0 ? encode(cmdWithClient) : cmdWithClient;
}

function dropUndefined(o: object): object {
  return JSON.parse(
    JSON.stringify(o, (_k, v) => (v instanceof Uint8Array ? { __bytes: [...v] } : v)),
    (_k, v) => (v && typeof v === 'object' && '__bytes' in v ? new Uint8Array(v.__bytes) : v),
  );
}
