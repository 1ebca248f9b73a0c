/**
 * The transport between two nodes on a real nats-server: messages of one turn of the event loop
 * travel as one frame per peer; frames from non-members, with another incarnation, malformed or
 * addressed elsewhere are dropped and counted, never delivered.
 */
import test from 'ava';
import { useHarness } from '../integration/harness.ts';
import type { Message, RaftEvent } from '../machines/raft/index.ts';
import { encodePeer, subjects } from '../protocol/index.ts';
import { Transport } from './transport.ts';

const harness = useHarness(test, { label: 'ensemble-transport' });
const S = subjects({ cluster: 'tr' });

async function node(self: string, members: string[], incarnation = `inc-${self}`) {
  const nc = await harness().connect('peer');
  const got: RaftEvent[] = [];
  const t = new Transport({
    nc,
    subjects: S,
    cluster: 'tr',
    self,
    incarnation,
    raft: (e) => got.push(e),
    admits: (id) => members.includes(id),
    snapshotChunks: async () => (async function* () {})(),
  });
  t.start();
  await nc.flush();
  return { t, got, nc };
}

const hb = (from: string, seq: number): Message => ({
  type: 'raft.heartbeat',
  term: 1,
  from,
  commit: 0,
  seq,
});
const until = async (cond: () => boolean) => {
  const end = performance.now() + 5000;
  while (!cond() && performance.now() < end) await new Promise((r) => setTimeout(r, 5));
};

test.serial('messages of one turn go as one frame per peer, in order', async (t) => {
  const a = await node('a', ['a', 'b']);
  const b = await node('b', ['a', 'b']);
  for (let i = 1; i <= 10; i++) a.t.send('b', hb('a', i));
  await until(() => b.got.length === 10);
  t.deepEqual(
    b.got.map((e) => (e as { seq: number }).seq),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
  );
  t.is(a.t.counters.framesOut, 1);
  t.is(b.t.counters.framesIn, 1);
  t.is(b.t.counters.messagesIn, 10);
  a.t.stop();
  b.t.stop();
});

test.serial(
  'non-members, another incarnation, malformed frames and frames for others are dropped',
  async (t) => {
    const b = await node('b2', ['a2', 'b2']);
    const a = await node('a2', ['a2', 'b2']);
    const stranger = await node('x2', ['x2', 'b2']);
    a.t.send('b2', hb('a2', 1));
    await until(() => b.got.length === 1);
    stranger.t.send('b2', hb('x2', 1)); // not a member of b2's cluster
    // a2's data wiped: same id, another incarnation.
    const impostor = await harness().connect('peer');
    impostor.publish(
      S.peer('b2'),
      encodePeer({ from: 'a2', to: 'b2', inc: 'other', msgs: [hb('a2', 2)] }, 'tr'),
    );
    impostor.publish(
      S.peer('b2'),
      encodePeer({ from: 'a2', to: 'c2', inc: 'inc-a2', msgs: [hb('a2', 3)] }, 'tr'),
    );
    impostor.publish(
      S.peer('b2'),
      encodePeer({ from: 'a2', to: 'b2', inc: 'inc-a2', msgs: [{ type: 'raft.bogus' }] }, 'tr'),
    );
    impostor.publish(S.peer('b2'), new Uint8Array([1, 2, 3]));
    // Hostile bytes from a peer are dropped and counted, never thrown: a tagged value (a Date)
    // where a string belongs; an array claiming 2^64 items; arrays nested 100,000 deep.
    impostor.publish(
      S.peer('b2'),
      encodePeer({ from: 'a2', to: 'b2', inc: new Date(0) as never, msgs: [hb('a2', 4)] }, 'tr'),
    );
    impostor.publish(S.peer('b2'), new Uint8Array([0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
    impostor.publish(S.peer('b2'), new Uint8Array([...new Array(100_000).fill(0x81), 0]));
    await impostor.flush();
    const d = b.t.counters.drops;
    await until(() => d.notMember + d.incarnation + d.invalid + d.malformed >= 8);
    t.is(b.got.length, 1, 'only the member’s frame was delivered');
    t.is(d.notMember, 1);
    t.is(d.incarnation, 1);
    t.is(d.invalid, 2, 'addressed elsewhere, and a message of no known type');
    t.is(d.malformed, 4, 'not CBOR, a tag, an impossible length, nesting past the limit');
    for (const x of [a, b, stranger]) x.t.stop();
  },
);
