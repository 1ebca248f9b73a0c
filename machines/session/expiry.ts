/**
 * The leader's expiry decision: which sessions to expire now, through a committed entry.
 *
 * Every node runs a `SessionClock` (clock.ts). Only the leader runs an `ExpiryPlanner`, fed by
 * its runtime:
 * - `becameLeader(now, term)` / `steppedDown()`; `quorumLost(now)` / `quorumRegained(now)` (the
 *   runtime's view, e.g. Raft's CheckQuorum): nothing is expired and no round starts while the
 *   quorum is lost.
 * - `tick(now, sessions, voters)` with the applied session table (id -> TTL) and the voters of
 *   the leader's current configuration returns `{ expire, askAges }`: propose `sessionExpire`
 *   for each id in `expire` (each is returned once, and again after `retryMs` if it did not
 *   take; `notTaken(ids)` when the proposal is refused outright), and when `askAges` is set,
 *   send it to every other voter.
 * - `agesFrom(node, reply, now)` with each answer: the node's `SessionClock.report()` plus the
 *   request's `term` and `round`. The planner reads its own node's clock directly.
 *
 * The decision. For session s with TTL t:
 *   lastContact(s) = the latest contact known: this node's clock and, for every answer,
 *                    (arrival - age): ages, never timestamps;
 *   due(s)         = max(lastContact(s) + t, electedAt + graceMs).
 * s is expired at `now >= due(s)` once an age round that *started at or after due(s)* (with
 * due(s) counting that round's answers) was answered by a quorum of the voters at its start
 * that can *vouch* for the TTL before it: nodes whose clock floor (process start, return from
 * an outage) is at least t before the round's start. This node answers its own rounds.
 *
 * Departures from DESIGN "Sessions", both stricter where it matters:
 * - DESIGN has a new leader learn ages from a quorum once, at its election. Here every expiry
 *   is confirmed by a round that started after the deadline (one round serves every session
 *   due by then; none runs while nothing is due). This also keeps a session whose keepalives
 *   reach a quorum of followers but not the leader, which learning once would expire.
 * - DESIGN counts a node's return from an outage (or restart) as a contact for every session.
 *   Here such a node just cannot vouch until its floor is a TTL old; the others can. When too
 *   few others can, the expiry waits for the returned nodes' floors to age: exactly DESIGN's
 *   "counts as a contact". So a restart elsewhere does not renew every session.
 *
 * Guarantees (the simulator checks both, integration/sim/session-checker.ts):
 * - Safety: if s is expired by a proposal at X, there was an instant S <= X (the confirming
 *   round's start) at which no quorum of the voters then in force had each heard s within
 *   (S - t, S]. Proof: such a quorum meets the vouching quorum in a node n that heard s at
 *   d > S - t; its floor is at most S - t, so its record has d (or later); it answered after S,
 *   so the age it sent is at most (answer time - d), the leader counts a contact at or after d
 *   (transit only adds), and due(s) > S: the round did not confirm. So a session whose
 *   keepalives reach a quorum at least every TTL is never expired, whatever the elections,
 *   partitions and restarts (drift between clocks aside: give the TTL a margin of the drift
 *   rate times the TTL on real hardware).
 * - Bound: let D be the latest contact any node recorded for s (a keepalive it heard, its
 *   apply of the open). A leader elected at E, ticking, whose rounds are answered, proposes the
 *   expiry within one tick and one answered round of max(D + t, E + graceMs, V), V the moment a
 *   quorum of voters has had a floor at least t old (answer transit can add its length to D).
 *   With graceMs one election timeout, the expiry commits within max(D + t, E, V) + 2 election
 *   timeouts as long as a round and a commit together take less than one: no renewal forever
 *   across leader changes (etcd #9395); each election costs at most one grace.
 */
import type { AgeReport, SessionClock } from './clock.ts';

export interface ExpiryPlannerOptions {
  /** This node's id (its own answer is its clock, read directly). */
  readonly self: string;
  /** This node's `SessionClock`. */
  readonly clock: SessionClock;
  /** The grace after an election before anything expires: one election timeout, in ms. */
  readonly graceMs: number;
  /** A round unanswered by a quorum for this long is retried with a new one. Default graceMs/4. */
  readonly roundTimeoutMs?: number;
  /** An expiry proposed and still not applied is proposed again after this. Default graceMs. */
  readonly retryMs?: number;
}

export interface AgesRequest {
  readonly term: number;
  readonly round: number;
}

export interface AgesReply extends AgeReport {
  /** Echoed from the request. */
  readonly term: number;
  readonly round: number;
}

export interface PlannerOutput {
  readonly expire: readonly string[];
  readonly askAges: AgesRequest | null;
}

interface Round {
  readonly startedAt: number;
  readonly voters: readonly string[];
  /** Each answer's floor, on this node's clock (arrival - floorAge: transit makes it later). */
  readonly floors: Map<string, number>;
}

const nothing: PlannerOutput = { expire: [], askAges: null };
/** Rounds kept for confirmation: newer ones usually supersede older ones. */
const KEEP_ROUNDS = 8;

function quorumOf(voters: readonly string[]): number {
  return Math.floor(voters.length / 2) + 1;
}

export class ExpiryPlanner {
  private term: number | null = null;
  /** When this node became leader (its clock). Protected, like `confirmedFor`: the simulator's
   * teeth tests build broken variants by overriding, never by editing this class. */
  protected electedAt = 0;
  private paused = false;
  private nextRound = 1;
  /** This term's recent rounds, oldest first. */
  private rounds: { readonly n: number; readonly round: Round }[] = [];
  /** Latest contact per session learnt from answers, on this node's clock. */
  private readonly reported = new Map<string, number>();
  private readonly proposed = new Map<string, number>();
  private readonly roundTimeoutMs: number;
  private readonly retryMs: number;

  constructor(private readonly opts: ExpiryPlannerOptions) {
    if (!(opts.graceMs >= 0)) throw new TypeError('ExpiryPlanner: graceMs must be >= 0');
    this.roundTimeoutMs = opts.roundTimeoutMs ?? opts.graceMs / 4;
    this.retryMs = opts.retryMs ?? opts.graceMs;
  }

  /** Whether this node is leading (and so planning). */
  get leading(): boolean {
    return this.term !== null;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** This node became leader of `term` at `now`: forget everything from an earlier term. */
  becameLeader(now: number, term: number): void {
    this.reset();
    this.term = term;
    this.electedAt = now;
  }

  steppedDown(): void {
    this.reset();
  }

  /** The leader lost contact with a quorum: expire nothing until it is back. */
  quorumLost(_now: number): void {
    this.paused = true;
  }

  quorumRegained(_now: number): void {
    this.paused = false;
  }

  /** A node's answer to `askAges`, arriving at `now` (this node's clock). */
  agesFrom(node: string, reply: AgesReply, now: number): void {
    if (this.term === null || reply.term !== this.term) return;
    // An age measured there, subtracted here: the contact happened no later than this (the
    // answer's transit makes it later still, which errs towards keeping the session).
    for (const [id, age] of reply.ages) {
      const at = now - age;
      if (at > (this.reported.get(id) ?? Number.NEGATIVE_INFINITY)) this.reported.set(id, at);
    }
    const r = this.rounds.find((x) => x.n === reply.round)?.round;
    if (r?.voters.includes(node)) r.floors.set(node, now - reply.floorAge);
  }

  /** The proposal of these expiries was refused (not leader, transferring): propose them again
   * at the next tick rather than after `retryMs`. */
  notTaken(ids: readonly string[]): void {
    for (const id of ids) this.proposed.delete(id);
  }

  /** The latest contact with `id` known here, on this node's clock (-Infinity: none). */
  lastContact(id: string): number {
    return Math.max(
      this.opts.clock.lastHeard(id) ?? Number.NEGATIVE_INFINITY,
      this.reported.get(id) ?? Number.NEGATIVE_INFINITY,
    );
  }

  /** When `id` (of TTL `ttlMs`) becomes due, before confirmation. */
  deadline(id: string, ttlMs: number): number {
    return Math.max(this.lastContact(id) + ttlMs, this.electedAt + this.opts.graceMs);
  }

  /**
   * Decides at `now`. `sessions`: the applied session table (id -> TTL in ms); `voters`: the
   * voters of this leader's current configuration.
   */
  tick(now: number, sessions: ReadonlyMap<string, number>, voters: readonly string[]): PlannerOutput {
    if (this.term === null) return nothing;
    for (const id of this.proposed.keys()) if (!sessions.has(id)) this.proposed.delete(id);
    for (const id of this.reported.keys()) if (!sessions.has(id)) this.reported.delete(id);
    if (this.paused) return nothing;
    const expire: string[] = [];
    let needRound = false;
    for (const [id, ttl] of sessions) {
      const due = this.deadline(id, ttl);
      if (now < due) continue;
      if (this.confirmedFor(due, ttl)) {
        const at = this.proposed.get(id);
        if (at !== undefined && now - at < this.retryMs) continue;
        this.proposed.set(id, now);
        expire.push(id);
      } else if (!needRound && this.roundWanted(now, due, ttl)) {
        needRound = true;
      }
    }
    if (!needRound) return expire.length === 0 ? nothing : { expire, askAges: null };
    const n = this.nextRound++;
    const floors = new Map<string, number>();
    if (voters.includes(this.opts.self)) floors.set(this.opts.self, this.opts.clock.since);
    this.rounds.push({ n, round: { startedAt: now, voters: voters.slice(), floors } });
    if (this.rounds.length > KEEP_ROUNDS) this.rounds.shift();
    return { expire, askAges: { term: this.term, round: n } };
  }

  /** Whether a round that started at or after `due` was answered by a quorum of its voters
   * that can vouch for the `ttlMs` before its start. */
  protected confirmedFor(due: number, ttlMs: number): boolean {
    for (const { round } of this.rounds) {
      if (round.startedAt < due) continue;
      let vouching = 0;
      for (const v of round.voters) {
        const floor = round.floors.get(v);
        if (floor !== undefined && floor <= round.startedAt - ttlMs) vouching++;
      }
      if (vouching >= quorumOf(round.voters)) return true;
    }
    return false;
  }

  /** Whether a new round could confirm what the latest one did not. */
  private roundWanted(now: number, due: number, ttlMs: number): boolean {
    const latest = this.rounds[this.rounds.length - 1]?.round;
    if (latest === undefined || latest.startedAt < due) return true;
    if (now - latest.startedAt < this.roundTimeoutMs) return false; // answers on their way
    // Everyone answered but too few could vouch: ask again once enough floors are old enough.
    if (latest.floors.size === latest.voters.length) {
      const ready = [...latest.floors.values()].map((f) => f + ttlMs).sort((a, b) => a - b);
      return now >= ready[quorumOf(latest.voters) - 1]!;
    }
    return true; // some did not answer (yet): ask again
  }

  private reset(): void {
    this.term = null;
    this.paused = false;
    this.rounds = [];
    this.reported.clear();
    this.proposed.clear();
  }
}
