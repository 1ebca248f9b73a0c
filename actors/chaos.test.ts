/**
 * The chaos tools: the fault filter's rules (matching, combined probabilities, 0 and 1 without a
 * draw, bad bodies), the transport applying them on a real nats-server (Raft frames in and out,
 * delays, requests to and from peers through `chaosConnection`), and the key tree's hash (equal
 * for equal content, different for any difference, at past revisions, paged, waiting for a
 * revision not applied yet, COMPACTED below compaction).
 */
import test from 'ava';
import { useHarness } from '../integration/harness.ts';
import type { Message, RaftEvent } from '../machines/raft/index.ts';
import { decodePeer, encodePeer, subjects } from '../protocol/index.ts';
import { type KeyTree, MemoryTree } from '../storage/index.ts';
import {
  ANY_PEER,
  ChaosFilter,
  type ChaosRule,
  matches,
  PASS,
  parseFilter,
  parseHash,
  treeHash,
  verdict,
} from './chaos.ts';
import { CHAOS_FROM_HEADER, chaosConnection, Transport } from './transport.ts';

const rule = (r: Partial<ChaosRule> & Pick<ChaosRule, 'peer' | 'direction'>): ChaosRule => ({
  drop: 0,
  delayMs: 0,
  ...r,
});
const noDraw = () => {
  throw new Error('no random draw expected');
};

// ---- rules ---------------------------------------------------------------------------------

test('a rule matches its peer (or every peer with *) in its direction', (t) => {
  const both = rule({ peer: 'a', direction: 'both', drop: 1 });
  t.true(matches(both, 'a', 'in'));
  t.true(matches(both, 'a', 'out'));
  t.false(matches(both, 'b', 'in'));
  const inOnly = rule({ peer: 'a', direction: 'in', drop: 1 });
  t.true(matches(inOnly, 'a', 'in'));
  t.false(matches(inOnly, 'a', 'out'));
  const outOnly = rule({ peer: 'a', direction: 'out', drop: 1 });
  t.false(matches(outOnly, 'a', 'in'));
  t.true(matches(outOnly, 'a', 'out'));
  const any = rule({ peer: ANY_PEER, direction: 'out', drop: 1 });
  t.true(matches(any, 'a', 'out'));
  t.true(matches(any, 'zz', 'out'));
  t.false(matches(any, 'a', 'in'));
});

test('probabilities 0 and 1 decide without a draw; no matching rule passes', (t) => {
  t.is(verdict([], 'a', 'in', noDraw), PASS);
  t.is(verdict([rule({ peer: 'b', direction: 'both', drop: 1 })], 'a', 'in', noDraw), PASS);
  t.deepEqual(verdict([rule({ peer: 'a', direction: 'both', drop: 1 })], 'a', 'in', noDraw), {
    drop: true,
    delayMs: 0,
  });
  t.deepEqual(verdict([rule({ peer: 'a', direction: 'both', drop: 0 })], 'a', 'out', noDraw), PASS);
  t.deepEqual(verdict([rule({ peer: 'a', direction: 'in', drop: 0, delayMs: 30 })], 'a', 'in', noDraw), {
    drop: false,
    delayMs: 30,
  });
  // A cut wins over a delay; a rule of probability 0 does not stop another's cut.
  const rules = [
    rule({ peer: 'a', direction: 'in', delayMs: 100 }),
    rule({ peer: ANY_PEER, direction: 'both', drop: 0 }),
    rule({ peer: 'a', direction: 'both', drop: 1 }),
  ];
  t.true(verdict(rules, 'a', 'in', noDraw).drop);
  t.false(verdict(rules, 'b', 'in', noDraw).drop);
});

test('a probability between 0 and 1 takes one draw against the combined probability', (t) => {
  const half = [rule({ peer: 'a', direction: 'out', drop: 0.5 })];
  t.true(verdict(half, 'a', 'out', () => 0.5).drop, 'a draw at or above the keep probability drops');
  t.false(verdict(half, 'a', 'out', () => 0.49).drop);
  // Two rules of 0.5 keep a message with probability 0.25; the longest delay applies.
  const two = [
    rule({ peer: 'a', direction: 'out', drop: 0.5, delayMs: 10 }),
    rule({ peer: ANY_PEER, direction: 'both', drop: 0.5, delayMs: 40 }),
  ];
  let draws = 0;
  const at = (x: number) => () => {
    draws++;
    return x;
  };
  t.true(verdict(two, 'a', 'out', at(0.25)).drop);
  t.deepEqual(verdict(two, 'a', 'out', at(0.24)), { drop: false, delayMs: 40 });
  t.is(draws, 2, 'one draw per message');
  // Over many draws the share dropped is about the probability.
  let seed = 12345;
  const lcg = () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed / 2 ** 32;
  };
  const f = new ChaosFilter(lcg);
  f.set([rule({ peer: 'a', direction: 'both', drop: 0.3 })]);
  let dropped = 0;
  for (let i = 0; i < 10_000; i++) if (f.decide('a', i % 2 ? 'in' : 'out').drop) dropped++;
  t.true(dropped > 2700 && dropped < 3300, `${dropped} of 10000 dropped at 0.3`);
  t.is(f.dropped, dropped);
});

test('the filter counts the messages it drops; [] heals', (t) => {
  const f = new ChaosFilter(noDraw);
  t.is(f.decide('a', 'in', 5), PASS);
  f.set(parseFilter({ rules: [{ peer: 'a', direction: 'in', drop: 1 }] }));
  t.true(f.decide('a', 'in', 5).drop);
  t.false(f.decide('a', 'out', 5).drop);
  t.true(f.decide('a', 'in').drop);
  t.is(f.dropped, 6);
  f.set(parseFilter({ rules: [] }));
  t.is(f.decide('a', 'in', 5), PASS);
  t.is(f.dropped, 6);
});

test('parseFilter fills in defaults and refuses bad bodies with BAD_REQUEST', (t) => {
  t.deepEqual(
    parseFilter({
      rules: [
        { peer: 'n1', direction: 'both', drop: 1 },
        { peer: '*', direction: 'in', delayMs: 20 },
        { peer: 'n-2_x', direction: 'out', drop: 0.25, delayMs: 0 },
      ],
    }),
    [
      { peer: 'n1', direction: 'both', drop: 1, delayMs: 0 },
      { peer: '*', direction: 'in', drop: 0, delayMs: 20 },
      { peer: 'n-2_x', direction: 'out', drop: 0.25, delayMs: 0 },
    ],
  );
  t.deepEqual(parseFilter({ rules: [] }), []);
  const bad: unknown[] = [
    null,
    undefined,
    'rules',
    [],
    {},
    { rules: 'all' },
    { rules: {} },
    { rules: [], extra: 1 },
    { rules: [null] },
    { rules: [[]] },
    { rules: [{ direction: 'in', drop: 1 }] },
    { rules: [{ peer: 'a.b', direction: 'in', drop: 1 }] },
    { rules: [{ peer: '', direction: 'in', drop: 1 }] },
    { rules: [{ peer: 7, direction: 'in', drop: 1 }] },
    { rules: [{ peer: 'a', direction: 'sideways', drop: 1 }] },
    { rules: [{ peer: 'a', drop: 1 }] },
    { rules: [{ peer: 'a', direction: 'in' }] },
    { rules: [{ peer: 'a', direction: 'in', drop: 1.5 }] },
    { rules: [{ peer: 'a', direction: 'in', drop: -0.1 }] },
    { rules: [{ peer: 'a', direction: 'in', drop: Number.NaN }] },
    { rules: [{ peer: 'a', direction: 'in', drop: '1' }] },
    { rules: [{ peer: 'a', direction: 'in', delayMs: -1 }] },
    { rules: [{ peer: 'a', direction: 'in', delayMs: 1.5 }] },
    { rules: [{ peer: 'a', direction: 'in', delayMs: 60_001 }] },
    { rules: [{ peer: 'a', direction: 'in', drop: 1, dorp: 1 }] },
    { rules: Array.from({ length: 65 }, () => ({ peer: 'a', direction: 'in', drop: 1 })) },
  ];
  for (const body of bad)
    t.throws(() => parseFilter(body), { code: 'BAD_REQUEST' } as never, JSON.stringify(body));
});

test('parseHash takes an optional revision and refuses anything else with BAD_REQUEST', (t) => {
  t.deepEqual(parseHash({}), {});
  t.deepEqual(parseHash(null), {});
  t.deepEqual(parseHash(undefined), {});
  t.deepEqual(parseHash({ revision: 0 }), { revision: 0 });
  t.deepEqual(parseHash({ revision: 42 }), { revision: 42 });
  for (const body of [
    'x',
    7,
    [],
    { revision: -1 },
    { revision: 1.5 },
    { revision: '3' },
    { revision: 2 ** 60 },
    { rev: 3 },
  ])
    t.throws(() => parseHash(body), { code: 'BAD_REQUEST' } as never, JSON.stringify(body));
});

// ---- hash ----------------------------------------------------------------------------------

const bytes = (s: string) => new TextEncoder().encode(s);

async function build(commands: unknown[]): Promise<KeyTree> {
  const tree = new MemoryTree();
  let i = 0;
  for (const c of commands) await tree.apply(++i, c);
  return tree;
}

const SESSION = { op: 'sessionOpen', id: 's1', secret: bytes('secret'), ttlMs: 10_000 };
const base = [
  SESSION,
  { op: 'put', key: '/a', value: bytes('1') },
  { op: 'put', key: '/b/c', value: bytes('2') },
  {
    op: 'put',
    key: '/e',
    value: bytes('eph'),
    ephemeral: true,
    client: { session: 's1', seq: 1, lowSeq: 1 },
  },
  { op: 'put', key: '/a', value: bytes('1b') },
];

test('the hash of equal trees is equal; any difference in content changes it', async (t) => {
  const one = await treeHash(await build(base));
  const two = await treeHash(await build(base));
  t.deepEqual(one, two);
  t.is(one.keys, 3);
  t.regex(one.hash, /^[0-9a-f]{64}$/);
  t.is(one.revision, 4);
  const variants: unknown[][] = [
    // Another value of /a.
    [...base.slice(0, 4), { op: 'put', key: '/a', value: bytes('1c') }],
    // The same values, but /e is not ephemeral (no session owns it).
    [
      ...base.slice(0, 3),
      { op: 'put', key: '/e', value: bytes('eph') },
      { op: 'put', key: '/a', value: bytes('1b') },
    ],
    // The same keys, values and revision, written in another order (other create and mod revisions).
    [
      SESSION,
      { op: 'put', key: '/b/c', value: bytes('2') },
      {
        op: 'put',
        key: '/e',
        value: bytes('eph'),
        ephemeral: true,
        client: { session: 's1', seq: 1, lowSeq: 1 },
      },
      { op: 'put', key: '/a', value: bytes('1') },
      { op: 'put', key: '/a', value: bytes('1b') },
    ],
  ];
  for (const v of variants) t.not((await treeHash(await build(v))).hash, one.hash, JSON.stringify(v));
});

test('the hash at a past revision is the hash the tree had then; pages change nothing', async (t) => {
  const tree = await build(base);
  const early = await treeHash(await build(base.slice(0, 3)));
  t.is(early.revision, 2);
  t.deepEqual(await treeHash(tree, 2), early);
  t.not((await treeHash(tree, 3)).hash, early.hash);
  const many = new MemoryTree();
  for (let i = 1; i <= 25; i++) await many.apply(i, { op: 'put', key: `/k/${i}`, value: bytes(String(i)) });
  const whole = await treeHash(many);
  t.deepEqual(await treeHash(many, undefined, { pageSize: 3 }), whole);
  t.deepEqual(await treeHash(many, undefined, { pageSize: 1 }), whole);
  t.is(whole.keys, 25);
  t.deepEqual(await treeHash(many, 10, { pageSize: 4 }), await treeHash(many, 10));
  t.is((await treeHash(many, 10)).keys, 10);
  t.deepEqual(await treeHash(new MemoryTree()), {
    revision: 0,
    keys: 0,
    hash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  });
});

test('a revision not applied yet is waited for, then TIMEOUT; a compacted one is COMPACTED', async (t) => {
  const tree = await build(base);
  await t.throwsAsync(treeHash(tree, 9, { waitMs: 50 }), { code: 'TIMEOUT' } as never);
  const waiting = treeHash(tree, 5, { waitMs: 5000 });
  await new Promise((r) => setTimeout(r, 30));
  await tree.apply(6, { op: 'put', key: '/late', value: bytes('l') });
  const h = await waiting;
  t.is(h.revision, 5);
  t.deepEqual(h, await treeHash(tree));
  await tree.apply(7, { op: 'compact', revision: 3 });
  await t.throwsAsync(treeHash(tree, 2), { code: 'COMPACTED' } as never);
  t.is((await treeHash(tree, 3)).revision, 3);
});

// ---- the transport through the filter, on a real nats-server -------------------------------

const harness = useHarness(test, { label: 'ensemble-chaos' });
const S = subjects({ cluster: 'ch' });

async function node(self: string, members: string[]) {
  const nc = await harness().connect('peer');
  const got: RaftEvent[] = [];
  const chaos = new ChaosFilter();
  const t = new Transport({
    nc,
    subjects: S,
    cluster: 'ch',
    self,
    incarnation: `inc-${self}`,
    raft: (e) => got.push(e),
    admits: (id) => members.includes(id),
    snapshotChunks: async () => (async function* () {})(),
    chaos,
  });
  t.start();
  await nc.flush();
  return { t, got, nc, chaos };
}

const hb = (from: string, seq: number): Message => ({
  type: 'raft.heartbeat',
  term: 1,
  from,
  commit: 0,
  seq,
});
const until = async (cond: () => boolean, ms = 5000) => {
  const end = performance.now() + ms;
  while (!cond() && performance.now() < end) await new Promise((r) => setTimeout(r, 5));
};
const seqs = (got: RaftEvent[]) => got.map((e) => (e as { seq: number }).seq);

test.serial('Raft frames: dropped out and in (counted per message), delayed, healed', async (t) => {
  const a = await node('ca', ['ca', 'cb']);
  const b = await node('cb', ['ca', 'cb']);
  a.chaos.set(parseFilter({ rules: [{ peer: 'cb', direction: 'out', drop: 1 }] }));
  a.t.send('cb', hb('ca', 1));
  a.t.send('cb', hb('ca', 2));
  await until(() => a.t.counters.drops.chaos === 2);
  t.is(a.t.counters.drops.chaos, 2, 'both messages of the frame counted');
  t.is(a.t.counters.framesOut, 0);
  // Now b cuts a on its side: a's frames reach b and are dropped there.
  a.chaos.set([]);
  b.chaos.set(parseFilter({ rules: [{ peer: 'ca', direction: 'in', drop: 1 }] }));
  a.t.send('cb', hb('ca', 3));
  await until(() => b.t.counters.drops.chaos === 1);
  t.is(b.t.counters.drops.chaos, 1);
  // b's own frames to a still go out.
  b.t.send('ca', hb('cb', 1));
  await until(() => a.got.length === 1);
  t.deepEqual(seqs(a.got), [1]);
  // A delay holds frames back, in order.
  b.chaos.set(parseFilter({ rules: [{ peer: 'ca', direction: 'in', delayMs: 300 }] }));
  const sent = performance.now();
  a.t.send('cb', hb('ca', 4));
  await new Promise((r) => setImmediate(r));
  a.t.send('cb', hb('ca', 5));
  await until(() => b.got.length === 2);
  t.true(performance.now() - sent >= 280, 'delivered after the delay');
  t.deepEqual(seqs(b.got), [4, 5]);
  // Healed: at once again.
  b.chaos.set([]);
  a.t.send('cb', hb('ca', 6));
  await until(() => b.got.length === 3);
  t.deepEqual(seqs(b.got), [4, 5, 6]);
  t.is(b.t.counters.drops.chaos, 1);
  for (const x of [a, b]) {
    x.t.stop();
    await x.nc.close();
  }
});

test.serial(
  'requests to and from peers: cut by the sender’s out rules or the receiver’s in rules',
  async (t) => {
    const ncA = await harness().connect('peer');
    const ncB = await harness().connect('peer');
    const fa = new ChaosFilter();
    const fb = new ChaosFilter();
    const a = chaosConnection(ncA, { subjects: S, self: 'ra', chaos: fa });
    const b = chaosConnection(ncB, { subjects: S, self: 'rb', chaos: fb });
    const heard: string[] = [];
    b.subscribe(S.forward('rb'), {
      callback: (err, msg) => {
        if (err) return;
        heard.push(msg.headers?.get(CHAOS_FROM_HEADER) ?? '');
        msg.respond(encodePeer({ ok: true }, 'ch'));
      },
    });
    await ncB.flush();
    const ask = () => a.request(S.forward('rb'), encodePeer({ op: 'put' }, 'ch'), { timeout: 400 });
    const r = await ask();
    t.true(decodePeer(r.data, { cluster: 'ch' }).ok);
    t.deepEqual(heard, ['ra'], 'the request names its sender');
    // The sender's out rule: never sent; fails at its timeout.
    fa.set(parseFilter({ rules: [{ peer: 'rb', direction: 'out', drop: 1 }] }));
    let started = performance.now();
    await t.throwsAsync(ask(), { name: 'TimeoutError' });
    t.true(performance.now() - started >= 380);
    t.is(heard.length, 1);
    t.is(fa.dropped, 1);
    // The sender's in rule: the request is served, its reply lost.
    fa.set(parseFilter({ rules: [{ peer: 'rb', direction: 'in', drop: 1 }] }));
    await t.throwsAsync(ask(), { name: 'TimeoutError' });
    t.is(heard.length, 2);
    // The receiver's in rule: never served.
    fa.set([]);
    fb.set(parseFilter({ rules: [{ peer: 'ra', direction: 'both', drop: 1 }] }));
    started = performance.now();
    await t.throwsAsync(ask(), { message: /timeout|TIMEOUT/i });
    t.is(heard.length, 2);
    t.is(fb.dropped, 1);
    // The receiver's out rule: served, the answer lost.
    fb.set(parseFilter({ rules: [{ peer: 'ra', direction: 'out', drop: 1 }] }));
    await t.throwsAsync(ask(), { message: /timeout|TIMEOUT/i });
    t.is(heard.length, 3);
    // Another peer is not affected, nor are subjects that are not a peer's.
    fb.set(parseFilter({ rules: [{ peer: 'zz', direction: 'both', drop: 1 }] }));
    t.true(decodePeer((await ask()).data, { cluster: 'ch' }).ok);
    fb.set([]);
    t.true(decodePeer((await ask()).data, { cluster: 'ch' }).ok);
    t.is(heard.length, 5);
    await ncA.close();
    await ncB.close();
  },
);
