/**
 * The client session machine through pure steps on a simulated clock.
 */
import test from 'ava';
import fc from 'fast-check';
import type { ConnectionState, SessionEffect, SessionEvent } from './events.ts';
import { nextWakeup, type SessionSnapshot, startSession, stepSession } from './machine.ts';

const TTL = 3000;

/** Drives the machine with a virtual clock, keeping every effect it emitted. */
class Driver {
  snap: SessionSnapshot;
  now = 0;
  readonly effects: SessionEffect[] = [];

  constructor(ttlMs = TTL, extra: { id?: string; secret?: string } = {}) {
    const [snap, effects] = startSession({ now: 0, ttlMs, ...extra });
    this.snap = snap;
    this.effects.push(...effects);
  }

  get state(): string {
    return this.snap.value as string;
  }

  send(event: SessionEvent): SessionEffect[] {
    const [snap, effects] = stepSession(this.snap, event);
    this.snap = snap;
    this.effects.push(...effects);
    return effects;
  }

  /** Advances the clock in 10 ms ticks; `answer` may acknowledge each keepalive sent. */
  advance(ms: number, answer?: (seq: number, at: number) => void): void {
    const end = this.now + ms;
    while (this.now < end) {
      this.now = Math.min(end, this.now + 10);
      for (const e of this.send({ type: 'session.tick', now: this.now })) {
        if (e.type === 'sendKeepalive' && answer) answer(e.seq, this.now);
      }
    }
  }

  open(ttlMs = TTL): void {
    this.send({ type: 'session.opened', id: 's1', secret: 'k', ttlMs, now: this.now });
  }

  ack(seq: number): void {
    this.send({ type: 'session.keepaliveAcked', now: this.now, seq });
  }

  states(): ConnectionState[] {
    return this.effects.flatMap((e) => (e.type === 'stateChanged' ? [e.state] : []));
  }

  count(type: SessionEffect['type']): number {
    return this.effects.filter((e) => e.type === type).length;
  }

  take(): SessionEffect[] {
    return this.effects.splice(0);
  }
}

test('starts connecting and asks to open a session of the TTL it wants', (t) => {
  const d = new Driver(TTL, { id: 'mine', secret: 'shh' });
  t.is(d.state, 'connecting');
  t.deepEqual(d.take(), [{ type: 'openSession', ttlMs: TTL, id: 'mine', secret: 'shh' }]);
  d.open();
  t.is(d.state, 'active');
  t.deepEqual(d.take(), [{ type: 'stateChanged', state: 'CONNECTED', session: 's1' }]);
});

test('an acknowledged session sends a keepalive every TTL/3 and stays active', (t) => {
  const d = new Driver();
  d.open();
  d.take();
  const sentAt: number[] = [];
  d.advance(10 * TTL, (seq, at) => {
    sentAt.push(at);
    d.ack(seq);
  });
  t.is(d.state, 'active');
  t.is(sentAt.length, 30);
  for (let i = 1; i < sentAt.length; i++) t.is(sentAt[i]! - sentAt[i - 1]!, TTL / 3);
  t.deepEqual(d.states(), []);
});

test('no acknowledgement for more than TTL/2: SUSPENDED with failover; a full TTL: LOST', (t) => {
  const d = new Driver();
  d.open();
  d.take();
  d.advance(TTL / 2);
  t.is(d.state, 'active', 'exactly TTL/2 is not yet suspended');
  d.advance(10);
  t.is(d.state, 'suspended');
  t.deepEqual(d.states(), ['SUSPENDED']);
  t.true(d.effects.some((e) => e.type === 'failover' && e.reason === 'suspended'));
  t.true(d.count('sendKeepalive') >= 1, 'keepalives go on while suspended');
  d.advance(TTL / 2 - 20);
  t.is(d.state, 'suspended');
  d.advance(10);
  t.is(d.state, 'expired');
  t.is(d.now, TTL);
  t.deepEqual(d.states(), ['SUSPENDED', 'LOST']);
  const sent = d.count('sendKeepalive');
  d.advance(TTL);
  t.is(d.count('sendKeepalive'), sent, 'an expired session sends nothing');
});

test('an acknowledgement while suspended brings the session back: RECONNECTED', (t) => {
  const d = new Driver();
  d.open();
  d.take();
  let probe = -1;
  d.advance(TTL / 2 + 10, (seq) => {
    probe = seq;
  });
  t.is(d.state, 'suspended');
  t.is(d.now, TTL / 2 + 10, 'a keepalive goes at once on suspension');
  d.advance(20);
  d.ack(probe);
  t.is(d.state, 'active');
  t.deepEqual(d.states(), ['SUSPENDED', 'RECONNECTED']);
});

test('an acknowledgement counts from when its keepalive was sent, not when the answer came', (t) => {
  const d = new Driver();
  d.open();
  d.take();
  // The first keepalive leaves at TTL/3 and is answered very late, at 0.9 TTL.
  let first = -1;
  d.advance(TTL / 3, (seq) => {
    if (first < 0) first = seq;
  });
  d.advance(0.9 * TTL - d.now);
  d.ack(first);
  t.is(d.state, 'suspended', 'an answer about an old keepalive does not restore the session');
  // Counting from the answer would keep it alive until 1.9 TTL; from the send, 4/3 TTL.
  d.advance((4 / 3) * TTL - 10 - d.now);
  t.is(d.state, 'suspended');
  d.advance(10);
  t.is(d.state, 'expired');
  t.is(d.now, (4 / 3) * TTL);
});

test('a late or duplicated acknowledgement changes nothing', (t) => {
  const d = new Driver();
  d.open();
  let seq = -1;
  d.advance(TTL / 3, (s) => {
    seq = s;
  });
  d.ack(seq);
  const before = d.snap.context.lastAckAt;
  d.advance(100);
  d.ack(seq); // duplicate
  d.ack(999); // never sent
  t.is(d.snap.context.lastAckAt, before);
});

test('a keepalive unanswered for an interval is a failure: failover without being told', (t) => {
  const d = new Driver();
  d.open();
  d.take();
  d.advance(TTL / 3); // sent, never answered
  t.is(d.count('sendKeepalive'), 1);
  const failures = () => d.effects.filter((e) => e.type === 'failover' && e.reason === 'keepaliveFailed');
  d.advance(TTL / 3 - 10);
  t.is(failures().length, 0);
  d.advance(10);
  t.is(failures().length, 1);
});

test('an explicit keepalive failure asks for failover at once; the next goes after TTL/10', (t) => {
  const d = new Driver();
  d.open();
  d.take();
  let seq = -1;
  d.advance(TTL / 3, (s) => {
    seq = s;
  });
  d.advance(50);
  d.take();
  d.send({ type: 'session.keepaliveFailed', now: d.now, seq });
  t.deepEqual(d.take(), [{ type: 'failover', reason: 'keepaliveFailed' }]);
  d.advance(TTL / 10 - 10);
  t.is(d.count('sendKeepalive'), 0);
  d.advance(10);
  t.is(d.count('sendKeepalive'), 1);
});

test('a dropped NATS connection suspends at once; keepalives wait; back: one at once, then RECONNECTED', (t) => {
  const d = new Driver();
  d.open();
  d.advance(100);
  d.take();
  d.send({ type: 'session.serverLost', now: d.now });
  t.is(d.state, 'suspended');
  t.deepEqual(d.states(), ['SUSPENDED']);
  d.advance(TTL / 3);
  t.is(d.count('sendKeepalive'), 0, 'nothing sent while disconnected');
  d.take();
  const out = d.send({ type: 'session.serverBack', now: d.now });
  const ka = out.find((e) => e.type === 'sendKeepalive');
  t.truthy(ka);
  if (ka?.type === 'sendKeepalive') d.ack(ka.seq);
  t.is(d.state, 'active');
  t.deepEqual(d.states(), ['RECONNECTED']);
});

test('back on the server after a full TTL: LOST, not RECONNECTED', (t) => {
  const d = new Driver();
  d.open();
  d.send({ type: 'session.serverLost', now: 10 });
  d.send({ type: 'session.serverBack', now: TTL + 10 });
  t.is(d.state, 'expired');
});

test('SESSION_EXPIRED from the cluster: LOST from active and from suspended', (t) => {
  const a = new Driver();
  a.open();
  a.send({ type: 'session.expiredByServer' });
  t.is(a.state, 'expired');
  t.deepEqual(a.states(), ['CONNECTED', 'LOST']);
  const s = new Driver();
  s.open();
  s.send({ type: 'session.serverLost' });
  s.send({ type: 'session.expiredByServer' });
  t.deepEqual(s.states(), ['CONNECTED', 'SUSPENDED', 'LOST']);
});

test('a failed open asks for failover and retries with doubling backoff', (t) => {
  const d = new Driver();
  d.take();
  const retries: number[] = [];
  for (let i = 0; i < 6; i++) {
    d.send({ type: 'session.openFailed', now: d.now });
    t.deepEqual(d.take(), [{ type: 'failover', reason: 'openFailed' }]);
    const from = d.now;
    while (d.count('openSession') === 0) d.advance(10);
    retries.push(d.now - from);
    d.take();
  }
  t.deepEqual(retries, [300, 600, 1200, 2400, 4800, 4800]);
  d.open();
  t.is(d.state, 'active');
});

test('close from active: closeSession, then CLOSED when done (final)', (t) => {
  const d = new Driver();
  d.open();
  d.take();
  d.send({ type: 'session.close' });
  t.is(d.state, 'closing');
  t.deepEqual(d.take(), [{ type: 'closeSession', id: 's1', secret: 'k' }]);
  d.send({ type: 'session.closeDone' });
  t.is(d.state, 'closed');
  t.is(d.snap.status, 'done');
  t.deepEqual(d.states(), ['CLOSED']);
});

test('close while the open is in flight: the session is closed as soon as it exists', (t) => {
  const d = new Driver();
  d.take();
  d.send({ type: 'session.close' });
  t.is(d.state, 'closing');
  d.open();
  t.deepEqual(d.take(), [{ type: 'closeSession', id: 's1', secret: 'k' }]);
  d.send({ type: 'session.closeDone' });
  t.deepEqual(d.states(), ['CLOSED']);
});

test('close while waiting to retry an open: closed at once', (t) => {
  const d = new Driver();
  d.send({ type: 'session.openFailed' });
  d.send({ type: 'session.close' });
  t.is(d.state, 'closed');
});

test('reopen after LOST opens a new session: CONNECTED again', (t) => {
  const d = new Driver();
  d.open();
  d.send({ type: 'session.expiredByServer' });
  d.take();
  d.send({ type: 'session.reopen', id: 'fresh' });
  t.is(d.state, 'connecting');
  t.deepEqual(d.take(), [{ type: 'openSession', ttlMs: TTL, id: 'fresh' }]);
  d.send({ type: 'session.opened', id: 'fresh', secret: 'k2', ttlMs: TTL });
  t.deepEqual(d.states(), ['CONNECTED']);
});

test('the granted TTL replaces the one asked for', (t) => {
  const d = new Driver(TTL);
  d.open(600);
  d.take();
  d.advance(300);
  t.is(d.count('sendKeepalive'), 1);
  d.advance(10);
  t.is(d.state, 'suspended');
});

test('ticking only at nextWakeup gives the same effects, at the same times, as ticking every ms', (t) => {
  const ttl = 900;
  // Events from outside, at fixed times; keepalives with these seqs are acknowledged 20 ms late.
  const script: [number, SessionEvent][] = [
    [5, { type: 'session.opened', id: 'w', secret: 'k', ttlMs: ttl }],
    [2000, { type: 'session.serverLost' }],
    [2600, { type: 'session.serverBack' }],
    [4000, { type: 'session.expiredByServer' }],
  ];
  const acked = new Set([1, 2, 3, 6, 9]);
  const run = (everyMs: boolean): string[] => {
    let [snap] = startSession({ now: 0, ttlMs: ttl });
    const log: string[] = [];
    const pending: [number, SessionEvent][] = script.slice();
    const feed = (now: number, ev: SessionEvent) => {
      const [next, effects] = stepSession(snap, ev);
      snap = next;
      for (const e of effects) {
        log.push(`${now} ${JSON.stringify(e)}`);
        if (e.type === 'sendKeepalive' && acked.has(e.seq))
          pending.push([now + 20, { type: 'session.keepaliveAcked', now: now + 20, seq: e.seq }]);
      }
    };
    let now = 0;
    let wake: number | null = 0;
    while (now < 5000) {
      pending.sort((a, b) => a[0] - b[0]);
      const nextEvent = pending[0]?.[0] ?? Number.POSITIVE_INFINITY;
      const nextTick = everyMs ? now + 1 : Math.max(now + 1, Math.ceil(wake ?? Number.POSITIVE_INFINITY));
      now = Math.min(nextEvent, nextTick, 5000);
      if (now === nextEvent) {
        const [, ev] = pending.shift()!;
        feed(now, 'now' in ev ? ev : { ...ev, now });
      } else feed(now, { type: 'session.tick', now });
      wake = nextWakeup(snap);
    }
    return log;
  };
  const dense = run(true);
  t.true(dense.length > 10);
  t.deepEqual(run(false), dense);
});

// Property: whatever the network does, the machine's view never outlives the cluster's. States
// are decided on ticks, so the check runs after each tick.
test('property: ACTIVE only within TTL/2 of the last acknowledged send, LOST by TTL after it', (t) => {
  const step = fc.oneof(
    fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 1, max: 800 }) }),
    fc.record({
      kind: fc.constant('ack' as const),
      which: fc.nat({ max: 3 }),
      delay: fc.integer({ min: 0, max: 50 }),
    }),
    fc.record({ kind: fc.constant('fail' as const) }),
    fc.record({ kind: fc.constant('lost' as const) }),
    fc.record({ kind: fc.constant('back' as const) }),
  );
  fc.assert(
    fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
      const ttl = 1200;
      const [s0] = startSession({ now: 0, ttlMs: ttl });
      let [snap] = stepSession(s0, { type: 'session.opened', id: 'p', secret: 'x', ttlMs: ttl, now: 0 });
      let now = 0;
      let lastAckSent = 0; // the open request left at 0
      const sent = new Map<number, number>();
      const feed = (ev: SessionEvent) => {
        const [next, effects] = stepSession(snap, ev);
        snap = next;
        for (const e of effects) if (e.type === 'sendKeepalive') sent.set(e.seq, now);
      };
      const check = () => {
        const state = snap.value as string;
        if (state === 'active' && now - lastAckSent > ttl / 2) return false;
        if ((state === 'active' || state === 'suspended') && now - lastAckSent >= ttl) return false;
        return true;
      };
      for (const s of steps) {
        if (s.kind === 'wait') {
          for (let i = 0; i < s.ms; i += 10) {
            now += 10;
            feed({ type: 'session.tick', now });
            if (!check()) return false;
          }
        } else if (s.kind === 'ack') {
          const seqs = [...sent.keys()].slice(-4);
          const seq = seqs[s.which % Math.max(1, seqs.length)];
          if (seq === undefined) continue;
          now += s.delay;
          const state = snap.value as string;
          const inflight = snap.context.inflight.some((k) => k.seq === seq);
          feed({ type: 'session.keepaliveAcked', now, seq });
          if ((state === 'active' || state === 'suspended') && inflight)
            lastAckSent = Math.max(lastAckSent, sent.get(seq)!);
        } else if (s.kind === 'fail') feed({ type: 'session.keepaliveFailed', now });
        else if (s.kind === 'lost') feed({ type: 'session.serverLost', now });
        else feed({ type: 'session.serverBack', now });
        if ((snap.value as string) === 'expired') return true;
      }
      return true;
    }),
    { numRuns: 300 },
  );
  t.pass();
});
