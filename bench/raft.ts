/**
 * `npm run bench:raft`: how fast the Raft machine itself is, so it is never the bottleneck.
 * - events/s through the pure step (`transition`) and through a running XState actor;
 * - committed entries/s for a 3-node cluster stepped in memory (no IO, no network), with
 *   proposals batched 1, 16 and 256 commands per event.
 * A trivial XState machine is measured in the same run as the baseline.
 */
import { createActor, setup, transition } from 'xstate';
import type { Message } from '../machines/raft/messages.ts';
import { TestCluster } from '../machines/raft/testing.ts';

const seconds = Number(process.env.BENCH_SECONDS ?? 2);

function timed(fn: () => number): { rate: number; count: number; ms: number } {
  const start = performance.now();
  let count = 0;
  while (performance.now() - start < seconds * 1000) count += fn();
  const ms = performance.now() - start;
  return { rate: (count * 1000) / ms, count, ms };
}

// Baseline: a trivial machine, pure step and actor.
const trivial = setup({
  types: { context: {} as { n: number }, events: {} as { type: 'inc' } },
}).createMachine({
  context: { n: 0 },
  on: { inc: { actions: ({ context }) => void context.n } },
});
let ts = createActor(trivial).getSnapshot();
const trivialPure = timed(() => {
  for (let i = 0; i < 1000; i++) [ts] = transition(trivial, ts, { type: 'inc' });
  return 1000;
});
const ta = createActor(trivial).start();
const trivialActor = timed(() => {
  for (let i = 0; i < 1000; i++) ta.send({ type: 'inc' });
  return 1000;
});

// The Raft machine as a leader: a heartbeat answer per event, the most common leader input.
const c = new TestCluster(['a', 'b', 'c']);
c.elect('a');
const leader = c.node('a');
const ack: Message = { type: 'raft.heartbeatResult', term: leader.ctx.term, from: 'b', seq: 0 };
const raftPure = timed(() => {
  for (let i = 0; i < 1000; i++) leader.step(ack);
  leader.effects.length = 0;
  leader.drain();
  return 1000;
});
// Restored from the leader's snapshot: input is only read on a fresh start.
const actor = createActor(leader.machine, { snapshot: leader.snap, input: undefined as never }).start();
actor.on('*', () => {});
const raftActor = timed(() => {
  for (let i = 0; i < 1000; i++) actor.send(ack);
  return 1000;
});
actor.stop();

function cluster(batch: number): { entries: number; events: number; ms: number } {
  const cl = new TestCluster(['a', 'b', 'c'], { maxAppendEntries: 1024, snapshotThreshold: 0 });
  cl.elect('a');
  const l = cl.node('a');
  let events = 0;
  let id = 0;
  const startCommit = l.ctx.commit;
  const r = timed(() => {
    // 8 proposal events in flight per round, as a runtime batching client requests would.
    for (let p = 0; p < 8; p++) {
      const commands = [];
      for (let i = 0; i < batch; i++) commands.push({ id: String(++id), data: id });
      l.step({ type: 'raft.propose', commands });
      events++;
    }
    for (const n of cl.nodes.values()) {
      n.persistAll();
      events += n.effects.length;
    }
    for (const n of cl.nodes.values()) {
      for (const s of n.drain()) {
        cl.node(s.to).step(s.message);
        events++;
      }
    }
    for (const n of cl.nodes.values()) {
      n.persistAll();
      for (const s of n.drain()) {
        cl.node(s.to).step(s.message);
        events++;
      }
      n.effects.length = 0;
    }
    return 0;
  });
  return { entries: l.ctx.commit - startCommit, events, ms: r.ms };
}

const rows: string[][] = [
  ['measure', 'rate'],
  ['trivial machine, pure transition()', `${fmt(trivialPure.rate)} events/s`],
  ['trivial machine, running actor', `${fmt(trivialActor.rate)} events/s`],
  ['raft leader, pure transition() (stepRaft)', `${fmt(raftPure.rate)} events/s`],
  ['raft leader, running actor', `${fmt(raftActor.rate)} events/s`],
];
for (const batch of [1, 16, 256]) {
  process.stderr.write(`  cluster, batch ${batch}...\n`);
  const r = cluster(batch);
  rows.push([
    `3-node cluster in memory, batch ${batch}`,
    `${fmt((r.entries * 1000) / r.ms)} committed entries/s (${fmt((r.events * 1000) / r.ms)} events/s)`,
  ]);
}

const w = Math.max(...rows.map((r) => r[0]!.length));
for (const [i, r] of rows.entries()) {
  console.log(`| ${r[0]!.padEnd(w)} | ${r[1]} |`);
  if (i === 0) console.log(`|${'-'.repeat(w + 2)}|${'-'.repeat(40)}|`);
}

function fmt(n: number): string {
  return n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0);
}
