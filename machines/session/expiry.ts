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
 *   take; `notTaken(ids)` when the proposal is refused outright), and when `askAges` is set
 *   send it to every other voter.
 * - `agesFrom(node, reply, now)` with each answer: the node's `SessionClock.report()` plus the
 *   request's `term` and `round`. The planner reads its own node's clock directly.
 *
 * The decision (DESIGN "Sessions", made stricter). For session s with TTL t:
 *   lastContact(s) = the latest contact known: this node's clock, and every answer's
 *                    (arrival - age) -- ages, never timestamps;
 *   deadline(s)    = max(lastContact(s) + t, electedAt + graceMs).
 * s is expired at `now >= deadline(s)` only once an age round that *started at or after
 * deadline(s)* has been answered by a quorum of the voters at its start (this node included),
 * and deadline(s) still holds with those answers counted. DESIGN asks the new leader to learn
 * ages from a quorum once, at its election; asking again before each expiry (a round serves
 * every session due by then; there is none while nothing is due) also covers a client whose
 * keepalives reach a quorum of followers but not the leader, which the election-time round
 * alone would expire.
 *
 * Guarantees (the simulator checks both, integration/sim/sessions.ts):
 * - Safety: if s is expired by a proposal at time X, there was an instant S <= X (the
 *   confirming round's start) at which no quorum of the voters then in force had each heard s
 *   within (S - t, S]. Proof: such a quorum meets the answering quorum in some node n; n heard
 *   s at d > S - t and answered after S, so its age is at most (answer time - d), the leader
 *   counts contact at or after d (transit only adds), and deadline(s) > S: not confirmed.
 *   A node that restarted meanwhile lost its record but answers with its floor (> d), which
 *   is later still. So a session whose keepalives reach some quorum at least every TTL is never
 *   expired, whatever the leader changes (drift between node clocks aside: give the TTL a
 *   margin of the drift rate times TTL on real hardware).
 * - Bound: let D be the latest contact any node recorded for s (a keepalive it heard, its
 *   apply of the open, the floor of its clock). A leader elected at E that keeps ticking and
 *   whose rounds are answered proposes the expiry at most one tick plus one answered round
 *   after max(D + t, E + graceMs) (answer transit can add its length to D). With graceMs one
 *   election timeout, the expiry commits within max(D + t, E) + 2 election timeouts as long as
 *   a round and a commit together take less than one: no renewal forever across leader
 *   changes (etcd #9395), whose cost is at most one grace per election.
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
  readonly answered: Set<string>;
}

const nothing: PlannerOutput = { expire: [], askAges: null };

export class ExpiryPlanner {
  private term: number | null = null;
  /** When this node became leader (its clock). Protected, like `confirmedFor`: the simulator's
   * teeth tests build broken variants by overriding, never by editing this class. */
  protected electedAt = 0;
  private paused = false;
  private nextRound = 1;
  private readonly rounds = new Map<number, Round>();
  private lastStartedAt = Number.NEGATIVE_INFINITY;
  /** Start of the newest round a quorum answered. */
  private confirmedAt = Number.NEGATIVE_INFINITY;
  /** Latest contact per session learnt from other nodes' answers, on this node's clock. */
  private readonly reported = new Map<string, number>();
  /** Latest floor learnt from answers: every session counts as heard then at the latest. */
  private reportedFloor = Number.NEGATIVE_INFINITY;
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
    // answer's transit time makes it later still, which errs towards keeping the session).
    for (const [id, age] of reply.ages) {
      const at = now - age;
      if (at > (this.reported.get(id) ?? Number.NEGATIVE_INFINITY)) this.reported.set(id, at);
    }
    this.reportedFloor = Math.max(this.reportedFloor, now - reply.floorAge);
    const round = this.rounds.get(reply.round);
    if (round === undefined) return;
    round.answered.add(node);
    this.settle(reply.round, round);
  }

  /** The proposal of these expiries was refused (not leader, transferring): propose them again
   * at the next tick rather than after `retryMs`. */
  notTaken(ids: readonly string[]): void {
    for (const id of ids) this.proposed.delete(id);
  }

  /** The latest contact with `id` known here, on this node's clock. */
  lastContact(id: string): number {
    return Math.max(
      this.opts.clock.lastHeard(id),
      this.reported.get(id) ?? Number.NEGATIVE_INFINITY,
      this.reportedFloor,
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
      if (this.confirmedFor(due)) {
        const at = this.proposed.get(id);
        if (at !== undefined && now - at < this.retryMs) continue;
        this.proposed.set(id, now);
        expire.push(id);
      } else if (this.lastStartedAt < due || now - this.lastStartedAt >= this.roundTimeoutMs) {
        needRound = true;
      }
    }
    if (!needRound) return expire.length === 0 ? nothing : { expire, askAges: null };
    const round = this.nextRound++;
    const r: Round = { startedAt: now, voters: voters.slice(), answered: new Set([this.opts.self]) };
    this.rounds.set(round, r);
    this.lastStartedAt = now;
    for (const [n, old] of this.rounds)
      if (now - old.startedAt > 4 * this.roundTimeoutMs) this.rounds.delete(n);
    this.settle(round, r);
    return { expire, askAges: { term: this.term, round } };
  }

  /** Whether a round started at or after `due` was answered by a quorum. */
  protected confirmedFor(due: number): boolean {
    return this.confirmedAt >= due;
  }

  /** A round is answered once a quorum of the voters at its start (this node counted) did. */
  private settle(n: number, round: Round): void {
    let count = 0;
    for (const v of round.voters) if (round.answered.has(v)) count++;
    if (count < Math.floor(round.voters.length / 2) + 1) return;
    this.confirmedAt = Math.max(this.confirmedAt, round.startedAt);
    this.rounds.delete(n);
  }

  private reset(): void {
    this.term = null;
    this.paused = false;
    this.rounds.clear();
    this.lastStartedAt = Number.NEGATIVE_INFINITY;
    this.confirmedAt = Number.NEGATIVE_INFINITY;
    this.reported.clear();
    this.reportedFloor = Number.NEGATIVE_INFINITY;
    this.proposed.clear();
  }
}
