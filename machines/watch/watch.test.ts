/**
 * The watcher statechart through pure steps (`transition`), and as a running actor.
 */
import test from 'ava';
import fc from 'fast-check';
import { createActor, initialTransition, transition } from 'xstate';
import { phaseOf, type WatcherEvent, watcherMachine } from './machine.ts';

const input = { key: 's1/w1', start: 10, maxBehind: 100 };

function run(events: readonly WatcherEvent[]) {
  let [snap] = initialTransition(watcherMachine, input);
  const phases = [phaseOf(snap.value)];
  for (const e of events) {
    [snap] = transition(watcherMachine, snap, e);
    phases.push(phaseOf(snap.value));
  }
  return { snap, phases };
}

test('a resume waits until the node has applied the revision before its start', (t) => {
  const { phases } = run([
    { type: 'tree.at', revision: 7 },
    { type: 'tree.at', revision: 8 },
    { type: 'tree.at', revision: 9 },
  ]);
  t.deepEqual(phases, ['waiting', 'waiting', 'waiting', 'replaying']);
});

test('caught up, a watch is served directly until the client follows the group subject', (t) => {
  const { phases } = run([
    { type: 'tree.at', revision: 9 },
    { type: 'caughtUp' },
    { type: 'sharedReady' },
    { type: 'windowFull' },
  ]);
  t.deepEqual(phases, ['waiting', 'replaying', 'direct', 'shared', 'shared']);
});

test('a client ready for the shared stream before catching up goes straight to shared', (t) => {
  const { phases } = run([{ type: 'tree.at', revision: 20 }, { type: 'sharedReady' }, { type: 'caughtUp' }]);
  t.deepEqual(phases, ['waiting', 'replaying', 'replaying', 'shared']);
});

test('a full window pauses; an ack resumes replay; lagging too far ends it as behind', (t) => {
  const { phases, snap } = run([
    { type: 'tree.at', revision: 9 },
    { type: 'caughtUp' },
    { type: 'windowFull' },
    { type: 'lag', behind: 100 },
    { type: 'acked' },
    { type: 'windowFull' },
    { type: 'lag', behind: 101 },
  ]);
  t.deepEqual(phases, ['waiting', 'replaying', 'direct', 'paused', 'paused', 'replaying', 'paused', 'ended']);
  t.is(snap.context.ended, 'behind');
  t.is(snap.status, 'done');
});

test('cancel, session end and errors end a watch from any phase, with the reason', (t) => {
  t.is(run([{ type: 'cancel' }]).snap.context.ended, 'cancelled');
  t.is(run([{ type: 'tree.at', revision: 9 }, { type: 'sessionEnded' }]).snap.context.ended, 'session');
  const failed = run([
    { type: 'tree.at', revision: 9 },
    { type: 'caughtUp' },
    { type: 'fail', code: 'COMPACTED' },
  ]);
  t.is(failed.snap.context.ended, 'error');
  t.is(failed.snap.context.code, 'COMPACTED');
});

test('property: once ended, nothing revives a watcher; shared is only reached after sharedReady', (t) => {
  const event = fc.oneof(
    fc.record({ type: fc.constant('tree.at' as const), revision: fc.nat(30) }),
    fc.constantFrom<WatcherEvent>(
      { type: 'caughtUp' },
      { type: 'windowFull' },
      { type: 'acked' },
      { type: 'sharedReady' },
      { type: 'cancel' },
      { type: 'sessionEnded' },
    ),
    fc.record({ type: fc.constant('lag' as const), behind: fc.nat(200) }),
  );
  fc.assert(
    fc.property(fc.array(event, { maxLength: 30 }), (events) => {
      const { phases } = run(events);
      const endedAt = phases.indexOf('ended');
      if (endedAt >= 0) t.true(phases.slice(endedAt).every((p) => p === 'ended'));
      const sharedAt = phases.indexOf('shared');
      const readyAt = events.findIndex((e) => e.type === 'sharedReady');
      if (sharedAt >= 0) t.true(readyAt >= 0 && readyAt < sharedAt);
    }),
    { numRuns: 500 },
  );
});

test('as a running actor, the same path', (t) => {
  const actor = createActor(watcherMachine, { input }).start();
  actor.send({ type: 'tree.at', revision: 12 });
  actor.send({ type: 'caughtUp' });
  t.is(phaseOf(actor.getSnapshot().value), 'direct');
  actor.send({ type: 'sharedReady' });
  t.is(phaseOf(actor.getSnapshot().value), 'shared');
  actor.send({ type: 'cancel' });
  t.is(actor.getSnapshot().status, 'done');
  actor.stop();
});
