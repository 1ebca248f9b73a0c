/**
 * What one node knows about each session's liveness: when it last heard the session, by its own
 * monotonic clock. Every node keeps one (keepalives are heard by every node, DESIGN "Sessions"),
 * and answers the leader's questions with *ages* (how long ago), never timestamps: monotonic
 * clocks of different processes share no origin.
 *
 * The clock has a floor: the moment it started (process start) or last came back from being
 * out of touch (`contactAll`: NATS reconnect, an event-loop pause). The node cannot vouch for
 * anything before its floor, so every session, known here or not, counts as heard at the floor
 * at the latest. That is conservative: it can only make a session look more recently alive.
 *
 * Pure data: the runtime passes `now` (its monotonic milliseconds) to every call.
 */

/** A node's answer to "how long ago did you last hear each session?" */
export interface AgeReport {
  /** Milliseconds since each session was last heard here, for the sessions heard since the
   * floor. */
  readonly ages: ReadonlyMap<string, number>;
  /** Milliseconds since the floor: the age of every session not in `ages`. Never less than any
   * age in `ages`. */
  readonly floorAge: number;
}

export class SessionClock {
  private readonly last = new Map<string, number>();
  private floor: number;

  /** `now`: when this node's knowledge starts (its process start, for a fresh node). */
  constructor(now: number) {
    this.floor = now;
  }

  /** A keepalive of `id` arrived (its secret checked by the caller), or the session was opened. */
  heard(id: string, now: number): void {
    if (now < this.floor) return;
    const prev = this.last.get(id);
    if (prev === undefined || now > prev) this.last.set(id, now);
  }

  /** The node was out of touch until `now` (NATS outage, process pause): whatever it did not
   * hear meanwhile, it cannot tell missing from lost, so every session counts as heard now.
   * Drain the messages queued during the outage before expiring anything. */
  contactAll(now: number): void {
    if (now <= this.floor) return;
    this.floor = now;
    this.last.clear();
  }

  /** The session ended: nothing more to remember about it. */
  forget(id: string): void {
    this.last.delete(id);
  }

  /** When `id` was last heard here, or the floor if not since. */
  lastHeard(id: string): number {
    return this.last.get(id) ?? this.floor;
  }

  /** The floor: every session counts as heard at this time at the latest. */
  get since(): number {
    return this.floor;
  }

  /** Ages at `now` of every session heard since the floor. */
  ages(now: number): Map<string, number> {
    const out = new Map<string, number>();
    for (const [id, t] of this.last) out.set(id, Math.max(0, now - t));
    return out;
  }

  floorAge(now: number): number {
    return Math.max(0, now - this.floor);
  }

  report(now: number): AgeReport {
    return { ages: this.ages(now), floorAge: this.floorAge(now) };
  }
}
