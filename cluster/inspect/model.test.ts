import test from 'ava';
import type { InspectBatch, InspectEvent, InspectStatus } from '../../protocol/index.ts';
import { CLIENTS, ClusterModel, DARK_AFTER_MS, parseBatch, sanitize, valueText } from './model.ts';

const T0 = 1_700_000_000_000;

function status(over: Partial<InspectStatus> = {}): InspectStatus {
  return {
    role: 'follower',
    term: 1,
    leader: null,
    vote: null,
    commit: 0,
    applied: 0,
    lastIndex: 0,
    voters: ['n1', 'n2', 'n3'],
    learners: [],
    progress: {},
    sessions: 0,
    pid: 1000,
    startedAt: T0,
    ...over,
  };
}

/** Batches of one node with increasing seq, as a node process sends them. */
function sender(node: string, pid = 1000) {
  let seq = 0;
  return (over: Partial<InspectStatus> = {}, events: InspectEvent[] = [], dropped = 0): InspectBatch => ({
    v: 1,
    cluster: 'dev',
    node,
    seq: ++seq,
    at: 0,
    status: status({ pid, ...over }),
    events,
    dropped,
  });
}

const base = { createdAt: '0', id: null, _version: '1.0.0' } as const;
const actor = (sessionId: string, name: string, definition: unknown, value: unknown): InspectEvent => ({
  type: '@xstate.actor',
  sessionId,
  name,
  definition: definition === undefined ? undefined : JSON.stringify(definition),
  snapshot: { status: 'active', value, context: {} },
  ...base,
});
const snapshot = (sessionId: string, value: unknown, context: unknown = {}): InspectEvent => ({
  type: '@xstate.snapshot',
  sessionId,
  snapshot: { status: 'active', value, context },
  event: { type: 'x' },
  ...base,
});
const event = (sessionId: string, e: { type: string; [k: string]: unknown }): InspectEvent => ({
  type: '@xstate.event',
  sessionId,
  event: e,
  ...base,
});

test('the leader is the highest term among live nodes that claim it; a stale claim does not count', (t) => {
  const m = new ClusterModel();
  const [a, b, c] = [sender('n1'), sender('n2'), sender('n3')];
  m.applyBatch(a({ role: 'leader', term: 2, leader: 'n1' }), T0);
  m.applyBatch(b({ term: 2, leader: 'n1' }), T0);
  m.applyBatch(c({ term: 2, leader: 'n1' }), T0);
  t.deepEqual(m.leader(), { id: 'n1', term: 2 });
  // n2 won term 3 while n1, cut off, still believes it leads term 2.
  m.applyBatch(b({ role: 'leader', term: 3, leader: 'n2' }), T0 + 100);
  m.applyBatch(a({ role: 'leader', term: 2, leader: 'n1' }), T0 + 100);
  t.deepEqual(m.leader(), { id: 'n2', term: 3 });
  // n2 goes dark: the highest live claim is n1's again.
  m.applyBatch(a({ role: 'leader', term: 2, leader: 'n1' }), T0 + 1000);
  m.applyBatch(c({ term: 3, leader: 'n2' }), T0 + 1000);
  m.tick(T0 + 100 + DARK_AFTER_MS + 1);
  t.true(m.node('n2')?.dark);
  t.deepEqual(m.leader(), { id: 'n1', term: 2 });
  const leaders = m
    .timeline()
    .filter((e) => e.kind === 'leader')
    .map((e) => e.text);
  t.deepEqual(leaders, ['leader n1 (term 2)', 'leader n2 (term 3)', 'leader n1 (term 2)']);
});

test('equal terms (never in Raft): the lowest id, deterministically', (t) => {
  const m = new ClusterModel();
  m.applyBatch(sender('n2')({ role: 'leader', term: 4 }), T0);
  m.applyBatch(sender('n10')({ role: 'leader', term: 4 }), T0);
  m.applyBatch(sender('n1')({ role: 'leader', term: 4 }), T0);
  t.deepEqual(m.leader(), { id: 'n1', term: 4 });
  t.deepEqual(
    m.nodes.map((n) => n.id),
    ['n1', 'n2', 'n10'],
  );
});

test('a node is dark after more than 1.5 s without a batch, and back with its next batch', (t) => {
  const m = new ClusterModel();
  const a = sender('n1');
  m.applyBatch(a({ role: 'leader', term: 1 }), T0);
  m.tick(T0 + DARK_AFTER_MS);
  t.false(m.node('n1')?.dark, 'exactly 1.5 s is not yet dark');
  t.deepEqual(m.leader(), { id: 'n1', term: 1 });
  m.tick(T0 + DARK_AFTER_MS + 1);
  t.true(m.node('n1')?.dark);
  t.is(m.leader(), null, 'a dark leader is no leader');
  t.is(m.timeline().filter((e) => e.kind === 'dark').length, 1);
  m.tick(T0 + 5000);
  t.is(m.timeline().filter((e) => e.kind === 'dark').length, 1, 'dark once, not at every tick');
  m.applyBatch(a({ role: 'follower', term: 2 }), T0 + 6000);
  t.false(m.node('n1')?.dark);
  const last = m
    .timeline()
    .filter((e) => e.node === 'n1')
    .map((e) => e.kind);
  t.deepEqual(last.slice(-2), ['back', 'role']);
});

test('role and term changes are timeline entries', (t) => {
  const m = new ClusterModel();
  const a = sender('n1');
  m.applyBatch(a({ role: 'follower', term: 1 }), T0);
  m.applyBatch(a({ role: 'candidate', term: 2 }), T0 + 10);
  m.applyBatch(a({ role: 'candidate', term: 3 }), T0 + 20);
  m.applyBatch(a({ role: 'candidate', term: 3 }), T0 + 30);
  const texts = m
    .timeline()
    .filter((e) => e.kind === 'role' || e.kind === 'term')
    .map((e) => e.text);
  t.deepEqual(texts, ['n1: follower → candidate (term 2)', 'n1: term 2 → 3 (candidate)']);
});

test('the timeline keeps the newest entries up to its bound, ids increasing', (t) => {
  const m = new ClusterModel({ timelineMax: 10 });
  const a = sender('n1');
  for (let i = 1; i <= 40; i++) m.applyBatch(a({ term: i }), T0 + i);
  const tl = m.timeline();
  t.is(tl.length, 10);
  t.true(tl.every((e, i) => i === 0 || e.id === tl[i - 1]!.id + 1));
  t.is(tl.at(-1)!.text, 'n1: term 39 → 40 (follower)');
  const big = new ClusterModel();
  const b = sender('n1');
  for (let i = 1; i <= 700; i++) big.applyBatch(b({ term: i }), T0 + i);
  t.is(big.timeline().length, 500);
});

test('a restarted node (seq back to 1) loses its old actors; the new process announces its own', (t) => {
  const m = new ClusterModel();
  const first = sender('n1', 1000);
  m.applyBatch(first({}, [actor('n1:x:0', 'node', { id: 'node' }, 'running')]), T0);
  m.applyBatch(first({}, [actor('n1:x:1', 'raft', { id: 'raft' }, 'follower')]), T0 + 250);
  t.is(m.actors('n1').length, 2);
  const second = sender('n1', 2000);
  m.applyBatch(second({}, [actor('n1:x:0', 'node', { id: 'node' }, 'running')]), T0 + 9000);
  t.deepEqual(
    m.actors('n1').map((a) => a.sessionId),
    ['n1:x:0'],
  );
  t.true(m.timeline().some((e) => e.kind === 'restart' && e.text === 'n1 restarted (pid 2000)'));
});

test('actors: definition parsed, value and context follow snapshots, unknown ones kept without a chart', (t) => {
  const m = new ClusterModel();
  const def = { id: 'raft', initial: 'follower', states: { follower: {}, leader: {} } };
  const a = sender('n1');
  m.applyBatch(a({}, [actor('n1:x:1', 'raft', def, 'follower')]), T0);
  m.applyBatch(a({}, [snapshot('n1:x:1', 'leader', { term: 2, password: 'hunter2' })]), T0 + 250);
  const raft = m.actor('n1:x:1')!;
  t.deepEqual(raft.definition, def);
  t.is(raft.value, 'leader');
  t.deepEqual(raft.context, { term: 2, password: '<redacted>' });
  m.applyBatch(a({}, [snapshot('n1:x:9', { live: 'direct' })]), T0 + 500);
  t.is(m.actor('n1:x:9')?.definition, null);
  t.is(valueText(m.actor('n1:x:9')?.value), 'live.direct');
});

test('messages between nodes: the first and every election message at once, routine ones sampled', (t) => {
  const m = new ClusterModel({ messageSampleMs: 1000 });
  const b = sender('n2');
  m.applyBatch(b({}, [actor('n2:x:1', 'raft', { id: 'raft' }, 'follower')]), T0);
  const hb = () => event('n2:x:1', { type: 'raft.heartbeat', from: 'n1', term: 1 });
  m.applyBatch(b({}, [hb(), hb(), hb()]), T0 + 100);
  m.applyBatch(b({}, [event('n2:x:1', { type: 'raft.requestVote', from: 'n3', term: 2 })]), T0 + 200);
  m.applyBatch(b({}, [hb()]), T0 + 300);
  let msgs = m.timeline().filter((e) => e.kind === 'message');
  t.deepEqual(
    msgs.map((e) => e.text),
    ['n1 → n2 raft.heartbeat', 'n3 → n2 raft.requestVote'],
  );
  m.tick(T0 + 1200);
  msgs = m.timeline().filter((e) => e.kind === 'message');
  t.is(msgs.at(-1)?.text, 'n1 → n2 raft.heartbeat ×3');
  t.is(msgs.at(-1)?.count, 3);
  t.is(m.node('n2')?.heard.n1?.count, 4);
  t.is(m.node('n2')?.heard.n3?.type, 'raft.requestVote');
});

test('dropped events are counted per node and shown at most once per interval', (t) => {
  const m = new ClusterModel({ messageSampleMs: 1000 });
  const a = sender('n1');
  m.applyBatch(a({}, [], 5), T0);
  m.applyBatch(a({}, [], 7), T0 + 250);
  m.applyBatch(a({}, [], 1), T0 + 500);
  t.is(m.node('n1')?.dropped, 13);
  t.is(m.timeline().filter((e) => e.kind === 'dropped').length, 1);
  m.tick(T0 + 1100);
  const drops = m.timeline().filter((e) => e.kind === 'dropped');
  t.deepEqual(
    drops.map((e) => e.count),
    [5, 8],
  );
});

test('sessions: client session machines opening, suspending, expiring; the leader’s session count', (t) => {
  const m = new ClusterModel();
  const def = { id: 'session', initial: 'connecting', states: { connecting: {}, active: {}, expired: {} } };
  m.applyEvent(actor('x:0', 'session', def, 'connecting'), CLIENTS, T0);
  m.applyEvent(snapshot('x:0', 'active', { id: 's-1' }), CLIENTS, T0 + 10);
  m.applyEvent(snapshot('x:0', 'active', { id: 's-1' }), CLIENTS, T0 + 20);
  m.applyEvent(snapshot('x:0', 'suspended', { id: 's-1' }), CLIENTS, T0 + 30);
  m.applyEvent(snapshot('x:0', 'active', { id: 's-1' }), CLIENTS, T0 + 40);
  m.applyEvent(snapshot('x:0', 'expired', { id: 's-1' }), CLIENTS, T0 + 50);
  const sessions = m.timeline().filter((e) => e.kind === 'session');
  t.deepEqual(
    sessions.map((e) => e.text),
    [
      'session s-1 opened (x:0)',
      'session s-1 suspended (x:0)',
      'session s-1 reconnected (x:0)',
      'session s-1 expired (x:0)',
    ],
  );
  t.true(sessions.every((e) => e.node === CLIENTS));
  t.is(m.actors(CLIENTS).length, 1);
  t.is(m.nodes.length, 0, 'client actors make no node');

  // The leader's count of open sessions (followers' counts would say the same thing twice).
  const a = sender('n1');
  const b = sender('n2');
  m.applyBatch(a({ role: 'leader', leader: 'n1', sessions: 1 }), T0);
  m.applyBatch(b({ leader: 'n1', sessions: 1 }), T0);
  m.applyBatch(a({ role: 'leader', leader: 'n1', sessions: 2 }), T0 + 250);
  m.applyBatch(b({ leader: 'n1', sessions: 2 }), T0 + 250);
  m.applyBatch(a({ role: 'leader', leader: 'n1', sessions: 1 }), T0 + 500);
  const counts = m.timeline().filter((e) => e.kind === 'session' && e.node === 'n1');
  t.deepEqual(
    counts.map((e) => e.text),
    ['sessions 1 → 2 (opened)', 'sessions 2 → 1 (closed or expired)'],
  );
});

test('events to the sessions actor about opening or expiring are timeline entries', (t) => {
  const m = new ClusterModel();
  const a = sender('n1');
  m.applyBatch(a({}, [actor('n1:x:4', 'sessions', undefined, undefined)]), T0);
  m.applyBatch(a({}, [event('n1:x:4', { type: 'session.expired', session: 's-9' })]), T0 + 10);
  m.applyBatch(a({}, [event('n1:x:4', { type: 'tick' })]), T0 + 20);
  t.deepEqual(
    m
      .timeline()
      .filter((e) => e.kind === 'session')
      .map((e) => e.text),
    ['n1 sessions: session.expired s-9'],
  );
});

test('actors per origin are bounded: ended ones go first', (t) => {
  const m = new ClusterModel({ actorsPerOrigin: 3 });
  m.applyEvent(actor('a', 'w', { id: 'w' }, 'x'), CLIENTS, T0);
  m.applyEvent(actor('b', 'w', { id: 'w' }, 'x'), CLIENTS, T0 + 1);
  m.applyEvent(
    { ...snapshot('b', 'ended'), snapshot: { status: 'done', value: 'ended', context: {} } },
    CLIENTS,
    T0 + 2,
  );
  m.applyEvent(actor('c', 'w', { id: 'w' }, 'x'), CLIENTS, T0 + 3);
  m.applyEvent(actor('d', 'w', { id: 'w' }, 'x'), CLIENTS, T0 + 4);
  t.deepEqual(
    m.actors(CLIENTS).map((a) => a.sessionId),
    ['a', 'c', 'd'],
  );
});

test('dump and load: a page’s replica equals the server’s model and goes on alike', (t) => {
  const server = new ClusterModel({ messageSampleMs: 1000 });
  const a = sender('n1');
  const b = sender('n2');
  server.applyBatch(a({ role: 'leader', term: 2 }, [actor('n1:x:1', 'raft', { id: 'raft' }, 'leader')]), T0);
  server.applyBatch(b({ term: 2 }, [event('n2:x:1', { type: 'raft.heartbeat', from: 'n1' })]), T0);
  server.applyBatch(b({ term: 2 }, [event('n2:x:1', { type: 'raft.heartbeat', from: 'n1' })]), T0 + 1);
  server.applyEvent(actor('x:0', 'session', { id: 'session' }, 'connecting'), CLIENTS, T0 + 5);
  const page = new ClusterModel({ messageSampleMs: 1000 });
  page.load(JSON.parse(JSON.stringify(server.dump())));
  t.deepEqual(page.dump(), server.dump());
  t.deepEqual(page.leader(), { id: 'n1', term: 2 });
  t.deepEqual(page.actor('n1:x:1')?.definition, { id: 'raft' });
  // The same inputs from here on give the same model.
  const next = b({ role: 'leader', term: 3 }, [
    event('n2:x:1', { type: 'raft.heartbeat', from: 'n1' }),
    event('n2:x:1', { type: 'raft.heartbeat', from: 'n1' }),
  ]);
  for (const x of [server, page]) {
    x.applyBatch(next, T0 + 300);
    x.tick(T0 + 1600);
  }
  t.deepEqual(page.dump(), server.dump());
  t.deepEqual(page.leader(), { id: 'n2', term: 3 }, 'n1 went dark at 1.5 s');
  t.true(
    page.timeline().some((e) => e.text === 'n1 → n2 raft.heartbeat ×3'),
    'sampled across the load',
  );
  t.throws(() => page.load({ v: 2 } as never), { instanceOf: TypeError });
});

test('parseBatch takes what the model reads and refuses the rest', (t) => {
  const good = sender('n1')();
  t.deepEqual(parseBatch(JSON.parse(JSON.stringify(good))), good);
  t.is(parseBatch(null), null);
  t.is(parseBatch({ ...good, v: 2 }), null);
  t.is(parseBatch({ ...good, node: 'a.b' }), null);
  t.is(parseBatch({ ...good, status: { role: 'leader' } }), null);
  const odd = parseBatch({ ...good, events: [{ type: 'nope' }, good.events, actor('n1:x:0', 'n', {}, 'a')] });
  t.is(odd?.events.length, 1, 'events of unknown shape are dropped, the batch kept');
});

test('sanitize: secrets redacted, bytes summarized, long things cut', (t) => {
  t.deepEqual(sanitize({ secret: 'x', token: null, nested: { pass: 'y' } }), {
    secret: '<redacted>',
    token: null,
    nested: { pass: '<redacted>' },
  });
  t.is(sanitize(new Uint8Array(12)), '<12 bytes>');
  t.is(sanitize({ type: 'Buffer', data: [1, 2, 3] }), '<3 bytes>');
  t.deepEqual(sanitize(Array.from({ length: 10 }, (_, i) => i)), [0, 1, 2, 3, 4, 5, 6, 7, '… 2 more']);
  t.is((sanitize('x'.repeat(500)) as string).length, 201);
  t.is(sanitize(Number.NaN), 'NaN');
  const deep = sanitize({ a: { b: { c: { d: { e: { f: { g: 1 } } } } } } });
  t.is(JSON.stringify(deep), '{"a":{"b":{"c":{"d":{"e":{"f":"…"}}}}}}');
});
