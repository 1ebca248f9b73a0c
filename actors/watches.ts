/**
 * Watchers: the node side of watches. Each watch is a watcher actor (machines/watch) that
 * replays the key tree's history from its start revision, then follows it live; this hub runs
 * them and does their I/O.
 *
 * - History is the one source. A replaying watcher reads `eventsSince(next)` on its own, up to
 *   the hub's live cursor; then it joins its group: the live watchers with the same target and
 *   options. The hub reads each new revision once for all groups, filters it once per group and
 *   encodes it once per group, so the cost of a write grows with the groups, not the watchers.
 * - Shared streams: a client that subscribed to its group's subject (given in the watch result)
 *   says so (`watchAck` with `shared`); from then on one message on that subject serves all such
 *   watches (NATS does the fan-out), carrying the group's own sequence numbers. Other watches
 *   get their messages in their own inbox (`direct`), the shared encoding spliced in.
 * - NATS core delivers at most once: every message carries the next `seq` (the watch's, or the
 *   group's), and an idle watch or group gets a progress heartbeat every `progressMs`, so the
 *   client detects a lost message or a dead node and resumes elsewhere from the last revision
 *   it delivered.
 * - Flow control: at most `window` unacknowledged messages per direct watch; one that stops
 *   acknowledging is paused (the node never blocks on it), and ended with WATCH_BEHIND once it
 *   lags `maxBehind` revisions: the client resumes from its last revision, from history. A
 *   shared watch is never waited for; its client keeps a bounded buffer and leaves the stream
 *   when its consumer falls behind (client/index.ts).
 * - A pump does at most `sliceMs` of work, then yields to the event loop (Raft first).
 * - A watch belongs to a session and ends with it; at most `maxPerSession` per session, across
 *   the cluster: a session's watches live on one node at a time. A node that starts the first
 *   watch of a session announces it to its peers (`P.claims.watch`); a peer that serves watches
 *   of that session ends them with WATCH_MOVED, and the client resumes them on its watch node.
 *   (While peers cannot hear each other, each side keeps its own: the bound is per partition.)
 */
import { createHash, randomInt } from 'node:crypto';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { type Actor, createActor, type InspectionEvent } from 'xstate';
import { phaseOf, type WatcherEvent, type WatcherPhase, watcherMachine } from '../machines/watch/index.ts';
import type {
  Subjects,
  WatchEvent,
  WatchGroupMessage,
  WatchMessage,
  WatchRequest,
} from '../protocol/index.ts';
import {
  CompactedError,
  decodePeer,
  EnsembleError,
  encodeCbor,
  encodeEnvelopeSpliced,
  encodePeer,
  InternalError,
  LimitExceededError,
  SessionExpiredError,
  WatchBehindError,
  WatchMovedError,
} from '../protocol/index.ts';
import type { EventFilter, KeyTree, TreeEvent } from '../storage/index.ts';
import { filterOf as eventMatcher } from '../storage/index.ts';

export interface WatchHubOptions {
  readonly nc: NatsConnection;
  readonly subjects: Subjects;
  /** The cluster id peer envelopes carry (default: the subject table's cluster). */
  readonly cluster?: string;
  /** This node's id (it names the group subjects). */
  readonly self: string;
  readonly tree: KeyTree;
  readonly progressMs?: number;
  readonly window?: number;
  readonly maxBehind?: number;
  readonly maxPerSession?: number;
  /** Events per history read (whole revisions are never split). */
  readonly batch?: number;
  /** A message's events stop growing past this many bytes (whole revisions). */
  readonly maxMessageBytes?: number;
  /** The longest a pump runs before it yields to the event loop. */
  readonly sliceMs?: number;
  /** The inspection observer for a new watcher actor, if inspection is on when it starts (a
   * watcher started while it was off is not inspected: no cost per event when off). */
  readonly inspect?: () => ((event: InspectionEvent) => void) | undefined;
}

interface Group {
  readonly token: string;
  readonly subject: string;
  readonly gen: number;
  seq: number;
  /** The revision the group's stream has accounted for through (its messages' `from`). */
  told: number;
  lastSent: number;
  readonly match: (key: string) => boolean;
  readonly prev: boolean;
  readonly direct: Set<Watcher>;
  readonly shared: Set<Watcher>;
}

interface Watcher {
  readonly key: string;
  readonly req: WatchRequest;
  readonly filter: EventFilter;
  readonly token: string;
  readonly actor: Actor<typeof watcherMachine>;
  phase: WatcherPhase;
  /** The next revision to send (while live: the hub's live cursor). */
  next: number;
  /** The revision its own messages have accounted for through (their `from`). */
  told: number;
  seq: number;
  acked: number;
  lastSent: number;
  group: Group | null;
  failure: EnsembleError | null;
}

export interface WatchCounters {
  watchers: number;
  groups: number;
  shared: number;
  messages: number;
  groupMessages: number;
  events: number;
  cancelledBehind: number;
  /** Watches ended because their session's watches moved to another node. */
  moved: number;
  /** Malformed watch claims dropped. */
  badClaims: number;
}

const EMPTY_EVENTS = encodeCbor([]);

export class WatchHub {
  private readonly watchers = new Map<string, Watcher>();
  private readonly perSession = new Map<string, number>();
  private readonly groups = new Map<string, Group>();
  private readonly waiting = new Set<Watcher>();
  private readonly replaying = new Set<Watcher>();
  private readonly paused = new Set<Watcher>();
  /** The next revision the live watchers get. */
  private liveNext = 0;
  /** Group generations start at random so a restarted node never continues an old one. */
  private nextGen = randomInt(1, 2 ** 30);
  private pumpScheduled = false;
  private timer: NodeJS.Timeout | null = null;
  private claims: Subscription | null = null;
  private readonly traffic = {
    messages: 0,
    groupMessages: 0,
    events: 0,
    cancelledBehind: 0,
    /** Watches ended because their session's watches moved to another node. */
    moved: 0,
    /** Claims that were not well-formed. */
    badClaims: 0,
  };

  constructor(private readonly opts: WatchHubOptions) {}

  /** What the metrics read: sizes counted now, traffic since start. */
  get counters(): WatchCounters {
    let shared = 0;
    for (const g of this.groups.values()) shared += g.shared.size;
    return { watchers: this.watchers.size, groups: this.groups.size, shared, ...this.traffic };
  }

  private get progressMs(): number {
    return this.opts.progressMs ?? 1000;
  }

  private get window(): number {
    return this.opts.window ?? 64;
  }

  start(): void {
    this.timer = setInterval(() => this.heartbeat(), Math.max(50, Math.floor(this.progressMs / 2)));
    this.timer.unref?.();
    const { nc, subjects } = this.opts;
    this.claims = nc.subscribe(subjects.watchClaims(), {
      callback: (err, m) => {
        if (err) return;
        const d = decodePeer(m.data, { cluster: this.opts.cluster ?? subjects.cluster });
        const b = d.ok ? (d.body as { session?: unknown; node?: unknown }) : null;
        if (b === null || typeof b.session !== 'string' || typeof b.node !== 'string') {
          this.traffic.badClaims++;
          return;
        }
        this.claimed(b.session, b.node);
      },
    });
  }

  /** Tells the peers this node now serves `session`'s watches. */
  private claim(session: string): void {
    try {
      this.opts.nc.publish(
        this.opts.subjects.watchClaims(),
        encodePeer({ session, node: this.opts.self }, this.opts.cluster ?? this.opts.subjects.cluster),
      );
    } catch {
      // NATS is down: the claim is lost, and so, for now, is the cluster-wide bound.
    }
  }

  /** Node `node` serves `session`'s watches now: end the ones here (WATCH_MOVED). */
  claimed(session: string, node: string): void {
    if (node === this.opts.self || !this.perSession.has(session)) return;
    for (const w of [...this.watchers.values()]) {
      if (w.req.session !== session) continue;
      this.traffic.moved++;
      this.fail(w, new WatchMovedError(node));
    }
  }

  stop(): void {
    this.claims?.unsubscribe();
    this.claims = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const w of this.watchers.values()) w.actor.stop();
    this.watchers.clear();
    this.perSession.clear();
    this.groups.clear();
    this.waiting.clear();
    this.replaying.clear();
    this.paused.clear();
  }

  /**
   * Starts a watch (the session's secret was checked by the caller). Returns the first
   * revision it will deliver and its group's subject, or the typed error to answer with.
   */
  add(req: WatchRequest): { revision: number; group: string } | { error: EnsembleError } {
    const tree = this.opts.tree;
    const key = `${req.session}/${req.id}`;
    const existing = this.watchers.get(key);
    if (existing) this.step(existing, { type: 'cancel' });
    const n = this.perSession.get(req.session) ?? 0;
    const max = this.opts.maxPerSession ?? 64;
    if (n >= max) return { error: new LimitExceededError('watches', max) };
    const from = req.fromRevision ?? tree.revision + 1;
    if (from <= tree.compactRevision) {
      return {
        error: new CompactedError(
          tree.compactRevision,
          `revision ${from} is compacted (at ${tree.compactRevision})`,
        ),
      };
    }
    const filter: EventFilter =
      req.key !== undefined
        ? { key: req.key }
        : req.prefix !== undefined
          ? { prefix: req.prefix }
          : { subtree: req.subtree! };
    const token = groupToken(filter, req.prevValue === true);
    const inspect = this.opts.inspect?.();
    const actor = createActor(watcherMachine, {
      input: { key, start: from, maxBehind: this.opts.maxBehind ?? 100_000 },
      ...(inspect ? { inspect } : {}),
    });
    const w: Watcher = {
      key,
      req,
      filter,
      token,
      actor,
      phase: 'waiting',
      next: from,
      told: from - 1,
      seq: 0,
      acked: 0,
      lastSent: performance.now(),
      group: null,
      failure: null,
    };
    actor.start();
    this.watchers.set(key, w);
    this.waiting.add(w);
    this.perSession.set(req.session, n + 1);
    if (n === 0) this.claim(req.session);
    this.step(w, { type: 'tree.at', revision: tree.revision });
    this.schedule();
    return { revision: from, group: this.opts.subjects.watchGroup(this.opts.self, token) };
  }

  cancel(session: string, id: string): boolean {
    const w = this.watchers.get(`${session}/${id}`);
    if (w === undefined) return false;
    this.step(w, { type: 'cancel' });
    return true;
  }

  /** The client consumed up to `seq`; with `shared`, it follows the group subject. */
  ack(session: string, id: string, seq: number, shared = false): void {
    const w = this.watchers.get(`${session}/${id}`);
    if (w === undefined) return;
    if (shared) this.step(w, { type: 'sharedReady' });
    if (seq <= w.acked || seq > w.seq) return;
    w.acked = seq;
    if (w.phase === 'paused' && w.seq - w.acked < this.window) this.step(w, { type: 'acked' });
    this.schedule();
  }

  /** The session ended: its watches end, telling the client why. */
  sessionEnded(session: string): void {
    for (const w of [...this.watchers.values()]) {
      if (w.req.session === session) this.step(w, { type: 'sessionEnded' });
    }
  }

  /** The tree advanced: deliver what the watchers are owed. */
  applied(): void {
    this.schedule();
  }

  /** The phase of a watch (tests and status). */
  phase(session: string, id: string): WatcherPhase | null {
    return this.watchers.get(`${session}/${id}`)?.phase ?? null;
  }

  // ---- the watcher actors ------------------------------------------------------------------

  /** Sends a life event to a watcher's actor and carries out the phase it lands in. */
  private step(w: Watcher, event: WatcherEvent): void {
    w.actor.send(event);
    const snap = w.actor.getSnapshot();
    const phase = phaseOf(snap.value);
    if (phase === w.phase) return;
    this.leave(w);
    w.phase = phase;
    switch (phase) {
      case 'waiting':
        this.waiting.add(w);
        break;
      case 'replaying':
        this.replaying.add(w);
        this.schedule();
        break;
      case 'paused':
        this.paused.add(w);
        break;
      case 'direct':
        this.joinGroup(w).direct.add(w);
        break;
      case 'shared': {
        const g = this.joinGroup(w);
        g.shared.add(w);
        this.sendDirect(w, EMPTY_EVENTS, this.liveNext - 1, { join: { gen: g.gen, seq: g.seq } });
        break;
      }
      case 'ended': {
        const reason = snap.context.ended;
        if (reason === 'behind') {
          this.traffic.cancelledBehind++;
          this.sendError(w, new WatchBehindError(w.next));
        } else if (reason === 'session') this.sendError(w, new SessionExpiredError(w.req.session));
        else if (reason === 'error') this.sendError(w, w.failure ?? new InternalError('watch failed'));
        this.forget(w);
        break;
      }
    }
  }

  /** Takes a watcher out of the set of the phase it leaves. */
  private leave(w: Watcher): void {
    switch (w.phase) {
      case 'waiting':
        this.waiting.delete(w);
        break;
      case 'replaying':
        this.replaying.delete(w);
        break;
      case 'paused':
        this.paused.delete(w);
        break;
      case 'direct':
      case 'shared': {
        const g = w.group!;
        w.next = this.liveNext;
        g.direct.delete(w);
        g.shared.delete(w);
        w.group = null;
        // A group lives while it has members: an empty one goes (a new one is a new generation).
        if (g.direct.size === 0 && g.shared.size === 0) this.groups.delete(g.token);
        break;
      }
    }
  }

  private joinGroup(w: Watcher): Group {
    let g = this.groups.get(w.token);
    if (g === undefined) {
      g = {
        token: w.token,
        subject: this.opts.subjects.watchGroup(this.opts.self, w.token),
        gen: this.nextGen++,
        seq: 0,
        told: this.liveNext - 1,
        lastSent: performance.now(),
        match: eventMatcher(w.filter),
        prev: w.req.prevValue === true,
        direct: new Set(),
        shared: new Set(),
      };
      this.groups.set(w.token, g);
    }
    w.group = g;
    return g;
  }

  private forget(w: Watcher): void {
    w.actor.stop();
    if (!this.watchers.delete(w.key)) return;
    const n = (this.perSession.get(w.req.session) ?? 1) - 1;
    if (n <= 0) this.perSession.delete(w.req.session);
    else this.perSession.set(w.req.session, n);
  }

  private fail(w: Watcher, err: unknown): void {
    w.failure = err instanceof EnsembleError ? err : new InternalError(String(err));
    this.step(w, { type: 'fail', code: w.failure.code });
  }

  // ---- the pump ------------------------------------------------------------------------------

  private schedule(): void {
    if (this.pumpScheduled || this.watchers.size === 0) return;
    this.pumpScheduled = true;
    setImmediate(() => this.pump());
  }

  private pump(): void {
    this.pumpScheduled = false;
    const tree = this.opts.tree;
    const deadline = performance.now() + (this.opts.sliceMs ?? 20);
    let more = false;
    // At least one read per pump, however short the slice: the pump always moves on.
    let reads = 0;
    const spent = () => reads++ > 0 && performance.now() > deadline;
    for (const w of [...this.waiting]) this.step(w, { type: 'tree.at', revision: tree.revision });
    if (this.groups.size === 0) this.liveNext = Math.max(this.liveNext, tree.revision + 1);
    while (this.liveNext <= tree.revision && this.groups.size > 0) {
      if (spent()) {
        more = true;
        break;
      }
      let batch: ReturnType<KeyTree['eventsSince']>;
      try {
        batch = tree.eventsSince(this.liveNext, undefined, { limit: this.opts.batch ?? 256 });
      } catch (err) {
        for (const g of [...this.groups.values()])
          for (const w of [...g.direct, ...g.shared]) this.fail(w, err);
        break;
      }
      for (const g of [...this.groups.values()]) this.deliver(g, batch.events, batch.next - 1);
      this.liveNext = batch.next;
    }
    for (const w of [...this.replaying]) {
      if (spent()) {
        more = true;
        break;
      }
      // Round robin: a watcher served goes to the back of the line.
      this.replaying.delete(w);
      this.replaying.add(w);
      if (this.replay(w)) more = true;
    }
    for (const w of [...this.paused]) this.step(w, { type: 'lag', behind: this.liveNext - w.next });
    if (more) this.schedule();
  }

  /** Sends one group its share of the revisions from the live cursor to `cut`. */
  private deliver(g: Group, all: readonly TreeEvent[], cut: number): void {
    const events = all.filter((e) => g.match(e.key));
    if (events.length === 0) return;
    const window = this.window;
    for (const w of [...g.direct]) {
      // Leaving the group now, it replays these revisions when it acknowledges (leave() sets
      // its next to the live cursor, not yet moved past them).
      if (w.seq - w.acked >= window) this.step(w, { type: 'windowFull' });
    }
    for (const [bytes, last, n] of this.messages(events, cut, g.prev)) {
      this.traffic.events += n * (g.direct.size + g.shared.size);
      if (g.shared.size > 0) this.sendGroup(g, bytes, last);
      for (const w of g.direct) this.sendDirect(w, bytes, last);
    }
  }

  /** Replays one watcher's history toward the live cursor; true if it has more to send now. */
  private replay(w: Watcher): boolean {
    const tree = this.opts.tree;
    for (let reads = 0; reads < 16; reads++) {
      if (w.next === this.liveNext) {
        this.step(w, { type: 'caughtUp' });
        return false;
      }
      if (w.next > this.liveNext) return false; // starts past the live cursor: wait for it
      if (w.seq - w.acked >= this.window) {
        this.step(w, { type: 'windowFull' });
        return false;
      }
      let batch: ReturnType<KeyTree['eventsSince']>;
      try {
        batch = tree.eventsSince(w.next, w.filter, { limit: this.opts.batch ?? 256 });
      } catch (err) {
        this.fail(w, err);
        return false;
      }
      // Never past the live cursor: from there on the group delivers.
      const end = Math.min(batch.next, this.liveNext);
      const events = batch.events.filter((e) => e.revision < end);
      for (const [bytes, last, n] of this.messages(events, end - 1, w.req.prevValue === true)) {
        this.traffic.events += n;
        this.sendDirect(w, bytes, last);
      }
      w.next = end;
    }
    return true;
  }

  /** Events as encoded message bodies under the size bound, with the revision each completes. */
  private *messages(
    events: readonly TreeEvent[],
    cut: number,
    prev: boolean,
  ): Generator<[Uint8Array, number, number]> {
    for (const [chunk, last] of chunks(events, cut, this.opts.maxMessageBytes))
      yield [encodeCbor(chunk.map((e) => wireEvent(e, prev))), last, chunk.length];
  }

  private heartbeat(): void {
    const now = performance.now();
    const ms = this.progressMs;
    for (const g of this.groups.values()) {
      if (g.shared.size > 0 && now - g.lastSent >= ms)
        this.sendGroup(g, EMPTY_EVENTS, this.liveNext - 1, true);
      for (const w of g.direct) {
        if (now - w.lastSent >= ms) this.sendDirect(w, EMPTY_EVENTS, this.liveNext - 1, { progress: true });
      }
    }
    for (const set of [this.replaying, this.waiting]) {
      for (const w of set) {
        if (now - w.lastSent >= ms) this.sendDirect(w, EMPTY_EVENTS, w.next - 1, { progress: true });
      }
    }
    this.schedule();
  }

  // ---- sending ----------------------------------------------------------------------------

  private sendDirect(
    w: Watcher,
    events: Uint8Array,
    revision: number,
    extra: Pick<WatchMessage, 'progress' | 'join'> = {},
  ): void {
    w.seq++;
    w.lastSent = performance.now();
    this.traffic.messages++;
    const from = w.told + 1;
    if (revision > w.told) w.told = revision;
    this.publish(w.req.inbox, { id: w.req.id, seq: w.seq, revision, from, ...extra }, events);
  }

  private sendGroup(g: Group, events: Uint8Array, revision: number, progress = false): void {
    g.seq++;
    g.lastSent = performance.now();
    this.traffic.groupMessages++;
    const from = g.told + 1;
    if (revision > g.told) g.told = revision;
    const head: Omit<WatchGroupMessage, 'events'> = {
      group: g.token,
      gen: g.gen,
      seq: g.seq,
      revision,
      from,
      ...(progress ? { progress: true } : {}),
    };
    this.publish(g.subject, head, events);
  }

  private sendError(w: Watcher, error: EnsembleError): void {
    w.seq++;
    this.publish(
      w.req.inbox,
      { id: w.req.id, seq: w.seq, revision: w.next - 1, error: error.toWire() },
      EMPTY_EVENTS,
    );
  }

  private publish(subject: string, head: Record<string, unknown>, events: Uint8Array): void {
    try {
      this.opts.nc.publish(
        subject,
        encodeEnvelopeSpliced(head, 'events', events, { cluster: this.opts.subjects.cluster }),
      );
    } catch {
      // Reconnecting: the client sees the gap or the silence and resumes.
    }
  }
}

/**
 * Splits events (whole revisions, in order) into messages of at most `maxBytes` of keys and
 * values (a revision larger than that travels alone). Each comes with the revision it
 * completes: its last event's, and `cut` for the last one.
 */
function* chunks(
  events: readonly TreeEvent[],
  cut: number,
  maxBytes = 1 << 20,
): Generator<[TreeEvent[], number]> {
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    const size = e.key.length + (e.kv?.value.length ?? 0) + (e.prevValue?.length ?? 0) + 32;
    const newRevision = i > start && e.revision !== events[i - 1]!.revision;
    if (newRevision && bytes + size > maxBytes) {
      yield [events.slice(start, i), events[i - 1]!.revision];
      start = i;
      bytes = 0;
    }
    bytes += size;
  }
  if (events.length > start) yield [events.slice(start), cut];
}

/** A group's name: a digest of the target and the options that shape its events. */
function groupToken(filter: EventFilter, prev: boolean): string {
  const target =
    'key' in filter ? ['k', filter.key] : 'prefix' in filter ? ['p', filter.prefix] : ['s', filter.subtree];
  return createHash('sha256')
    .update(JSON.stringify([...target, prev]))
    .digest('base64url')
    .slice(0, 22);
}

function wireEvent(e: TreeEvent, prev: boolean): WatchEvent {
  const out: Record<string, unknown> = { type: e.type, key: e.key, revision: e.revision };
  if (e.kv !== null) {
    out.value = e.kv.value;
    out.version = e.kv.version;
    out.createRevision = e.kv.createRevision;
    out.modRevision = e.kv.modRevision;
  }
  if (prev && e.prevValue !== null) out.prevValue = e.prevValue;
  return out as unknown as WatchEvent;
}
