/**
 * The session properties, checked as the simulation runs (sessions.ts feeds the facts):
 *
 * - `ephemeral-outlived`: no ephemeral key outlives its session. After every apply of a
 *   session command and every snapshot install, no node holds a key whose owner is missing from
 *   its own session table, or whose owner's end (expiry or close) is committed at an index the
 *   node has applied.
 *
 * - `session-expired-live`: no session expires while keepalives from its client reached a
 *   quorum in time. A session is *live* at instant t if, for every configuration any running
 *   node holds, a quorum of its voters each had a keepalive of the session delivered within
 *   (t - TTL, t] (the open's commit counts as one delivered to every node). It stays live as
 *   long as that held at every step since its open commit; once it fails it is fair game for
 *   good (the client itself declares LOST a TTL after its last acknowledged keepalive). An
 *   expiry committing while the session is live is a violation. The margin is zero: every
 *   node's clock runs at the virtual clock's rate (with its own origin), so only transit
 *   times separate a node's view from the truth, and they only make sessions look younger.
 *
 * - `session-expiry-bound`: a dead client's session expires within TTL + two election
 *   timeouts once a leader holds office. A leader *holds office* from the moment it is the
 *   leader of the highest term among running nodes, is not handing over (leader transfer), and
 *   a quorum of the voters of its current configuration (itself included) is running,
 *   connected to it both ways (no partition or one-way cut) and replicating (their progress in
 *   the leader's `replicate` state: not being probed after a rejection nor sent a snapshot),
 *   until any of that stops; O is when the current office began. Random loss and duplication
 *   do not end an office. For a session not yet ended, let D be the latest contact any node
 *   recorded for it: a keepalive delivered to any node, or any node's apply of its open. Let V
 *   be the moment a quorum of those connected voters has been running for a TTL (a node that
 *   restarted cannot vouch for the silence before it, expiry.ts). The session must have
 *   expired (committed) by
 *       max(D + TTL, O, V) + 2 * ET,      ET = electionTicks * 2 * tick (the longest timeout),
 *   one ET of grace after an election plus one for the confirming round and the commit.
 *   Checked after every step.
 */
import type { Configuration } from '../../machines/raft/index.ts';
import { currentConfig, quorum } from '../../machines/raft/state.ts';
import type { SimNode, Simulation } from './cluster.ts';

interface Tracked {
  readonly sid: string;
  readonly ttl: number;
  readonly openedAt: number;
  /** Latest keepalive delivery per node (virtual ms); absent: the open's commit. */
  readonly heard: Map<string, number>;
  /** Latest contact any node recorded (keepalive delivered, open applied). */
  contact: number;
  /** The instant the session stops being live unless a keepalive is delivered; recomputed
   * after every step that changed its inputs. */
  liveUntil: number;
  dirty: boolean;
  broken: boolean;
}

export interface SessionCheckStats {
  opened: number;
  expired: number;
  closed: number;
  /** Expiries committed while a leader held office, and the least slack to the bound. */
  boundChecked: number;
  minBoundSlack: number;
  /** Expiries of sessions still live by the checker's definition just before the step. */
  expiredLive: number;
}

interface Office {
  readonly leader: string;
  readonly term: number;
  readonly since: number;
  /** When a quorum of the connected voters (the leader included) had started, at the latest:
   * a TTL later they can vouch. */
  quorumStarted: number;
}

export class SessionChecker {
  private readonly open = new Map<string, Tracked>();
  private readonly ended = new Map<string, number>();
  private readonly seenIndexes = new Set<number>();
  /** When each node last (re)started. */
  private readonly started = new Map<string, number>();
  private configs: Configuration[] = [];
  private readonly scratch: number[] = [];
  office: Office | null = null;
  readonly stats: SessionCheckStats = {
    opened: 0,
    expired: 0,
    closed: 0,
    boundChecked: 0,
    minBoundSlack: Number.POSITIVE_INFINITY,
    expiredLive: 0,
  };

  constructor(
    private readonly sim: Simulation,
    /** The longest election timeout in ms. */
    readonly electionTimeoutMs: number,
  ) {}

  /** Sessions committed and not yet ended. */
  openSessions(): IterableIterator<string> {
    return this.open.keys();
  }

  /** The first apply of index `index` anywhere is its commit; later applies repeat it. */
  firstApply(index: number): boolean {
    if (this.seenIndexes.has(index)) return false;
    this.seenIndexes.add(index);
    return true;
  }

  opened(sid: string, ttl: number): void {
    const now = this.sim.now;
    this.open.set(sid, {
      sid,
      ttl,
      openedAt: now,
      heard: new Map(),
      contact: now,
      liveUntil: now + ttl,
      dirty: true,
      broken: false,
    });
    this.stats.opened++;
  }

  /** A keepalive of `sid` was delivered to running node `node`. */
  keepaliveDelivered(sid: string, node: string): void {
    const s = this.open.get(sid);
    if (s === undefined) return;
    s.heard.set(node, this.sim.now);
    s.contact = this.sim.now;
    s.dirty = true;
  }

  /** A node recorded some other contact for `sid` (a late apply of its open). */
  contact(sid: string): void {
    const s = this.open.get(sid);
    if (s !== undefined) s.contact = this.sim.now;
  }

  /** A node (re)started: its clock's floor. */
  restarted(node: string): void {
    this.started.set(node, this.sim.now);
  }

  /** The commit of an entry that ended `sid`. */
  endedAt(sid: string, index: number, kind: 'expire' | 'close'): void {
    const s = this.open.get(sid);
    this.ended.set(sid, index);
    if (s === undefined) return;
    this.open.delete(sid);
    if (kind === 'close') {
      this.stats.closed++;
      return;
    }
    this.stats.expired++;
    const now = this.sim.now;
    if (!s.broken && now < s.liveUntil) {
      this.stats.expiredLive++;
      const quorums = [...s.heard].map(([n, t]) => `${n}@${t}`).join(' ');
      this.sim.checker.violate(
        'session-expired-live',
        `${sid} (ttl ${s.ttl}, opened ${s.openedAt}) expired at ${now}, live until ${s.liveUntil}; keepalives delivered: ${quorums || 'none'}`,
      );
      return;
    }
    const o = this.office;
    if (o !== null) {
      this.stats.boundChecked++;
      const slack = this.bound(s, o) - now;
      if (slack < this.stats.minBoundSlack) this.stats.minBoundSlack = slack;
    }
  }

  /** No node holds a key of a session that ended at an index it applied, or that it lacks. A
   * client's keys are /e/<session>/...: the owner is known from the path, whatever the tree
   * recorded. */
  checkKeys(node: SimNode, applied: number): void {
    const kvs = node.tree.range('/e/').kvs;
    for (const { key } of kvs) {
      const owner = key.slice(3, key.indexOf('/', 3));
      const end = this.ended.get(owner);
      if (end !== undefined && end <= applied) {
        this.sim.checker.violate(
          'ephemeral-outlived',
          `${node.id} holds ${key} of ${owner} at applied ${applied}; ${owner} ended at ${end}`,
        );
        return;
      }
      if (node.tree.session(owner) === null) {
        this.sim.checker.violate(
          'ephemeral-outlived',
          `${node.id} holds ${key} of ${owner}, not in its table`,
        );
        return;
      }
    }
  }

  /** max(D + TTL, O, V) + 2 ET (see the header). */
  private bound(s: Tracked, o: Office): number {
    return Math.max(s.contact + s.ttl, o.since, o.quorumStarted + s.ttl) + 2 * this.electionTimeoutMs;
  }

  /** After every step of the simulation. */
  afterStep(): void {
    const now = this.sim.now;
    // 1. Live sessions whose window closed before this step (by the state before it).
    for (const s of this.open.values()) if (!s.broken && now >= s.liveUntil) s.broken = true;
    // 2. The configurations in play now, and the office.
    const changed = this.configsInPlay();
    this.office = this.currentOffice();
    for (const s of this.open.values()) {
      if (!s.broken && (s.dirty || changed)) {
        s.liveUntil = this.liveUntil(s);
        if (now >= s.liveUntil) s.broken = true;
      }
      s.dirty = false;
    }
    // 3. The bound, while a leader holds office.
    const o = this.office;
    if (o === null) return;
    for (const s of this.open.values()) {
      const b = this.bound(s, o);
      if (now > b) {
        this.sim.checker.violate(
          'session-expiry-bound',
          `${s.sid} (ttl ${s.ttl}) not expired at ${now}: last contact ${s.contact}, ${o.leader} in office since ${o.since}, a quorum up since ${o.quorumStarted}, bound ${b}`,
        );
        return;
      }
    }
  }

  private liveUntil(s: Tracked): number {
    let until = Number.POSITIVE_INFINITY;
    for (const c of this.configs) {
      const times = c.voters.map((v) => s.heard.get(v) ?? s.openedAt).sort((a, b) => b - a);
      const q = times[quorum(c) - 1];
      if (q !== undefined) until = Math.min(until, q + s.ttl);
    }
    return until === Number.POSITIVE_INFINITY ? s.openedAt + s.ttl : until;
  }

  /** Refreshes the configurations running nodes hold (distinct, in node order); whether they
   * changed. Allocates nothing: it runs after every step. */
  private configsInPlay(): boolean {
    let n = 0;
    let changed = false;
    for (const node of this.sim.nodes.values()) {
      const c = node.snap?.context;
      if (!c) continue;
      const cfg = currentConfig(c);
      if (cfg.voters.length === 0 || this.placed(cfg, n)) continue;
      if (this.configs[n] !== cfg) {
        this.configs[n] = cfg;
        changed = true;
      }
      n++;
    }
    if (this.configs.length !== n) {
      this.configs.length = n;
      changed = true;
    }
    return changed;
  }

  private placed(cfg: Configuration, n: number): boolean {
    for (let k = 0; k < n; k++) if (this.configs[k] === cfg) return true;
    return false;
  }

  private currentOffice(): Office | null {
    const id = this.sim.currentLeader();
    if (id === null) return null;
    const c = this.sim.nodes.get(id)!.snap!.context;
    // A leader handing over to another (leader transfer) refuses proposals: not in office.
    if (c.transferee !== null) return null;
    const cfg = currentConfig(c);
    const starts = this.scratch;
    starts.length = 0;
    for (const v of cfg.voters) {
      if (
        v === id ||
        (this.sim.nodes.get(v)?.up &&
          this.sim.connected(id, v) &&
          this.sim.connected(v, id) &&
          c.progress[v]?.state === 'replicate')
      )
        starts.push(this.started.get(v) ?? 0);
    }
    const q = quorum(cfg);
    if (starts.length < q) return null;
    starts.sort((a, b) => a - b);
    const quorumStarted = starts[q - 1]!;
    const prev = this.office;
    if (prev !== null && prev.leader === id && prev.term === c.term) {
      prev.quorumStarted = quorumStarted;
      return prev;
    }
    return { leader: id, term: c.term, since: this.sim.now, quorumStarted };
  }
}
