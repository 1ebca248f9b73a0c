/**
 * The inspection stream: what a node publishes on `P.inspect.<node>` (subjects.inspect) while
 * inspection is on, and how an operator turns it on. JSON (UTF-8), not CBOR: it is a debugging
 * stream any tool can read (`nats sub 'ensemble.*.inspect.*'` as the admin user).
 *
 * A node publishes one batch every `INSPECT_BATCH_MS` while inspection is on, even an empty one
 * (a heartbeat: an inspector shows a node whose batches stopped as dark). Each batch carries the
 * node's status (term, role, leader, indexes, peers' progress, sessions) and the XState
 * inspection events since the previous batch, in the format of Stately's tooling
 * (`@statelyai/inspect`): `@xstate.actor` (an actor and its machine definition), `@xstate.event`
 * (an event an actor received) and `@xstate.snapshot` (the state after it). Session ids are
 * prefixed with the node id (`n1:x:3`) so actors of different nodes never share one. Contexts
 * and events are sanitized: no values, keys' bytes, passwords or secrets; arrays are cut to a few
 * items with a count. Events beyond the node's rate are dropped and counted (`dropped`).
 * Snapshots are coalesced: every actor that changed since the previous batch has its current
 * snapshot sent once, with the last event that led there, so the state shown is never stale.
 *
 * Control: the admin op `inspect` on `P.node.<node>.admin.inspect` (admin user only, by
 * nats.conf), request `InspectControl`, reply `InspectControlReply`. Turning it on is a lease:
 * an inspector renews it every few seconds, and a node stops publishing when the lease runs out
 * (a node started with `--inspect` publishes until told `{ on: false }`).
 */

/** Object keys whose values never leave a process in an inspection event: user data and
 * credentials. */
const REDACTED =
  /^(value|values|data|payload|body|command|secret|password|pass|token|credentials?|auth|prev|kv|bytes)$/i;
const MAX_DEPTH = 4;
const MAX_ITEMS = 8;
const MAX_KEYS = 40;
const MAX_STRING = 160;

/**
 * A copy of `v` safe to show anyone who may inspect: plain data only (class instances become
 * `[ClassName]`, functions are left out), user data and secrets redacted (`REDACTED` keys,
 * byte arrays as their length), arrays cut to their first items and a count, strings cut, depth
 * bounded. Never throws.
 */
export function sanitize(v: unknown, depth = 0): unknown {
  if (v === null || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (typeof v === 'string') return v.length > MAX_STRING ? `${v.slice(0, MAX_STRING)}…` : v;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v !== 'object') return undefined; // functions, symbols, undefined
  if (ArrayBuffer.isView(v)) return `[${v.byteLength} bytes]`;
  if (depth >= MAX_DEPTH) return Array.isArray(v) ? `[${v.length} items]` : '[…]';
  if (Array.isArray(v)) {
    const out = v.slice(0, MAX_ITEMS).map((x) => sanitize(x, depth + 1));
    if (v.length > MAX_ITEMS) out.push(`… ${v.length - MAX_ITEMS} more`);
    return out;
  }
  if (v instanceof Map || v instanceof Set) return `[${v.constructor.name} of ${v.size}]`;
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return `[${v.constructor?.name ?? 'object'}]`;
  const out: Record<string, unknown> = {};
  let n = 0;
  for (const [k, x] of Object.entries(v)) {
    if (++n > MAX_KEYS) {
      out['…'] = `${Object.keys(v).length - MAX_KEYS} more keys`;
      break;
    }
    if (REDACTED.test(k)) {
      out[k] = x === undefined || x === null ? x : '[redacted]';
      continue;
    }
    const s = sanitize(x, depth + 1);
    if (s !== undefined) out[k] = s;
  }
  return out;
}

/** The interval between two batches of one node, ms. */
export const INSPECT_BATCH_MS = 250;

/** The default cap on inspection events per second per node (beyond it they are counted). */
export const INSPECT_DEFAULT_RATE = 200;

/** The longest lease an `inspect` request may ask for, ms. */
export const INSPECT_MAX_LEASE_MS = 60_000;

/** The version of the batch format. */
export const INSPECT_VERSION = 1;

/** The request of the `inspect` admin op. */
export interface InspectControl {
  /** Turn the stream on (for `leaseMs`) or off. */
  readonly on: boolean;
  /** How long the stream stays on without another request (default 10 s, at most 60 s). */
  readonly leaseMs?: number;
  /** Events per second at most (default `INSPECT_DEFAULT_RATE`, 1 to 100000). */
  readonly rate?: number;
  /** Send every live actor again (`@xstate.actor` with its definition and current snapshot) in
   * the next batch: what a newly opened inspector asks first. */
  readonly resync?: boolean;
}

/** The reply of the `inspect` admin op. */
export interface InspectControlReply {
  readonly node: string;
  readonly on: boolean;
  /** When the lease ends (ms since the epoch), or null when on until told otherwise or off. */
  readonly until: number | null;
  readonly rate: number;
  /** The subject the node publishes its batches on. */
  readonly subject: string;
}

/** A peer's replication progress as the leader sees it. */
export interface InspectProgress {
  readonly match: number;
  readonly next: number;
}

/** What a node says of itself in every batch. */
export interface InspectStatus {
  readonly role: 'follower' | 'candidate' | 'leader' | string;
  readonly term: number;
  readonly leader: string | null;
  readonly vote: string | null;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly voters: readonly string[];
  readonly learners: readonly string[];
  /** The leader's view of each peer (empty on followers). */
  readonly progress: Readonly<Record<string, InspectProgress>>;
  /** Open sessions in the key tree. */
  readonly sessions: number;
  readonly pid: number;
  /** When the node process started (ms since the epoch). */
  readonly startedAt: number;
}

/** One inspection event in Stately's format (the fields `@statelyai/inspect` sends). */
export interface InspectEvent {
  readonly type: '@xstate.actor' | '@xstate.event' | '@xstate.snapshot';
  readonly sessionId: string;
  readonly rootId?: string | undefined;
  readonly parentId?: string | undefined;
  readonly sourceId?: string | undefined;
  /** `@xstate.actor`: the actor's id (`raft`, `node`, `sessions`, …). */
  readonly name?: string;
  /** `@xstate.actor`: the machine's config as JSON (functions as `{ type: name }`), if a machine. */
  readonly definition?: string | undefined;
  /** `@xstate.actor` and `@xstate.snapshot`: `{ status, value, context }`, context sanitized. */
  readonly snapshot?: { readonly status?: string; readonly value?: unknown; readonly context?: unknown };
  /** `@xstate.event` and `@xstate.snapshot`: the event, sanitized. */
  readonly event?: { readonly type: string; readonly [k: string]: unknown };
  readonly createdAt: string;
  readonly id: null;
  readonly _version: string;
}

/** One message on `P.inspect.<node>`. */
export interface InspectBatch {
  readonly v: typeof INSPECT_VERSION;
  readonly cluster: string;
  readonly node: string;
  /** Counts up from 1 per node process (a restart starts again from 1). */
  readonly seq: number;
  /** When the batch was sent (ms since the epoch). */
  readonly at: number;
  readonly status: InspectStatus;
  readonly events: readonly InspectEvent[];
  /** Events dropped by the rate limit since the previous batch. */
  readonly dropped: number;
}
