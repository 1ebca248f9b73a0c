/**
 * The session keeper: runs the pure session-expiry logic (machines/session) on a node.
 *
 * Every node keeps a `SessionClock`: when it last heard each session's keepalive, by its own
 * monotonic clock, and the floor of what it knows (its start, or its return from a NATS outage
 * or a pause). It answers the leader's age rounds on `P.peer.<self>.ages` with ages, never
 * timestamps. Only the leader runs the `ExpiryPlanner`: it proposes `sessionExpire` for a
 * session only once a quorum of voters, asked after the deadline, vouched that none of them
 * heard it within its TTL; and it waits one election timeout after its election. So a leader
 * change costs no live session, and a dead client's session expires within TTL + two election
 * timeouts of its last keepalive once a leader holds office (the simulator checks both bounds).
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { RaftReader } from '../machines/raft/index.ts';
import { currentConfig } from '../machines/raft/index.ts';
import { ExpiryPlanner, SessionClock } from '../machines/session/index.ts';
import type { Subjects } from '../protocol/index.ts';
import { decodePeer, encodePeer } from '../protocol/index.ts';
import type { KeyTree } from '../storage/index.ts';

export interface SessionKeeperOptions {
  readonly self: string;
  readonly nc: NatsConnection;
  readonly subjects: Subjects;
  readonly cluster: string;
  readonly tree: KeyTree;
  /** One election timeout, in ms: the grace a new leader gives every session. */
  readonly graceMs: number;
  readonly machine: RaftReader;
  readonly expire: (session: string) => void;
}

interface AgesWire {
  readonly term: number;
  readonly round: number;
  readonly floorAge: number;
  readonly ages: readonly [string, number][];
}

const now = () => performance.now();

export class SessionKeeper {
  readonly clock = new SessionClock(now());
  private readonly planner: ExpiryPlanner;
  private sub: Subscription | null = null;
  expired = 0;

  constructor(private readonly opts: SessionKeeperOptions) {
    this.planner = new ExpiryPlanner({ self: opts.self, clock: this.clock, graceMs: opts.graceMs });
  }

  start(): void {
    const { nc, subjects, self, cluster } = this.opts;
    this.sub = nc.subscribe(subjects.ages(self), {
      callback: (err, msg) => {
        if (err || !msg.reply) return;
        const d = decodePeer(msg.data, { cluster });
        if (!d.ok) return;
        const q = d.body as { term?: unknown; round?: unknown };
        if (typeof q.term !== 'number' || typeof q.round !== 'number') return;
        const report = this.clock.report(now());
        const body: AgesWire = {
          term: q.term,
          round: q.round,
          floorAge: report.floorAge,
          ages: [...report.ages],
        };
        msg.respond(encodePeer(body, cluster));
      },
    });
  }

  stop(): void {
    this.sub?.unsubscribe();
    this.sub = null;
  }

  /** A keepalive with the right secret arrived. */
  heard(session: string): void {
    this.clock.heard(session, now());
  }

  /** Applied here: an open counts as contact; an end forgets the session. */
  opened(session: string): void {
    this.clock.heard(session, now());
  }

  ended(session: string): void {
    this.clock.forget(session);
  }

  /** This node was out of touch (NATS outage, a long pause): its knowledge starts again now. */
  everyoneHeard(): void {
    this.clock.contactAll(now());
  }

  roleChanged(leader: boolean, term: number): void {
    if (leader) this.planner.becameLeader(now(), term);
    else this.planner.steppedDown();
  }

  /** Leader only, every few ticks: propose due expiries, ask the voters for ages when needed. */
  check(): void {
    if (this.opts.machine.role() !== 'leader') return;
    const ctx = this.opts.machine.context();
    const sessions = new Map(this.opts.tree.sessions().map((s) => [s.id, s.ttlMs] as const));
    const voters = currentConfig(ctx).voters;
    const out = this.planner.tick(now(), sessions, voters);
    for (const id of out.expire) {
      this.expired++;
      this.opts.expire(id);
    }
    const ask = out.askAges;
    if (ask === null) return;
    const { nc, subjects, cluster, self } = this.opts;
    for (const voter of voters) {
      if (voter === self) continue;
      nc.request(subjects.ages(voter), encodePeer(ask, cluster), { timeout: this.opts.graceMs }).then(
        (m) => {
          const d = decodePeer(m.data, { cluster });
          if (!d.ok) return;
          const a = d.body as AgesWire;
          if (!Array.isArray(a.ages) || typeof a.floorAge !== 'number') return;
          const ages = new Map<string, number>();
          for (const pair of a.ages) {
            if (Array.isArray(pair) && typeof pair[0] === 'string' && typeof pair[1] === 'number')
              ages.set(pair[0], pair[1]);
          }
          this.planner.agesFrom(voter, { term: a.term, round: a.round, floorAge: a.floorAge, ages }, now());
        },
        () => {},
      );
    }
  }
}
