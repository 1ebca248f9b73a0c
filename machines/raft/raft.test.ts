/**
 * One test per claim of the Raft paper (§) or Ongaro's thesis, each through pure steps of
 * the machine on a hand-driven cluster (testing.ts).
 */
import test from 'ava';
import { roleOf } from './machine.ts';
import type { Message } from './messages.ts';
import { lastIndex, termAt } from './state.ts';
import { TestCluster, TestNode } from './testing.ts';

const three = () => new TestCluster(['a', 'b', 'c']);

function vote(term: number, from: string, lastIdx = 0, lastTrm = 0): Message {
  return {
    type: 'raft.requestVote',
    term,
    from,
    lastIndex: lastIdx,
    lastTerm: lastTrm,
    preVote: false,
    transfer: false,
  };
}

function granted(n: TestNode) {
  return n
    .drain()
    .filter((s) => s.message.type === 'raft.voteResult')
    .map((s) => [s.to, (s.message as { granted: boolean }).granted] as const);
}

test('§5.2 a follower grants at most one vote per term', (t) => {
  const c = three();
  const a = c.node('a');
  a.step(vote(1, 'b'));
  a.step(vote(1, 'c'));
  t.deepEqual(granted(a), [
    ['b', true],
    ['c', false],
  ]);
  t.is(a.ctx.vote, 'b');
  // Asking again (a duplicated request) is answered the same way.
  a.step(vote(1, 'b'));
  t.deepEqual(granted(a), [['b', true]]);
});

test('§5.2 a vote is persisted before it is sent (Figure 2: respond after persisting)', (t) => {
  const a = three().node('a');
  a.step(vote(1, 'b'));
  const persist = a.effectsOf('persist').at(-1)!;
  t.deepEqual(persist.hardState && { term: persist.hardState.term, vote: persist.hardState.vote }, {
    term: 1,
    vote: 'b',
  });
  const send = a.effectsOf('send').at(-1)!;
  t.true(send.afterPersist);
  t.true(a.effects.indexOf(persist) < a.effects.indexOf(send));
});

test('§5.4.1 a voter denies its vote to a candidate whose log is less up to date', (t) => {
  const c = new TestCluster(['a', 'b', 'c'], { checkQuorum: false }); // no lease: b answers
  c.elect('a');
  c.node('a').step({ type: 'raft.propose', commands: [{ id: 'x', data: 1 }] });
  c.settle();
  const b = c.node('b');
  // c's log is empty (index 0): b holds entries of term 1, so it refuses.
  b.step(vote(5, 'c', 0, 0));
  t.deepEqual(granted(b), [['c', false]]);
  // A candidate with a later last term wins the vote even with a shorter log.
  b.step(vote(6, 'c', 1, 4));
  t.deepEqual(granted(b), [['c', true]]);
});

test('§5.2 a candidate with votes from a majority becomes leader; one leader per term', (t) => {
  const c = three();
  c.elect('b');
  t.is(c.node('b').role, 'leader');
  t.is(c.node('b').state, '"leader"');
  t.deepEqual(
    c.leaders().map((n) => n.id),
    ['b'],
  );
  t.is(c.node('a').ctx.leader, 'b');
  t.is(c.node('c').ctx.leader, 'b');
});

test('the role is the state value, and the context is plain data an inspector can show', (t) => {
  const c = three();
  const a = c.node('a');
  t.is(a.state, '"follower"');
  c.elect('a');
  t.is(a.state, '"leader"');
  t.is(roleOf(a.snap), 'leader');
  t.false('role' in a.ctx, 'no second copy of the role in the context');
  t.false('log' in a.ctx, 'the log is a port of the machine, not context');
  // Only plain data: JSON keeps all of it.
  t.deepEqual(JSON.parse(JSON.stringify(a.ctx)), a.ctx);
  const b = c.node('b');
  b.step({ type: 'raft.tick' });
  for (let i = 0; i < 40 && b.state === '"follower"'; i++) b.step({ type: 'raft.tick' });
  t.is(b.state, '{"candidate":"preVote"}', 'cut off from the leader, b asks for pre-votes');
  t.is(roleOf(b.snap), 'preCandidate');
  t.is(b.effectsOf('roleChanged').at(-1)?.role, 'preCandidate');
});

test('§5.1 a node that sees a higher term becomes a follower of it before anything else', (t) => {
  const c = three();
  c.elect('a');
  const a = c.node('a');
  const term = a.ctx.term;
  a.step({ type: 'raft.heartbeatResult', term: term + 3, from: 'b', seq: 0 });
  t.is(a.role, 'follower');
  t.is(a.ctx.term, term + 3);
  t.is(a.ctx.vote, null);
});

test('§5.1 a stale leader is told the newer term and steps down', (t) => {
  const c = three();
  c.elect('a');
  c.isolate('a');
  c.heal();
  c.elect('b');
  const a = c.node('a');
  t.is(a.role, 'follower');
  t.is(a.ctx.leader, 'b');
  // An append from the old term is answered with the current term.
  const b = c.node('b');
  b.drain();
  b.step({
    type: 'raft.appendEntries',
    term: 1,
    from: 'a',
    prevIndex: 0,
    prevTerm: 0,
    entries: [],
    commit: 0,
    seq: 0,
  });
  const answer = b.drain()[0]!.message;
  t.is(answer.type, 'raft.appendResult');
  t.is(answer.term, b.ctx.term);
});

test('§5.3 a follower rejects an append that does not match and hints the conflicting term', (t) => {
  const n = new TestNode('f', { index: 0, term: 0, config: { voters: ['f', 'l'], learners: [] } });
  n.step({
    type: 'raft.appendEntries',
    term: 2,
    from: 'l',
    prevIndex: 0,
    prevTerm: 0,
    entries: [1, 2, 3].map((i) => ({ index: i, term: 1, type: 'noop' as const })),
    commit: 0,
    seq: 0,
  });
  n.persistAll();
  n.drain();
  n.step({
    type: 'raft.appendEntries',
    term: 3,
    from: 'l',
    prevIndex: 5,
    prevTerm: 3,
    entries: [],
    commit: 0,
    seq: 0,
  });
  const r = n.drain()[0]!.message;
  t.like(r, { type: 'raft.appendResult', success: false, index: 5, hintIndex: 3, hintTerm: 1 });
});

test('§5.3 a follower truncates a conflicting suffix and takes the leader entries; duplicates truncate nothing', (t) => {
  const n = new TestNode('f', { index: 0, term: 0, config: { voters: ['f', 'l'], learners: [] } });
  const ae = (term: number, prevIndex: number, prevTerm: number, terms: number[]): Message => ({
    type: 'raft.appendEntries',
    term,
    from: 'l',
    prevIndex,
    prevTerm,
    entries: terms.map((tm, i) => ({ index: prevIndex + 1 + i, term: tm, type: 'noop' as const })),
    commit: 0,
    seq: 0,
  });
  n.step(ae(1, 0, 0, [1, 1, 1, 1]));
  n.persistAll();
  n.step(ae(2, 2, 1, [2]));
  n.persistAll();
  t.is(lastIndex(n.view), 3);
  t.is(termAt(n.view, 3), 2);
  // A delayed copy of the first append must not cut the log back.
  n.step(ae(2, 0, 0, [1, 1]));
  n.persistAll();
  t.is(lastIndex(n.view), 3);
  t.is(termAt(n.view, 3), 2);
});

test('§5.4.2 a leader does not commit an entry of an earlier term by counting replicas (Figure 8)', (t) => {
  const a = new TestNode('a', { index: 0, term: 0, config: { voters: ['a', 'b', 'c'], learners: [] } });
  // a holds index 1 (term 1) and index 2 (term 2), the latter from a term-2 leader x.
  a.step({
    type: 'raft.appendEntries',
    term: 2,
    from: 'x',
    prevIndex: 0,
    prevTerm: 0,
    entries: [
      { index: 1, term: 1, type: 'noop' },
      { index: 2, term: 2, type: 'noop' },
    ],
    commit: 0,
    seq: 0,
  });
  a.persistAll();
  // x hands over: a wins term 3 with b's vote and appends its no-op at index 3.
  a.step({ type: 'raft.timeoutNow', term: 2, from: 'x' });
  a.persistAll();
  a.step({ type: 'raft.voteResult', term: 3, from: 'b', granted: true, preVote: false });
  t.is(a.role, 'leader');
  a.persistAll();
  t.is(termAt(a.view, 3), 3);
  const ack = (index: number): Message => ({
    type: 'raft.appendResult',
    term: 3,
    from: 'b',
    success: true,
    index,
    hintIndex: 0,
    hintTerm: 0,
    seq: 0,
  });
  // a and b (a majority) hold index 2, but it is of term 2: counting replicas commits nothing.
  a.step(ack(2));
  t.is(a.ctx.commit, 0);
  // Once the entry of the leader's own term is on a majority, it and everything before commit.
  a.step(ack(3));
  t.is(a.ctx.commit, 3);
});

test('thesis §10.2.1 the leader counts itself only once its own write is durable', (t) => {
  const c = three();
  c.elect('a');
  const a = c.node('a');
  const before = a.ctx.commit;
  a.step({ type: 'raft.propose', commands: [{ id: 'x', data: 1 }] });
  // Appends leave at once, before the leader's own persist.
  const appends = a.drain().filter((s) => s.message.type === 'raft.appendEntries');
  t.is(appends.length, 2);
  t.true(appends.every((s) => !s.afterPersist));
  // Only b answers; with a's own write not durable there is no majority yet.
  c.node('b').step(appends.find((s) => s.to === 'b')!.message);
  c.node('b').persistAll();
  for (const s of c.node('b').drain()) a.step(s.message);
  t.is(a.ctx.commit, before);
  a.persistAll();
  t.is(a.ctx.commit, before + 1);
});

test('thesis §9.6 pre-vote: a partitioned node does not raise its term nor disrupt the leader', (t) => {
  const c = three();
  c.elect('a');
  const term = c.node('a').ctx.term;
  c.isolate('c');
  c.tick('c', 100);
  c.settle();
  t.is(c.node('c').ctx.term, term, 'pre-vote never won, so the term never moved');
  c.heal();
  c.tick('c', 30);
  c.settle();
  t.is(c.node('a').role, 'leader');
  t.is(c.node('a').ctx.term, term);
});

test('thesis §6.2 check-quorum: a leader that stops hearing from a majority steps down', (t) => {
  const c = three();
  c.elect('a');
  c.isolate('a');
  c.tick('a', 25);
  c.settle();
  t.is(c.node('a').role, 'follower');
});

test('thesis §4.2.3 a voter that hears from its leader ignores vote requests (leader lease)', (t) => {
  const c = three();
  c.elect('a');
  const b = c.node('b');
  const term = b.ctx.term;
  b.step(vote(term + 1, 'c', 100, 100));
  t.deepEqual(granted(b), []);
  t.is(b.ctx.term, term);
});

test('thesis §6.4 ReadIndex answers only after this term committed and a quorum confirmed leadership', (t) => {
  const c = three();
  c.elect('a');
  const a = c.node('a');
  a.step({ type: 'raft.readIndex', ids: ['r1'] });
  t.is(a.effectsOf('readReady').length, 0, 'needs a round of heartbeats first');
  c.settle();
  const ready = a.effectsOf('readReady');
  t.deepEqual(ready.at(-1), { type: 'readReady', ids: ['r1'], index: a.ctx.commit });
  // Cut off from the others, the leader cannot confirm: the read waits (and fails on step-down).
  c.isolate('a');
  a.step({ type: 'raft.readIndex', ids: ['r2'] });
  c.settle();
  t.false(a.effectsOf('readReady').some((e) => e.ids.includes('r2')));
  c.tick('a', 25);
  t.true(a.effectsOf('readFailed').some((e) => e.ids.includes('r2')));
});

test('thesis §6.4 a follower forwards a read to the leader and gets its commit index', (t) => {
  const c = three();
  c.elect('a');
  const b = c.node('b');
  b.step({ type: 'raft.readIndex', ids: ['q'] });
  c.settle();
  t.deepEqual(b.effectsOf('readReady').at(-1), {
    type: 'readReady',
    ids: ['q'],
    index: c.node('a').ctx.commit,
  });
});

test('thesis §3.10 leader transfer: the target campaigns at once and wins', (t) => {
  const c = three();
  c.elect('a');
  c.node('a').step({ type: 'raft.transferLeader', to: 'c' });
  c.settle();
  t.is(c.node('c').role, 'leader');
  t.is(c.node('a').role, 'follower');
  t.is(c.node('a').ctx.leader, 'c');
});

test('thesis §4.1 a configuration is in force once appended and reverts when truncated', (t) => {
  const n = new TestNode('f', { index: 0, term: 0, config: { voters: ['f', 'l', 'x'], learners: [] } });
  n.step({
    type: 'raft.appendEntries',
    term: 1,
    from: 'l',
    prevIndex: 0,
    prevTerm: 0,
    entries: [{ index: 1, term: 1, type: 'config', config: { voters: ['f', 'l'], learners: [] } }],
    commit: 0,
    seq: 0,
  });
  t.deepEqual(n.ctx.configs.at(-1)?.config.voters, ['f', 'l'], 'in force before it is even persisted');
  n.step({
    type: 'raft.appendEntries',
    term: 2,
    from: 'x',
    prevIndex: 0,
    prevTerm: 0,
    entries: [{ index: 1, term: 2, type: 'noop' }],
    commit: 0,
    seq: 0,
  });
  t.deepEqual(n.ctx.configs, []);
  t.deepEqual(n.ctx.snapshot.config.voters, ['f', 'l', 'x']);
});

test('thesis §4.2 membership: learner first, promoted once caught up, one change at a time', (t) => {
  const c = new TestCluster(['a', 'b', 'c']);
  const d = new TestNode('d', { index: 0, term: 0, config: { voters: [], learners: [] } });
  c.nodes.set('d', d);
  const a = c.node('a');
  // Before any entry of the leader's term commits, no change is accepted (the 2015 fix).
  a.step({ type: 'raft.timeoutNow', term: 0, from: 'a' });
  for (const n of c.nodes.values()) n.persistAll();
  for (const s of [...c.node('a').drain()]) c.node(s.to).step(s.message);
  for (const id of ['b', 'c']) {
    c.node(id).persistAll();
    for (const s of c.node(id).drain()) a.step(s.message);
  }
  t.is(a.role, 'leader');
  a.step({ type: 'raft.changeMembership', id: 'early', change: { type: 'addLearner', node: 'd' } });
  t.like(a.effectsOf('changeResult').at(-1), { id: 'early', ok: false, reason: 'NOT_READY' });
  c.settle();
  a.step({ type: 'raft.changeMembership', id: 'add', change: { type: 'addLearner', node: 'd' } });
  t.like(a.effectsOf('changeResult').at(-1), { id: 'add', ok: true });
  // A second change waits until the first commits.
  a.step({ type: 'raft.changeMembership', id: 'too-soon', change: { type: 'promote', node: 'd' } });
  t.like(a.effectsOf('changeResult').at(-1), { id: 'too-soon', ok: false, reason: 'CHANGE_PENDING' });
  c.settle();
  t.deepEqual(d.ctx.configs.at(-1)?.config.learners, ['d']);
  t.is(d.role, 'follower');
  c.tick('d', 50);
  t.is(d.role, 'follower', 'a learner never campaigns');
  c.settle();
  a.step({ type: 'raft.changeMembership', id: 'promote', change: { type: 'promote', node: 'd' } });
  c.settle();
  t.deepEqual(a.ctx.configs.at(-1)?.config.voters, ['a', 'b', 'c', 'd']);
  a.step({ type: 'raft.changeMembership', id: 'rm', change: { type: 'remove', node: 'a' } });
  c.settle();
  t.is(a.role, 'follower', 'a leader that removed itself steps down once that commits');
  t.false(a.ctx.configs.at(-1)?.config.voters.includes('a'));
});

test('§7 a follower that lags behind the compacted log is brought up by InstallSnapshot', (t) => {
  const c = new TestCluster(['a', 'b', 'c'], { snapshotThreshold: 5 });
  c.elect('a');
  c.isolate('c');
  const a = c.node('a');
  for (let i = 0; i < 12; i++) a.step({ type: 'raft.propose', commands: [{ id: `p${i}`, data: i }] });
  c.settle();
  // The runtime applies, snapshots at the leader's request, and compacts.
  for (const e of a.effectsOf('apply')) a.step({ type: 'raft.applied', index: e.entries.at(-1)!.index });
  const ask = a.effectsOf('snapshot');
  t.true(ask.length > 0);
  a.step({ type: 'raft.snapshotTaken', index: a.ctx.applied });
  const compact = a.effectsOf('compact').at(-1)!;
  a.log.compact(compact.snapshot);
  t.true(a.log.firstIndex() > 1);
  c.heal();
  c.tick('a', 2);
  c.settle();
  const cc = c.node('c');
  const restore = cc.effectsOf('restore');
  t.is(restore.length, 1);
  t.is(restore[0]!.snapshot.index, compact.snapshot.index);
  t.is(cc.ctx.commit, a.ctx.commit);
  t.is(lastIndex(cc.view), lastIndex(a.view));
});

test('§5.2 election timeouts are drawn from [e, 2e) by a seeded generator, the same for the same seed', (t) => {
  const timeouts = (seed: number) =>
    Array.from({ length: 20 }, (_, i) => {
      const n = new TestNode(
        'a',
        { index: 0, term: 0, config: { voters: ['a', 'b', 'c'], learners: [] } },
        {},
        seed + i,
      );
      return n.ctx.randomizedElectionTimeout;
    });
  const first = timeouts(7);
  t.deepEqual(first, timeouts(7));
  t.true(first.every((x) => x >= 10 && x < 20));
  t.true(new Set(first).size > 3, 'timeouts vary between nodes');
});

test('a single-voter cluster elects itself and commits alone', (t) => {
  const n = new TestNode('solo', { index: 0, term: 0, config: { voters: ['solo'], learners: [] } });
  for (let i = 0; i < 25 && n.role !== 'leader'; i++) n.step({ type: 'raft.tick' });
  t.is(n.role, 'leader');
  n.step({ type: 'raft.propose', commands: [{ id: 'x', data: 'x' }] });
  n.persistAll();
  t.is(n.ctx.commit, 2);
  t.deepEqual(
    n.effectsOf('apply').flatMap((e) => e.entries.map((x) => x.index)),
    [1, 2],
  );
});

test('a proposal to a follower is refused with the leader hint', (t) => {
  const c = three();
  c.elect('a');
  const b = c.node('b');
  b.step({ type: 'raft.propose', commands: [{ id: 'x', data: 1 }] });
  t.deepEqual(b.effectsOf('proposeFailed').at(-1), {
    type: 'proposeFailed',
    ids: ['x'],
    reason: 'NOT_LEADER',
    leader: 'a',
  });
});

test('a snapshot leaves catch-up entries in the log: a follower a little behind gets entries, not the whole tree', (t) => {
  const run = (keep: number) => {
    const c = new TestCluster(['a', 'b', 'c'], { snapshotThreshold: 10, snapshotCatchUpEntries: keep });
    c.elect('a');
    const a = c.node('a');
    for (let i = 0; i < 8; i++) a.step({ type: 'raft.propose', commands: [{ id: `p${i}`, data: i }] });
    c.settle();
    c.isolate('c');
    for (let i = 8; i < 11; i++) a.step({ type: 'raft.propose', commands: [{ id: `p${i}`, data: i }] });
    c.settle();
    for (const e of a.effectsOf('apply')) a.step({ type: 'raft.applied', index: e.entries.at(-1)!.index });
    t.true(a.effectsOf('snapshot').length > 0);
    a.step({ type: 'raft.snapshotTaken', index: a.ctx.applied });
    const compact = a.effectsOf('compact').at(-1)!;
    a.log.compact(compact.snapshot);
    c.heal();
    c.tick('a', 2);
    c.settle();
    const cc = c.node('c');
    t.is(lastIndex(cc.view), lastIndex(a.view));
    return {
      compactedTo: compact.snapshot.index,
      taken: a.ctx.applied,
      restores: cc.effectsOf('restore').length,
    };
  };
  const kept = run(5);
  t.is(kept.compactedTo, kept.taken - 5, 'the log keeps the last 5 entries');
  t.is(kept.restores, 0, 'caught up from the log');
  const none = run(0);
  t.is(none.compactedTo, none.taken);
  t.is(none.restores, 1, 'without catch-up entries the same follower needs a snapshot');
});

test('commit notices: a follower learns a new commit index at once, in a quiet heartbeat it does not answer', (t) => {
  for (const commitNotice of [false, true]) {
    const c = new TestCluster(['a', 'b', 'c'], { commitNotice });
    c.elect('a');
    const [a, b, cc] = [c.node('a'), c.node('b'), c.node('c')];
    a.step({ type: 'raft.propose', commands: [{ id: 'x', data: 'x' }] });
    a.persistAll();
    const index = lastIndex(a.view);
    // The appends reach both followers; b answers first.
    for (const s of a.drain()) c.node(s.to).step(s.message);
    b.persistAll();
    cc.persistAll();
    const late = cc.drain();
    for (const s of b.drain()) a.step(s.message);
    t.is(a.ctx.commit, index, 'committed with b');
    const notices = () =>
      a
        .drain()
        .filter((s) => s.message.type === 'raft.heartbeat')
        .map((s) => {
          c.node(s.to).step(s.message);
          const m = s.message as { commit: number; quiet?: boolean };
          return [s.to, m.commit, m.quiet];
        });
    if (!commitNotice) {
      t.deepEqual(notices(), [], 'off: the commit waits for the next append or heartbeat');
      continue;
    }
    // b is told at once; c is not known to hold the entry yet, so it is told nothing new.
    t.deepEqual(notices(), [['b', index, true]]);
    t.is(b.ctx.commit, index);
    // c's answer arrives after the commit: now c is told.
    for (const s of late) a.step(s.message);
    t.deepEqual(notices(), [['c', index, true]]);
    t.is(cc.ctx.commit, index);
    t.deepEqual(
      [...b.drain(), ...cc.drain()].filter((s) => s.message.type === 'raft.heartbeatResult'),
      [],
      'a quiet heartbeat is not answered',
    );
    // Told once: the same answer again sends no notice.
    for (const s of late) a.step(s.message);
    t.deepEqual(notices(), []);
  }
});
