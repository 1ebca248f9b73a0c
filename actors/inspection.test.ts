/**
 * The inspection stream's parts, with a real XState actor, a fake clock and an in-memory
 * publisher (a unit-test double of the NATS connection): sanitizing, the rate limit and the
 * coalesced snapshots it leaves behind, resync, leases, and the control op's validation.
 */
import test from 'ava';
import { assign, createActor, setup } from 'xstate';
import { createRaftMachine, MemoryLog } from '../machines/raft/index.ts';
import { EnsembleError, type InspectBatch, sanitize, subjects } from '../protocol/index.ts';
import { definitionOf, NodeInspector, parseControl } from './inspection.ts';

const S = subjects({ cluster: 'unit' });

const counter = setup({
  types: {
    context: {} as { n: number; password: string; data: Uint8Array },
    events: {} as { type: 'inc'; value: string },
  },
}).createMachine({
  id: 'counter',
  initial: 'low',
  context: { n: 0, password: 'hunter2', data: new Uint8Array(32) },
  states: {
    low: { on: { inc: { actions: assign({ n: ({ context }) => context.n + 1 }), target: 'high' } } },
    high: { on: { inc: { actions: assign({ n: ({ context }) => context.n + 1 }), target: 'low' } } },
  },
});

function rig(opts: { rate?: number; on?: boolean } = {}) {
  let now = 1_000_000;
  const published: InspectBatch[] = [];
  const raw: string[] = [];
  const nc = {
    publish(subject: string, data?: string | Uint8Array) {
      if (subject !== S.inspect('n1')) throw new Error(`published on ${subject}`);
      raw.push(String(data));
      published.push(JSON.parse(String(data)) as InspectBatch);
    },
  };
  let root: ReturnType<typeof createActor<typeof counter>> | undefined;
  const inspector = new NodeInspector({
    nc,
    subjects: S,
    cluster: 'unit',
    self: 'n1',
    root: () => root,
    status: () => ({
      role: 'leader',
      term: 3,
      leader: 'n1',
      vote: 'n1',
      commit: 10,
      applied: 10,
      lastIndex: 10,
      voters: ['n1'],
      learners: [],
      progress: {},
      sessions: 0,
      pid: 1,
      startedAt: 0,
    }),
    now: () => now,
    batchMs: 10 ** 9, // the test flushes by hand
    ...opts,
  });
  root = createActor(counter);
  inspector.attach(root.system);
  root.start();
  return {
    inspector,
    actor: root,
    published,
    raw,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

test('sanitize: no values, secrets or bytes; class instances named; arrays and depth bounded', (t) => {
  class Conn {
    secret = 'x';
  }
  const out = sanitize({
    term: 3,
    leader: 'n2',
    value: 'user data',
    password: 'p',
    secret: 's',
    entries: Array.from({ length: 20 }, (_, i) => ({ index: i, data: new Uint8Array(4) })),
    raw: new Uint8Array(100),
    conn: new Conn(),
    fn: () => 1,
    deep: { a: { b: { c: { d: { e: 1 } } } } },
    big: 10n,
    inf: Number.POSITIVE_INFINITY,
    long: 'y'.repeat(1000),
  }) as Record<string, unknown>;
  t.is(out.term, 3);
  t.is(out.leader, 'n2');
  t.is(out.value, '[redacted]');
  t.is(out.password, '[redacted]');
  t.is(out.secret, '[redacted]');
  const entries = out.entries as unknown[];
  t.is(entries.length, 9);
  t.deepEqual(entries[0], { index: 0, data: '[redacted]' });
  t.is(entries[8], '… 12 more');
  t.is(out.raw, '[100 bytes]');
  t.is(out.conn, '[Conn]');
  t.false('fn' in out);
  t.deepEqual(out.deep, { a: { b: { c: '[…]' } } });
  t.is(out.big, '10');
  t.is(out.inf, 'Infinity');
  t.true((out.long as string).length < 200);
  t.notThrows(() => JSON.stringify(out));
});

test('definitionOf: the machine config as JSON, with its states', (t) => {
  const def = JSON.parse(definitionOf(counter) ?? 'null') as { id: string; states: Record<string, unknown> };
  t.is(def.id, 'counter');
  t.deepEqual(Object.keys(def.states), ['low', 'high']);
  t.is(definitionOf({}), undefined);
});

test('off: nothing is kept or published; on: the first batch names every actor, then events', (t) => {
  const r = rig();
  r.actor.send({ type: 'inc', value: 'v' });
  r.inspector.flush();
  t.is(r.published.length, 0);
  t.false(r.inspector.isOn);

  r.inspector.control({ on: true, leaseMs: 5000 });
  r.actor.send({ type: 'inc', value: 'user data' });
  r.inspector.flush();
  t.is(r.published.length, 1);
  const b = r.published[0] as InspectBatch;
  t.like(b, { v: 1, cluster: 'unit', node: 'n1', seq: 1, dropped: 0 });
  t.is(b.status.term, 3);
  t.is(b.events[0]?.type, '@xstate.actor');
  t.is(b.events[0]?.name, 'counter');
  t.true(b.events[0]?.sessionId.startsWith('n1:'));
  t.deepEqual(b.events[0]?.snapshot?.value, 'low', 'the actor as it is at the batch');
  const ev = b.events.find((e) => e.type === '@xstate.event');
  t.deepEqual(ev?.event, { type: 'inc', value: '[redacted]' });
  t.deepEqual(b.events[0]?.snapshot?.context, { n: 2, password: '[redacted]', data: '[redacted]' });
  t.falsy(
    b.events.find((e) => e.type === '@xstate.snapshot'),
    'the resync already carries the state',
  );
  r.actor.send({ type: 'inc', value: 'user data' });
  r.inspector.flush();
  const snap = r.published[1]?.events.find((e) => e.type === '@xstate.snapshot');
  t.is(snap?.snapshot?.value, 'high');
  t.deepEqual(snap?.snapshot?.context, { n: 3, password: '[redacted]', data: '[redacted]' });
  t.false(r.raw.join('').includes('hunter2'));
  t.false(r.raw.join('').includes('user data'));
});

test('rate limit: events past the rate are counted; snapshots come once per batch, as they are then', (t) => {
  const r = rig({ rate: 10, on: true });
  r.inspector.flush(); // the resync batch (and start-up's events)
  r.advance(1000); // a full bucket
  for (let i = 0; i < 100; i++) r.actor.send({ type: 'inc', value: 'v' });
  r.inspector.flush();
  const b = r.published.at(-1) as InspectBatch;
  const events = b.events.filter((e) => e.type === '@xstate.event');
  const snapshots = b.events.filter((e) => e.type === '@xstate.snapshot');
  t.is(events.length, 10, 'a bucket of 10 lets 10 events through');
  t.is(b.dropped, 90);
  t.is(snapshots.length, 1, 'one snapshot for the 100 steps');
  t.deepEqual(snapshots[0]?.event, { type: 'inc', value: '[redacted]' }, 'with the last event');
  t.deepEqual(snapshots[0]?.snapshot?.context, { n: 100, password: '[redacted]', data: '[redacted]' });
  t.is(r.inspector.stats.dropped, 90);

  // The bucket refills with time; no step, no snapshot.
  r.advance(1000);
  for (let i = 0; i < 5; i++) r.actor.send({ type: 'inc', value: 'v' });
  r.inspector.flush();
  t.is((r.published.at(-1) as InspectBatch).dropped, 0);
  r.inspector.flush();
  t.deepEqual((r.published.at(-1) as InspectBatch).events, []);
});

test('a lease runs out; --inspect stays on; off clears; resync on request', (t) => {
  const r = rig();
  r.inspector.control({ on: true, leaseMs: 1000 });
  r.inspector.flush();
  t.is(r.published.length, 1);
  r.advance(1001);
  r.inspector.flush();
  t.is(r.published.length, 1, 'no batch past the lease');
  t.false(r.inspector.isOn);

  const always = rig({ on: true });
  always.advance(10 ** 7);
  always.inspector.flush();
  t.is(always.published.length, 1);
  const renewed = always.inspector.control({ on: true, leaseMs: 1000, resync: true });
  t.is(renewed.until, null, 'a lease does not shorten --inspect');
  always.inspector.flush();
  t.is(always.published.at(-1)?.events[0]?.type, '@xstate.actor', 'resync sends the actors again');
  t.false(always.inspector.control({ on: false }).on);
  always.inspector.flush();
  t.is(always.published.length, 2);
});

test('parseControl: typed errors for bad bodies', (t) => {
  t.deepEqual(parseControl({ on: true, leaseMs: 500, rate: 50, resync: true }), {
    on: true,
    leaseMs: 500,
    rate: 50,
    resync: true,
  });
  for (const bad of [
    null,
    [],
    'on',
    { on: 1 },
    { on: true, leaseMs: 1.5 },
    { on: true, rate: -1 },
    { on: true, zz: 1 },
  ]) {
    const e = t.throws(() => parseControl(bad));
    t.true(e instanceof EnsembleError && e.code === 'BAD_REQUEST', JSON.stringify(bad));
  }
});

test('definitionOf: an object shared by two transitions is written at both; a true cycle is cut', (t) => {
  const shared = { actions: 'count' };
  const config: Record<string, unknown> = {
    id: 'm',
    states: { a: { on: { x: shared, y: shared } } },
  };
  config.self = config;
  const def = JSON.parse(definitionOf({ config }) ?? 'null') as {
    states: { a: { on: Record<string, unknown> } };
    self: unknown;
  };
  t.deepEqual(def.states.a.on, { x: { actions: 'count' }, y: { actions: 'count' } });
  t.is(def.self, '[circular]');
  const raft =
    definitionOf(
      createRaftMachine({ log: new MemoryLog({ index: 0, term: 0, config: { voters: [], learners: [] } }) }),
    ) ?? '';
  t.false(raft.includes('[circular]'), 'the raft machine has shared parts, no cycles');
});
