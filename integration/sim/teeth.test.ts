/**
 * The checker has teeth: deliberately broken variants of the machine and of the runtime must
 * be caught. Each is a variant of the real machine's steps or guards (`createRaftMachine`'s
 * variant) or a simulator flag, never an edit of the real code.
 */
import test from 'ava';
import { stepFollower } from '../../machines/raft/follower.ts';
import type { RaftVariant } from '../../machines/raft/index.ts';
import type { Message } from '../../machines/raft/messages.ts';
import { countVotes, isUpToDate, send } from '../../machines/raft/state.ts';
import { type SimOptions, simulate } from './cluster.ts';
import { driftingApply, untaggedApply } from './planted.ts';

function caught(opts: Partial<SimOptions>, seeds: number): { count: number; properties: Set<string> } {
  const properties = new Set<string>();
  let count = 0;
  for (let seed = 1; seed <= seeds; seed++) {
    const r = simulate({ seed, nodes: seed % 2 === 0 ? 5 : 3, steps: 4000, ...opts });
    if (r.violations.length > 0) {
      count++;
      properties.add(r.violations[0]!.property);
    }
  }
  return { count, properties };
}

test('a candidate that declares victory on its own vote is caught (§5.2 election safety)', (t) => {
  const broken: RaftVariant = {
    guards: { electionWon: ({ context }) => countVotes(context).granted >= 1 },
  };
  const r = caught({ variant: broken }, 10);
  t.true(r.count > 0, 'no seed caught the broken election');
  t.log(`caught in ${r.count}/10 seeds:`, [...r.properties]);
});

test('a follower that votes twice in a term is caught (§5.2 one vote per term)', (t) => {
  const broken: RaftVariant = {
    steps: {
      stepFollower: (d, e) => {
        const m = e as Message;
        if (m.type === 'raft.requestVote' && !m.preVote) {
          const granted = isUpToDate(d, m.lastIndex, m.lastTerm); // forgets the vote it gave
          if (granted) d.vote = m.from;
          send(d, m.from, { type: 'raft.voteResult', term: d.term, from: d.id, granted, preVote: false });
          return;
        }
        stepFollower(d, m);
      },
    },
  };
  const r = caught({ variant: broken }, 40);
  t.true(r.properties.has('election-safety'), `properties seen: ${[...r.properties].join(', ')}`);
});

test('a runtime that answers before its write is durable is caught (durability across crashes)', (t) => {
  const r = caught({ mistakes: { sendBeforePersist: true } }, 10);
  t.true(r.properties.has('durability'), `properties seen: ${[...r.properties].join(', ')}`);
});

test('a node that serves a read before applying up to its read index is caught (stale read)', (t) => {
  const r = caught({ mistakes: { readBeforeApply: true } }, 12);
  t.true(r.properties.has('linearizable-read'), `properties seen: ${[...r.properties].join(', ')}`);
  // Without the direct read check, the client's history shows the stale value.
  const h = caught({ mistakes: { readBeforeApply: true }, checks: { readFloor: false } }, 12);
  t.deepEqual([...h.properties], ['linearizability']);
});

test('an applier that acknowledges an entry before its tree applies it is caught (history)', (t) => {
  // The applied index is right, so the direct read check sees nothing: the history does.
  const r = caught({ mistakes: { ackBeforeApply: true } }, 12);
  t.deepEqual([...r.properties], ['linearizability']);
});

test('a node that answers a write by its index alone is caught (another leader replaced it)', (t) => {
  const r = caught({ mistakes: { answerByIndex: true } }, 12);
  t.deepEqual([...r.properties], ['wrong-answer']);
});

test('a tree that applies retried writes again (no exactly-once table) is caught', (t) => {
  const r = caught({ mistakes: { apply: untaggedApply } }, 12);
  t.true(r.count > 0, 'no seed caught the double apply');
  t.true(
    [...r.properties].every((p) => p === 'linearizability' || p === 'applied-twice'),
    `properties seen: ${[...r.properties].join(', ')}`,
  );
});

test('a replica whose apply depends on more than the log is caught (trees diverge)', (t) => {
  const r = caught({ mistakes: { apply: driftingApply } }, 12);
  t.true(r.properties.has('tree-divergence'), `properties seen: ${[...r.properties].join(', ')}`);
});

test('a faithful cluster on the same seeds shows no violation', (t) => {
  t.is(caught({}, 12).count, 0);
});
