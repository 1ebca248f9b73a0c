/**
 * The API's handlers and pending table against test doubles: a recording Raft port and a context
 * the test sets, the in-memory key tree, and replies captured as decoded outcomes. Batching (one
 * proposal and one ReadIndex per turn), the one session check, answers from the machine's
 * effects (proposals, reads, membership, leader transfer on the role change), and deadlines.
 */
import test from 'ava';
import {
  type Effect,
  initialContext,
  MemoryLog,
  type RaftContext,
  type RaftEvent,
  type Role,
} from '../../machines/raft/index.ts';
import {
  decodeReply,
  encodeCommand,
  TimeoutError,
  type ValidRequest,
  validateRequest,
} from '../../protocol/index.ts';
import { MemoryTree } from '../../storage/index.ts';
import { Applier } from '../applier.ts';
import type { WatchHub } from '../watches.ts';
import { ApiHandlers } from './handlers.ts';
import { PendingTable } from './pending.ts';
import { answerWith, newCounters, type Reply } from './reply.ts';

interface Answered {
  ok: boolean;
  code?: string;
  result?: unknown;
}

function rig(role: Role = 'leader', timeoutMs = 1000) {
  const events: RaftEvent[] = [];
  const tree = new MemoryTree();
  const log = new MemoryLog({ index: 0, term: 0, config: { voters: ['a', 'b', 'c'], learners: [] } });
  let ctx: RaftContext = {
    ...initialContext({ id: 'a', seed: 1 }, log),
    leader: role === 'leader' ? 'a' : 'b',
    term: 3,
  };
  const counters = newCounters();
  const answer = answerWith('t', counters);
  const pending = new PendingTable(answer, timeoutMs);
  const applier = new Applier(
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
    0,
  );
  const handlers = new ApiHandlers({
    self: 'a',
    cluster: 't',
    tickMs: 50,
    raft: (e) => events.push(e),
    machine: { role: () => role, context: () => ctx, lastIndex: () => log.lastIndex() },
    tree,
    applier,
    watches: {} as WatchHub,
    answer,
    pending,
    counters,
  });
  const answers: Answered[] = [];
  const reply = (): Reply => ({
    format: 'cbor',
    base64: false,
    respond: (bytes) => {
      const r = decodeReply(bytes, { cluster: 't' });
      answers.push(r.ok ? { ok: true, result: r.result } : { ok: false, code: r.error.code });
    },
  });
  const req = (op: string, body: unknown): ValidRequest => {
    const v = validateRequest(op, body);
    if (!v.ok) throw v.error;
    return v;
  };
  return {
    events,
    tree,
    applier,
    handlers,
    pending,
    answers,
    reply,
    req,
    set: (patch: Partial<RaftContext>) => {
      ctx = { ...ctx, ...patch };
    },
  };
}

const turn = () => new Promise((r) => setImmediate(r));
const bytes = (s: string) => new TextEncoder().encode(s);

test('writes of one turn become one proposal; each is answered when applied at its index', async (t) => {
  const r = rig();
  r.handlers.dispatch(r.req('put', { key: '/a', value: bytes('1') }), r.reply());
  r.handlers.dispatch(r.req('put', { key: '/b', value: bytes('2') }), r.reply());
  await turn();
  const proposals = r.events.filter((e) => e.type === 'raft.propose');
  t.is(proposals.length, 1);
  const ids = (proposals[0] as Extract<RaftEvent, { type: 'raft.propose' }>).commands.map((c) => c.id);
  t.is(ids.length, 2);
  r.handlers.effect({ type: 'proposed', ids, index: 5, term: 3 });
  r.applier.apply({
    type: 'apply',
    entries: [
      { index: 5, term: 3, type: 'normal', data: encodeCommand({ op: 'put', key: '/a', value: bytes('1') }) },
      { index: 6, term: 3, type: 'normal', data: encodeCommand({ op: 'put', key: '/b', value: bytes('2') }) },
    ],
  });
  await r.applier.waitApplied(6);
  await turn();
  t.deepEqual(
    r.answers.map((a) => a.ok),
    [true, true],
  );
  t.is((r.answers[1]!.result as { revision: number }).revision, 2);
});

test('an entry of another term at a write’s index: the write lost its place and says NOT_LEADER', async (t) => {
  const r = rig();
  r.handlers.dispatch(r.req('put', { key: '/a', value: bytes('1') }), r.reply());
  await turn();
  const [p] = r.events.filter((e) => e.type === 'raft.propose') as Extract<
    RaftEvent,
    { type: 'raft.propose' }
  >[];
  r.handlers.effect({ type: 'proposed', ids: [p!.commands[0]!.id], index: 5, term: 3 });
  r.applier.apply({ type: 'apply', entries: [{ index: 5, term: 4, type: 'noop' }] });
  await turn();
  t.deepEqual(r.answers, [{ ok: false, code: 'NOT_LEADER' }]);
});

test('reads of one turn share one ReadIndex and are served once applied; a failed round says NOT_LEADER', async (t) => {
  const r = rig();
  r.handlers.dispatch(r.req('get', { key: '/x' }), r.reply());
  r.handlers.dispatch(r.req('range', { prefix: '/' }), r.reply());
  r.handlers.dispatch(r.req('get', { key: '/x', serializable: true }), r.reply());
  t.is(r.answers.length, 1, 'the serializable read at once');
  await turn();
  const reads = r.events.filter((e) => e.type === 'raft.readIndex') as Extract<
    RaftEvent,
    { type: 'raft.readIndex' }
  >[];
  t.is(reads.length, 1);
  r.handlers.effect({ type: 'readReady', ids: reads[0]!.ids, index: 0 });
  await turn();
  t.is(r.answers.length, 3);
  r.handlers.dispatch(r.req('get', { key: '/x' }), r.reply());
  await turn();
  const again = r.events.filter((e) => e.type === 'raft.readIndex').at(-1) as Extract<
    RaftEvent,
    { type: 'raft.readIndex' }
  >;
  r.handlers.effect({ type: 'readFailed', ids: again.ids, reason: 'NOT_LEADER', leader: 'b' });
  t.deepEqual(r.answers.at(-1), { ok: false, code: 'NOT_LEADER' });
});

test('the one session check: an unknown or forged session is SESSION_EXPIRED, a known one writes', async (t) => {
  const r = rig();
  const secret = bytes('s3cr3t');
  await r.tree.apply(1, { op: 'sessionOpen', id: 's1', secret, ttlMs: 5000 });
  const put = (sec: Uint8Array) =>
    r.req('put', { key: '/k', value: bytes('v'), client: { session: 's1', secret: sec, seq: 1, lowSeq: 1 } });
  r.handlers.dispatch(put(bytes('wrong')), r.reply());
  r.handlers.dispatch(put(secret), r.reply());
  await turn();
  await turn();
  t.deepEqual(r.answers, [{ ok: false, code: 'SESSION_EXPIRED' }]);
  t.is(r.events.filter((e) => e.type === 'raft.propose').length, 1, 'only the real one proposed');
  t.not(r.handlers.knownSession('s1', secret), null);
  t.is(r.handlers.knownSession('s1', bytes('x')), null);
  t.deepEqual(r.handlers.keepalive('s1', secret), { result: { ttlMs: 5000 } });
  t.deepEqual(
    (r.handlers.keepalive('s1', bytes('x')) as { error: { code: string } }).error.code,
    'SESSION_EXPIRED',
  );
});

test('a leader transfer is answered when the role change shows the new leader, not by polling', (t) => {
  const r = rig();
  r.set({
    configs: [{ index: 1, config: { voters: ['a', 'b', 'c'], learners: [] } }],
  } as Partial<RaftContext>);
  r.handlers.dispatch(r.req('transferLeader', { to: 'b' }), r.reply());
  t.true(r.events.some((e) => e.type === 'raft.transferLeader'));
  t.is(r.answers.length, 0);
  r.handlers.effect({ type: 'roleChanged', role: 'follower', term: 4, leader: 'c' } as Effect);
  t.is(r.answers.length, 0, 'another leader is not the one asked for');
  r.handlers.effect({ type: 'roleChanged', role: 'follower', term: 4, leader: 'b' } as Effect);
  t.deepEqual(r.answers, [{ ok: true, result: { leader: 'b' } }]);
  r.handlers.dispatch(r.req('transferLeader', { to: 'a' }), r.reply());
  t.deepEqual(r.answers.at(-1), { ok: false, code: 'BAD_REQUEST' }, 'not to itself');
});

test('the pending table answers TIMEOUT to whatever outlives its deadline, and drains on stop', (t) => {
  const answers: string[] = [];
  const reply = (name: string): Reply => ({
    format: 'cbor',
    base64: false,
    respond: (b) => {
      const d = decodeReply(b, { cluster: 't' });
      answers.push(`${name}:${d.ok ? 'ok' : d.error.code}`);
    },
  });
  const p = new PendingTable(answerWith('t', newCounters()), 100);
  const w = p.addWrite({ op: 'put', reply: reply('w') });
  p.placed(w, 7, 1);
  p.addChange(reply('c'));
  let barrier: boolean | null = null;
  p.addReads([{ serve: () => {}, reply: reply('r') }, { done: (ok) => (barrier = ok) }]);
  p.transfer = { to: 'b', reply: reply('x'), deadline: performance.now() + 100 };
  p.sweep(performance.now() + 50);
  t.deepEqual(answers, [], 'nothing before the deadline');
  p.sweep(performance.now() + 200);
  t.deepEqual(answers.sort(), ['c:TIMEOUT', 'r:TIMEOUT', 'w:TIMEOUT', 'x:TIMEOUT']);
  t.false(barrier);
  t.is(p.takeAt(7), undefined, 'the timed-out write left the index too');
  t.deepEqual(p.sizes, { writes: 0, changes: 0, readBatches: 0, transfers: 0 });
  p.addWrite({ op: 'put', reply: reply('late') });
  p.drain(new TimeoutError('stopping'));
  t.true(answers.some((a) => a.startsWith('late:')));
});

test('range and list pages are bounded whatever the request asks: items, bytes, and `more` to go on', async (t) => {
  const r = rig();
  for (let i = 0; i < 1500; i++)
    r.tree.applyNow(i + 1, { op: 'put', key: `/p/${String(i).padStart(5, '0')}`, value: bytes('x') });
  const big = new Uint8Array(600 * 1024);
  for (let i = 0; i < 10; i++) r.tree.applyNow(2000 + i, { op: 'put', key: `/big/${i}`, value: big });
  const ask = (body: unknown) =>
    r.handlers.dispatch(r.req('range', { ...(body as object), serializable: true }), r.reply());
  ask({ prefix: '/p/' });
  ask({ prefix: '/p/', limit: 1_000_000_000 });
  ask({ prefix: '/big/' });
  const [dflt, huge, heavy] = r.answers.map((a) => a.result as { kvs: { key: string }[]; more: boolean });
  t.is(dflt!.kvs.length, 1000, 'the default page');
  t.true(dflt!.more);
  t.is(huge!.kvs.length, 1500, 'a limit above the maximum is cut to it (here: all 1500)');
  t.false(huge!.more);
  t.is(heavy!.kvs.length, 4, 'a page stops once it holds 2 MiB');
  t.true(heavy!.more);
  r.handlers.dispatch(
    r.req('range', { prefix: '/big/', after: heavy!.kvs.at(-1)!.key, serializable: true }),
    r.reply(),
  );
  const next = r.answers.at(-1)!.result as { kvs: { key: string }[] };
  t.is(next.kvs[0]!.key, '/big/4', 'the next page goes on after the last key');
});

test('a keepalive request is answered after a ReadIndex: a node that has not applied the open yet does not say SESSION_EXPIRED', async (t) => {
  const r = rig('follower');
  const secret = bytes('s3cr3t');
  r.handlers.dispatch(r.req('sessionKeepalive', { id: 's1', secret }), r.reply());
  await turn();
  t.deepEqual(r.answers, [], 'no answer before the barrier');
  const read = r.events.filter((e) => e.type === 'raft.readIndex').at(-1) as Extract<
    RaftEvent,
    { type: 'raft.readIndex' }
  >;
  // The open reaches this node's tree before the ReadIndex round answers.
  await r.tree.apply(1, { op: 'sessionOpen', id: 's1', secret, ttlMs: 5000 });
  r.handlers.effect({ type: 'readReady', ids: read.ids, index: 0 });
  await turn();
  t.deepEqual(r.answers, [{ ok: true, result: { ttlMs: 5000 } }]);
});

test('a new leader that has not committed an entry of its term yet does not call an unknown session expired', (t) => {
  const r = rig('leader');
  const secret = bytes('s3cr3t');
  // Elected, its no-op (index 5) not committed: its commit index (0, all it applied) may lag
  // behind an open the previous leader committed and answered.
  r.set({ termStart: 5, commit: 0 });
  t.is(r.handlers.keepalive('s9', secret), null, 'silent: another node may know it');
  r.set({ termStart: 5, commit: 5 });
  t.is(r.handlers.keepalive('s9', secret), null, 'committed, not applied here yet');
});
