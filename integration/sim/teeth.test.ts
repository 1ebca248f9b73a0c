/**
 * The checker has teeth: deliberately broken variants of the machine and of the runtime must
 * be caught. Each is built with `raftMachine.provide()` or a simulator flag, never by editing
 * the real code.
 */
import test from 'ava';
import { stepFollower } from '../../machines/raft/follower.ts';
import { draftAction, raftMachine } from '../../machines/raft/index.ts';
import type { Message } from '../../machines/raft/messages.ts';
import { countVotes, isUpToDate, send } from '../../machines/raft/state.ts';
import { type SimOptions, simulate } from './cluster.ts';

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
  const broken = raftMachine.provide({
    guards: { electionWon: ({ context }) => countVotes(context).granted >= 1 },
  });
  const r = caught({ machine: broken }, 10);
  t.true(r.count > 0, 'no seed caught the broken election');
  t.log(`caught in ${r.count}/10 seeds:`, [...r.properties]);
});

test('a follower that votes twice in a term is caught (§5.2 one vote per term)', (t) => {
  const broken = raftMachine.provide({
    actions: {
      stepFollower: draftAction((d, e) => {
        const m = e as Message;
        if (m.type === 'raft.requestVote' && !m.preVote) {
          const granted = isUpToDate(d, m.lastIndex, m.lastTerm); // forgets the vote it gave
          if (granted) d.vote = m.from;
          send(d, m.from, { type: 'raft.voteResult', term: d.term, from: d.id, granted, preVote: false });
          return;
        }
        stepFollower(d, m);
      }),
    },
  });
  const r = caught({ machine: broken }, 40);
  t.true(r.properties.has('election-safety'), `properties seen: ${[...r.properties].join(', ')}`);
});

test('a runtime that answers before its write is durable is caught (durability across crashes)', (t) => {
  const r = caught({ unsafeSendBeforePersist: true }, 10);
  t.true(r.properties.has('durability'), `properties seen: ${[...r.properties].join(', ')}`);
});

test('a faithful cluster on the same seeds shows no violation', (t) => {
  t.is(caught({}, 10).count, 0);
});
