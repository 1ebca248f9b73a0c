/**
 * Sessions in the simulator: clients that run the real client session machine
 * (machines/session) against each node's real API handlers, key tree and session keeper
 * (actors/sessions.ts: the real `SessionClock` and, while leading, the real `ExpiryPlanner`).
 *
 * - Clients open sessions (a real `sessionOpen`), put ephemeral keys (tagged writes), send
 *   keepalives that reach each node through the simulated network (loss, a client's own cuts
 *   from some nodes, among them the leader or a majority, its NATS connection dropping) and
 *   are checked by the node's handlers, fail over, close, pause (and replay a queued write when
 *   they come back, as a zombie would), and die at random. They write through the node they
 *   believe leads; a follower forwards (as ingress does).
 * - Session faults draw from their own random stream; Raft-level steps alone count towards
 *   `steps`. After the faults heal the run goes on until every session no live client holds
 *   has expired (or the liveness limit).
 * - Every node's keeper records keepalives on its own monotonic clock (its own origin, reset by
 *   a restart). The leader's keeper asks the other voters for ages over the simulated network
 *   (partitions, loss, duplication, delay) and proposes `sessionExpire` through the handlers.
 * - The tree applies `sessionExpire`/`sessionClose` with the session's ephemeral keys.
 *
 * The properties are in session-checker.ts.
 */
import { type AgesQuestion, SessionKeeper } from '../../actors/index.ts';
import type { Effect, Entry } from '../../machines/raft/index.ts';
import { nextRandom, seedFrom } from '../../machines/raft/index.ts';
import {
  type AgesReply,
  type ExpiryPlanner,
  type ExpiryPlannerOptions,
  nextWakeup,
  type SessionEffect,
  type SessionEvent,
  type SessionSnapshot,
  startSession,
  stepSession,
} from '../../machines/session/index.ts';
import { decodeReply, type EnsembleError } from '../../protocol/index.ts';
import type { ApplyOutcome } from '../../storage/index.ts';
import type { SimNode, Simulation } from './cluster.ts';
import { SessionChecker } from './session-checker.ts';
import { SIM_CLUSTER } from './workload.ts';

export interface SessionSimOptions {
  /** Clients alive at once during the faults (default 3). */
  readonly clients?: number;
  /** TTLs are drawn from [lo, hi] ms (default [300, 600]). */
  readonly ttlMs?: readonly [number, number];
  /** Build the leader's planner: the teeth tests pass broken ones. */
  readonly planner?: (opts: ExpiryPlannerOptions) => ExpiryPlanner;
}

export type SessionItem =
  | { readonly t: 'clientTick'; readonly client: number; readonly at: number }
  | { readonly t: 'clientEvent'; readonly client: number; readonly event: SessionEvent }
  | {
      readonly t: 'keepalive';
      readonly client: number;
      readonly sid: string;
      readonly secret: Uint8Array;
      readonly node: string;
      readonly seq: number;
      readonly answer: boolean;
    }
  | {
      readonly t: 'ageRequest';
      readonly from: string;
      /** The asking node's life: only that keeper takes the answer. */
      readonly life: number;
      readonly to: string;
      readonly q: AgesQuestion;
      readonly answer: (reply: AgesReply) => void;
    }
  | {
      readonly t: 'ageReply';
      readonly from: string;
      readonly to: string;
      readonly life: number;
      readonly reply: AgesReply;
      readonly answer: (reply: AgesReply) => void;
    }
  | { readonly t: 'serverBack'; readonly client: number }
  | { readonly t: 'resume'; readonly client: number }
  | { readonly t: 'nemesis' };

export interface SessionStats {
  readonly clients: number;
  readonly opened: number;
  readonly expired: number;
  readonly closed: number;
  readonly keys: number;
  readonly keepalives: number;
  readonly rounds: number;
  readonly boundChecked: number;
  /** Least slack (ms) to the expiry bound over expiries committed with a leader in office. */
  readonly minBoundSlack: number | null;
}

interface NodeRuntime {
  readonly life: number;
  readonly keeper: SessionKeeper;
  /** How the keeper answers age rounds (set by its `serve`). */
  report: ((q: AgesQuestion) => AgesReply) | null;
}

const CLIENT_TICK_MS = 5;
/** An open or close not answered in this long failed (the client's request timeout). */
const PENDING_TIMEOUT_MS = 200;

class SimClient {
  snap: SessionSnapshot;
  alive = true;
  home: string | null = null;
  readonly cut = new Set<string>();
  serverDown = false;
  attempts = 0;
  sid: string | null = null;
  secret: Uint8Array = new Uint8Array(0);
  /** Sequence numbers of this session's writes. */
  writes = 0;
  pending: { kind: 'open' | 'close'; sid: string; at: number } | null = null;
  keys = 0;
  /** When the next tick is scheduled (one at a time; earlier wakeups replace it). */
  tickAt = Number.POSITIVE_INFINITY;
  /** A process pause (GC, a stopped VM): nothing happens in the client until then. */
  pausedUntil = 0;

  constructor(
    readonly n: number,
    readonly ttlMs: number,
    start: [SessionSnapshot, SessionEffect[]],
  ) {
    this.snap = start[0];
  }

  get state(): string {
    return this.snap.value as string;
  }
}

/** What a client learns from an answer. */
type Answered = { readonly ok: true } | { readonly ok: false; readonly error: EnsembleError };

const secretOf = (sid: string) => new TextEncoder().encode(`secret-${sid}`);

export class SessionWorld {
  readonly checker: SessionChecker;
  private readonly runtimes = new Map<string, NodeRuntime>();
  private readonly clients: SimClient[] = [];
  /** Sessions the clients opened (the workload's own session is not theirs). */
  private readonly mine = new Set<string>();
  private rng: number;
  private readonly target: number;
  private readonly ttl: readonly [number, number];
  private readonly counts = { keys: 0, keepalives: 0, rounds: 0 };
  private readonly graceMs: number;

  constructor(
    private readonly sim: Simulation,
    private readonly opts: SessionSimOptions,
    electionTimeoutMs: number,
  ) {
    this.rng = seedFrom('sessions', sim.opts.seed);
    this.target = opts.clients ?? 3;
    this.ttl = opts.ttlMs ?? [300, 600];
    this.graceMs = electionTimeoutMs;
    this.checker = new SessionChecker(sim, electionTimeoutMs);
    sim.schedule(20, { t: 'nemesis' });
  }

  private random(): number {
    const [v, s] = nextRandom(this.rng);
    this.rng = s;
    return v;
  }

  private int(lo: number, hi: number): number {
    return lo + Math.floor(this.random() * (hi - lo + 1));
  }

  private pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[Math.floor(this.random() * items.length)];
  }

  // -------------------------------------------------------------------------------------------
  // Hooks called by the simulation.

  /** A node (re)starts: its real session keeper, on a clock of its own origin. */
  onBoot(node: SimNode): void {
    const origin = this.int(0, 1e9) - this.sim.now;
    const rt: { life: number; keeper: SessionKeeper | null; report: NodeRuntime['report'] } = {
      life: node.life,
      keeper: null,
      report: null,
    };
    rt.keeper = new SessionKeeper({
      self: node.id,
      tree: { sessions: () => node.tree.sessions(), session: (id) => node.tree.session(id) },
      graceMs: this.graceMs,
      machine: node.machine!,
      expire: (sid) => {
        this.sim.trace(`${node.id} proposes expiry of ${sid}`);
        return node.api!.expire(sid);
      },
      peers: {
        serve: (report) => {
          rt.report = report;
        },
        ask: (voter, q, answer) =>
          this.send(node.id, voter, { t: 'ageRequest', from: node.id, life: rt.life, to: voter, q, answer }),
        stop: () => {
          rt.report = null;
        },
      },
      now: () => this.sim.now + origin,
      ...(this.opts.planner ? { planner: this.opts.planner } : {}),
      roundTimeoutMs: 20,
      retryMs: this.graceMs,
    });
    rt.keeper.start();
    this.runtimes.set(node.id, rt as NodeRuntime);
    this.checker.restarted(node.id);
  }

  onCrash(node: SimNode): void {
    this.runtimes.get(node.id)?.keeper.stop();
    this.runtimes.delete(node.id);
  }

  /** The machine's effects, as the node hands them to its keeper. */
  effect(node: SimNode, e: Effect): void {
    this.runtime(node)?.keeper.effect(e);
  }

  /** A keepalive passed the node's handlers (right secret, known session). */
  heard(node: SimNode, sid: string): void {
    this.runtime(node)?.keeper.heard(sid);
  }

  /** Every node tick: the leader's keeper plans. */
  onTick(node: SimNode): void {
    const rt = this.runtime(node);
    if (rt === undefined) return;
    const before = rt.keeper.rounds;
    rt.keeper.check();
    this.counts.rounds += rt.keeper.rounds - before;
  }

  /** An entry applied at `node`, with the tree's outcome. */
  apply(node: SimNode, e: Entry, outcome: ApplyOutcome | null): void {
    this.runtime(node)?.keeper.applied(outcome);
    if (!outcome?.ok) return;
    const r = outcome.result;
    switch (r.op) {
      case 'sessionOpen': {
        if (!this.mine.has(r.id)) return;
        if (this.checker.firstApply(e.index)) this.checker.opened(r.id, node.tree.session(r.id)?.ttlMs ?? 0);
        else this.checker.contact(r.id);
        break;
      }
      case 'sessionExpire':
      case 'sessionClose': {
        if (!this.mine.has(r.id)) return;
        if (this.checker.firstApply(e.index)) {
          this.sim.trace(`${r.id} ${r.op === 'sessionExpire' ? 'expired' : 'closed'} at ${e.index}`);
          this.checker.endedAt(r.id, e.index, r.op === 'sessionExpire' ? 'expire' : 'close');
        }
        break;
      }
      case 'put':
        if (!r.kv.key.startsWith('/e/')) return;
        if (this.checker.firstApply(e.index)) this.counts.keys++;
        break;
      default:
        return;
    }
    this.checker.checkKeys(node, e.index);
  }

  /** A keepalive of a session `node` does not know yet. */
  heardUnknown(node: SimNode, sid: string, secret: Uint8Array): void {
    this.runtime(node)?.keeper.heardUnknown(sid, secret);
  }

  /** A snapshot replaced `node`'s state. */
  restored(node: SimNode): void {
    this.runtime(node)?.keeper.restored();
    this.checker.checkKeys(node, node.applied);
  }

  afterStep(): void {
    this.checker.afterStep();
  }

  onHeal(): void {
    for (const c of this.clients) {
      c.cut.clear();
      if (c.serverDown) {
        c.serverDown = false;
        this.feed(c, { type: 'session.serverBack', now: this.sim.now });
      }
    }
  }

  /** After the faults healed: every session still open belongs to a client keeping it. */
  settled(): boolean {
    const kept = new Set<string>();
    for (const c of this.clients) {
      if (c.alive && c.sid !== null && (c.state === 'active' || c.state === 'suspended')) kept.add(c.sid);
    }
    for (const sid of this.checker.openSessions()) if (!kept.has(sid)) return false;
    return true;
  }

  stats(): SessionStats {
    const s = this.checker.stats;
    return {
      clients: this.clients.length,
      opened: s.opened,
      expired: s.expired,
      closed: s.closed,
      keys: this.counts.keys,
      keepalives: this.counts.keepalives,
      rounds: this.counts.rounds,
      boundChecked: s.boundChecked,
      minBoundSlack: s.boundChecked > 0 ? s.minBoundSlack : null,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Agenda items.

  handle(item: SessionItem): void {
    switch (item.t) {
      case 'clientTick': {
        const c = this.clients[item.client]!;
        if (!c.alive || c.tickAt !== item.at || this.sim.now < c.pausedUntil) return;
        c.tickAt = Number.POSITIVE_INFINITY;
        this.clientTick(c);
        this.arm(c);
        return;
      }
      case 'clientEvent': {
        const c = this.clients[item.client]!;
        if (!c.alive) return;
        if (this.sim.now < c.pausedUntil) return this.sim.schedule(c.pausedUntil, item);
        this.feed(c, item.event);
        this.arm(c);
        return;
      }
      case 'keepalive':
        return this.keepaliveArrives(item);
      case 'resume': {
        // Back from the pause: the writes queued during it go first (the zombie's writes: if
        // the session expired meanwhile, they must be refused), then the clock catches up.
        const c = this.clients[item.client]!;
        if (!c.alive) return;
        this.put(c);
        c.tickAt = Number.POSITIVE_INFINITY;
        this.clientTick(c);
        this.arm(c);
        return;
      }
      case 'serverBack': {
        const c = this.clients[item.client]!;
        if (!c.serverDown) return;
        c.serverDown = false;
        if (!c.alive) return;
        this.feed(c, { type: 'session.serverBack', now: this.sim.now });
        this.arm(c);
        return;
      }
      case 'ageRequest': {
        const node = this.sim.nodes.get(item.to)!;
        const rt = this.runtime(node);
        if (rt?.report == null || !this.sim.connected(item.from, item.to)) return;
        const reply = rt.report(item.q);
        this.send(item.to, item.from, {
          t: 'ageReply',
          from: item.to,
          to: item.from,
          life: item.life,
          reply,
          answer: item.answer,
        });
        return;
      }
      case 'ageReply': {
        const node = this.sim.nodes.get(item.to)!;
        const rt = this.runtime(node);
        if (rt === undefined || rt.life !== item.life || !this.sim.connected(item.from, item.to)) return;
        item.answer(item.reply);
        return;
      }
      case 'nemesis':
        this.nemesis();
        this.sim.schedule(this.sim.now + this.int(60, 300), item);
        return;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Nodes.

  private runtime(node: SimNode): NodeRuntime | undefined {
    const rt = this.runtimes.get(node.id);
    return rt !== undefined && node.up && rt.life === node.life ? rt : undefined;
  }

  /** Node-to-node: the simulation's partitions, loss, duplication and delay. */
  private send(from: string, to: string, item: SessionItem): void {
    if (!this.sim.connected(from, to)) return;
    if (this.sim.lossRate > 0 && this.random() < this.sim.lossRate) return;
    this.sim.schedule(this.sim.now + this.int(1, 15), item);
    if (this.sim.dupRate > 0 && this.random() < this.sim.dupRate)
      this.sim.schedule(this.sim.now + this.int(1, 30), item);
  }

  /** A keepalive reaches a node: its handlers check it (and tell the keeper); the client's
   * home node answers: acknowledged, expired, or silence (a node that does not know the session
   * yet and does not lead stays silent: the client counts it as failed). */
  private keepaliveArrives(k: Extract<SessionItem, { t: 'keepalive' }>): void {
    const node = this.sim.nodes.get(k.node)!;
    this.sim.inProcess(node, () => {
      this.counts.keepalives++;
      this.checker.keepaliveDelivered(k.sid, k.node);
      const out = node.api!.keepalive(k.sid, k.secret);
      if (!k.answer) return;
      const c = this.clients[k.client]!;
      const event: SessionEvent =
        out === null
          ? { type: 'session.keepaliveFailed', now: 0, seq: k.seq }
          : 'result' in out
            ? { type: 'session.keepaliveAcked', now: 0, seq: k.seq }
            : { type: 'session.expiredByServer' };
      if (!this.clientReaches(c, k.node)) return;
      this.sim.schedule(this.sim.now + this.int(1, 15), { t: 'clientEvent', client: c.n, event });
    });
  }

  // -------------------------------------------------------------------------------------------
  // Clients.

  private spawn(): void {
    const n = this.clients.length;
    const ttl = this.int(this.ttl[0], this.ttl[1]);
    const start = startSession({ now: this.sim.now, ttlMs: ttl });
    const c = new SimClient(n, ttl, start);
    this.clients.push(c);
    this.sim.trace(`client ${n} starts (ttl ${ttl})`);
    this.perform(c, start[1]);
    this.arm(c);
  }

  /** Ticks the client when its machine next needs one (nextWakeup), or when an open or close
   * it is waiting for times out; never more often than every CLIENT_TICK_MS. */
  private arm(c: SimClient): void {
    if (!c.alive || this.sim.now < c.pausedUntil) return;
    let at = nextWakeup(c.snap) ?? Number.POSITIVE_INFINITY;
    if (c.pending !== null) at = Math.min(at, c.pending.at + PENDING_TIMEOUT_MS);
    if (at === Number.POSITIVE_INFINITY) return;
    at = Math.max(Math.ceil(at), this.sim.now + CLIENT_TICK_MS);
    if (at >= c.tickAt) return;
    c.tickAt = at;
    this.sim.schedule(at, { t: 'clientTick', client: c.n, at });
  }

  private clientReaches(c: SimClient, node: string): boolean {
    if (c.serverDown || c.cut.has(node)) return false;
    return !(this.sim.lossRate > 0 && this.random() < this.sim.lossRate);
  }

  private feed(c: SimClient, event: SessionEvent): void {
    const timed = 'now' in event ? { ...event, now: this.sim.now } : event;
    const [snap, effects] = stepSession(c.snap, timed as SessionEvent);
    c.snap = snap;
    this.perform(c, effects);
    if (c.state === 'closed') c.alive = false;
  }

  /** An ephemeral put (four keys per session, written over and over). A suspended client
   * writes too, as one replaying writes queued while disconnected would: if its session
   * expired meanwhile, the cluster must refuse them. */
  private put(c: SimClient): void {
    if ((c.state !== 'active' && c.state !== 'suspended') || c.sid === null) return;
    if (this.sim.now < c.pausedUntil) return;
    const sid = c.sid;
    const seq = ++c.writes;
    const body = {
      key: `/e/${sid}/${++c.keys % 4}`,
      value: new TextEncoder().encode(`${seq}`),
      ephemeral: true,
      // Never sent again: each write claims every earlier one answered.
      client: { session: sid, secret: c.secret, seq, lowSeq: seq },
    };
    this.request(c, 'put', body, (r) => {
      if (!r.ok && r.error.code === 'SESSION_EXPIRED' && c.sid === sid)
        this.sim.schedule(this.sim.now, {
          t: 'clientEvent',
          client: c.n,
          event: { type: 'session.expiredByServer' },
        });
    });
  }

  private clientTick(c: SimClient): void {
    const p = c.pending;
    if (p !== null && this.sim.now - p.at >= PENDING_TIMEOUT_MS) {
      c.pending = null;
      this.feed(c, p.kind === 'open' ? { type: 'session.openFailed' } : { type: 'session.closeDone' });
    }
    this.feed(c, { type: 'session.tick', now: this.sim.now });
    if (c.state === 'expired') this.feed(c, { type: 'session.reopen' });
  }

  private perform(c: SimClient, effects: readonly SessionEffect[]): void {
    for (const e of effects) {
      switch (e.type) {
        case 'openSession': {
          const sid = `c${c.n}.${++c.attempts}`;
          const secret = secretOf(sid);
          this.mine.add(sid);
          c.pending = { kind: 'open', sid, at: this.sim.now };
          this.request(c, 'sessionOpen', { id: sid, secret, ttlMs: e.ttlMs }, (r) => {
            if (c.pending?.sid !== sid) return;
            c.pending = null;
            if (r.ok) c.secret = secret;
            const event: SessionEvent = r.ok
              ? { type: 'session.opened', id: sid, secret, ttlMs: e.ttlMs, now: 0 }
              : { type: 'session.openFailed' };
            this.sim.schedule(this.sim.now, { t: 'clientEvent', client: c.n, event });
          });
          break;
        }
        case 'sendKeepalive':
          for (const node of this.sim.nodes.keys()) {
            if (!this.clientReaches(c, node)) continue;
            this.sim.schedule(this.sim.now + this.int(1, 15), {
              t: 'keepalive',
              client: c.n,
              sid: e.id,
              secret: c.secret,
              node,
              seq: e.seq,
              answer: node === c.home,
            });
          }
          break;
        case 'closeSession': {
          const sid = e.id;
          c.pending = { kind: 'close', sid, at: this.sim.now };
          this.request(c, 'sessionClose', { id: sid, secret: c.secret }, () => {
            if (c.pending?.kind !== 'close' || c.pending.sid !== sid) return;
            c.pending = null;
            this.sim.schedule(this.sim.now, {
              t: 'clientEvent',
              client: c.n,
              event: { type: 'session.closeDone' },
            });
          });
          break;
        }
        case 'failover':
          c.home = this.pick(this.reachableNodes(c).filter((n) => n !== c.home)) ?? c.home;
          break;
        case 'stateChanged':
          this.sim.trace(`client ${c.n} ${e.state} (${e.session ?? '-'})`);
          if (e.state === 'CONNECTED') c.sid = e.session;
          break;
      }
    }
  }

  private reachableNodes(c: SimClient): string[] {
    return [...this.sim.nodes.values()].filter((n) => n.up && !c.cut.has(n.id)).map((n) => n.id);
  }

  /** A client's request, through the node it believes leads, else any it reaches; a follower
   * forwards a write to the leader it knows if it reaches it (as ingress does). The answer
   * comes back in the wire format; none if the node or the path to it is down. */
  private request(c: SimClient, op: string, body: unknown, answer: (r: Answered) => void): void {
    if (c.serverDown) return;
    const guess = this.sim.leaderHint;
    const reachable = this.reachableNodes(c);
    const target = guess !== null && reachable.includes(guess) ? guess : this.pick(reachable);
    if (target === undefined) return;
    if (c.home === null) c.home = target;
    let node = this.sim.nodes.get(target)!;
    const leader = node.snap!.context.leader;
    if (node.role !== 'leader' && leader !== null && this.sim.connected(target, leader)) {
      const l = this.sim.nodes.get(leader);
      if (l?.up) node = l;
    }
    this.sim.request(node, op, body, {
      format: 'cbor',
      base64: false,
      respond: (bytes) => {
        const r = decodeReply(bytes, { cluster: SIM_CLUSTER });
        answer(r.ok ? { ok: true } : { ok: false, error: r.error });
      },
    });
  }

  // -------------------------------------------------------------------------------------------
  // Client faults, drawn from the sessions' own stream so Raft-level runs stay comparable.

  private nemesis(): void {
    const alive = this.clients.filter((c) => c.alive);
    for (const c of alive) if (this.random() < 0.5) this.put(c);
    if (this.sim.isHealed) {
      if (alive.length === 0) this.spawn();
      return;
    }
    if (alive.length < this.target) {
      this.spawn();
      return;
    }
    const roll = this.random();
    const c = this.pick(alive)!;
    if (this.sim.now < c.pausedUntil) return;
    const nodes = [...this.sim.nodes.keys()];
    if (roll < 0.2) {
      c.alive = false; // dies: no more keepalives, no close
      this.sim.trace(`client ${c.n} dies (${c.sid ?? 'no session'})`);
    } else if (roll < 0.26) {
      if (c.state === 'active') this.feed(c, { type: 'session.close' });
    } else if (roll < 0.36) {
      c.pausedUntil = this.sim.now + this.int(50, 900);
      this.sim.trace(`client ${c.n} pauses until ${c.pausedUntil}`);
      this.sim.schedule(c.pausedUntil, { t: 'resume', client: c.n });
    } else if (roll < 0.5) {
      // Cut from the leader (and perhaps one more): keepalives still reach a quorum.
      const leader = this.sim.currentLeader();
      if (leader !== null) c.cut.add(leader);
      if (this.random() < 0.3) c.cut.add(this.pick(nodes)!);
      this.sim.trace(`client ${c.n} cut from ${[...c.cut].join(',')}`);
    } else if (roll < 0.58) {
      // Cut from a majority: the session should go.
      const shuffled = nodes.slice().sort(() => this.random() - 0.5);
      for (const n of shuffled.slice(0, Math.floor(nodes.length / 2) + 1)) c.cut.add(n);
      this.sim.trace(`client ${c.n} cut from ${[...c.cut].join(',')}`);
    } else if (roll < 0.78) {
      c.cut.clear();
    } else if (roll < 0.88 && !c.serverDown) {
      c.serverDown = true;
      this.feed(c, { type: 'session.serverLost', now: this.sim.now });
      this.sim.schedule(this.sim.now + this.int(30, 500), { t: 'serverBack', client: c.n });
    }
  }
}
