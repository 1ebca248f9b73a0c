/**
 * Unit tests of the session keeper with in-memory doubles for its ports (a fake clock, a table
 * of sessions standing for the key tree, age rounds delivered by hand).
 */
import test from 'ava';
import type { AgesReply } from '../machines/session/index.ts';
import type { SessionInfo } from '../storage/index.ts';
import { type AgesPeers, type AgesQuestion, SessionKeeper } from './sessions.ts';

const bytes = (s: string) => new TextEncoder().encode(s);

function rig() {
  let now = 1000;
  const table = new Map<string, SessionInfo>();
  const asked: { voter: string; q: AgesQuestion; answer: (r: AgesReply) => void }[] = [];
  let serve: ((q: AgesQuestion) => AgesReply) | null = null;
  const peers: AgesPeers = {
    serve: (report) => {
      serve = report;
    },
    ask: (voter, q, answer) => asked.push({ voter, q, answer }),
    stop: () => {
      serve = null;
    },
  };
  const expired: string[] = [];
  const keeper = new SessionKeeper({
    self: 'a',
    tree: {
      sessions: () => [...table.values()],
      session: (id) => table.get(id) ?? null,
    },
    graceMs: 100,
    machine: {
      role: () => 'follower',
      context: () => ({}) as never,
    },
    expire: (id) => {
      expired.push(id);
      return `x-${id}`;
    },
    peers,
    now: () => now,
  });
  keeper.start();
  return {
    keeper,
    table,
    asked,
    expired,
    answer: (q: AgesQuestion) => serve!(q),
    advance: (ms: number) => {
      now += ms;
    },
    open: (id: string, secret: string) =>
      table.set(id, { id, secret: bytes(secret), ttlMs: 500, lowSeq: 0 } as unknown as SessionInfo),
  };
}

test('a keepalive heard before the session is known counts once the session arrives with that secret', (t) => {
  const r = rig();
  r.keeper.heardUnknown('s1', bytes('right'));
  r.advance(300);
  // The session arrives in a snapshot (no open applied here): the earlier keepalive counts.
  r.open('s1', 'right');
  r.keeper.restored();
  t.is(r.keeper.clock.lastHeard('s1'), 1000);
  const ages = r.answer({ term: 1, round: 1 }).ages;
  t.is(ages.get('s1'), 300, 'reported as an age, 300 ms ago');
});

test('a keepalive kept aside with a forged secret never counts', (t) => {
  const r = rig();
  r.keeper.heardUnknown('s1', bytes('forged'));
  r.open('s1', 'right');
  r.keeper.restored();
  t.is(r.keeper.clock.lastHeard('s1'), undefined);
  r.keeper.restored(); // verified once: nothing left to count
  t.is(r.keeper.clock.lastHeard('s1'), undefined);
});

test('applying the open counts as contact, later than any keepalive kept aside', (t) => {
  const r = rig();
  r.keeper.heardUnknown('s1', bytes('right'));
  r.advance(50);
  r.open('s1', 'right');
  r.keeper.applied({
    ok: true,
    revision: 1,
    result: { op: 'sessionOpen', id: 's1' },
    replayed: false,
  } as never);
  t.is(r.keeper.clock.lastHeard('s1'), 1050);
  r.keeper.applied({
    ok: true,
    revision: 2,
    result: { op: 'sessionExpire', id: 's1' },
    replayed: false,
  } as never);
  t.is(r.keeper.clock.lastHeard('s1'), undefined, 'an ended session is forgotten');
});

test('what is kept aside is bounded', (t) => {
  const r = rig();
  for (let i = 0; i < 5000; i++) r.keeper.heardUnknown(`s${i}`, bytes('k'));
  r.open('s0', 'k');
  r.open('s4999', 'k');
  r.keeper.restored();
  t.is(r.keeper.clock.lastHeard('s0'), undefined, 'the oldest were dropped');
  t.is(r.keeper.clock.lastHeard('s4999'), 1000);
});
