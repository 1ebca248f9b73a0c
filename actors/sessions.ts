/**
 * The session keeper: runs the pure session-expiry logic (machines/session) on a node.
 *
 * Every node keeps a `SessionClock`: when it last heard each session's keepalive, by its own
 * monotonic clock, and the floor of what it knows (its start, or its return from a NATS outage
 * or a pause). It answers the leader's age rounds with ages, never timestamps. Only the leader
 * runs the `ExpiryPlanner`: it proposes `sessionExpire` for a session only once a quorum of
 * voters, asked after the deadline, vouched that none of them heard it within its TTL; and it
 * waits one election timeout after its election. So a leader change costs no live session, and
 * a dead client's session expires within TTL + two election timeouts of its last keepalive once
 * a leader holds office (the simulator checks both bounds, running this keeper).
 *
 * A node whose log lags (cut off from the leader, not from the client) may hear a session's
 * keepalive before it knows the session: its open is not applied here yet, or arrives in a
 * snapshot (no open applied at all). Such a keepalive cannot be checked yet; it is kept aside
 * (bounded) and counted, at the time it arrived, once the session is known and the secret it
 * carried proves to be the session's. Without this, a node that learnt a session from a
 * snapshot reported no contact the client had made with it, and a new leader among such nodes
 * expired a live session (the simulator found it).
 *
 * Written against ports: the node gives it NATS (`natsAgesPeers`: `P.peer.<id>.ages`) and its
 * monotonic clock; the simulator a virtual network and clock.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Effect, RaftReader } from '../machines/raft/index.ts';
import { currentConfig } from '../machines/raft/index.ts';
import {
  type AgesReply,
  ExpiryPlanner,
  type ExpiryPlannerOptions,
  SessionClock,
} from '../machines/session/index.ts';
import type { Subjects } from '../protocol/index.ts';
import { decodePeer, encodePeer } from '../protocol/index.ts';
import type { ApplyOutcome, KeyTree } from '../storage/index.ts';
import { sameBytes } from './api/handlers.ts';

/** The leader's question in an age round. */
export interface AgesQuestion {
  readonly term: number;
  readonly round: number;
}

/** How the keepers of a cluster talk: each answers age rounds; the leader asks the voters. */
export interface AgesPeers {
  /** Answers every question with `report` until `stop`. */
  serve(report: (q: AgesQuestion) => AgesReply): void;
  /** Asks `voter`; `answer` gets its reply, or nothing if it is lost or late. */
  ask(voter: string, q: AgesQuestion, answer: (reply: AgesReply) => void): void;
  stop(): void;
}

/** Keepalives of sessions not known here yet, kept aside: at most this many. */
const UNVERIFIED_MAX = 4096;

export interface SessionKeeperOptions {
  readonly self: string;
  readonly tree: Pick<KeyTree, 'sessions' | 'session'>;
  /** One election timeout, in ms: the grace a new leader gives every session. */
  readonly graceMs: number;
  readonly machine: Pick<RaftReader, 'role' | 'context'>;
  /** Proposes the session's expiry; returns the proposal's id. */
  readonly expire: (session: string) => string;
  readonly peers: AgesPeers;
  /** This node's monotonic clock, ms (default `performance.now`). */
  readonly now?: () => number;
  /** Builds the planner (the simulator's teeth tests pass broken ones). */
  readonly planner?: (o: ExpiryPlannerOptions) => ExpiryPlanner;
  readonly roundTimeoutMs?: number;
  readonly retryMs?: number;
}

export class SessionKeeper {
  readonly clock: SessionClock;
  private readonly planner: ExpiryPlanner;
  private readonly now: () => number;
  /** Expiry proposals in flight: proposal id -> session. */
  private readonly expiring = new Map<string, string>();
  /** Keepalives of sessions not known here yet: id -> the secret they carried, when. */
  private readonly unverified = new Map<string, { readonly secret: Uint8Array; readonly at: number }>();
  expired = 0;
  rounds = 0;

  constructor(private readonly opts: SessionKeeperOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.clock = new SessionClock(this.now());
    const make = opts.planner ?? ((o: ExpiryPlannerOptions) => new ExpiryPlanner(o));
    this.planner = make({
      self: opts.self,
      clock: this.clock,
      graceMs: opts.graceMs,
      ...(opts.roundTimeoutMs !== undefined ? { roundTimeoutMs: opts.roundTimeoutMs } : {}),
      ...(opts.retryMs !== undefined ? { retryMs: opts.retryMs } : {}),
    });
  }

  start(): void {
    this.opts.peers.serve((q) => ({ ...this.clock.report(this.now()), term: q.term, round: q.round }));
  }

  stop(): void {
    this.opts.peers.stop();
  }

  /** A keepalive with the right secret arrived. */
  heard(session: string): void {
    this.clock.heard(session, this.now());
  }

  /** A keepalive of a session this node does not know yet: kept until it is known. */
  heardUnknown(session: string, secret: Uint8Array): void {
    this.unverified.delete(session);
    this.unverified.set(session, { secret, at: this.now() });
    if (this.unverified.size > UNVERIFIED_MAX) this.unverified.delete(this.unverified.keys().next().value!);
  }

  /** A snapshot replaced the tree: the sessions it brought may have been heard before. */
  restored(): void {
    for (const id of [...this.unverified.keys()]) this.verify(id);
  }

  /** Counts the keepalive kept aside for `id` if the session is known now, with that secret. */
  private verify(id: string): void {
    const u = this.unverified.get(id);
    if (u === undefined) return;
    const s = this.opts.tree.session(id);
    if (s === null) return;
    this.unverified.delete(id);
    if (sameBytes(s.secret, u.secret)) this.clock.heard(id, u.at);
  }

  /** This node was out of touch (NATS outage, a long pause): its knowledge starts again now. */
  everyoneHeard(): void {
    this.clock.contactAll(this.now());
  }

  /** The machine's effects that concern sessions: role changes, refused expiry proposals. */
  effect(e: Effect): void {
    if (e.type === 'roleChanged') {
      if (e.role === 'leader') this.planner.becameLeader(this.now(), e.term);
      else if (this.planner.leading) this.planner.steppedDown();
    } else if (e.type === 'proposeFailed') {
      const sids: string[] = [];
      for (const id of e.ids) {
        const sid = this.expiring.get(id);
        if (sid === undefined) continue;
        this.expiring.delete(id);
        sids.push(sid);
      }
      if (sids.length > 0) this.planner.notTaken(sids);
    }
  }

  /** An entry applied here: an open counts as contact; an end forgets the session. */
  applied(outcome: ApplyOutcome | null): void {
    if (!outcome?.ok) return;
    const r = outcome.result;
    if (r.op === 'sessionOpen') {
      this.clock.heard(r.id, this.now());
      this.unverified.delete(r.id); // heard before the open was applied: the open is later
    } else if (r.op === 'sessionClose' || r.op === 'sessionExpire') this.clock.forget(r.id);
  }

  /** Leader only, every few ticks: propose due expiries, ask the voters for ages when needed. */
  check(): void {
    if (this.opts.machine.role() !== 'leader' || !this.planner.leading) return;
    const sessions = new Map(this.opts.tree.sessions().map((s) => [s.id, s.ttlMs] as const));
    const voters = currentConfig(this.opts.machine.context()).voters;
    const out = this.planner.tick(this.now(), sessions, voters);
    if (this.expiring.size > 1024) this.expiring.clear(); // answered ones are never removed otherwise
    for (const id of out.expire) {
      this.expired++;
      this.expiring.set(this.opts.expire(id), id);
    }
    const ask = out.askAges;
    if (ask === null) return;
    this.rounds++;
    for (const voter of voters) {
      if (voter === this.opts.self) continue;
      this.opts.peers.ask(voter, ask, (reply) => this.planner.agesFrom(voter, reply, this.now()));
    }
  }
}

interface AgesWire {
  readonly term: number;
  readonly round: number;
  readonly floorAge: number;
  readonly ages: readonly [string, number][];
}

/** Age rounds over NATS: `P.peer.<id>.ages`, answered with ages (never timestamps). */
export function natsAgesPeers(o: {
  readonly nc: NatsConnection;
  readonly subjects: Subjects;
  readonly cluster: string;
  readonly self: string;
  readonly timeoutMs: number;
}): AgesPeers {
  const { nc, subjects, cluster, self } = o;
  let sub: Subscription | null = null;
  return {
    serve(report) {
      sub = nc.subscribe(subjects.ages(self), {
        callback: (err, msg) => {
          if (err || !msg.reply) return;
          const d = decodePeer(msg.data, { cluster });
          if (!d.ok) return;
          const q = d.body as { term?: unknown; round?: unknown };
          if (typeof q.term !== 'number' || typeof q.round !== 'number') return;
          const r = report({ term: q.term, round: q.round });
          const body: AgesWire = { term: r.term, round: r.round, floorAge: r.floorAge, ages: [...r.ages] };
          msg.respond(encodePeer(body, cluster));
        },
      });
    },
    ask(voter, q, answer) {
      nc.request(subjects.ages(voter), encodePeer(q, cluster), { timeout: o.timeoutMs }).then(
        (m) => {
          const d = decodePeer(m.data, { cluster });
          if (!d.ok) return;
          const a = d.body as AgesWire;
          if (!Array.isArray(a.ages) || typeof a.floorAge !== 'number') return;
          if (typeof a.term !== 'number' || typeof a.round !== 'number') return;
          const ages = new Map<string, number>();
          for (const pair of a.ages) {
            if (Array.isArray(pair) && typeof pair[0] === 'string' && typeof pair[1] === 'number')
              ages.set(pair[0], pair[1]);
          }
          answer({ term: a.term, round: a.round, floorAge: a.floorAge, ages });
        },
        () => {},
      );
    },
    stop() {
      sub?.unsubscribe();
      sub = null;
    },
  };
}
