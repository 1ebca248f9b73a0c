/**
 * Hostile peers, fuzzed with fast-check. The frame checks (frames.ts) get anything a CBOR decoder
 * could hand over, valid frames with mutated fields, and the bytes of valid frames flipped and
 * cut: they never throw, refuse what is malformed, and what they accept is a fixed point. Then
 * frames that pass the checks but lie (huge terms, indexes past the log, unknown senders,
 * made-up configurations, snapshots of any shape) are fed to running machines in every role:
 * stepping never throws, the test runtime never meets a write it cannot perform, and the
 * invariants a node keeps on its own hold (terms and commits only grow, one vote per term,
 * commit within the log, entries applied once each, in order, only up to commit).
 *
 * (`decodePeer` lives in protocol/, which machines/ may not import, tests included; the bytes
 * here go through cbor-x with the protocol's options, which is what decodePeer runs after its
 * plain-CBOR scan.)
 */
import assert from 'node:assert/strict';
import test from 'ava';
import { Encoder } from 'cbor-x';
import fc from 'fast-check';
import type { Effect, RaftEvent } from './events.ts';
import {
  isNodeId,
  MAX_FRAME_MESSAGES,
  MAX_TERM,
  validatePeerFrame,
  validateSnapshotChunk,
  validateSnapshotMeta,
} from './frames.ts';
import { roleOf } from './machine.ts';
import { type Message, messageTypes } from './messages.ts';
import { lastIndex } from './state.ts';
import { TestCluster, type TestNode } from './testing.ts';

fc.configureGlobal({ includeErrorInReport: true });

const cbor = new Encoder({
  useRecords: false,
  mapsAsObjects: true,
  tagUint8Array: false,
  variableMapSize: true,
  pack: false,
  structuredClone: false,
  bundleStrings: false,
  int64AsNumber: true,
} as ConstructorParameters<typeof Encoder>[0]);

const SELF = 'a';
const IDS = ['a', 'b', 'c', 'd', 'zz', 'evil_node-1'];

// ---------------------------------------------------------------------------------------------
// Raw messages: mostly well-formed, with numbers from the corners

/** Small numbers (near the terms and indexes of a young cluster) and the corners. */
const num = fc.oneof(
  { weight: 8, arbitrary: fc.nat(6) },
  { weight: 2, arbitrary: fc.nat(60) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(2 ** 31, 2 ** 32, 2 ** 53 - 1, Number.MAX_SAFE_INTEGER - 1, 1_000_000),
  },
);
/** What a peer could put in a number field: numbers above, and what is not a whole number. */
const badNum = fc.constantFrom<unknown>(
  -1,
  -2,
  -0.5,
  0.5,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  2 ** 53,
  2 ** 64,
  '1',
  null,
  true,
  [],
  10n,
);
const numField: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 20, arbitrary: num },
  { weight: 1, arbitrary: badNum },
);
const id = fc.constantFrom(...IDS);
const config = fc.record({
  voters: fc.uniqueArray(id, { maxLength: 4 }),
  learners: fc.uniqueArray(id, { maxLength: 2 }),
});

/** Entries from `first` on, terms not decreasing (what the checks require). */
const entriesFrom = (first: number) =>
  fc
    .array(
      fc.record({
        dt: fc.nat(2),
        kind: fc.constantFrom('normal', 'noop', 'config'),
        config,
        data: fc.uint8Array({ maxLength: 4 }),
      }),
      { maxLength: 5 },
    )
    .chain((specs) =>
      num.map((start) => {
        let term = start;
        return specs.map((s, i) => {
          term = Math.min(term + s.dt, Number.MAX_SAFE_INTEGER);
          const head = { index: first + i, term };
          return s.kind === 'normal'
            ? { ...head, type: 'normal', data: s.data }
            : s.kind === 'noop'
              ? { ...head, type: 'noop' }
              : { ...head, type: 'config', config: s.config };
        });
      }),
    );

const ids = fc.array(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 3 });

/** One message from `from`, of any type a frame may carry, its numbers drawn from `numField`. */
const rawMessage = (
  from: string,
  numField: fc.Arbitrary<unknown>,
  termField: fc.Arbitrary<unknown>,
): fc.Arbitrary<Record<string, unknown>> =>
  fc.oneof(
    fc
      .record({
        term: termField,
        prevIndex: num.map((i) => Math.min(i, Number.MAX_SAFE_INTEGER - 8)),
        prevTerm: numField,
        commit: numField,
        seq: numField,
      })
      .chain((m) =>
        entriesFrom(m.prevIndex + 1).map((entries) => ({ type: 'raft.appendEntries', from, ...m, entries })),
      ),
    fc
      .record({
        term: termField,
        success: fc.boolean(),
        index: numField,
        hintIndex: numField,
        hintTerm: numField,
        seq: numField,
      })
      .map((m) => ({ type: 'raft.appendResult', from, ...m })),
    fc
      .record({ term: termField, commit: numField, seq: numField })
      .map((m) => ({ type: 'raft.heartbeat', from, ...m })),
    fc.record({ term: termField, seq: numField }).map((m) => ({ type: 'raft.heartbeatResult', from, ...m })),
    fc
      .record({
        term: termField,
        lastIndex: numField,
        lastTerm: numField,
        preVote: fc.boolean(),
        transfer: fc.boolean(),
      })
      .map((m) => ({ type: 'raft.requestVote', from, ...m })),
    fc
      .record({ term: termField, granted: fc.boolean(), preVote: fc.boolean() })
      .map((m) => ({ type: 'raft.voteResult', from, ...m })),
    fc
      .record({ term: termField, index: numField, seq: numField })
      .map((m) => ({ type: 'raft.installSnapshotResult', from, ...m })),
    fc.record({ term: termField }).map((m) => ({ type: 'raft.timeoutNow', from, ...m })),
    fc.record({ term: termField, ids }).map((m) => ({ type: 'raft.forwardRead', from, ...m })),
    fc
      .record({ term: termField, ids, index: fc.oneof(numField, fc.constant(-1)) })
      .map((m) => ({ type: 'raft.forwardReadResult', from, ...m })),
  );

const frameOf = (
  to: fc.Arbitrary<string>,
  numField: fc.Arbitrary<unknown>,
  termField: fc.Arbitrary<unknown>,
) =>
  id.chain((from) =>
    fc.record({
      from: fc.constant(from),
      to,
      inc: fc.constantFrom('inc-1', 'x'),
      msgs: fc.array(rawMessage(from, numField, termField), { minLength: 1, maxLength: 4 }),
    }),
  );

/** Terms a peer may claim: small ones and the highest allowed. */
const term = fc.oneof(
  { weight: 20, arbitrary: num.map((x) => Math.min(x, MAX_TERM)) },
  { weight: 1, arbitrary: fc.constantFrom(MAX_TERM, MAX_TERM - 1) },
);

/** Well-formed frames addressed to us. */
const cleanFrame = frameOf(fc.constant(SELF), num, term);
/** Frames with a wrong number here and there (terms too high among them), now and then for another node. */
const rawFrame = frameOf(
  fc.oneof({ weight: 9, arbitrary: fc.constant(SELF) }, { weight: 1, arbitrary: id }),
  numField,
  fc.oneof({ weight: 20, arbitrary: term }, { weight: 1, arbitrary: numField }),
);

/** A raw snapshot chunk: the one way an InstallSnapshot reaches a node. */
const rawChunk = fc.record({
  from: id,
  term: numField,
  snapshot: fc.record({ index: numField, term: numField, config }),
  seq: fc.nat(3),
  last: fc.boolean(),
  data: fc.uint8Array({ maxLength: 8 }),
});

// ---------------------------------------------------------------------------------------------
// Mutations of raw frames

const anythingAtAll = fc.anything({
  maxDepth: 3,
  maxKeys: 5,
  withBigInt: true,
  withBoxedValues: true,
  withDate: true,
  withMap: true,
  withNullPrototype: true,
  withObjectString: true,
  withSet: true,
  // No sparse arrays: neither CBOR nor JSON decoding makes holes (the validators map over arrays,
  // which keeps a hole a hole).
  withSparseArray: false,
  withTypedArray: true,
  stringUnit: 'binary',
});

const hostile = fc.oneof(
  badNum,
  anythingAtAll,
  fc.constantFrom<unknown>(
    '',
    'a.b',
    'x'.repeat(65),
    'raft.installSnapshot',
    'raft.tick',
    'raft.propose',
    '__proto__',
    new Uint8Array(0),
    Array.from({ length: MAX_FRAME_MESSAGES + 1 }, () => ({})),
    Array.from({ length: 5000 }, () => 'id'),
    { voters: ['a'], learners: 'b' },
  ),
);

const FIELDS = [
  'type',
  'term',
  'from',
  'to',
  'inc',
  'msgs',
  'prevIndex',
  'prevTerm',
  'entries',
  'commit',
  'seq',
  'index',
  'success',
  'hintIndex',
  'hintTerm',
  'lastIndex',
  'lastTerm',
  'preVote',
  'transfer',
  'granted',
  'ids',
  'data',
  'config',
  'voters',
  'learners',
  'snapshot',
  'last',
];

const isPlain = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype;

/** A deep copy of the arrays and plain objects in `v` (what `mutate` writes into). */
const copy = (v: unknown): unknown =>
  Array.isArray(v)
    ? v.map(copy)
    : isPlain(v)
      ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, copy(x)]))
      : v;

/** The arrays and plain objects inside `v` (the root first), each once. */
function containers(v: unknown): (Record<string, unknown> | unknown[])[] {
  const out: (Record<string, unknown> | unknown[])[] = [];
  const seen = new Set<unknown>();
  const walk = (x: unknown) => {
    if ((!Array.isArray(x) && !isPlain(x)) || seen.has(x)) return;
    seen.add(x);
    out.push(x);
    for (const y of Object.values(x)) walk(y);
  };
  walk(v);
  return out;
}

interface Mutation {
  readonly at: number;
  readonly field: string;
  readonly how: 'replace' | 'delete' | 'add';
  readonly value: unknown;
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  at: fc.nat(),
  field: fc.constantFrom(...FIELDS),
  how: fc.constantFrom('replace' as const, 'delete' as const, 'add' as const),
  value: hostile,
});

/** Mutates a copy of `v`: replaces, deletes or adds a field somewhere, once per mutation. */
function mutate(original: unknown, ms: readonly Mutation[]): unknown {
  let v = copy(original);
  for (const m0 of ms) {
    const m = { ...m0, value: copy(m0.value) };
    const all = containers(v);
    if (all.length === 0) {
      v = m.value;
      continue;
    }
    const node = all[m.at % all.length]!;
    const keys = Object.keys(node);
    const key = keys.length > 0 ? keys[Math.floor(m.at / all.length) % keys.length]! : m.field;
    if (Array.isArray(node)) {
      if (m.how === 'delete') node.splice(Number(key), 1);
      else if (m.how === 'add') node.push(m.value);
      else node[Number(key)] = m.value;
    } else if (m.how === 'delete') delete node[key];
    else node[m.how === 'add' ? m.field : key] = m.value;
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// The frame checks

/** A reason that a check caught (not an exception of the checker itself). */
const checked = (reason: string) => !/^malformed (frame|chunk):/.test(reason);

/** What validatePeerFrame accepts is well-formed and validates to itself. */
function checkFrame(body: unknown): boolean {
  const v = validatePeerFrame(body, SELF);
  if (!v.ok) {
    assert.ok(checked(v.reason), `the checker itself failed: ${v.reason}`);
    return false;
  }
  const f = v.frame;
  assert.equal(f.to, SELF);
  assert.ok(isNodeId(f.from), 'sender is not a node id');
  assert.ok(f.msgs.length >= 1 && f.msgs.length <= MAX_FRAME_MESSAGES, 'message count');
  for (const m of f.msgs) {
    assert.equal(m.from, f.from);
    assert.ok(messageTypes.includes(m.type) && m.type !== 'raft.installSnapshot', `type ${m.type}`);
    assert.ok(Number.isSafeInteger(m.term) && m.term >= 0 && m.term <= MAX_TERM, `term ${m.term}`);
  }
  const again = validatePeerFrame(f, SELF);
  assert.ok(again.ok, `an accepted frame is refused: ${again.ok ? '' : again.reason}`);
  assert.deepStrictEqual(again.frame, f);
  return true;
}

test('validatePeerFrame takes anything: never throws, refuses with its own reasons', (t) => {
  fc.assert(
    fc.property(fc.oneof(anythingAtAll, hostile), (body) => {
      assert.equal(checkFrame(body), false);
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

test('valid frames pass; mutated ones are refused or pass as well-formed fixed points', (t) => {
  let passed = 0;
  let refused = 0;
  fc.assert(
    fc.property(cleanFrame, (frame) => {
      assert.ok(checkFrame(frame), 'a well-formed frame is refused');
    }),
    { numRuns: 1000 },
  );
  fc.assert(
    fc.property(rawFrame, fc.array(mutation, { maxLength: 3 }), (frame, ms) => {
      if (checkFrame(mutate(frame, ms))) passed++;
      else refused++;
    }),
    { numRuns: 3000 },
  );
  t.true(passed > 100 && refused > 100, `passed ${passed}, refused ${refused}`);
});

test('frames as bytes: flipped, cut and inserted bytes decode to something the checks refuse or accept, never a throw', (t) => {
  let decoded = 0;
  fc.assert(
    fc.property(
      rawFrame,
      fc.array(fc.tuple(fc.nat(), fc.nat(255), fc.constantFrom('set', 'insert', 'delete')), {
        minLength: 1,
        maxLength: 6,
      }),
      (frame, edits) => {
        const b = [...cbor.encode(frame)];
        for (const [i, x, how] of edits) {
          const at = i % (b.length + 1);
          if (how === 'set' && b.length > 0) b[at % b.length] = x;
          else if (how === 'insert') b.splice(at, 0, x);
          else b.splice(at, 1);
        }
        let body: unknown;
        try {
          body = cbor.decode(new Uint8Array(b));
        } catch {
          return; // decodePeer drops it as malformed
        }
        decoded++;
        checkFrame(body);
      },
    ),
    { numRuns: 3000 },
  );
  t.true(decoded > 100, `${decoded} decoded`);
});

test('snapshot chunks and metas: anything, and mutated chunks, never throw the checks', (t) => {
  let passed = 0;
  fc.assert(
    fc.property(
      fc.oneof(
        anythingAtAll,
        hostile,
        fc.tuple(rawChunk, fc.array(mutation, { maxLength: 3 })).map(([c, ms]) => mutate(c, ms)),
      ),
      (body) => {
        const v = validateSnapshotChunk(body);
        if (!v.ok) assert.ok(checked(v.reason), v.reason);
        else {
          passed++;
          const again = validateSnapshotChunk(v.chunk);
          assert.ok(again.ok, 'an accepted chunk is refused');
          assert.deepStrictEqual(again.chunk, v.chunk);
          assert.ok(v.chunk.term <= MAX_TERM, `chunk term ${v.chunk.term}`);
          for (const n of [...v.chunk.snapshot.config.voters, ...v.chunk.snapshot.config.learners])
            assert.ok(isNodeId(n), `member ${n}`);
        }
        // validateSnapshotMeta throws its own error type only.
        try {
          validateSnapshotMeta(isPlain(body) ? body.snapshot : body);
        } catch (err) {
          assert.ok(!(err instanceof TypeError || err instanceof RangeError), String(err));
          assert.equal((err as Error).constructor.name, 'Invalid');
        }
      },
    ),
    { numRuns: 2000 },
  );
  t.true(passed > 20, `${passed} chunks passed`);
});

// ---------------------------------------------------------------------------------------------
// Hostile but valid messages into running machines

test('a peer claiming a term near 2^53 cannot push a node past the safe integers (found by the fuzzing below)', (t) => {
  // Before the frame checks capped terms, a frame at term 2^53 - 1 made the node a follower of
  // it and a timeoutNow made it campaign at 2^53: a term the log stores refuse (TypeError on
  // persist, CorruptedError on reading the hard state back), so the node stopped.
  const c = new TestCluster(['a', 'b', 'c']);
  c.elect('b');
  const a = c.node('a');
  for (const term of [Number.MAX_SAFE_INTEGER, MAX_TERM + 1, MAX_TERM]) {
    const frame = {
      from: 'c',
      to: 'a',
      inc: 'x',
      msgs: [
        { type: 'raft.heartbeatResult', term, from: 'c', seq: 0 },
        { type: 'raft.timeoutNow', term, from: 'c' },
      ],
    };
    const v = validatePeerFrame(frame, 'a');
    t.is(v.ok, term <= MAX_TERM, `term ${term}`);
    if (v.ok) for (const m of v.frame.msgs) a.step(m);
  }
  t.true(Number.isSafeInteger(a.ctx.term) && Number.isSafeInteger(a.ctx.term + 1), `term ${a.ctx.term}`);
  t.is(a.role, 'candidate');
  const chunk = {
    from: 'c',
    term: MAX_TERM + 1,
    snapshot: { index: 1, term: 1, config: { voters: ['a'], learners: [] } },
    seq: 0,
    last: true,
    data: new Uint8Array(0),
  };
  t.false(validateSnapshotChunk(chunk).ok);
});

type Action =
  | { readonly kind: 'frame'; readonly frame: unknown }
  | { readonly kind: 'chunk'; readonly chunk: unknown }
  | { readonly kind: 'tick'; readonly times: number }
  | { readonly kind: 'persist' }
  | { readonly kind: 'propose'; readonly n: number }
  | { readonly kind: 'read' }
  | { readonly kind: 'applied' }
  | { readonly kind: 'snapshotTaken' }
  | { readonly kind: 'change'; readonly node: string; readonly change: 'addLearner' | 'promote' | 'remove' }
  | { readonly kind: 'transfer'; readonly to: string }
  | { readonly kind: 'snapshotFailed'; readonly to: string };

const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 8, arbitrary: cleanFrame.map((frame) => ({ kind: 'frame' as const, frame })) },
  { weight: 2, arbitrary: rawFrame.map((frame) => ({ kind: 'frame' as const, frame })) },
  { weight: 1, arbitrary: rawChunk.map((chunk) => ({ kind: 'chunk' as const, chunk })) },
  { weight: 3, arbitrary: fc.nat(12).map((times) => ({ kind: 'tick' as const, times })) },
  { weight: 4, arbitrary: fc.constant({ kind: 'persist' as const }) },
  { weight: 2, arbitrary: fc.nat(3).map((n) => ({ kind: 'propose' as const, n: n + 1 })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'read' as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'applied' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'snapshotTaken' as const }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('change' as const),
      node: id,
      change: fc.constantFrom('addLearner', 'promote', 'remove'),
    }),
  },
  { weight: 1, arbitrary: id.map((to) => ({ kind: 'transfer' as const, to })) },
  { weight: 1, arbitrary: id.map((to) => ({ kind: 'snapshotFailed' as const, to })) },
);

/** Watches one node's effects and context for what it must keep true whatever it is told. */
class Invariants {
  private term: number;
  private commit: number;
  private votes = new Map<number, string>();
  /** The last index handed to `apply` (reset by a restore). */
  private applied: number;
  private seen = 0;

  constructor(private readonly n: TestNode) {
    this.term = n.ctx.term;
    this.commit = n.ctx.commit;
    this.applied = n.ctx.applying;
    this.seen = n.effects.length;
  }

  check(): void {
    const { n } = this;
    const ctx = n.ctx;
    assert.ok(
      ['follower', 'preCandidate', 'candidate', 'leader'].includes(roleOf(n.snap)),
      'an unknown role',
    );
    assert.ok(ctx.term >= this.term, `term went back from ${this.term} to ${ctx.term}`);
    assert.ok(ctx.commit >= this.commit, `commit went back from ${this.commit} to ${ctx.commit}`);
    assert.ok(ctx.commit <= lastIndex(n.view), `commit ${ctx.commit} beyond the log ${lastIndex(n.view)}`);
    assert.ok(Number.isSafeInteger(ctx.term + 1), `term ${ctx.term} leaves no room for an election`);
    assert.ok(Number.isSafeInteger(ctx.commit), `commit ${ctx.commit}`);
    if (ctx.vote !== null) {
      const before = this.votes.get(ctx.term);
      assert.ok(before === undefined || before === ctx.vote, `two votes in term ${ctx.term}`);
      this.votes.set(ctx.term, ctx.vote);
    }
    this.term = ctx.term;
    this.commit = ctx.commit;
    for (const e of n.effects.slice(this.seen)) this.effect(e);
    this.seen = n.effects.length;
  }

  private effect(e: Effect): void {
    if (e.type === 'restore') this.applied = e.snapshot.index;
    if (e.type === 'apply') {
      for (const x of e.entries) {
        assert.equal(x.index, this.applied + 1, `applied ${x.index} after ${this.applied}`);
        this.applied = x.index;
      }
      assert.ok(this.applied <= this.n.ctx.commit, `applied ${this.applied} beyond commit`);
    }
  }
}

/** Runs one action against `n`: only frames and chunks that pass the checks reach it. */
function run(n: TestNode, a: Action, seq: { n: number; delivered: number }): void {
  const step = (e: RaftEvent) => n.step(e);
  switch (a.kind) {
    case 'frame': {
      const v = validatePeerFrame(a.frame, n.id);
      if (!v.ok) return;
      for (const m of v.frame.msgs) step(m);
      seq.delivered += v.frame.msgs.length;
      return;
    }
    case 'chunk': {
      const v = validateSnapshotChunk(a.chunk);
      if (!v.ok) return;
      const c = v.chunk;
      const m: Message = {
        type: 'raft.installSnapshot',
        term: c.term,
        from: c.from,
        snapshot: c.snapshot,
        data: [c.data],
      };
      step(m);
      return;
    }
    case 'tick':
      for (let i = 0; i < a.times; i++) step({ type: 'raft.tick' });
      return;
    case 'persist':
      n.persistAll();
      n.drain();
      return;
    case 'propose':
      step({
        type: 'raft.propose',
        commands: Array.from({ length: a.n }, () => ({ id: `p${seq.n++}`, data: new Uint8Array([1]) })),
      });
      return;
    case 'read':
      step({ type: 'raft.readIndex', ids: [`r${seq.n++}`] });
      return;
    case 'applied': {
      const last = n.effectsOf('apply').at(-1)?.entries.at(-1)?.index;
      if (last !== undefined) step({ type: 'raft.applied', index: last });
      return;
    }
    case 'snapshotTaken': {
      step({ type: 'raft.snapshotTaken', index: n.ctx.applied });
      const compact = n.effectsOf('compact').at(-1);
      if (compact !== undefined && compact.snapshot.index < n.log.lastIndex())
        n.log.compact(compact.snapshot);
      return;
    }
    case 'change':
      step({ type: 'raft.changeMembership', id: `c${seq.n++}`, change: { type: a.change, node: a.node } });
      return;
    case 'transfer':
      step({ type: 'raft.transferLeader', to: a.to });
      return;
    case 'snapshotFailed':
      step({ type: 'raft.snapshotFailed', to: a.to });
      return;
  }
}

/** A cluster of a, b, c with some history, and node a in the role asked for. */
function start(role: 'leader' | 'follower' | 'candidate', history: number): TestNode {
  const c = new TestCluster(['a', 'b', 'c'], { snapshotThreshold: 3 });
  c.elect(role === 'leader' ? 'a' : 'b');
  const leader = c.node(role === 'leader' ? 'a' : 'b');
  for (let i = 0; i < history; i++)
    leader.step({ type: 'raft.propose', commands: [{ id: `h${i}`, data: i }] });
  c.settle();
  const a = c.node('a');
  if (role === 'candidate') {
    c.isolate('a');
    for (let i = 0; i < 60 && a.role !== 'candidate'; i++) {
      a.step({ type: 'raft.tick' });
      // Pre-votes are granted by nobody (cut off): grant one by hand to reach the campaign.
      if (a.role === 'preCandidate')
        a.step({ type: 'raft.voteResult', term: a.ctx.term + 1, from: 'c', granted: true, preVote: true });
    }
  }
  a.drain();
  return a;
}

const RUNS = { leader: 200, follower: 150, candidate: 150 } as const;

for (const role of ['leader', 'follower', 'candidate'] as const) {
  test(`a ${role} fed hostile but valid frames, chunks and local events never throws and keeps its invariants`, (t) => {
    const reached = new Set<string>();
    const seq = { n: 0, delivered: 0 };
    fc.assert(
      fc.property(fc.nat(6), fc.array(action, { minLength: 1, maxLength: 40 }), (history, actions) => {
        const n = start(role, history);
        assert.equal(n.role === 'preCandidate' ? 'candidate' : n.role, role);
        const inv = new Invariants(n);
        for (const a of actions) {
          run(n, a, seq);
          inv.check();
          reached.add(n.role);
        }
        n.persistAll();
        inv.check();
      }),
      { numRuns: RUNS[role] },
    );
    t.true(reached.has('follower'), [...reached].join(' '));
    t.true(seq.delivered > 2 * RUNS[role], `${seq.delivered} hostile messages delivered`);
  });
}
