/**
 * Sessions in the simulator: clients that run the real client session machine
 * (machines/session), nodes that run the real `SessionClock` and, while leading, the real
 * `ExpiryPlanner`, and the session part of the simulated state machine.
 *
 * - Clients open sessions (a committed `sessionOpen`), put ephemeral keys, publish keepalives
 *   that reach each node through the simulated network (loss, a client's own cuts from some
 *   nodes, among them the leader or a majority, its NATS connection dropping), fail over,
 *   close, pause (and replay a queued write when they come back, as a zombie would), and die
 *   at random. They write through the node they believe leads; a follower forwards.
 * - Session faults draw from their own random stream; Raft-level steps alone count towards
 *   `steps`, so a seed's Raft coverage stays what it was. After the faults heal the run goes on
 *   until every session no live client holds has expired (or the liveness limit).
 * - Every node records keepalives on its own monotonic clock (its own origin, reset by a
 *   restart). The leader's planner asks the other voters for ages over the simulated network
 *   (partitions, loss, duplication, delay) and proposes `sessionExpire` entries.
 * - Applying `sessionExpire`/`sessionClose` deletes the session's ephemeral keys in the same
 *   entry; an ended session id is never opened again.
 *
 * The properties are in session-checker.ts. Commands (the sim's opaque `data`):
 *   { id, kind: 'sessionOpen', sid, ttlMs } | { id, kind: 'putEphemeral', sid, key }
 *   { id, kind: 'sessionExpire', sid }      | { id, kind: 'sessionClose', sid }
 */
import type { Entry } from '../../machines/raft/index.ts';
import { nextRandom, seedFrom } from '../../machines/raft/index.ts';
import { currentConfig } from '../../machines/raft/state.ts';
import {
  type AgesReply,
  ExpiryPlanner,
  type ExpiryPlannerOptions,
  nextWakeup,
  SessionClock,
  type SessionEffect,
  type SessionEvent,
  type SessionSnapshot,
  startSession,
  stepSession,
} from '../../machines/session/index.ts';
import type { SimNode, Simulation } from './cluster.ts';
import { SessionChecker } from './session-checker.ts';

export interface SessionSimOptions {
  /** Clients alive at once during the faults (default 3). */
  readonly clients?: number;
  /** TTLs are drawn from [lo, hi] ms (default [300, 600]). */
  readonly ttlMs?: readonly [number, number];
  /** Build the leader's planner: the teeth tests pass broken ones. */
  readonly planner?: (opts: ExpiryPlannerOptions) => ExpiryPlanner;
  /** An apply mistake the checker must catch: ephemeral puts for ended sessions accepted. */
  readonly unsafeEphemeralPut?: boolean;
}

export type SessionCommand =
  | { readonly id: string; readonly kind: 'sessionOpen'; readonly sid: string; readonly ttlMs: number }
  | { readonly id: string; readonly kind: 'putEphemeral'; readonly sid: string; readonly key: string }
  | { readonly id: string; readonly kind: 'sessionExpire'; readonly sid: string }
  | { readonly id: string; readonly kind: 'sessionClose'; readonly sid: string };

export type SessionItem =
  | { readonly t: 'clientTick'; readonly client: number; readonly at: number }
  | { readonly t: 'clientEvent'; readonly client: number; readonly event: SessionEvent }
  | {
      readonly t: 'keepalive';
      readonly client: number;
      readonly sid: string;
      readonly node: string;
      readonly seq: number;
      readonly answer: boolean;
    }
  | {
      readonly t: 'ageRequest';
      readonly from: string;
      readonly to: string;
      readonly term: number;
      readonly round: number;
    }
  | { readonly t: 'ageReply'; readonly from: string; readonly to: string; readonly reply: AgesReply }
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
  readonly clock: SessionClock;
  readonly planner: ExpiryPlanner;
  /** This life's monotonic clock reads virtual time + origin. */
  readonly origin: number;
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
  pending: { kind: 'open' | 'close'; cmd: string; at: number } | null = null;
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

export class SessionWorld {
  readonly checker: SessionChecker;
  private readonly runtimes = new Map<string, NodeRuntime>();
  private readonly clients: SimClient[] = [];
  private rng: number;
  private seq = 0;
  private readonly target: number;
  private readonly ttl: readonly [number, number];
  private readonly counts = { keys: 0, keepalives: 0, rounds: 0 };
  private readonly graceMs: number;
  /** Expiry proposals in flight: command id -> session. */
  private readonly expiring = new Map<string, string>();

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

  onBoot(node: SimNode): void {
    const origin = this.int(0, 1e9);
    const clock = new SessionClock(origin);
    const make = this.opts.planner ?? ((o: ExpiryPlannerOptions) => new ExpiryPlanner(o));
    const planner = make({
      self: node.id,
      clock,
      graceMs: this.graceMs,
      roundTimeoutMs: 20,
      retryMs: this.graceMs,
    });
    this.runtimes.set(node.id, { life: node.life, clock, planner, origin: origin - this.sim.now });
    this.checker.restarted(node.id);
  }

  onCrash(node: SimNode): void {
    this.runtimes.delete(node.id);
  }

  onRole(node: SimNode, role: string, term: number): void {
    const rt = this.runtime(node);
    if (rt === undefined) return;
    if (role === 'leader') rt.planner.becameLeader(this.clockOf(rt), term);
    else if (rt.planner.leading) rt.planner.steppedDown();
  }

  /** Every node tick: the leader plans. */
  onTick(node: SimNode): void {
    const rt = this.runtime(node);
    if (rt === undefined || !rt.planner.leading) return;
    const sessions = node.sm.sessions ?? new Map<string, number>();
    const voters = currentConfig(node.snap!.context).voters;
    const out = rt.planner.tick(this.clockOf(rt), sessions, voters);
    if (out.expire.length > 0) {
      const commands = out.expire.map((sid) => {
        const id = `sx${++this.seq}`;
        this.expiring.set(id, sid);
        return { id, data: { id, kind: 'sessionExpire', sid } satisfies SessionCommand };
      });
      this.sim.trace(`${node.id} proposes expiry of ${out.expire.join(',')}`);
      this.sim.step(node, { type: 'raft.propose', commands });
    }
    if (out.askAges !== null) {
      this.counts.rounds++;
      for (const v of voters) {
        if (v === node.id) continue;
        this.send(node.id, v, { t: 'ageRequest', from: node.id, to: v, ...out.askAges });
      }
    }
  }

  /** The node refused proposals (not leader, transferring). */
  proposeFailed(node: SimNode, ids: readonly string[]): void {
    const sids: string[] = [];
    for (const id of ids) {
      const sid = this.expiring.get(id);
      if (sid !== undefined) sids.push(sid);
      this.expiring.delete(id);
    }
    if (sids.length > 0) this.runtime(node)?.planner.notTaken(sids);
  }

  /** A committed entry applied at `node` (index `e.index`); `acked`: proposed through it. */
  apply(node: SimNode, e: Entry & { type: 'normal' }, acked: boolean): void {
    const cmd = e.data as SessionCommand | { kind?: undefined };
    if (cmd.kind === undefined) return;
    const first = this.checker.firstApply(e.index);
    const sm = node.sm;
    const sessions = sm.sessions ?? new Map<string, number>();
    const ended = sm.ended ?? new Set<string>();
    const keys = sm.keys ?? new Map<string, string>();
    const rt = this.runtime(node);
    switch (cmd.kind) {
      case 'sessionOpen': {
        const ok = !sessions.has(cmd.sid) && !ended.has(cmd.sid);
        if (ok) {
          node.sm = { ...sm, sessions: new Map(sessions).set(cmd.sid, cmd.ttlMs) };
          // Opening is a contact: the client is there now.
          rt?.clock.heard(cmd.sid, this.clockOf(rt));
          if (first) this.checker.opened(cmd.sid, cmd.ttlMs);
          else this.checker.contact(cmd.sid);
        }
        if (acked) this.answerOpen(cmd.id, cmd.sid, cmd.ttlMs, ok);
        break;
      }
      case 'putEphemeral': {
        const ok = sessions.has(cmd.sid) || this.opts.unsafeEphemeralPut === true;
        if (ok) {
          node.sm = { ...sm, keys: new Map(keys).set(cmd.key, cmd.sid) };
          if (first) this.counts.keys++;
        } else if (acked && ended.has(cmd.sid)) {
          this.toClientWithSession(cmd.sid, { type: 'session.expiredByServer' });
        }
        break;
      }
      case 'sessionExpire':
      case 'sessionClose': {
        if (cmd.kind === 'sessionExpire') this.expiring.delete(cmd.id);
        if (sessions.has(cmd.sid)) {
          const nextSessions = new Map(sessions);
          nextSessions.delete(cmd.sid);
          const nextKeys = new Map(keys);
          for (const [k, owner] of keys) if (owner === cmd.sid) nextKeys.delete(k);
          node.sm = { ...sm, sessions: nextSessions, keys: nextKeys, ended: new Set(ended).add(cmd.sid) };
          rt?.clock.forget(cmd.sid);
          if (first) {
            this.sim.trace(`${cmd.sid} ${cmd.kind === 'sessionExpire' ? 'expired' : 'closed'} at ${e.index}`);
            this.checker.endedAt(cmd.sid, e.index, cmd.kind === 'sessionExpire' ? 'expire' : 'close');
          }
        }
        if (acked && cmd.kind === 'sessionClose') this.answerClose(cmd.id);
        break;
      }
    }
    this.checker.checkKeys(node, e.index);
  }

  /** A snapshot replaced `node`'s state. */
  restored(node: SimNode): void {
    this.checker.checkKeys(node, node.sm.applied);
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
        if (rt === undefined || !this.sim.connected(item.from, item.to)) return;
        const reply: AgesReply = { ...rt.clock.report(this.clockOf(rt)), term: item.term, round: item.round };
        this.send(item.to, item.from, { t: 'ageReply', from: item.to, to: item.from, reply });
        return;
      }
      case 'ageReply': {
        const node = this.sim.nodes.get(item.to)!;
        const rt = this.runtime(node);
        if (rt === undefined || !this.sim.connected(item.from, item.to)) return;
        rt.planner.agesFrom(item.from, item.reply, this.clockOf(rt));
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

  private clockOf(rt: NodeRuntime): number {
    return this.sim.now + rt.origin;
  }

  /** Node-to-node: the simulation's partitions, loss, duplication and delay. */
  private send(from: string, to: string, item: SessionItem): void {
    if (!this.sim.connected(from, to)) return;
    if (this.sim.lossRate > 0 && this.random() < this.sim.lossRate) return;
    this.sim.schedule(this.sim.now + this.int(1, 15), item);
    if (this.sim.dupRate > 0 && this.random() < this.sim.dupRate)
      this.sim.schedule(this.sim.now + this.int(1, 30), item);
  }

  private keepaliveArrives(k: Extract<SessionItem, { t: 'keepalive' }>): void {
    const node = this.sim.nodes.get(k.node)!;
    const rt = this.runtime(node);
    if (rt === undefined) return;
    this.counts.keepalives++;
    rt.clock.heard(k.sid, this.clockOf(rt));
    this.checker.keepaliveDelivered(k.sid, k.node);
    if (!k.answer) return;
    const c = this.clients[k.client]!;
    const sessions = node.sm.sessions;
    const event: SessionEvent = sessions?.has(k.sid)
      ? { type: 'session.keepaliveAcked', now: 0, seq: k.seq }
      : node.sm.ended?.has(k.sid)
        ? { type: 'session.expiredByServer' }
        : { type: 'session.keepaliveFailed', now: 0, seq: k.seq }; // not applied here yet
    if (!this.clientReaches(c, k.node)) return;
    this.sim.schedule(this.sim.now + this.int(1, 15), { t: 'clientEvent', client: c.n, event });
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
    const id = `sk${++this.seq}`;
    this.propose(c, { id, kind: 'putEphemeral', sid: c.sid, key: `/e/${c.sid}/${++c.keys % 4}` });
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
          const id = `so${++this.seq}`;
          c.pending = { kind: 'open', cmd: id, at: this.sim.now };
          this.propose(c, { id, kind: 'sessionOpen', sid, ttlMs: e.ttlMs });
          break;
        }
        case 'sendKeepalive':
          for (const node of this.sim.nodes.keys()) {
            if (!this.clientReaches(c, node)) continue;
            this.sim.schedule(this.sim.now + this.int(1, 15), {
              t: 'keepalive',
              client: c.n,
              sid: e.id,
              node,
              seq: e.seq,
              answer: node === c.home,
            });
          }
          break;
        case 'closeSession': {
          const id = `sc${++this.seq}`;
          c.pending = { kind: 'close', cmd: id, at: this.sim.now };
          this.propose(c, { id, kind: 'sessionClose', sid: e.id });
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

  /** Clients write through the node they believe leads, else any they reach. */
  private propose(c: SimClient, cmd: SessionCommand): void {
    if (c.serverDown) return;
    const guess = this.sim.leaderHint;
    const reachable = this.reachableNodes(c);
    const target = guess !== null && reachable.includes(guess) ? guess : this.pick(reachable);
    if (target === undefined) return;
    if (c.home === null) c.home = target;
    // A follower forwards the write to the leader it knows, if it reaches it (DESIGN "Wire").
    let node = this.sim.nodes.get(target)!;
    const leader = node.snap!.context.leader;
    if (node.role !== 'leader' && leader !== null && this.sim.connected(target, leader)) {
      const l = this.sim.nodes.get(leader);
      if (l?.up) node = l;
    }
    this.sim.step(node, { type: 'raft.propose', commands: [{ id: cmd.id, data: cmd }] });
  }

  private answerOpen(cmd: string, sid: string, ttlMs: number, ok: boolean): void {
    const c = this.clients.find((x) => x.pending?.cmd === cmd);
    if (c === undefined) return;
    c.pending = null;
    const event: SessionEvent = ok
      ? { type: 'session.opened', id: sid, secret: 'k', ttlMs, now: 0 }
      : { type: 'session.openFailed' };
    // Answered after the apply loop, never inside it.
    this.sim.schedule(this.sim.now, { t: 'clientEvent', client: c.n, event });
  }

  private answerClose(cmd: string): void {
    const c = this.clients.find((x) => x.pending?.cmd === cmd);
    if (c === undefined) return;
    c.pending = null;
    this.sim.schedule(this.sim.now, { t: 'clientEvent', client: c.n, event: { type: 'session.closeDone' } });
  }

  private toClientWithSession(sid: string, event: SessionEvent): void {
    const c = this.clients.find((x) => x.alive && x.sid === sid);
    if (c === undefined) return;
    this.sim.schedule(this.sim.now, { t: 'clientEvent', client: c.n, event });
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
