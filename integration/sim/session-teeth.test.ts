/**
 * The session checker has teeth: deliberately broken expiry planners (subclasses of the real
 * one, run by the real session keeper; never edits of it) and a broken apply must be caught,
 * each within a few seeds.
 */
import test from 'ava';
import type { AgesReply } from '../../machines/session/index.ts';
import { ExpiryPlanner, type ExpiryPlannerOptions } from '../../machines/session/index.ts';
import { type SimOptions, simulate } from './cluster.ts';
import { nonEphemeralApply } from './planted.ts';
import type { SessionSimOptions } from './sessions.ts';

/** Runs seeds until one is caught; returns the property and the seed, or null. */
function firstCaught(
  sessions: SessionSimOptions,
  seeds: number,
  more: Partial<SimOptions> = {},
): { property: string; seed: number } | null {
  for (let seed = 1; seed <= seeds; seed++) {
    const r = simulate({ seed, nodes: seed % 2 === 0 ? 5 : 3, steps: 4000, sessions, ...more });
    const v = r.violations[0];
    if (v !== undefined) return { property: v.property, seed };
  }
  return null;
}

/** Counts answers towards the quorum but learns nothing from them: only its own hearing. */
class IgnoresAges extends ExpiryPlanner {
  override agesFrom(node: string, reply: AgesReply, now: number): void {
    super.agesFrom(node, { ...reply, ages: new Map(), floorAge: Number.POSITIVE_INFINITY }, now);
  }
}

/** Expires at last contact + TTL: no election grace, no confirming round. */
class NoGraceNoRound extends ExpiryPlanner {
  protected override confirmedFor(): boolean {
    return true;
  }
}

/** Learns ages once per term, as DESIGN's words alone ask: after its first answered round it
 * trusts what it knew then and its own hearing, without asking again before each expiry. */
class LearnsOnceAtElection extends ExpiryPlanner {
  protected override confirmedFor(_due: number, ttlMs: number): boolean {
    return super.confirmedFor(this.electedAt, ttlMs);
  }
}

/** Counts its own election as a contact (etcd #9395): every leader change renews every lease. */
class RenewsOnElection extends ExpiryPlanner {
  override deadline(id: string, ttlMs: number): number {
    return Math.max(this.lastContact(id), this.electedAt) + ttlMs;
  }
}

/** Never expires anything. */
class NeverExpires extends ExpiryPlanner {
  override tick(): { expire: string[]; askAges: null } {
    return { expire: [], askAges: null };
  }
}

const with_ = (make: new (o: ExpiryPlannerOptions) => ExpiryPlanner) => (o: ExpiryPlannerOptions) =>
  new make(o);

test('a leader that ignores the ages its followers report is caught (live session expired)', (t) => {
  const r = firstCaught({ planner: with_(IgnoresAges) }, 20);
  t.is(r?.property, 'session-expired-live', JSON.stringify(r));
  t.log(r);
});

test('a leader that expires at last contact + TTL without grace or a confirming round is caught', (t) => {
  const r = firstCaught({ planner: (o) => new NoGraceNoRound({ ...o, graceMs: 0 }) }, 20);
  t.is(r?.property, 'session-expired-live', JSON.stringify(r));
  t.log(r);
});

test('a leader that learns ages only once per term is caught (keepalives reaching followers only)', (t) => {
  // More clients with shorter TTLs: more sessions whose keepalives miss the leader for a TTL.
  const r = firstCaught({ planner: with_(LearnsOnceAtElection), clients: 6, ttlMs: [150, 300] }, 20);
  t.is(r?.property, 'session-expired-live', JSON.stringify(r));
  t.log(r);
});

test('a leader that renews every session on election (etcd #9395) is caught (expiry bound)', (t) => {
  // A renewal is visible once the TTL exceeds the bound's two election timeouts (400 ms).
  const r = firstCaught({ planner: with_(RenewsOnElection), ttlMs: [700, 900] }, 20);
  t.is(r?.property, 'session-expiry-bound', JSON.stringify(r));
  t.log(r);
});

test('a leader that never expires is caught (expiry bound)', (t) => {
  const r = firstCaught({ planner: with_(NeverExpires) }, 5);
  t.is(r?.property, 'session-expiry-bound', JSON.stringify(r));
});

test('an apply that drops the ephemeral flag of a put is caught (a key outlives its session)', (t) => {
  const r = firstCaught({}, 20, { mistakes: { apply: nonEphemeralApply } });
  t.is(r?.property, 'ephemeral-outlived', JSON.stringify(r));
  t.log(r);
});

test('the faithful planner with the long TTLs used above shows no violation', (t) => {
  t.is(firstCaught({ ttlMs: [700, 900] }, 4), null);
});

test('the faithful planner with the many clients and short TTLs used above shows no violation', (t) => {
  t.is(firstCaught({ clients: 6, ttlMs: [150, 300] }, 6), null);
});
