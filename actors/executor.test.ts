/**
 * The executor and the applier against test doubles of their ports: a log whose writes complete
 * when the test says (as a disk would, in order), a state machine answering at once or later.
 * Raft's order: answers held until earlier writes are durable (Figure 2), the leader's own sends
 * never held (thesis §10.2.1), a restore gating later writes, apply strictly in order.
 */
import test from 'ava';
import type { Effect, Entry, Message, RaftEvent, SnapshotMeta } from '../machines/raft/index.ts';
import type { ApplyOutcome } from '../storage/index.ts';
import type { StateMachine } from './applier.ts';
import { Executor, type LogPort } from './executor.ts';

/** A test double of the durable log: writes complete in order when `complete()` is called. */
class ManualLog implements LogPort {
  readonly queue: { what: string; done: (err: unknown) => void }[] = [];
  readonly durable: string[] = [];
  write(p: { entries: readonly Entry[] }, done: (err: unknown) => void): void {
    this.queue.push({ what: `w${p.entries.map((e) => e.index).join(',')}`, done });
  }
  compact(s: SnapshotMeta, done: (err: unknown) => void): void {
    this.queue.push({ what: `compact${s.index}`, done });
  }
  complete(n = 1, err: unknown = null): void {
    for (let i = 0; i < n; i++) {
      const w = this.queue.shift()!;
      if (err === null) this.durable.push(w.what);
      w.done(err);
    }
  }
}

/** A test double of the key tree: records applies; answers at once, or later when `async`. */
class RecordingTree implements StateMachine {
  readonly applied: number[] = [];
  later: (() => void)[] = [];
  constructor(private readonly async = false) {}
  apply(index: number): ApplyOutcome | Promise<ApplyOutcome> {
    this.applied.push(index);
    const out: ApplyOutcome = {
      ok: true,
      revision: index,
      result: { op: 'compact', compactRevision: 0 },
      replayed: false,
    };
    if (!this.async) return out;
    return new Promise((resolve) => this.later.push(() => resolve(out)));
  }
  sync(done: (err: unknown) => void): void {
    done(null);
  }
  restores = 0;
  restore(_data: unknown, done: (err: unknown, applied?: number) => void): void {
    this.restores++;
    done(null, 50);
  }
}

const entry = (index: number): Entry => ({ index, term: 1, type: 'normal', data: new Uint8Array([index]) });
const msg = (n: number): Message => ({ type: 'raft.heartbeatResult', term: 1, from: 'a', seq: n });

function rig(tree = new RecordingTree(), start = 0) {
  const log = new ManualLog();
  const events: RaftEvent[] = [];
  const sent: number[] = [];
  const requests: Effect[] = [];
  const fatal: unknown[] = [];
  const applied: number[] = [];
  const ex = new Executor(
    {
      raft: (e) => events.push(e),
      log,
      tree,
      send: (_to, m) => sent.push((m as { seq: number }).seq),
      sendSnapshot: () => {},
      requests: (e) => requests.push(e),
      applied: (e) => applied.push(e.index),
      fatal: (e) => fatal.push(e),
    },
    start,
  );
  return { ex, log, events, sent, requests, fatal, applied, tree };
}

test('answers wait for every earlier write to be durable; plain sends leave at once (Figure 2, §10.2.1)', (t) => {
  const r = rig();
  r.ex.effect({ type: 'persist', entries: [entry(1)] });
  r.ex.effect({ type: 'send', to: 'b', message: msg(1), afterPersist: true });
  r.ex.effect({ type: 'send', to: 'b', message: msg(2), afterPersist: false });
  r.ex.effect({ type: 'persist', entries: [entry(2)] });
  r.ex.effect({ type: 'send', to: 'b', message: msg(3), afterPersist: true });
  t.deepEqual(r.sent, [2], 'only the leader-style send left');
  r.log.complete();
  t.deepEqual(r.sent, [2, 1], 'the first answer after the first write');
  t.deepEqual(r.events, [{ type: 'raft.persisted', index: 1, term: 1 }]);
  r.log.complete();
  t.deepEqual(r.sent, [2, 1, 3]);
  t.is(r.ex.inFlight, 0);
});

test('a restore waits for earlier writes and holds later ones until it is durable', (t) => {
  const r = rig();
  r.ex.effect({ type: 'persist', entries: [entry(1)] });
  const snapshot = { index: 50, term: 2, config: { voters: ['a'], learners: [] } };
  r.ex.effect({ type: 'restore', snapshot, data: [] });
  r.ex.effect({ type: 'persist', entries: [entry(51)] });
  t.deepEqual(
    r.log.queue.map((q) => q.what),
    ['w1'],
    'neither the restore nor the later write started',
  );
  r.log.complete(); // w1
  t.deepEqual(
    r.log.queue.map((q) => q.what),
    ['compact50'],
    'the tree restored, the log compacting; the later write still waits',
  );
  r.log.complete(); // compact50
  t.deepEqual(
    r.log.queue.map((q) => q.what),
    ['w51'],
  );
  r.log.complete();
  t.deepEqual(r.log.durable, ['w1', 'compact50', 'w51']);
  t.is(r.ex.restores, 1);
  t.is(r.ex.applier.index, 50);
});

test('a tree already past a received snapshot keeps its state; the log is reset all the same', (t) => {
  // A crash between a restore and the log's reset leaves the tree ahead of the log: the node
  // boots with its tree at 60, and the leader sends a snapshot at 50 for the log's sake.
  const r = rig(new RecordingTree(), 60);
  const snapshot = { index: 50, term: 2, config: { voters: ['a'], learners: [] } };
  r.ex.effect({ type: 'restore', snapshot, data: [] });
  t.deepEqual(
    r.log.queue.map((q) => q.what),
    ['compact50'],
  );
  r.log.complete();
  t.is(r.tree.restores, 0, 'the tree was not taken back');
  t.is(r.ex.applier.index, 60);
  // The entries the tree holds come again from the leader: skipped, not applied twice.
  r.ex.effect({ type: 'apply', entries: [entry(51), entry(60), entry(61)] });
  t.deepEqual(r.tree.applied, [61]);
});

test('a failed write is fatal once; nothing runs afterwards', (t) => {
  const r = rig();
  r.ex.effect({ type: 'persist', entries: [entry(1)] });
  r.ex.effect({ type: 'send', to: 'b', message: msg(1), afterPersist: true });
  r.ex.effect({ type: 'persist', entries: [entry(2)] });
  r.log.complete(1, new Error('EIO'));
  r.log.queue[0]?.done(new Error('EIO again'));
  r.ex.effect({ type: 'persist', entries: [entry(3)] });
  t.is(r.fatal.length, 1);
  t.deepEqual(r.sent, [], 'the held answer never left');
  t.deepEqual(
    r.log.queue.map((q) => q.what),
    ['w2'],
    'the write issued before the failure, and none after it',
  );
});

test('apply runs in order, synchronously with a state machine that answers at once', (t) => {
  const r = rig();
  r.ex.effect({
    type: 'apply',
    entries: [entry(1), entry(2), { index: 3, term: 1, type: 'noop' }, entry(4)],
  });
  t.deepEqual(r.tree.applied, [1, 2, 4]);
  t.deepEqual(r.applied, [1, 2, 3, 4]);
  t.true(r.events.some((e) => e.type === 'raft.applied' && e.index === 4));
  r.ex.effect({ type: 'apply', entries: [entry(2), entry(5)] });
  t.deepEqual(r.tree.applied, [1, 2, 4, 5], 'an index applied before is skipped');
});

test('apply waits for a state machine that answers later, and never overlaps', async (t) => {
  const tree = new RecordingTree(true);
  const r = rig(tree);
  r.ex.effect({ type: 'apply', entries: [entry(1), entry(2)] });
  r.ex.effect({ type: 'apply', entries: [entry(3)] });
  t.deepEqual(tree.applied, [1], 'one at a time');
  const waited = r.ex.applier.waitApplied(3);
  tree.later.shift()!();
  await new Promise((res) => setImmediate(res));
  t.deepEqual(tree.applied, [1, 2], 'the next only after the first answered');
  tree.later.shift()!();
  await new Promise((res) => setImmediate(res));
  tree.later.shift()!();
  await waited;
  t.deepEqual(r.applied, [1, 2, 3]);
});

test('effects about requests go to requests; configuration entries tell the members', (t) => {
  const members: string[][] = [];
  const r = rig();
  const ex = new Executor(
    {
      raft: () => {},
      log: r.log,
      tree: new RecordingTree(),
      send: () => {},
      sendSnapshot: () => {},
      members: (c) => members.push([...c.voters]),
      requests: (e) => r.requests.push(e),
      applied: () => {},
      fatal: () => {},
    },
    0,
  );
  ex.effect({ type: 'proposed', ids: ['x'], index: 3, term: 1 });
  ex.effect({ type: 'roleChanged', role: 'leader', term: 2, leader: 'a' });
  ex.effect({
    type: 'apply',
    entries: [{ index: 1, term: 1, type: 'config', config: { voters: ['a', 'b'], learners: [] } }],
  });
  t.deepEqual(
    r.requests.map((e) => e.type),
    ['proposed', 'roleChanged'],
  );
  t.deepEqual(members, [['a', 'b']]);
});
