/**
 * Snapshot streaming between two transports on a real nats-server: a snapshot of several chunks
 * reaches the follower whole, and the sender reads each acknowledgement as one (before, it read
 * the reply envelope as a request envelope, took every chunk for refused, and so never got past
 * the first chunk: a follower behind a compacted log never caught up once the snapshot exceeded
 * one chunk).
 */
import test from 'ava';
import { useHarness } from '../integration/harness.ts';
import type { RaftEvent, SnapshotMeta } from '../machines/raft/index.ts';
import { subjects } from '../protocol/index.ts';
import { Transport } from './transport.ts';

const harness = useHarness(test, { label: 'ensemble-transport-snapshot' });
const S = subjects({ cluster: 'ts' });

const chunks = [new Uint8Array([1, 2, 3]), new Uint8Array([4, 5]), new Uint8Array([6])];

async function node(self: string) {
  const nc = await harness().connect('peer');
  const got: RaftEvent[] = [];
  const t = new Transport({
    nc,
    subjects: S,
    cluster: 'ts',
    self,
    incarnation: `inc-${self}`,
    raft: (e) => got.push(e),
    admits: (id) => ['a', 'b'].includes(id),
    snapshotChunks: async () =>
      (async function* () {
        yield* chunks;
      })(),
    chunkTimeoutMs: 3000,
  });
  t.start();
  await nc.flush();
  return { t, got };
}

const until = async (cond: () => boolean) => {
  const end = performance.now() + 5000;
  while (!cond() && performance.now() < end) await new Promise((r) => setTimeout(r, 5));
};

test('a snapshot of several chunks arrives whole and counts as sent', async (t) => {
  const a = await node('a');
  const b = await node('b');
  const snapshot: SnapshotMeta = { index: 7, term: 2, config: { voters: ['a', 'b'], learners: [] } };
  a.t.sendSnapshot('b', { type: 'raft.installSnapshot', term: 2, from: 'a', snapshot });
  await until(() => a.t.counters.snapshotsSent + a.got.length > 0);
  t.deepEqual(a.got, [], 'no raft.snapshotFailed');
  t.is(a.t.counters.snapshotsSent, 1);
  t.is(b.got.length, 1);
  const e = b.got[0] as Extract<RaftEvent, { type: 'raft.installSnapshot' }>;
  t.is(e.type, 'raft.installSnapshot');
  t.deepEqual(e.snapshot, snapshot);
  // The last chunk travels with `last` set; every chunk arrives, in order.
  t.deepEqual(Buffer.concat(e.data as Uint8Array[]), Buffer.from([1, 2, 3, 4, 5, 6]));
  a.t.stop();
  b.t.stop();
});
