/**
 * The inspector's model of a cluster, built from what nodes publish on `P.inspect.<node>`
 * (`InspectBatch`, protocol/inspection.ts) and from Stately inspection events that arrive without
 * a batch (an application's `createWebSocketInspector`). Pure: no IO, no clock, no DOM; every call
 * says what time it is (`now`, ms since the epoch, the receiver's clock). The same code runs in
 * the `ensemble inspect` server (Node) and in the page (bundled for the browser).
 *
 * What it keeps:
 * - nodes: the last batch's status of each, when it arrived, and whether the node is dark (no
 *   batch for more than `darkAfterMs`). A node whose `seq` went back or whose pid changed was
 *   restarted: its actors are forgotten (the new process announces its own).
 * - the leader: among nodes that are not dark and claim to lead, the one with the highest term.
 *   A dark node's last word does not count: a killed leader still "claims" to lead.
 * - actors: by session id, with their machine definition (parsed once per distinct text), state
 *   value, status and sanitized context. Bounded per origin (a node, or `clients`).
 * - a timeline of notable things, newest last, at most `timelineMax` entries: role, term and
 *   leader changes, nodes going dark and coming back, restarts, sessions opened and expired,
 *   messages between nodes (election messages each; routine ones sampled: one entry per sender
 *   and receiver per `messageSampleMs`, counting each type), and events dropped by a node's rate
 *   limit (also at most one entry per node per `messageSampleMs`).
 */
import type { InspectBatch, InspectEvent, InspectStatus } from '../../protocol/index.ts';

/** A node with no batch for longer than this is dark. */
export const DARK_AFTER_MS = 1500;
/** Timeline entries kept. */
export const TIMELINE_MAX = 500;
/** At most one timeline entry per (sender, receiver) per this long, for routine messages. */
export const MESSAGE_SAMPLE_MS = 5000;
/** Actors kept per origin (a node, or the clients); ended ones go first. */
export const ACTORS_PER_ORIGIN = 300;
/** The origin of actors whose events came without a batch (applications over WebSocket). */
export const CLIENTS = 'clients';

export type TimelineKind =
  | 'role'
  | 'term'
  | 'leader'
  | 'dark'
  | 'back'
  | 'restart'
  | 'session'
  | 'message'
  | 'dropped'
  | 'actor';

export interface TimelineEntry {
  /** Increases by one per entry, across the model's life (a page uses it to append only news). */
  readonly id: number;
  readonly at: number;
  readonly kind: TimelineKind;
  /** The node it is about, or `clients`, or null (the cluster: leader changes). */
  readonly node: string | null;
  readonly text: string;
  /** Messages: sender and receiver. */
  readonly from?: string;
  readonly to?: string;
  /** Messages and drops: how many this entry stands for. */
  readonly count?: number;
}

export interface NodeView {
  readonly id: string;
  /** When its last batch arrived (receiver's clock), or null before the first. */
  readonly lastBatchAt: number | null;
  readonly seq: number;
  readonly dark: boolean;
  /** Its last status, or null before the first batch. */
  readonly status: InspectStatus | null;
  /** Events it dropped (rate limit) since the inspector started. */
  readonly dropped: number;
  /** Inspection events received from it. */
  readonly events: number;
  /** Messages it received from each peer: how many, the last type and when. */
  readonly heard: Readonly<
    Record<string, { readonly count: number; readonly type: string; readonly at: number }>
  >;
}

export interface ActorView {
  readonly sessionId: string;
  /** A node id, or `clients`. */
  readonly origin: string;
  /** Its name: the actor's id (`raft`, `node`, `sessions`) or its machine's id. */
  readonly name: string;
  readonly parentId: string | null;
  readonly rootId: string | null;
  /** The machine config, parsed from the event's `definition`, or null (not a machine). */
  readonly definition: unknown;
  /** The definition's text: equal texts are the same machine (a page lays each out once). */
  readonly definitionText: string | null;
  readonly value: unknown;
  /** `active`, `done`, `error` or `stopped`. */
  readonly status: string;
  readonly context: unknown;
  readonly lastEvent: string | null;
  readonly events: number;
  readonly updatedAt: number;
}

/** The model as plain data (JSON): what the server hands a page that just connected. */
export interface ModelDump {
  readonly v: 1;
  readonly nodes: readonly NodeView[];
  readonly actors: readonly ActorView[];
  readonly timeline: readonly TimelineEntry[];
  readonly nextEntry: number;
  /** Sampled messages and drops not yet in the timeline (a replica samples as the original). */
  readonly samples: readonly {
    readonly from: string;
    readonly to: string;
    readonly at: number;
    readonly pending: readonly (readonly [string, number])[];
  }[];
  readonly drops: readonly { readonly node: string; readonly at: number; readonly pending: number }[];
}

export interface ModelOptions {
  readonly darkAfterMs?: number;
  readonly timelineMax?: number;
  readonly messageSampleMs?: number;
  readonly actorsPerOrigin?: number;
}

/** Leader-election traffic: every one is a timeline entry (still bounded by the timeline). */
const ELECTION_MESSAGES = new Set([
  'raft.requestVote',
  'raft.voteResult',
  'raft.timeoutNow',
  'raft.installSnapshot',
]);

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type NodeState = Mutable<NodeView> & { heard: Record<string, { count: number; type: string; at: number }> };
type ActorState = Mutable<ActorView>;
/** The messages of one sender → receiver pair since its last timeline entry, by type. */
interface Sample {
  readonly from: string;
  readonly to: string;
  at: number;
  readonly pending: Map<string, number>;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isNodeId = (v: unknown): v is string => typeof v === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(v);

/**
 * A batch as received (parsed JSON of unknown shape): returned when it has the fields the model
 * reads, else null. Extra fields are kept; missing optional ones get neutral values.
 */
export function parseBatch(data: unknown): InspectBatch | null {
  if (!isObject(data) || data.v !== 1 || !isNodeId(data.node)) return null;
  if (typeof data.seq !== 'number' || !isObject(data.status)) return null;
  const s = data.status;
  if (typeof s.role !== 'string' || typeof s.term !== 'number') return null;
  const events = Array.isArray(data.events) ? data.events.filter(isInspectEvent) : [];
  return {
    ...(data as unknown as InspectBatch),
    at: typeof data.at === 'number' ? data.at : 0,
    dropped: typeof data.dropped === 'number' ? data.dropped : 0,
    events,
  };
}

/** A Stately inspection event the model understands (`@xstate.actor`, `.event`, `.snapshot`). */
export function isInspectEvent(e: unknown): e is InspectEvent {
  return (
    isObject(e) &&
    (e.type === '@xstate.actor' || e.type === '@xstate.event' || e.type === '@xstate.snapshot') &&
    typeof e.sessionId === 'string'
  );
}

const SECRET_KEY = /secret|password|passwd|^pass$|token|credential|authorization/i;
const MAX_DEPTH = 6;
const MAX_ITEMS = 8;
const MAX_KEYS = 40;
const MAX_STRING = 200;

/**
 * A value made safe and small to show: secrets redacted by key name, byte buffers as their
 * length, strings cut to 200 characters, arrays to 8 items (then `"… N more"`), objects to 40
 * keys, depth to 6. Nodes sanitize what they send already; applications' events are not.
 */
export function sanitize(v: unknown, depth = 0): unknown {
  if (v === null || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (typeof v === 'string') return v.length > MAX_STRING ? `${v.slice(0, MAX_STRING)}…` : v;
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v !== 'object') return v === undefined ? null : `<${typeof v}>`;
  if (depth >= MAX_DEPTH) return '…';
  if (Array.isArray(v)) {
    const out = v.slice(0, MAX_ITEMS).map((x) => sanitize(x, depth + 1));
    if (v.length > MAX_ITEMS) out.push(`… ${v.length - MAX_ITEMS} more`);
    return out;
  }
  if (ArrayBuffer.isView(v)) return `<${v.byteLength} bytes>`;
  const o = v as Record<string, unknown>;
  if (o.type === 'Buffer' && Array.isArray(o.data)) return `<${o.data.length} bytes>`;
  const out: Record<string, unknown> = {};
  const keys = Object.keys(o);
  for (const k of keys.slice(0, MAX_KEYS))
    out[k] = SECRET_KEY.test(k) && o[k] !== null ? '<redacted>' : sanitize(o[k], depth + 1);
  if (keys.length > MAX_KEYS) out['…'] = `${keys.length - MAX_KEYS} more keys`;
  return out;
}

/** A state value as text: `follower`, `candidate.preVote`, `a.x, b.y` for parallel regions. */
export function valueText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (!isObject(value)) return value === undefined || value === null ? '' : String(value);
  return Object.entries(value)
    .map(([k, v]) => {
      const inner = valueText(v);
      return inner === '' ? k : `${k}.${inner}`;
    })
    .join(', ');
}

export class ClusterModel {
  private readonly darkAfterMs: number;
  private readonly timelineMax: number;
  private readonly messageSampleMs: number;
  private readonly actorsPerOrigin: number;
  private readonly nodeMap = new Map<string, NodeState>();
  private readonly actorMap = new Map<string, ActorState>();
  private readonly entries: TimelineEntry[] = [];
  private nextEntry = 1;
  private currentLeader: { id: string; term: number } | null = null;
  /** Messages not yet shown, by `from>to`. */
  private readonly sampled = new Map<string, Sample>();
  /** Drops not yet shown, by node. */
  private readonly pendingDrops = new Map<string, { at: number; pending: number }>();
  private readonly definitions = new Map<string, unknown>();
  /** Bumped on every change: a view redraws when it differs from what it drew. */
  version = 0;
  /** The latest time an input carried (what a view measures ages against). */
  now = 0;
  /** Called with each new timeline entry (the CLI prints the notable ones). */
  onEntry: ((e: TimelineEntry) => void) | null = null;

  constructor(o: ModelOptions = {}) {
    this.darkAfterMs = o.darkAfterMs ?? DARK_AFTER_MS;
    this.timelineMax = o.timelineMax ?? TIMELINE_MAX;
    this.messageSampleMs = o.messageSampleMs ?? MESSAGE_SAMPLE_MS;
    this.actorsPerOrigin = o.actorsPerOrigin ?? ACTORS_PER_ORIGIN;
    if (!(this.timelineMax >= 1)) throw new TypeError('timelineMax must be at least 1');
  }

  /** Nodes by id. */
  get nodes(): readonly NodeView[] {
    return [...this.nodeMap.values()].sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }));
  }

  node(id: string): NodeView | undefined {
    return this.nodeMap.get(id);
  }

  /** The leader: the highest term among nodes not dark that say they lead (ties: lowest id). */
  leader(): { readonly id: string; readonly term: number } | null {
    return this.currentLeader;
  }

  /** Actors, all or of one origin (a node id, or `clients`), in the order they appeared. */
  actors(origin?: string): readonly ActorView[] {
    const all = [...this.actorMap.values()];
    return origin === undefined ? all : all.filter((a) => a.origin === origin);
  }

  actor(sessionId: string): ActorView | undefined {
    return this.actorMap.get(sessionId);
  }

  /** The timeline, oldest first. */
  timeline(): readonly TimelineEntry[] {
    return this.entries;
  }

  /** One batch of node `batch.node`, received at `now`. */
  applyBatch(batch: InspectBatch, now: number): void {
    this.now = Math.max(this.now, now);
    let n = this.nodeMap.get(batch.node);
    const s = batch.status;
    if (n === undefined) {
      n = {
        id: batch.node,
        lastBatchAt: null,
        seq: 0,
        dark: false,
        status: null,
        dropped: 0,
        events: 0,
        heard: {},
      };
      this.nodeMap.set(batch.node, n);
      this.add(now, 'back', batch.node, `${batch.node} appeared (${s.role}, term ${s.term})`);
    } else {
      const prev = n.status;
      const restarted = prev !== null && (batch.seq <= n.seq || (s.pid !== prev.pid && s.pid !== undefined));
      if (restarted) {
        this.add(now, 'restart', n.id, `${n.id} restarted (pid ${s.pid})`);
        for (const a of [...this.actorMap.values()]) if (a.origin === n.id) this.actorMap.delete(a.sessionId);
      }
      if (n.dark) this.add(now, 'back', n.id, `${n.id} is back (${s.role}, term ${s.term})`);
      if (prev !== null && prev.role !== s.role)
        this.add(now, 'role', n.id, `${n.id}: ${prev.role} → ${s.role} (term ${s.term})`);
      else if (prev !== null && prev.term !== s.term)
        this.add(now, 'term', n.id, `${n.id}: term ${prev.term} → ${s.term} (${s.role})`);
      if (prev !== null && prev.sessions !== s.sessions && s.leader === n.id)
        this.add(
          now,
          'session',
          n.id,
          `sessions ${prev.sessions} → ${s.sessions}${s.sessions > prev.sessions ? ' (opened)' : ' (closed or expired)'}`,
        );
    }
    n.status = s;
    n.seq = batch.seq;
    n.lastBatchAt = now;
    n.dark = false;
    if (batch.dropped > 0) {
      n.dropped += batch.dropped;
      this.noteDrops(n.id, batch.dropped, now);
    }
    for (const e of batch.events) this.applyEvent(e, n.id, now);
    this.electLeader(now);
    this.version++;
  }

  /**
   * One Stately inspection event from `origin` (a node id when it came in a batch, `clients` when
   * from an application), received at `now`. Events of another shape are ignored.
   */
  applyEvent(e: unknown, origin: string, now: number): void {
    if (!isInspectEvent(e)) return;
    this.now = Math.max(this.now, now);
    const node = this.nodeMap.get(origin);
    if (node) node.events++;
    if (e.type === '@xstate.actor') this.onActor(e, origin, now);
    else if (e.type === '@xstate.snapshot') this.onSnapshot(e, origin, now);
    else this.onEvent(e, origin, now);
    this.version++;
  }

  /** The passing of time: nodes go dark, sampled messages and drops get their entries. */
  tick(now: number): void {
    this.now = Math.max(this.now, now);
    let changed = false;
    for (const n of this.nodeMap.values()) {
      if (!n.dark && n.lastBatchAt !== null && now - n.lastBatchAt > this.darkAfterMs) {
        n.dark = true;
        changed = true;
        this.add(now, 'dark', n.id, `${n.id} went dark (no batch for ${Math.round(now - n.lastBatchAt)} ms)`);
      }
    }
    for (const s of this.sampled.values())
      if (s.pending.size > 0 && now - s.at >= this.messageSampleMs) {
        this.flushMessages(s, now);
        changed = true;
      }
    for (const [id, d] of this.pendingDrops)
      if (d.pending > 0 && now - d.at >= this.messageSampleMs) {
        this.add(now, 'dropped', id, `${id} dropped ${d.pending} events (rate limit)`, { count: d.pending });
        d.pending = 0;
        d.at = now;
        changed = true;
      }
    if (changed) {
      this.electLeader(now);
      this.version++;
    }
  }

  /** The model as JSON-safe data. */
  dump(): ModelDump {
    return {
      v: 1,
      nodes: this.nodes.map((n) => ({ ...n, heard: { ...n.heard } })),
      actors: [...this.actorMap.values()].map((a) => ({ ...a })),
      timeline: [...this.entries],
      nextEntry: this.nextEntry,
      samples: [...this.sampled.values()].map((x) => ({
        from: x.from,
        to: x.to,
        at: x.at,
        pending: [...x.pending],
      })),
      drops: [...this.pendingDrops].map(([node, d]) => ({ node, at: d.at, pending: d.pending })),
    };
  }

  /** Replaces the model's content with a dump's (`dump` of another model). */
  load(d: ModelDump): void {
    if (!isObject(d) || d.v !== 1) throw new TypeError('not a model dump');
    this.nodeMap.clear();
    this.actorMap.clear();
    this.sampled.clear();
    this.pendingDrops.clear();
    for (const n of d.nodes) this.nodeMap.set(n.id, { ...n, heard: { ...n.heard } });
    for (const a of d.actors) {
      const definition = a.definitionText === null ? null : this.parseDefinition(a.definitionText);
      this.actorMap.set(a.sessionId, { ...a, definition });
    }
    for (const x of d.samples ?? [])
      this.sampled.set(`${x.from}>${x.to}`, {
        from: x.from,
        to: x.to,
        at: x.at,
        pending: new Map(x.pending),
      });
    for (const x of d.drops ?? []) this.pendingDrops.set(x.node, { at: x.at, pending: x.pending });
    this.entries.splice(0, this.entries.length, ...d.timeline.slice(-this.timelineMax));
    this.nextEntry = d.nextEntry;
    this.now = Math.max(0, ...d.nodes.map((n) => n.lastBatchAt ?? 0), ...d.timeline.map((e) => e.at));
    this.currentLeader = this.computeLeader();
    this.version++;
  }

  private onActor(e: InspectEvent, origin: string, now: number): void {
    const text = typeof e.definition === 'string' ? e.definition : null;
    const definition = text === null ? null : this.parseDefinition(text);
    const configId = isObject(definition) && typeof definition.id === 'string' ? definition.id : null;
    const name = typeof e.name === 'string' && e.name !== '' ? e.name : (configId ?? e.sessionId);
    const known = this.actorMap.has(e.sessionId);
    const a: ActorState = {
      sessionId: e.sessionId,
      origin,
      name,
      parentId: e.parentId ?? null,
      rootId: e.rootId ?? null,
      definition,
      definitionText: text,
      value: sanitize(e.snapshot?.value),
      status: e.snapshot?.status ?? 'active',
      context: sanitize(e.snapshot?.context),
      lastEvent: null,
      events: 0,
      updatedAt: now,
    };
    const old = this.actorMap.get(e.sessionId);
    if (old) {
      a.lastEvent = old.lastEvent;
      a.events = old.events;
      this.actorMap.delete(e.sessionId); // re-inserted last: order of appearance, newest last
    }
    this.actorMap.set(e.sessionId, a);
    if (!known && origin === CLIENTS)
      this.add(now, 'actor', CLIENTS, `client actor ${name} (${e.sessionId}) started`);
    if (isSessionMachine(a)) this.sessionValue(a, undefined, now);
    this.bound(origin);
  }

  private onSnapshot(e: InspectEvent, origin: string, now: number): void {
    let a = this.actorMap.get(e.sessionId);
    if (a === undefined) {
      // A snapshot of an actor announced before the inspector listened: shown without a chart
      // until a resync brings its definition.
      a = {
        sessionId: e.sessionId,
        origin,
        name: e.sessionId,
        parentId: e.parentId ?? null,
        rootId: e.rootId ?? null,
        definition: null,
        definitionText: null,
        value: undefined,
        status: 'active',
        context: null,
        lastEvent: null,
        events: 0,
        updatedAt: now,
      };
      this.actorMap.set(e.sessionId, a);
      this.bound(origin);
    }
    const before = a.value;
    a.value = sanitize(e.snapshot?.value);
    a.status = e.snapshot?.status ?? a.status;
    a.context = sanitize(e.snapshot?.context);
    a.updatedAt = now;
    if (e.event && typeof e.event.type === 'string' && e.event.type !== '') a.lastEvent = e.event.type;
    if (isSessionMachine(a)) this.sessionValue(a, before, now);
  }

  private onEvent(e: InspectEvent, origin: string, now: number): void {
    const a = this.actorMap.get(e.sessionId);
    const type = e.event?.type;
    if (typeof type !== 'string') return;
    if (a) {
      a.lastEvent = type;
      a.events++;
      a.updatedAt = now;
    }
    const from = e.event?.from;
    const to = this.nodeMap.has(origin) ? origin : null;
    if (to !== null && isNodeId(from) && from !== to && (a === undefined || a.name === 'raft'))
      this.message(from, to, type, now);
    else if (a?.name === 'sessions' && /open|expire|close/i.test(type))
      this.add(now, 'session', origin, `${origin} sessions: ${type}${sessionIdOf(e.event)}`);
  }

  /** A client session machine's move into `active`, `suspended`, `expired` or `closed`. */
  private sessionValue(a: ActorState, before: unknown, now: number): void {
    const v = valueText(a.value);
    if (v === valueText(before) || !['active', 'suspended', 'expired', 'closed'].includes(v)) return;
    const ctx = isObject(a.context) ? a.context : {};
    const id = typeof ctx.id === 'string' ? ` ${ctx.id}` : '';
    const what =
      v === 'active'
        ? valueText(before) === 'suspended'
          ? 'reconnected'
          : 'opened'
        : v === 'expired'
          ? 'expired'
          : v;
    this.add(now, 'session', a.origin, `session${id} ${what} (${a.sessionId})`);
  }

  private message(from: string, to: string, type: string, now: number): void {
    const n = this.nodeMap.get(to)!;
    const h = n.heard[from];
    n.heard[from] = { count: (h?.count ?? 0) + 1, type, at: now };
    if (ELECTION_MESSAGES.has(type)) {
      this.add(now, 'message', to, `${from} → ${to} ${type}`, { from, to, count: 1 });
      return;
    }
    const key = `${from}>${to}`;
    const s = this.sampled.get(key);
    if (s === undefined) {
      this.sampled.set(key, { from, to, at: now, pending: new Map() });
      this.add(now, 'message', to, `${from} → ${to} ${type}`, { from, to, count: 1 });
      return;
    }
    s.pending.set(type, (s.pending.get(type) ?? 0) + 1);
    if (now - s.at >= this.messageSampleMs) this.flushMessages(s, now);
  }

  /** One entry for the messages of a pair since its last: `n1 → n2 raft.heartbeat ×7, …`. */
  private flushMessages(s: Sample, now: number): void {
    let count = 0;
    const parts: string[] = [];
    for (const [type, k] of [...s.pending].sort((a, b) => b[1] - a[1])) {
      count += k;
      parts.push(`${type} ×${k}`);
    }
    this.add(now, 'message', s.to, `${s.from} → ${s.to} ${parts.join(', ')}`, {
      from: s.from,
      to: s.to,
      count,
    });
    s.pending.clear();
    s.at = now;
  }

  private noteDrops(id: string, dropped: number, now: number): void {
    const d = this.pendingDrops.get(id);
    if (d === undefined) {
      this.pendingDrops.set(id, { at: now, pending: 0 });
      this.add(now, 'dropped', id, `${id} dropped ${dropped} events (rate limit)`, { count: dropped });
    } else {
      d.pending += dropped;
    }
  }

  private electLeader(now: number): void {
    const next = this.computeLeader();
    const prev = this.currentLeader;
    if (next?.id === prev?.id && next?.term === prev?.term) return;
    this.currentLeader = next;
    if (next === null) this.add(now, 'leader', null, `no leader${prev ? ` (was ${prev.id})` : ''}`);
    else if (next.id !== prev?.id) this.add(now, 'leader', null, `leader ${next.id} (term ${next.term})`);
    else this.add(now, 'leader', null, `leader ${next.id} re-elected (term ${next.term})`);
  }

  private computeLeader(): { id: string; term: number } | null {
    let best: { id: string; term: number } | null = null;
    for (const n of this.nodes)
      if (!n.dark && n.status?.role === 'leader' && (best === null || n.status.term > best.term))
        best = { id: n.id, term: n.status.term };
    return best;
  }

  private parseDefinition(text: string): unknown {
    if (this.definitions.has(text)) return this.definitions.get(text);
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
    if (this.definitions.size >= 64) this.definitions.delete(this.definitions.keys().next().value as string);
    this.definitions.set(text, parsed);
    return parsed;
  }

  /** At most `actorsPerOrigin` actors of one origin: ended ones go first, then the stalest. */
  private bound(origin: string): void {
    const mine = [...this.actorMap.values()].filter((a) => a.origin === origin);
    let excess = mine.length - this.actorsPerOrigin;
    if (excess <= 0) return;
    const victims = mine.sort(
      (a, b) => Number(a.status === 'active') - Number(b.status === 'active') || a.updatedAt - b.updatedAt,
    );
    for (const v of victims) {
      if (excess-- <= 0) break;
      this.actorMap.delete(v.sessionId);
    }
  }

  private add(
    at: number,
    kind: TimelineKind,
    node: string | null,
    text: string,
    extra: { from?: string; to?: string; count?: number } = {},
  ): void {
    const e: TimelineEntry = { id: this.nextEntry++, at, kind, node, text, ...extra };
    this.entries.push(e);
    if (this.entries.length > this.timelineMax)
      this.entries.splice(0, this.entries.length - this.timelineMax);
    this.onEntry?.(e);
  }
}

/** A client session machine (machines/session): its moves are timeline entries. */
function isSessionMachine(a: ActorView): boolean {
  return isObject(a.definition) && a.definition.id === 'session';
}

function sessionIdOf(event: unknown): string {
  if (!isObject(event)) return '';
  const id = event.session ?? event.id ?? event.sessionId;
  return typeof id === 'string' ? ` ${id}` : '';
}
