/**
 * What one node knows about each session's liveness: when it last heard the session, by its own
 * monotonic clock. Every node keeps one (keepalives are heard by every node, DESIGN "Sessions"),
 * and answers the leader's questions with *ages* (how long ago), never timestamps: monotonic
 * clocks of different processes share no origin.
 *
 * The clock has a floor: the moment its knowledge starts, that is the process start, or the
 * last return from being out of touch (`contactAll`: a NATS reconnect, an event-loop pause).
 * Before its floor the node may have missed keepalives, so it cannot vouch that a session was
 * silent then; the leader's planner (expiry.ts) only counts a node towards the quorum that
 * confirms an expiry once its floor is at least a TTL old.
 *
 * Pure data: the runtime passes `now` (its monotonic milliseconds) to every call.
 */

/** A node's answer to "how long ago did you last hear each session?" */
export interface AgeReport {
  /** Milliseconds since each session was last heard here. */
  readonly ages: ReadonlyMap<string, number>;
  /** Milliseconds since the floor: this node heard everything sent to it since then. */
  readonly floorAge: number;
}

export class SessionClock {
  private readonly last = new Map<string, number>();
  private floor: number;

  /** `now`: when this node's knowledge starts (its process start, for a fresh node). */
  constructor(now: number) {
    this.floor = now;
  }

  /** A keepalive of `id` arrived (its secret checked by the caller), or the session was opened
   * here (its open applied). */
  heard(id: string, now: number): void {
    const prev = this.last.get(id);
    if (prev === undefined || now > prev) this.last.set(id, now);
  }

  /** The node was out of touch until `now` (NATS outage, process pause): it may have missed
   * keepalives until now, so its knowledge starts again now. What it did hear still counts.
   * Drain the messages queued during the outage before answering the leader. */
  contactAll(now: number): void {
    if (now > this.floor) this.floor = now;
  }

  /** The session ended: nothing more to remember about it. */
  forget(id: string): void {
    this.last.delete(id);
  }

  /** When `id` was last heard here, if ever. */
  lastHeard(id: string): number | undefined {
    return this.last.get(id);
  }

  /** The floor: this node heard everything sent to it since then. */
  get since(): number {
    return this.floor;
  }

  /** Ages at `now` of every session heard here. */
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
