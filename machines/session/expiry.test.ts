/**
 * Server-side expiry through pure calls on simulated clocks: each node's clock has its own
 * origin (monotonic clocks share none), so only ages can cross between them. Both directions:
 * a live session is never expired across leader changes, a dead one is not kept forever.
 */
import test from 'ava';
import fc from 'fast-check';
import { SessionClock } from './clock.ts';
import { type AgesRequest, ExpiryPlanner, type PlannerOutput } from './expiry.ts';

const TTL = 1000;
const GRACE = 200; // one election timeout

/** Nodes with their own clock origins, a virtual time `t`, and a leader's planner. */
class World {
  t = 0;
  readonly offsets: Record<string, number>;
  readonly clocks: Record<string, SessionClock> = {};
  planner: ExpiryPlanner;
  sessions = new Map<string, number>([['s', TTL]]);
  readonly expired: [string, number][] = [];
  lastAsk: AgesRequest | null = null;
  /** Apply each expiry at once (the session leaves the table), or leave it to retry. */
  applies = true;

  constructor(
    readonly voters: string[] = ['a', 'b', 'c'],
    public leader = 'a',
  ) {
    this.offsets = Object.fromEntries(voters.map((v, i) => [v, 1e9 * (i + 1) + 12_345 * i]));
    for (const v of voters) this.clocks[v] = new SessionClock(this.clock(v));
    this.hear(voters); // the open, applied everywhere at 0
    this.planner = this.newPlanner(leader);
  }

  clock(node: string): number {
    return this.t + this.offsets[node]!;
  }

  newPlanner(node: string, extra: { graceMs?: number } = {}): ExpiryPlanner {
    return new ExpiryPlanner({ self: node, clock: this.clocks[node]!, graceMs: GRACE, ...extra });
  }

  elect(node: string, term: number): void {
    this.planner.steppedDown();
    this.leader = node;
    this.planner = this.newPlanner(node);
    this.planner.becameLeader(this.clock(node), term);
  }

  hear(nodes: string[], id = 's'): void {
    for (const n of nodes) this.clocks[n]!.heard(id, this.clock(n));
  }

  tick(): PlannerOutput {
    const out = this.planner.tick(this.clock(this.leader), this.sessions, this.voters);
    if (out.askAges) this.lastAsk = out.askAges;
    for (const id of out.expire) {
      this.expired.push([id, this.t]);
      if (this.applies) this.sessions.delete(id);
    }
    return out;
  }

  /** `from` answers the last request (generated now, arriving `transit` ms later). */
  answer(from: string, transit = 0, req = this.lastAsk): void {
    if (!req) return;
    const report = this.clocks[from]!.report(this.clock(from));
    this.t += transit;
    this.planner.agesFrom(from, { ...report, ...req }, this.clock(this.leader));
  }

  /** Runs ticks every 10 ms until `until`, answering each request at once from `answering`. */
  run(until: number, answering: string[] = this.voters, hearing: string[] = []): void {
    while (this.t < until) {
      this.t += 10;
      if (hearing.length > 0 && this.t % 300 === 0) this.hear(hearing);
      const out = this.tick();
      if (out.askAges) for (const n of answering) if (n !== this.leader) this.answer(n);
    }
  }
}

test('a new leader expires nothing within one election timeout of its election', (t) => {
  const w = new World();
  w.t = 5000; // the session was last heard (opened) at 0
  w.elect('a', 2);
  w.run(5000 + GRACE - 10);
  t.deepEqual(w.expired, []);
  w.run(5000 + GRACE + 20);
  t.deepEqual(w.expired, [['s', 5000 + GRACE + 10]]);
});

test('nothing expires before a quorum answered a round started after the deadline', (t) => {
  const w = new World();
  w.elect('a', 1);
  w.t = TTL - 10;
  t.deepEqual(w.tick(), { expire: [], askAges: null });
  w.t = TTL;
  const out = w.tick();
  t.deepEqual(out.expire, []);
  t.deepEqual(out.askAges, { term: 1, round: 1 });
  // Nobody answers: it keeps asking (after the round timeout), never expires.
  let asks = 0;
  for (let i = 0; i < 50; i++) {
    w.t += 10;
    if (w.tick().askAges) asks++;
  }
  t.deepEqual(w.expired, []);
  t.is(asks, 10);
  w.answer('b');
  t.deepEqual(w.tick().expire, ['s']);
});

test('keepalives that reach a quorum but not the leader keep the session (ages from followers)', (t) => {
  const w = new World();
  w.elect('a', 1);
  w.run(20 * TTL, ['b', 'c'], ['b', 'c']);
  t.deepEqual(w.expired, []);
  // The client dies: b and c hear nothing more after 20 TTL.
  w.run(22 * TTL);
  t.is(w.expired.length, 1);
  const [, at] = w.expired[0]!;
  t.true(at > 20 * TTL - 300 + TTL && at <= 20 * TTL + TTL + 30, `expired at ${at}`);
});

test('keepalives heard only by nodes that do not answer do not keep the session', (t) => {
  const w = new World(['a', 'b', 'c', 'd', 'e']);
  w.elect('a', 1);
  w.run(3 * TTL, ['c', 'd', 'e'], ['b']);
  t.is(w.expired.length, 1);
});

test('a round answered by a minority does not confirm (5 voters: the leader and one)', (t) => {
  const w = new World(['a', 'b', 'c', 'd', 'e']);
  w.elect('a', 1);
  w.run(3 * TTL, ['b']);
  t.deepEqual(w.expired, []);
  w.answer('c');
  t.deepEqual(w.tick().expire, ['s']);
});

test('only ages cross between nodes: clock origins a billion ms apart change nothing', (t) => {
  const w = new World();
  w.elect('a', 1);
  w.t = 700;
  w.hear(['c']); // c's clock reads ~3e9, a's ~1e9
  w.run(TTL + 600);
  t.deepEqual(w.expired, [], 'c heard it 300 ms before a deadline of 1700: not due');
  w.run(1700 + 40);
  t.deepEqual(w.expired, [['s', 1710]]);
});

test('a round started before the deadline confirms nothing', (t) => {
  const w = new World();
  w.elect('a', 1);
  w.t = 2 * GRACE;
  w.hear(['a']);
  // A round started now would be early: the planner does not start one before anything is due.
  t.is(w.tick().askAges, null);
  w.t = 2 * GRACE + TTL;
  const out = w.tick();
  t.truthy(out.askAges);
  t.deepEqual(out.expire, []);
});

test('an answer of an earlier term counts for nothing', (t) => {
  const w = new World();
  w.elect('a', 1);
  w.t = TTL;
  const first = w.tick().askAges!;
  w.elect('a', 2);
  w.t += GRACE;
  w.tick();
  w.answer('b', 0, first);
  w.answer('c', 0, first);
  t.deepEqual(w.tick().expire, []);
});

test('a restarted node cannot vouch until its floor is a TTL old; nodes that were up can', (t) => {
  const w = new World();
  w.elect('a', 1);
  w.t = 900;
  w.clocks.b = new SessionClock(w.clock('b')); // b restarts, knowing nothing
  w.run(TTL + 50, ['b']);
  t.deepEqual(w.expired, [], 'a and a restarted b are not a vouching quorum');
  w.run(900 + TTL + 30, ['b']);
  t.deepEqual(w.expired, [['s', 1910]], 'once b has been up for a TTL it vouches');
  // The same restart with c answering too: a and c vouch, the restart delays nothing.
  const v = new World();
  v.elect('a', 1);
  v.t = 900;
  v.clocks.b = new SessionClock(v.clock('b'));
  v.run(TTL + 30);
  t.deepEqual(v.expired, [['s', TTL + 10]]);
});

test('contactAll after an outage moves the floor and keeps what was heard', (t) => {
  const clock = new SessionClock(0);
  clock.heard('x', 10);
  clock.contactAll(500);
  t.is(clock.lastHeard('x'), 10);
  t.is(clock.lastHeard('never'), undefined);
  t.is(clock.since, 500);
  t.deepEqual([...clock.ages(600)], [['x', 590]]);
  t.is(clock.floorAge(600), 100);
  clock.heard('x', 550);
  t.deepEqual([...clock.ages(600)], [['x', 50]]);
});

test('a leader back from a pause (contactAll) cannot vouch alone: it needs a quorum that can', (t) => {
  const w = new World();
  w.elect('a', 1);
  w.t = 600;
  w.clocks.a!.contactAll(w.clock('a'));
  w.run(TTL + 50, ['b']);
  t.deepEqual(w.expired, [], 'a (paused) and b: one voucher of three');
  w.run(TTL + 120, ['b', 'c']);
  t.is(w.expired.length, 1, 'b and c vouch');
});

test('expiry pauses while the quorum is lost, and resumes when it is back', (t) => {
  const w = new World();
  w.elect('a', 1);
  w.planner.quorumLost(w.clock('a'));
  w.run(3 * TTL);
  t.deepEqual(w.expired, []);
  t.is(w.lastAsk, null, 'no rounds while paused');
  w.planner.quorumRegained(w.clock('a'));
  w.run(3 * TTL + 20);
  t.is(w.expired.length, 1);
});

test('each expiry is proposed once, again after retryMs if it did not take, never once gone', (t) => {
  const w = new World();
  w.applies = false;
  w.elect('a', 1);
  w.run(TTL + 20);
  t.is(w.expired.length, 1);
  w.run(TTL + GRACE); // retryMs defaults to graceMs
  t.is(w.expired.length, 1);
  w.run(TTL + GRACE + 30);
  t.is(w.expired.length, 2);
  w.sessions.delete('s'); // applied
  w.run(5 * TTL);
  t.is(w.expired.length, 2);
});

test('a leader change costs no live session; a dead one expires within TTL + 2 grace of its last keepalive', (t) => {
  const w = new World();
  w.elect('a', 1);
  // Keepalives every 300 ms reach a and b only; c's view is stale. Leaders change every 700 ms.
  let term = 1;
  const order = ['c', 'b', 'a'];
  for (let k = 0; k < 12; k++) {
    w.run(w.t + 700, ['a', 'b', 'c'], ['a', 'b']);
    w.elect(order[k % 3]!, ++term);
  }
  t.deepEqual(w.expired, []);
  const last = Math.floor(w.t / 300) * 300;
  w.run(w.t + 3 * TTL);
  t.is(w.expired.length, 1);
  t.true(w.expired[0]![1] <= last + TTL + 2 * GRACE, `expired ${w.expired[0]![1] - last} ms after`);
});

// Property: a random network between three nodes and a client, leaders changing at random.
// Whatever is delivered, an expiry happens only if, at some instant before it, no quorum had
// heard the session within TTL. Once every round is answered at once (the tail), a session
// nobody hears any more expires within a tick, a round timeout and a tick of
// max(last contact + TTL, election + grace).
test('property: no live session expires; a dead one expires in time', (t) => {
  const action = fc.record({
    hear: fc.subarray(['a', 'b', 'c']),
    answer: fc.subarray(['b', 'c']),
    transit: fc.integer({ min: 0, max: 4 }),
    newLeader: fc.option(fc.constantFrom('a', 'b', 'c'), { freq: 8 }),
  });
  const reliable = { hear: [], answer: ['b', 'c'], transit: 0, newLeader: null };
  fc.assert(
    fc.property(fc.array(action, { minLength: 5, maxLength: 80 }), fc.nat({ max: 80 }), (acts, dieAt) => {
      const w = new World();
      let term = 1;
      w.elect('a', term);
      const heardAt: Record<string, number> = { a: 0, b: 0, c: 0 };
      let lastContact = 0;
      let live = true; // at every tick so far, some quorum had heard it within TTL
      let electedAt = 0;
      let tailFrom = Number.POSITIVE_INFINITY;
      for (let i = 0; i < acts.length + 100; i++) {
        const a = acts[i] ?? reliable;
        if (i === acts.length) tailFrom = w.t;
        for (let k = 0; k < 5; k++) {
          w.t += 10;
          const quorumHeard = Object.values(heardAt).sort((x, y) => y - x)[1]!;
          if (w.t - quorumHeard >= TTL) live = false;
          const out = w.tick();
          if (out.expire.length > 0) {
            if (live) return false;
            const bound = Math.max(lastContact + 4 + TTL, electedAt + GRACE, tailFrom) + 10 + 50 + 10;
            return w.t >= tailFrom ? w.t <= bound : true;
          }
          if (out.askAges) for (const n of a.answer) if (n !== w.leader) w.answer(n, a.transit);
        }
        if (i < Math.min(dieAt, acts.length)) {
          w.hear(a.hear);
          for (const n of a.hear) heardAt[n] = w.t;
          if (a.hear.length > 0) lastContact = w.t;
        }
        if (a.newLeader !== null) {
          w.elect(a.newLeader, ++term);
          electedAt = w.t;
        }
      }
      return false; // never expired although nobody heard it for the whole tail
    }),
    { numRuns: 300 },
  );
  t.pass();
});
