/**
 * The node's inspection stream (protocol/inspection.ts has the format): XState's inspection
 * events of every actor of the node, sanitized, rate-limited and batched onto
 * `P.inspect.<node>`, with the node's status in every batch.
 *
 * Off by default, and then free: the inspector subscribes to the node's actor system
 * (`system.inspect`) only while inspection is on, so XState builds no inspection event while it
 * is off (watcher actors, each a system of its own, are inspected when they start while
 * inspection is on). While on, an event an actor receives costs a token of a bucket refilled at
 * `rate` per second; without a token it is counted as dropped. Snapshots are coalesced: each
 * actor that stepped since the last batch has its current snapshot, with the last event that
 * led there, sent once in the next batch, so what an inspector shows is never stale, only less
 * detailed, and a busy node reads and sanitizes a context a few times a second, not per step.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { AnyActorRef, InspectionEvent } from 'xstate';
import { currentConfig, type RaftReader } from '../machines/raft/index.ts';
import {
  BadRequestError,
  INSPECT_BATCH_MS,
  INSPECT_DEFAULT_RATE,
  INSPECT_MAX_LEASE_MS,
  INSPECT_VERSION,
  type InspectBatch,
  type InspectControl,
  type InspectControlReply,
  type InspectEvent,
  type InspectStatus,
  type Subjects,
  sanitize,
} from '../protocol/index.ts';

/** The `_version` field Stately's tooling expects on every event. */
const STATELY_VERSION = '1.0.0';

/** A machine's config as JSON, functions as `{ type: name }` (what Stately's tools read), its
 * initial context sanitized. */
export function definitionOf(logic: unknown): string | undefined {
  const config = (logic as { config?: unknown } | null)?.config;
  if (typeof config !== 'object' || config === null) return undefined;
  // Objects on the path from the root: a cycle is cut there; an object merely shared by two
  // transitions (a common action list) is written out at both.
  const path = new Set<object>();
  const plain = (k: string, x: unknown): unknown => {
    // The initial context may hold anything a context holds: sanitized like one.
    if (k === 'context' && typeof x === 'object' && x !== null) return sanitize(x);
    if (typeof x === 'function') return { type: x.name || 'anonymous' };
    if (typeof x !== 'object' || x === null) return x;
    if (path.has(x)) return '[circular]';
    path.add(x);
    try {
      if (Array.isArray(x)) return x.map((v, i) => plain(String(i), v));
      const out: Record<string, unknown> = {};
      for (const [key, v] of Object.entries(x)) out[key] = plain(key, v);
      return out;
    } finally {
      path.delete(x);
    }
  };
  try {
    return JSON.stringify(plain('', config));
  } catch {
    return undefined;
  }
}

/** What the inspector needs of an XState actor system. */
export interface InspectableSystem {
  inspect(observer: (event: InspectionEvent) => void): { unsubscribe(): void };
}

export interface NodeInspectorOptions {
  readonly nc: Pick<NatsConnection, 'publish'>;
  readonly subjects: Subjects;
  readonly cluster: string;
  readonly self: string;
  /** The node's status, read at every batch. */
  readonly status: () => InspectStatus;
  /** The node's root actor, whose tree of children a resync walks. */
  readonly root: () => AnyActorRef | undefined;
  /** On from the start, until told otherwise (`--inspect`). */
  readonly on?: boolean;
  readonly rate?: number;
  readonly batchMs?: number;
  readonly now?: () => number;
  readonly log?: (line: string) => void;
}

/** Counters, for metrics and tests. */
export interface InspectorStats {
  sent: number;
  dropped: number;
  batches: number;
}

export class NodeInspector {
  private on = false;
  private until: number | null = null;
  private rate: number;
  private tokens: number;
  private refilledAt: number;
  private events: InspectEvent[] = [];
  private droppedSince = 0;
  /** Actors that stepped since the last batch, with the last event: their current snapshot goes
   * in the next batch. */
  private readonly stale = new Map<string, { ref: AnyActorRef; event: unknown }>();
  private resyncWanted = false;
  private timer: ReturnType<typeof setInterval> | null = null;
  private system: InspectableSystem | null = null;
  private subscription: { unsubscribe(): void } | null = null;
  private seq = 0;
  private readonly definitions = new WeakMap<object, string | undefined>();
  private readonly now: () => number;
  readonly stats: InspectorStats = { sent: 0, dropped: 0, batches: 0 };

  constructor(private readonly opts: NodeInspectorOptions) {
    this.now = opts.now ?? Date.now;
    this.rate = opts.rate ?? INSPECT_DEFAULT_RATE;
    this.tokens = this.rate;
    this.refilledAt = this.now();
    if (opts.on) this.switchOn(null, true);
  }

  /** The observer for `createActor(…, { inspect })`: does nothing while inspection is off. */
  readonly observe = (ev: InspectionEvent): void => {
    if (!this.on) return;
    try {
      this.take(ev);
    } catch {
      // A snapshot that cannot be read must not reach the actor that produced it.
      this.droppedSince++;
    }
  };

  get isOn(): boolean {
    return this.on;
  }

  get subject(): string {
    return this.opts.subjects.inspect(this.opts.self);
  }

  /** Serves the `inspect` admin op: validates the request (BadRequestError) and applies it. */
  control(body: unknown): InspectControlReply {
    const req = parseControl(body);
    if (req.rate !== undefined) this.rate = req.rate;
    if (req.on) {
      const until = this.on && this.until === null ? null : this.now() + (req.leaseMs ?? 10_000);
      this.switchOn(until, req.resync ?? false);
    } else this.switchOff();
    return { node: this.opts.self, on: this.on, until: this.until, rate: this.rate, subject: this.subject };
  }

  /**
   * The actor system to observe: subscribed to (`system.inspect`) while inspection is on, so
   * XState builds no inspection event at all while it is off.
   */
  attach(system: InspectableSystem): void {
    this.system = system;
    if (this.on) this.subscription ??= system.inspect(this.observe);
  }

  /** Stops the batch timer (the node is stopping). */
  close(): void {
    this.switchOff();
  }

  private switchOn(until: number | null, resync: boolean): void {
    this.until = until;
    if (resync) this.resyncWanted = true;
    if (this.on) return;
    this.on = true;
    this.resyncWanted = true;
    this.tokens = this.rate;
    this.refilledAt = this.now();
    this.opts.log?.(`inspection on${until === null ? '' : ` for ${until - this.now()} ms`}`);
    if (this.system) this.subscription ??= this.system.inspect(this.observe);
    this.timer = setInterval(() => this.flush(), this.opts.batchMs ?? INSPECT_BATCH_MS);
    this.timer.unref?.();
  }

  private switchOff(): void {
    if (!this.on) return;
    this.on = false;
    this.until = null;
    this.subscription?.unsubscribe();
    this.subscription = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.events = [];
    this.stale.clear();
    this.droppedSince = 0;
    this.opts.log?.('inspection off');
  }

  private take(ev: InspectionEvent): void {
    if (ev.type === '@xstate.actor') {
      // Rare and needed to draw anything: never dropped.
      this.events.push(this.actorEvent(ev.actorRef as AnyActorRef));
      this.stats.sent++;
      return;
    }
    if (ev.type === '@xstate.snapshot') {
      // Coalesced: the actor's state as it is at the next batch, once, whatever the number of
      // steps before it (reading and sanitizing a context per step cost a third of a node's
      // throughput).
      const ref = ev.actorRef as AnyActorRef;
      this.stale.set(ref.sessionId, { ref, event: ev.event });
      return;
    }
    if (ev.type !== '@xstate.event') return;
    const t = this.now();
    this.tokens = Math.min(this.rate, this.tokens + ((t - this.refilledAt) * this.rate) / 1000);
    this.refilledAt = t;
    const sessionId = ev.actorRef.sessionId;
    if (this.tokens < 1) {
      this.droppedSince++;
      this.stats.dropped++;
      return;
    }
    this.tokens -= 1;
    this.stats.sent++;
    this.events.push({
      type: '@xstate.event',
      sessionId: this.id(sessionId),
      sourceId: ev.sourceRef ? this.id(ev.sourceRef.sessionId) : undefined,
      rootId: this.id(ev.rootId),
      event: sanitize(ev.event) as InspectEvent['event'],
      createdAt: String(t),
      id: null,
      _version: STATELY_VERSION,
    });
  }

  private id(sessionId: string): string {
    return `${this.opts.self}:${sessionId}`;
  }

  private actorEvent(ref: AnyActorRef): InspectEvent {
    const logic = (ref as unknown as { logic: object }).logic;
    if (!this.definitions.has(logic)) this.definitions.set(logic, definitionOf(logic));
    const parent = (ref as { _parent?: AnyActorRef })._parent;
    return {
      type: '@xstate.actor',
      // A root actor's id is its session id: Stately's tools name it by its machine's id.
      name:
        ref.id === ref.sessionId ? ((logic as { config?: { id?: string } }).config?.id ?? ref.id) : ref.id,
      sessionId: this.id(ref.sessionId),
      parentId: parent ? this.id(parent.sessionId) : undefined,
      rootId: this.id(this.rootId() ?? ref.sessionId),
      definition: this.definitions.get(logic),
      snapshot: plainSnapshot(ref.getSnapshot()),
      createdAt: String(this.now()),
      id: null,
      _version: STATELY_VERSION,
    };
  }

  private snapshotEvent(
    ref: AnyActorRef,
    snapshot: unknown,
    event: unknown,
    rootId: string,
    t: number,
  ): InspectEvent {
    return {
      type: '@xstate.snapshot',
      sessionId: this.id(ref.sessionId),
      rootId: this.id(rootId),
      snapshot: plainSnapshot(snapshot),
      event: sanitize(event) as InspectEvent['event'],
      createdAt: String(t),
      id: null,
      _version: STATELY_VERSION,
    };
  }

  private rootId(): string | undefined {
    return this.opts.root()?.sessionId;
  }

  /** Every live actor of the node: the root and its children, depth first. */
  private liveActors(): AnyActorRef[] {
    const out: AnyActorRef[] = [];
    const walk = (ref: AnyActorRef) => {
      out.push(ref);
      const children = (ref.getSnapshot() as { children?: Record<string, AnyActorRef> }).children ?? {};
      for (const c of Object.values(children)) if (c) walk(c);
    };
    const root = this.opts.root();
    if (root) walk(root);
    return out;
  }

  /** Publishes one batch (the timer calls it; tests may too). */
  flush(): void {
    if (!this.on) return;
    const t = this.now();
    if (this.until !== null && t >= this.until) {
      this.switchOff();
      return;
    }
    let events = this.events;
    this.events = [];
    if (this.resyncWanted) {
      this.resyncWanted = false;
      this.stale.clear();
      // Actors first, so a fresh inspector knows every machine before its events.
      events = [...this.liveActors().map((r) => this.actorEvent(r)), ...events];
    }
    for (const { ref, event } of this.stale.values()) {
      events.push(this.snapshotEvent(ref, ref.getSnapshot(), event, this.rootId() ?? ref.sessionId, t));
      this.stats.sent++;
    }
    this.stale.clear();
    let status: InspectStatus;
    try {
      status = this.opts.status();
    } catch {
      return; // the node is stopping
    }
    const batch: InspectBatch = {
      v: INSPECT_VERSION,
      cluster: this.opts.cluster,
      node: this.opts.self,
      seq: ++this.seq,
      at: t,
      status,
      events,
      dropped: this.droppedSince,
    };
    this.droppedSince = 0;
    this.stats.batches++;
    try {
      this.opts.nc.publish(this.subject, JSON.stringify(batch));
    } catch {
      // NATS closed or reconnecting: the next batch carries the state again.
    }
  }
}

/** `{ status, value, context }` of a snapshot, the context sanitized. */
function plainSnapshot(s: unknown): InspectEvent['snapshot'] {
  const snap = s as { status?: string; value?: unknown; context?: unknown } | undefined;
  return {
    status: snap?.status ?? 'active',
    value: sanitize(snap?.value),
    context: sanitize(snap?.context),
  };
}

/** Validates an `inspect` request body. */
export function parseControl(body: unknown): InspectControl {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new BadRequestError('inspect takes { on, leaseMs?, rate?, resync? }');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b))
    if (!['on', 'leaseMs', 'rate', 'resync'].includes(k))
      throw new BadRequestError(`inspect: unknown field ${k}`);
  if (typeof b.on !== 'boolean') throw new BadRequestError('inspect: on must be true or false');
  const whole = (k: string, lo: number, hi: number) => {
    const x = b[k];
    if (x === undefined) return undefined;
    if (!Number.isInteger(x) || (x as number) < lo || (x as number) > hi)
      throw new BadRequestError(`inspect: ${k} must be a whole number from ${lo} to ${hi}`);
    return x as number;
  };
  const leaseMs = whole('leaseMs', 100, INSPECT_MAX_LEASE_MS);
  const rate = whole('rate', 1, 100_000);
  if (b.resync !== undefined && typeof b.resync !== 'boolean')
    throw new BadRequestError('inspect: resync must be true or false');
  return {
    on: b.on,
    ...(leaseMs !== undefined ? { leaseMs } : {}),
    ...(rate !== undefined ? { rate } : {}),
    ...(b.resync !== undefined ? { resync: b.resync as boolean } : {}),
  };
}

/** A node's status for its inspection batches, read from its running Raft machine. */
export function inspectStatus(machine: RaftReader, sessions: number): InspectStatus {
  const c = machine.context();
  const config = currentConfig(c);
  const progress: Record<string, { match: number; next: number }> = {};
  const role = machine.role();
  if (role === 'leader')
    for (const [peer, p] of Object.entries(c.progress)) progress[peer] = { match: p.match, next: p.next };
  return {
    role,
    term: c.term,
    leader: c.leader,
    vote: c.vote,
    commit: c.commit,
    applied: c.applied,
    lastIndex: machine.lastIndex(),
    voters: [...config.voters],
    learners: [...config.learners],
    progress,
    sessions,
    pid: process.pid,
    startedAt: STARTED_AT,
  };
}

const STARTED_AT = Date.now() - Math.round(process.uptime() * 1000);
