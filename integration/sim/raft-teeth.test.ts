/**
 * The checker catches real Raft bugs. Each bug below, planted alone (planted.ts, a variant of
 * the real machine's steps), must be caught on the fixed seeds its test runs, under the fault
 * schedule aimed at it, by the properties named; the faithful machine on the same seeds and
 * schedules must show no violation. Where a bug is caught by a direct rule, the test also
 * shows the harm it does when that rule is not checked.
 */
import test, { type ExecutionContext } from 'ava';
import type { RaftVariant } from '../../machines/raft/index.ts';
import type { CheckOptions } from './checker.ts';
import { simulate } from './cluster.ts';
import type { ScheduleName } from './nemesis.ts';
import {
  earlyChangeBug,
  earlyVoteBug,
  figure8Bug,
  nullVoteBug,
  oldSnapshotBug,
  quorumlessReadBug,
  secondChangeBug,
  staleVoterBug,
} from './planted.ts';

const STEPS = 4000;

interface Outcome {
  readonly seed: number;
  readonly property: string | null;
  readonly detail: string;
}

function run(
  variant: RaftVariant | undefined,
  schedule: ScheduleName,
  seeds: readonly number[],
  checks?: CheckOptions,
): Outcome[] {
  return seeds.map((seed) => {
    const r = simulate({ seed, nodes: seed % 2 === 0 ? 3 : 5, steps: STEPS, schedule, variant, checks });
    const v = r.violations[0];
    return { seed, property: v?.property ?? null, detail: v?.detail ?? '' };
  });
}

/** The faithful machine, once per (schedule, seed) in this file. */
const faithful = new Map<string, Outcome>();
function faithfulRun(schedule: ScheduleName, seeds: readonly number[]): Outcome[] {
  return seeds.map((seed) => {
    const key = `${schedule}/${seed}`;
    let o = faithful.get(key);
    if (o === undefined) faithful.set(key, (o = run(undefined, schedule, [seed])[0]!));
    return o;
  });
}

/** Asserts the bug is caught on at least `atLeast` of `seeds`, only by `properties`, and the
 * faithful machine is clean on every one of them. */
function expectCaught(
  t: ExecutionContext,
  variant: RaftVariant,
  schedule: ScheduleName,
  seeds: readonly number[],
  atLeast: number,
  properties: readonly string[],
  checks?: CheckOptions,
): void {
  const out = run(variant, schedule, seeds, checks);
  const caught = out.filter((o) => o.property !== null);
  t.log(
    `caught on ${caught.length}/${seeds.length} seeds (${schedule}):`,
    out.map((o) => `${o.seed}: ${o.property ?? '-'}`).join(', '),
  );
  if (caught[0] !== undefined) t.log(`first: ${caught[0].detail}`);
  t.true(caught.length >= atLeast, `caught on ${caught.length} seeds, wanted ${atLeast}`);
  for (const o of caught)
    t.true(properties.includes(o.property!), `seed ${o.seed}: ${o.property}: ${o.detail}`);
  for (const o of faithfulRun(schedule, seeds))
    t.is(o.property, null, `faithful machine, seed ${o.seed}: ${o.property}: ${o.detail}`);
}

test('§5.4.2 Figure 8: a leader that commits an old-term entry by counting replicas is caught', (t) => {
  expectCaught(t, figure8Bug, 'figure8', [1, 2, 3, 4], 4, ['leader-completeness', 'durability']);
});

test('thesis §6.4: a leader that serves ReadIndex without a quorum confirming it leads is caught', (t) => {
  expectCaught(t, quorumlessReadBug, 'staleReads', [1, 2, 3, 4], 4, ['linearizable-read']);
});

test('§5.4.1: a voter that grants real votes without the log up-to-date check is caught (pre-vote off)', (t) => {
  expectCaught(t, staleVoterBug, 'noPreVote', [1, 2, 3, 4, 9, 10], 5, ['leader-completeness', 'durability']);
});

test('thesis §4.1: a leader that allows a second configuration change while one is uncommitted is caught', (t) => {
  expectCaught(t, secondChangeBug, 'membership', [1, 2, 3, 4], 4, ['membership']);
});

test('thesis §4.1: ... and without the rule checked, by its disjoint majorities (a split mid-change)', (t) => {
  const harm = ['leader-completeness', 'state-machine-safety', 'durability'];
  expectCaught(t, secondChangeBug, 'membership', [1, 6, 8, 13], 3, harm, { membershipRules: false });
});

test('2015 correction: a leader that changes the configuration before its term commits an entry is caught', (t) => {
  expectCaught(t, earlyChangeBug, 'membership', [1, 2, 3, 4], 4, ['membership']);
});

test('2015 correction: ... and without the rule checked, by its harm in the 2015 scenario', (t) => {
  const harm = ['leader-completeness', 'state-machine-safety', 'durability'];
  expectCaught(t, earlyChangeBug, 'membership', [1, 2, 3, 4], 3, harm, { membershipRules: false });
});

test('§5.1: a vote answered before it is durable is caught', (t) => {
  expectCaught(t, earlyVoteBug, 'crashPersist', [1, 2, 3, 4], 4, ['durability']);
});

test('§5.1: ... the early vote, unchecked as it leaves, is caught by the winning vote missing from the disk', (t) => {
  expectCaught(t, earlyVoteBug, 'crashPersist', [1, 2, 3, 4], 3, ['vote-durability', 'election-safety'], {
    sendChecks: false,
  });
});

test('§5.1: a vote persisted as null is caught', (t) => {
  expectCaught(t, nullVoteBug, 'crashPersist', [1, 2, 3, 4], 4, ['durability']);
});

test('§5.1: ... the null vote, unchecked as it leaves, is caught by the winning vote missing from the disk', (t) => {
  expectCaught(t, nullVoteBug, 'crashPersist', [1, 2, 3, 4], 4, ['vote-durability'], { sendChecks: false });
});

test('§7: a follower that installs a snapshot older than its commit index is caught', (t) => {
  expectCaught(t, oldSnapshotBug, 'snapshotCatchUp', [1, 2, 3, 4], 4, [
    'commit-regressed',
    'applied-regressed',
  ]);
});
