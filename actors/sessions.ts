/**
 * The session keeper. Every node records when it last heard each session's keepalive (by its
 * own monotonic clock); only the leader expires sessions, by proposing `sessionExpire` through
 * the log, which deletes the session's ephemeral keys in the same revision.
 *
 * A new leader counts its election as a contact for every session, so a leader change never
 * expires a live session; a NATS reconnect or an event-loop pause counts as a contact too
 * (the silence was ours, not the client's). A session nobody has heard from expires at most
 * TTL after the later of its last keepalive here and this leader's election.
 */
import type { KeyTree } from '../storage/tree/types.ts';

export interface SessionKeeperOptions {
  readonly tree: KeyTree;
  readonly expire: (session: string) => void;
  readonly now?: () => number;
}

export class SessionKeeper {
  private readonly lastContact = new Map<string, number>();
  private readonly expiring = new Map<string, number>();
  private leaderSince: number | null = null;
  expired = 0;

  constructor(private readonly opts: SessionKeeperOptions) {}

  private now(): number {
    return this.opts.now ? this.opts.now() : performance.now();
  }

  heard(session: string): void {
    this.lastContact.set(session, this.now());
  }

  /** The node itself was out of touch (NATS down, a long pause): nobody's silence counts. */
  everyoneHeard(): void {
    const now = this.now();
    for (const s of this.opts.tree.sessions()) this.lastContact.set(s.id, now);
    if (this.leaderSince !== null) this.leaderSince = now;
  }

  roleChanged(leader: boolean): void {
    if (leader && this.leaderSince === null) this.leaderSince = this.now();
    if (!leader) {
      this.leaderSince = null;
      this.expiring.clear();
    }
  }

  /** Leader only: propose the expiry of every session past its deadline. */
  check(): void {
    if (this.leaderSince === null) return;
    const now = this.now();
    const live = new Set<string>();
    for (const s of this.opts.tree.sessions()) {
      live.add(s.id);
      let last = this.lastContact.get(s.id);
      if (last === undefined) {
        last = now; // first seen here (just opened, or just restored): a contact
        this.lastContact.set(s.id, last);
      }
      const deadline = Math.max(last, this.leaderSince) + s.ttlMs;
      if (now < deadline) continue;
      const asked = this.expiring.get(s.id);
      if (asked !== undefined && now - asked < 1000) continue; // proposed already; retry later if lost
      this.expiring.set(s.id, now);
      this.expired++;
      this.opts.expire(s.id);
    }
    for (const id of this.lastContact.keys()) if (!live.has(id)) this.lastContact.delete(id);
    for (const id of this.expiring.keys()) if (!live.has(id)) this.expiring.delete(id);
  }
}
