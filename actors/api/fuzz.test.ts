/**
 * The API's handlers and ingress, fuzzed with fast-check: arbitrary op names and bodies, valid
 * requests of every op with mutations, every kind of caller (peer, admin, a client with grants,
 * one without), through validation and dispatch against the in-memory key tree, a real watch hub
 * and a pending table, with the Raft machine played by the test (proposals placed, refused or
 * lost to another leader's entries, reads confirmed or failed, membership changes, leader
 * transfers). Every request must get exactly one answer, which decodes to a result or a typed
 * error; never INTERNAL (what a handler answers when something untyped was thrown). The same
 * again through the ingress (decoding, callers from the `Nats-Request-Info` header, routing and
 * forwarding), with raw bytes and arbitrary subjects, on a leader and on a follower.
 *
 * The rig is api.test.ts's, extended (a real WatchHub on a NATS double, quotas, callers); the
 * ingress is driven through its private message handler (`onApi`), since nothing else reaches
 * it without NATS.
 */
import assert from 'node:assert/strict';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import test from 'ava';
import fc from 'fast-check';
import {
  type Effect,
  type Entry,
  initialContext,
  MemoryLog,
  type RaftContext,
  type RaftEvent,
  type Role,
} from '../../machines/raft/index.ts';
import {
  type Caller,
  decodeReply,
  EnsembleError,
  encodeEnvelope,
  isErrorCode,
  MAX_TTL_MS,
  ops,
  PEER_CALLER,
  REQUEST_INFO_HEADER,
  subjects,
  TimeoutError,
  validateRequest,
} from '../../protocol/index.ts';
import { MemoryTree } from '../../storage/index.ts';
import { Applier } from '../applier.ts';
import { WatchHub } from '../watches.ts';
import { ApiHandlers } from './handlers.ts';
import { ApiIngress } from './ingress.ts';
import { PendingTable } from './pending.ts';
import { answerWith, newCounters, type Reply } from './reply.ts';

fc.configureGlobal({ includeErrorInReport: true });

const CLUSTER = 't';
const S = subjects({ cluster: CLUSTER });
const SECRET = new Uint8Array([1, 2, 3]);
const turn = () => new Promise<void>((r) => setImmediate(r));

/** A small deterministic generator for the machine's decisions (seeded by fast-check). */
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x1_0000_0000;
  };
}

// ---------------------------------------------------------------------------------------------
// The rig

/** A NATS connection double: publishes go nowhere, requests find no responders. */
const natsDouble = {
  publish: () => {},
  subscribe: () => ({ unsubscribe: () => {} }),
  request: () =>
    Promise.reject(Object.assign(new Error('503 no responders'), { isNoResponders: () => true })),
} as unknown as NatsConnection;

interface Answer {
  readonly ok: boolean;
  readonly code?: string;
}

/** Quotas the node runs with: roomy, or tight enough that requests meet them. */
const QUOTAS = {
  roomy: { sessionsPerUser: 3, keysPerSession: 2, databaseBytes: 64 * 1024, requestsPerSecond: 0 },
  tight: { sessionsPerUser: 1, keysPerSession: 1, databaseBytes: 1, requestsPerSecond: 0.5 },
} as const;

async function rig(role: Role, quotas: keyof typeof QUOTAS = 'roomy') {
  const events: RaftEvent[] = [];
  const tree = new MemoryTree();
  // Some state to find: a session the requests may know, keys, a grant for client ann.
  tree.applyNow(1, { op: 'sessionOpen', id: 's1', secret: SECRET, ttlMs: 60_000, owner: 'ann' });
  tree.applyNow(2, { op: 'put', key: '/a/x', value: new Uint8Array([1]) });
  tree.applyNow(3, { op: 'put', key: '/b', value: new Uint8Array([2]) });
  tree.applyNow(4, { op: 'authGrant', user: 'ann', prefix: '/a/', read: true, write: true });
  const log = new MemoryLog({ index: 0, term: 0, config: { voters: ['a', 'b', 'c'], learners: [] } });
  const ctx: RaftContext = {
    ...initialContext({ id: 'a', seed: 1 }, log),
    leader: role === 'leader' ? 'a' : 'b',
    term: 3,
    configs: [{ index: 1, config: { voters: ['a', 'b', 'c'], learners: ['d'] } }],
  };
  const counters = newCounters();
  const answer = answerWith(CLUSTER, counters);
  const pending = new PendingTable(answer, 60_000);
  const watches = new WatchHub({ nc: natsDouble, subjects: S, self: 'a', tree, maxPerSession: 3 });
  const applier: Applier = new Applier(
    {
      raft: () => {},
      tree: {
        apply: (i, d) => tree.apply(i, d),
        sync: (done) => done(null),
        restore: (_d, done) => done(null),
      },
      compact: (_s, done) => done(null),
      applied: (e, o) => handlers.applied(e, o),
      fatal: (e) => {
        throw e;
      },
    },
    4,
  );
  const machine = { role: () => role, context: () => ctx, lastIndex: () => log.lastIndex() };
  const handlers: ApiHandlers = new ApiHandlers({
    self: 'a',
    cluster: CLUSTER,
    tickMs: 50,
    raft: (e) => events.push(e),
    machine,
    tree,
    applier,
    watches,
    answer,
    pending,
    counters,
    quotas: QUOTAS[quotas],
  });
  /** Every answer, by request. */
  const answers: Answer[][] = [];
  const reply = (): Reply => {
    const mine: Answer[] = [];
    answers.push(mine);
    return {
      format: 'cbor',
      base64: false,
      respond: (bytes) => {
        const r = decodeReply(bytes, { cluster: CLUSTER });
        if (!r.ok) assert.ok(r.error instanceof EnsembleError, 'an untyped error');
        mine.push(r.ok ? { ok: true } : { ok: false, code: r.error.code });
      },
    };
  };
  return {
    events,
    tree,
    applier,
    handlers,
    pending,
    watches,
    answers,
    reply,
    machine,
    counters,
    answer,
    next: 5,
  };
}

type Rig = Awaited<ReturnType<typeof rig>>;

/**
 * Plays the Raft machine until the handlers ask nothing more: proposals placed and applied (or
 * refused, or their indexes taken by another leader's entries, or left hanging), reads confirmed
 * or failed, membership changes accepted (and applied) or refused, transfers done or not. Then
 * the node stops: whatever is still held is answered by the pending table.
 */
async function playMachine(r: Rig, random: () => number): Promise<void> {
  let last = 4;
  const applyEntries = (entries: Entry[]) => {
    if (entries.length === 0) return;
    r.applier.apply({ type: 'apply', entries });
    last = entries.at(-1)!.index;
  };
  const effect = (e: Effect) => r.handlers.effect(e);
  for (let round = 0; round < 30; round++) {
    await turn();
    await r.applier.waitApplied(last);
    const events = r.events.splice(0);
    if (events.length === 0) break;
    for (const e of events) {
      switch (e.type) {
        case 'raft.propose': {
          const ids = e.commands.map((c) => c.id);
          const x = random();
          if (x < 0.1) {
            effect({ type: 'proposeFailed', ids, reason: 'NOT_LEADER', leader: 'b' });
            break;
          }
          const index = r.next;
          r.next += ids.length;
          effect({ type: 'proposed', ids, index, term: 3 });
          if (x < 0.15) break; // never committed here: answered when the node stops
          const lost = x < 0.25;
          applyEntries(
            e.commands.map(
              (c, i): Entry =>
                lost
                  ? { index: index + i, term: 4, type: 'noop' }
                  : { index: index + i, term: 3, type: 'normal', data: c.data },
            ),
          );
          break;
        }
        case 'raft.readIndex':
          if (random() < 0.15) effect({ type: 'readFailed', ids: e.ids, reason: 'NOT_LEADER', leader: 'b' });
          else effect({ type: 'readReady', ids: e.ids, index: r.applier.index });
          break;
        case 'raft.changeMembership': {
          const x = random();
          if (x < 0.3) {
            const reason = x < 0.1 ? 'NOT_LEADER' : x < 0.2 ? 'CHANGE_PENDING' : 'INVALID';
            effect({ type: 'changeResult', id: e.id, ok: false, index: 0, reason, leader: 'b' });
            break;
          }
          const index = r.next++;
          effect({ type: 'changeResult', id: e.id, ok: true, index, leader: 'a' });
          if (x < 0.9) applyEntries([{ index, term: 3, type: 'noop' }]);
          break;
        }
        case 'raft.transferLeader':
          if (random() < 0.5) effect({ type: 'roleChanged', role: 'follower', term: 4, leader: e.to });
          break;
        default:
          break;
      }
    }
  }
  await r.applier.waitApplied(last);
  await turn();
  r.pending.drain(new TimeoutError('node stopping'));
  await turn();
  r.watches.stop();
}

/** Every request got exactly one answer: a result or a typed error, never INTERNAL. */
function checkAnswers(answers: readonly Answer[][], seen: Map<string, number>): void {
  answers.forEach((a, i) => {
    assert.equal(a.length, 1, `request ${i} got ${a.length} answers: ${JSON.stringify(a)}`);
    const x = a[0]!;
    const code = x.ok ? 'OK' : x.code!;
    seen.set(code, (seen.get(code) ?? 0) + 1);
    if (!x.ok) {
      assert.ok(isErrorCode(x.code), `not a wire code: ${x.code}`);
      assert.notEqual(x.code, 'INTERNAL', `request ${i} was answered INTERNAL`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Requests

const path = fc
  .array(fc.constantFrom('a', 'b', 'x', 'q'), { minLength: 1, maxLength: 3 })
  .map((s) => `/${s.join('/')}`);
const key = fc.oneof(path, fc.constantFrom('/a/x', '/a/y', '/b'));
const prefix = fc.oneof(
  path.map((p) => `${p}/`),
  fc.constantFrom('/', '/a/', '/q/job-'),
);
const value = fc.oneof(fc.uint8Array({ maxLength: 8 }), fc.string({ maxLength: 6 }));
const sessionId = fc.constantFrom('s1', 's1', 's2', 'nope');
const secret = fc.oneof(
  { weight: 4, arbitrary: fc.constant(SECRET) },
  { weight: 1, arbitrary: fc.constant(new Uint8Array([9])) },
);
const token = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'w1', 'w2');
const user = fc.constantFrom('ann', 'bob');
const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined, freq: 2 });
const tag = fc
  .record({ session: sessionId, secret, seq: fc.nat(5), back: fc.nat(2) })
  .map(({ back, ...c }) => ({ ...c, lowSeq: Math.max(0, c.seq - back) }));
const txnOp = fc.oneof(
  fc.record({ op: fc.constant('put'), key, value, ephemeral: maybe(fc.boolean()) }),
  fc.record({ op: fc.constant('delete'), key, subtree: maybe(fc.boolean()) }),
  fc.record({ op: fc.constant('get'), key }),
);

const bodies: { readonly [op: string]: fc.Arbitrary<object> } = {
  get: fc.record({ key, serializable: maybe(fc.boolean()), revision: maybe(fc.integer({ min: 1, max: 9 })) }),
  put: fc.record({
    key,
    value,
    ifAbsent: maybe(fc.boolean()),
    ifVersion: maybe(fc.nat(2)),
    ephemeral: maybe(fc.boolean()),
    client: maybe(tag),
  }),
  delete: fc.record({ key: fc.oneof(key, fc.constant('/')), subtree: fc.constant(true), client: maybe(tag) }),
  list: fc.record({
    key: maybe(fc.oneof(key, fc.constant('/'))),
    limit: maybe(fc.integer({ min: 1, max: 3 })),
    serializable: maybe(fc.boolean()),
  }),
  range: fc.record({
    prefix,
    limit: maybe(fc.integer({ min: 1, max: 10 ** 6 })),
    after: maybe(fc.string({ maxLength: 4 })),
    serializable: maybe(fc.boolean()),
    revision: maybe(fc.integer({ min: 1, max: 9 })),
  }),
  txn: fc.record({
    compare: fc.array(
      fc.record({
        key,
        target: fc.constantFrom('version', 'modRevision'),
        result: fc.constantFrom('eq', 'gt'),
        value: fc.nat(3),
      }),
      { maxLength: 2 },
    ),
    success: fc.array(txnOp, { maxLength: 2 }),
    failure: fc.array(txnOp, { maxLength: 2 }),
    client: maybe(tag),
  }),
  createSequential: fc.record({ prefix, value, ephemeral: maybe(fc.boolean()), client: maybe(tag) }),
  status: fc.constant({}),
  memberAdd: fc.record({ id: token }),
  memberPromote: fc.record({ id: token }),
  memberRemove: fc.record({ id: token }),
  transferLeader: fc.record({ to: maybe(token) }),
  sessionOpen: fc.record({
    ttlMs: fc.integer({ min: 1, max: MAX_TTL_MS }),
    id: maybe(sessionId),
    secret: maybe(secret),
  }),
  sessionKeepalive: fc.record({ id: sessionId, secret }),
  sessionClose: fc.record({ id: sessionId, secret }),
  watch: fc
    .tuple(
      fc.record({
        id: token,
        fromRevision: maybe(fc.integer({ min: 1, max: 9 })),
        prevValue: maybe(fc.boolean()),
        inbox: fc.constantFrom('_INBOX.ann.w', '_INBOX.bob.w', '_INBOX.client.x'),
        session: sessionId,
        secret,
      }),
      fc.oneof(
        key.map((k) => ({ key: k })),
        prefix.map((p) => ({ prefix: p })),
        key.map((s) => ({ subtree: s })),
      ),
    )
    .map(([w, target]) => ({ ...w, ...target })),
  watchCancel: fc.record({ id: token, session: sessionId, secret }),
  watchAck: fc.record({ id: token, session: sessionId, secret, seq: fc.nat(5), shared: maybe(fc.boolean()) }),
  compact: fc.record({ revision: fc.integer({ min: 1, max: 12 }) }),
  authGrant: fc.record({ user, prefix, read: maybe(fc.boolean()), write: maybe(fc.boolean()) }),
  authRevoke: fc.record({ user, prefix }),
  authList: fc.record({ user: maybe(user) }),
};

const hostile = fc.oneof(
  fc.constantFrom<unknown>(
    null,
    -1,
    1.5,
    Number.NaN,
    '',
    '/',
    'x'.repeat(5000),
    [],
    {},
    new Uint8Array(0),
    true,
  ),
  fc.anything({
    maxDepth: 2,
    withBigInt: true,
    withMap: true,
    withTypedArray: true,
    withNullPrototype: true,
  }),
);
const FIELDS = [
  'key',
  'value',
  'prefix',
  'client',
  'id',
  'secret',
  'session',
  'inbox',
  'ttlMs',
  'revision',
  'success',
  'user',
  'to',
  'op',
];

/** An op name (mostly a real one) and a body (mostly valid for it, sometimes mutated or anything). */
const request = fc.oneof(
  {
    weight: 12,
    arbitrary: fc
      .constantFrom(...ops.filter((op) => Object.hasOwn(bodies, op)))
      .chain((op) => bodies[op]!.map((body) => ({ op: op as string, body: body as unknown }))),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.constantFrom(...ops.filter((op) => Object.hasOwn(bodies, op))),
        fc.constantFrom(...FIELDS),
        hostile,
      )
      .chain(([op, field, v]) =>
        bodies[op]!.map((body) => ({ op: op as string, body: { ...body, [field]: v } as unknown })),
      ),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.oneof(
        fc.constantFrom(...ops),
        fc.string({ maxLength: 12 }),
        fc.constantFrom('__proto__', 'toString', 'constructor'),
      ),
      body: fc.oneof(hostile, fc.dictionary(fc.constantFrom(...FIELDS), hostile, { maxKeys: 4 })),
    }),
  },
);

const caller: fc.Arbitrary<Caller> = fc.constantFrom<Caller>(
  PEER_CALLER,
  PEER_CALLER,
  { kind: 'admin', user: 'admin' },
  { kind: 'admin', user: 'admin' },
  { kind: 'client', user: 'ann' },
  { kind: 'client', user: 'ann' },
  { kind: 'client', user: 'nobody' },
);

// ---------------------------------------------------------------------------------------------
// Handlers

test('any op name and body through validation and dispatch: exactly one answer each, a result or a typed error', async (t) => {
  const seen = new Map<string, number>();
  const served = new Set<string>();
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom<Role>('leader', 'leader', 'follower'),
      fc.constantFrom<keyof typeof QUOTAS>('roomy', 'roomy', 'roomy', 'tight'),
      fc.array(fc.tuple(request, caller), { minLength: 1, maxLength: 12 }),
      fc.nat(),
      async (role, quotas, requests, seed) => {
        const r = await rig(role, quotas);
        const dispatched: (string | null)[] = [];
        for (const [{ op, body }, who] of requests) {
          // What the ingress does with a decoded body (route): validate, then serve.
          const v = validateRequest(op, body);
          dispatched.push(v.ok ? v.op : null);
          if (!v.ok) r.answer(r.reply(), { error: v.error });
          else r.handlers.dispatch(v, r.reply(), who);
        }
        await playMachine(r, prng(seed));
        assert.equal(r.answers.length, requests.length);
        checkAnswers(r.answers, seen);
        r.answers.forEach((a, i) => {
          if (a[0]?.ok && dispatched[i]) served.add(dispatched[i]);
        });
      },
    ),
    { numRuns: 800 },
  );
  t.deepEqual(
    ops.filter((op) => !served.has(op)),
    [],
    'ops never served with a result (add or fix a body generator)',
  );
  t.log([...seen].map(([c, n]) => `${c} ${n}`).join(', '));
  for (const code of [
    'OK',
    'BAD_REQUEST',
    'PERMISSION_DENIED',
    'SESSION_EXPIRED',
    'NOT_LEADER',
    'TIMEOUT',
    'QUOTA_EXCEEDED',
    'RATE_LIMITED',
  ])
    t.true(seen.has(code), `reached ${code}: ${[...seen]}`);
});

test('dispatch on its own: a request dispatched twice in one turn, or a barrage of one op, is still answered once each', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      request,
      caller,
      fc.integer({ min: 2, max: 40 }),
      fc.nat(),
      async ({ op, body }, who, times, seed) => {
        const v = validateRequest(op, body);
        fc.pre(v.ok);
        if (!v.ok) return;
        const r = await rig('leader');
        for (let i = 0; i < times; i++) r.handlers.dispatch(v, r.reply(), who);
        await playMachine(r, prng(seed));
        checkAnswers(r.answers, new Map());
      },
    ),
    { numRuns: 300 },
  );
  t.pass();
});

// ---------------------------------------------------------------------------------------------
// Ingress

interface SentMsg {
  readonly msg: Msg;
  readonly responses: Uint8Array[];
}

/** A NATS message double: what the ingress reads of one, and its answers. */
function message(subject: string, data: Uint8Array, info: string | null): SentMsg {
  const responses: Uint8Array[] = [];
  const msg = {
    subject,
    data,
    reply: '_INBOX.client.r1',
    headers: info === null ? undefined : { get: (k: string) => (k === REQUEST_INFO_HEADER ? info : '') },
    respond: (bytes: Uint8Array) => {
      responses.push(bytes);
      return true;
    },
  } as unknown as Msg;
  return { msg, responses };
}

/** The ingress's message handler (private: nothing else reaches it without NATS). */
type OnApi = (msg: Msg, anyNode: boolean) => void;

const info = fc.oneof(
  fc.constant(null),
  fc.constantFrom(
    '{"user":"ann"}',
    '{"user":"nobody"}',
    '{"user":"admin"}',
    '{}',
    'not json',
    '{"user":""}',
    '{"user":5}',
  ),
  fc.string({ maxLength: 20 }),
);

/** Mostly this cluster's envelopes. */
const ourCluster = fc.oneof(
  { weight: 9, arbitrary: fc.constant(true) },
  { weight: 1, arbitrary: fc.constant(false) },
);

const wire = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(request, fc.constantFrom('cbor' as const, 'json' as const)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) },
);

test('the ingress: raw bytes, any subject, any Nats-Request-Info, on a leader and a follower: one typed answer each', async (t) => {
  const seen = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom<Role>('leader', 'follower'),
      fc.array(fc.tuple(wire, info, fc.boolean(), ourCluster), { minLength: 1, maxLength: 8 }),
      fc.nat(),
      async (role, msgs, seed) => {
        const r = await rig(role);
        const ingress = new ApiIngress({
          nc: natsDouble,
          subjects: S,
          cluster: CLUSTER,
          self: 'a',
          machine: r.machine,
          forwardTimeoutMs: 1000,
          handlers: r.handlers,
          answer: r.answer,
          counters: r.counters,
        });
        const onApi = (ingress as unknown as { onApi: OnApi }).onApi.bind(ingress);
        const sent: SentMsg[] = [];
        for (const [w, who, anyNode, cluster] of msgs) {
          let data: Uint8Array;
          let op = 'get';
          if (w instanceof Uint8Array) data = w;
          else {
            const [{ op: o, body }, format] = w;
            op = o;
            try {
              data = encodeEnvelope(body, { cluster: cluster ? CLUSTER : 'other', format });
            } catch {
              data = new Uint8Array([0xff]); // a body no encoder takes: bytes nobody can read
            }
          }
          const subject = anyNode ? `${S.prefix}.api.${op}` : `${S.prefix}.node.a.api.${op}`;
          const m = message(subject, data, who);
          sent.push(m);
          onApi(m.msg, anyNode);
        }
        await playMachine(r, prng(seed));
        // Forwards to the leader find no responders: answered NOT_LEADER once that settles.
        await turn();
        const answers = sent.map((m) =>
          m.responses.map((b) => {
            const d = decodeReply(b, { cluster: CLUSTER });
            if (!d.ok) assert.ok(d.error instanceof EnsembleError, 'an untyped error');
            return d.ok ? { ok: true } : { ok: false, code: d.error.code };
          }),
        );
        checkAnswers(answers, seen);
      },
    ),
    { numRuns: 600 },
  );
  t.log([...seen].map(([c, n]) => `${c} ${n}`).join(', '));
  for (const code of ['OK', 'BAD_REQUEST', 'UNKNOWN_OP', 'NOT_LEADER', 'PERMISSION_DENIED', 'WRONG_CLUSTER'])
    t.true(seen.has(code), `reached ${code}: ${[...seen]}`);
});
