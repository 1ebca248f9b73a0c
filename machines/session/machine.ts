/**
 * The client's session as an XState v5 statechart:
 *
 *   connecting -> active <-> suspended -> expired -> (reopen) connecting
 *        \           \           \           \
 *         `-----------`-----------`-----------`--> closing -> closed
 *
 * - `connecting`: an `openSession` is out; a failure asks for failover and retries with backoff.
 * - `active`: keepalives every TTL/3. No acknowledgement for more than TTL/2, or the NATS
 *   connection dropped: `suspended` (Curator's SUSPENDED).
 * - `suspended`: keepalives go on (while connected) and failover is asked for; an acknowledged
 *   keepalive brings the session back (RECONNECTED); a full TTL with none: `expired` (LOST).
 * - `expired`: the session is gone, whether the cluster said so (`SESSION_EXPIRED`) or the
 *   client concluded it by itself. Final for that session; `session.reopen` starts a new one.
 *
 * The local deadline is conservative: a keepalive's acknowledgement counts from the moment that
 * keepalive was *sent*, never from when the answer arrived, because a node records contact when
 * it hears the keepalive (after it was sent) and the cluster expires no earlier than TTL after
 * that. So a client declares LOST no later than the cluster can have expired it, as long as
 * clocks run at the same rate. (The converse does not hold: one node acknowledging does not
 * prove a quorum heard the keepalive; SESSION_EXPIRED on the next request tells the truth.)
 *
 * Pure: time only from events, effects only as emitted data (see events.ts for the runtime's
 * side). Step it with `stepSession`, or run it as an actor and listen with `actor.on('*')`.
 */
import { enqueueActions, initialTransition, type SnapshotFrom, setup, transition } from 'xstate';
import type { SessionEffect, SessionEvent, SessionInput } from './events.ts';

export interface SessionContext {
  /** The latest time any event carried. */
  readonly now: number;
  readonly requestedTtlMs: number;
  /** The TTL in force: the one asked for until the cluster grants one. */
  readonly ttlMs: number;
  readonly id: string | null;
  readonly secret: string | Uint8Array | null;
  readonly chosen: { readonly id?: string; readonly secret?: string | Uint8Array };
  /** The send time of the newest acknowledged keepalive (or of the open request): the cluster
   * surely heard from us no earlier than this. */
  readonly lastAckAt: number;
  readonly nextKeepaliveAt: number;
  readonly seq: number;
  /** Keepalives sent within the last TTL and not yet answered, oldest first; `failed` once
   * unanswered for an interval (a late answer still counts, from its send time). */
  readonly inflight: readonly { readonly seq: number; readonly sentAt: number; readonly failed: boolean }[];
  readonly serverUp: boolean;
  readonly openInFlight: boolean;
  readonly openSentAt: number;
  readonly openFailures: number;
  readonly nextOpenAt: number | null;
  readonly openRetryMs: number;
  /** Whether this session was active before (the next `active` is RECONNECTED). */
  readonly connectedBefore: boolean;
}

type Ctx = SessionContext;
type Out = { readonly patch?: Partial<Ctx>; readonly effects?: readonly SessionEffect[] };

/** The time of an event: events without `now` happen at the latest time seen. */
function timeOf(ctx: Ctx, event: SessionEvent): number {
  return 'now' in event && event.now !== undefined ? Math.max(ctx.now, event.now) : ctx.now;
}

/** Keepalives go every third of the TTL, and one unanswered for that long has failed. */
export function keepaliveInterval(ttlMs: number): number {
  return ttlMs / 3;
}

/** After a failed keepalive the next one goes sooner, so a failover is tried several times
 * before the TTL/2 suspension threshold. */
function retryInterval(ttlMs: number): number {
  return ttlMs / 10;
}

function ackAge(ctx: Ctx, at: number): number {
  return at - ctx.lastAckAt;
}

export function initialSessionContext(input: SessionInput): SessionContext {
  if (!(input.ttlMs > 0)) throw new TypeError('session: ttlMs must be positive');
  return {
    now: input.now,
    requestedTtlMs: input.ttlMs,
    ttlMs: input.ttlMs,
    id: null,
    secret: null,
    chosen: {
      ...(input.id !== undefined ? { id: input.id } : {}),
      ...(input.secret !== undefined ? { secret: input.secret } : {}),
    },
    lastAckAt: input.now,
    nextKeepaliveAt: input.now,
    seq: 0,
    inflight: [],
    serverUp: true,
    openInFlight: false,
    openSentAt: input.now,
    openFailures: 0,
    nextOpenAt: null,
    openRetryMs: input.openRetryMs ?? input.ttlMs / 10,
    connectedBefore: false,
  };
}

const inertInput: SessionInput = { now: 0, ttlMs: 1 };

// ---------------------------------------------------------------------------------------------
// Steps: (context, event) -> (patch, effects). Each becomes one named action.

function advance(ctx: Ctx, event: SessionEvent): Out {
  const at = timeOf(ctx, event);
  const timeout = keepaliveInterval(ctx.ttlMs);
  const due = ctx.inflight.some((k) => !k.failed && at - k.sentAt >= timeout);
  const old = ctx.inflight.some((k) => at - k.sentAt >= ctx.ttlMs);
  if (!due && !old) return { patch: { now: at } };
  // An answer about a keepalive sent a TTL ago could not save the session: forget it.
  const inflight = ctx.inflight
    .filter((k) => at - k.sentAt < ctx.ttlMs)
    .map((k) => (k.failed || at - k.sentAt < timeout ? k : { ...k, failed: true }));
  if (!due) return { patch: { now: at, inflight } };
  // Unanswered for a whole interval: a failure, handled like an explicit one.
  return {
    patch: {
      now: at,
      inflight,
      nextKeepaliveAt: Math.min(ctx.nextKeepaliveAt, at + retryInterval(ctx.ttlMs)),
    },
    effects: [{ type: 'failover', reason: 'keepaliveFailed' }],
  };
}

function keepalive(ctx: Ctx, force: boolean): Out {
  if (ctx.id === null || ctx.secret === null || !ctx.serverUp) return {};
  if (!force && ctx.now < ctx.nextKeepaliveAt) return {};
  const seq = ctx.seq + 1;
  return {
    patch: {
      seq,
      nextKeepaliveAt: ctx.now + keepaliveInterval(ctx.ttlMs),
      inflight: [...ctx.inflight, { seq, sentAt: ctx.now, failed: false }],
    },
    effects: [{ type: 'sendKeepalive', id: ctx.id, secret: ctx.secret, seq }],
  };
}

function acked(ctx: Ctx, event: SessionEvent): Out {
  const e = event as Extract<SessionEvent, { type: 'session.keepaliveAcked' }>;
  const at = timeOf(ctx, event);
  const k = e.seq === undefined ? undefined : ctx.inflight.find((x) => x.seq === e.seq);
  if (e.seq !== undefined && k === undefined) return { patch: { now: at } }; // late or duplicate
  const sentAt = k?.sentAt ?? at;
  return {
    patch: {
      now: at,
      serverUp: true,
      lastAckAt: Math.max(ctx.lastAckAt, sentAt),
      inflight: ctx.inflight.filter((x) => x.seq !== e.seq),
    },
  };
}

function failed(ctx: Ctx, event: SessionEvent): Out {
  const e = event as Extract<SessionEvent, { type: 'session.keepaliveFailed' }>;
  const at = timeOf(ctx, event);
  const k = e.seq === undefined ? undefined : ctx.inflight.find((x) => x.seq === e.seq);
  if (e.seq !== undefined && (k === undefined || k.failed)) return { patch: { now: at } };
  return {
    patch: {
      now: at,
      inflight: ctx.inflight.map((x) => (x.seq === e.seq ? { ...x, failed: true } : x)),
      nextKeepaliveAt: Math.min(ctx.nextKeepaliveAt, at + retryInterval(ctx.ttlMs)),
    },
    effects: [{ type: 'failover', reason: 'keepaliveFailed' }],
  };
}

function requestOpen(ctx: Ctx): Out {
  return {
    patch: { openInFlight: true, openSentAt: ctx.now, nextOpenAt: null },
    effects: [{ type: 'openSession', ttlMs: ctx.requestedTtlMs, ...ctx.chosen }],
  };
}

function opened(ctx: Ctx, event: SessionEvent): Out {
  const e = event as Extract<SessionEvent, { type: 'session.opened' }>;
  const at = timeOf(ctx, event);
  if (!(e.ttlMs > 0)) throw new TypeError('session.opened: ttlMs must be positive');
  return {
    patch: {
      now: at,
      id: e.id,
      secret: e.secret,
      ttlMs: e.ttlMs,
      // The node recorded the session no earlier than the request left.
      lastAckAt: ctx.openSentAt,
      nextKeepaliveAt: at + keepaliveInterval(e.ttlMs),
      inflight: [],
      openInFlight: false,
      openFailures: 0,
      serverUp: true,
      connectedBefore: false,
    },
  };
}

function openFailed(ctx: Ctx, event: SessionEvent): Out {
  const at = timeOf(ctx, event);
  const failures = ctx.openFailures + 1;
  const backoff = ctx.openRetryMs * 2 ** Math.min(failures - 1, 4);
  return {
    patch: { now: at, openInFlight: false, openFailures: failures, nextOpenAt: at + backoff },
    effects: [{ type: 'failover', reason: 'openFailed' }],
  };
}

function notice(ctx: Ctx, state: Extract<SessionEffect, { type: 'stateChanged' }>['state']): SessionEffect {
  return { type: 'stateChanged', state, session: ctx.id };
}

// ---------------------------------------------------------------------------------------------

export const sessionMachine = setup({
  types: {
    context: {} as SessionContext,
    events: {} as SessionEvent,
    input: {} as SessionInput,
    emitted: {} as SessionEffect,
  },
  actions: {
    run: enqueueActions(
      (
        { context, event, enqueue },
        params: { step: 'advance' | 'acked' | 'failed' | 'opened' | 'openFailed' },
      ) => {
        const fn = { advance, acked, failed, opened, openFailed }[params.step];
        const out = fn(context, event);
        if (out.patch) enqueue.assign(out.patch);
        for (const e of out.effects ?? []) enqueue.emit(e);
      },
    ),
    sendKeepalive: enqueueActions(({ context, enqueue }, params: { force: boolean }) => {
      const out = keepalive(context, params.force);
      if (out.patch) enqueue.assign(out.patch);
      for (const e of out.effects ?? []) enqueue.emit(e);
    }),
    requestOpen: enqueueActions(({ context, enqueue }) => {
      const out = requestOpen(context);
      if (out.patch) enqueue.assign(out.patch);
      for (const e of out.effects ?? []) enqueue.emit(e);
    }),
    retryOpenIfDue: enqueueActions(({ context, enqueue }) => {
      if (context.openInFlight || context.nextOpenAt === null || context.now < context.nextOpenAt) return;
      const out = requestOpen(context);
      if (out.patch) enqueue.assign(out.patch);
      for (const e of out.effects ?? []) enqueue.emit(e);
    }),
    closeRequest: enqueueActions(({ context, enqueue }) => {
      if (context.id !== null && context.secret !== null)
        enqueue.emit({ type: 'closeSession', id: context.id, secret: context.secret });
    }),
    noteTime: enqueueActions(({ context, event, enqueue }) => {
      enqueue.assign({ now: timeOf(context, event) });
    }),
    serverLost: enqueueActions(({ context, event, enqueue }) => {
      enqueue.assign({ now: timeOf(context, event), serverUp: false });
    }),
    serverBack: enqueueActions(({ context, event, enqueue }) => {
      enqueue.assign({ now: timeOf(context, event), serverUp: true });
    }),
    announceActive: enqueueActions(({ context, enqueue }) => {
      enqueue.emit(notice(context, context.connectedBefore ? 'RECONNECTED' : 'CONNECTED'));
      enqueue.assign({ connectedBefore: true });
    }),
    announceSuspended: enqueueActions(({ context, enqueue }) => {
      enqueue.emit(notice(context, 'SUSPENDED'));
      enqueue.emit({ type: 'failover', reason: 'suspended' });
    }),
    announceLost: enqueueActions(({ context, enqueue }) => {
      enqueue.emit(notice(context, 'LOST'));
      enqueue.assign({ inflight: [], openInFlight: false, nextOpenAt: null });
    }),
    announceClosed: enqueueActions(({ context, enqueue }) => {
      enqueue.emit(notice(context, 'CLOSED'));
      enqueue.assign({ inflight: [], openInFlight: false, nextOpenAt: null });
    }),
    forgetSession: enqueueActions(({ context, event, enqueue }) => {
      const e = event as Extract<SessionEvent, { type: 'session.reopen' }>;
      const now = timeOf(context, event);
      enqueue.assign({
        ...initialSessionContext({
          now,
          ttlMs: context.requestedTtlMs,
          openRetryMs: context.openRetryMs,
          ...(e.id !== undefined ? { id: e.id } : {}),
          ...(e.secret !== undefined ? { secret: e.secret } : {}),
        }),
        seq: context.seq,
      });
    }),
  },
  guards: {
    /** Nothing acknowledged for a full TTL (by the event's time). */
    lostDue: ({ context, event }) => ackAge(context, timeOf(context, event)) >= context.ttlMs,
    /** Nothing acknowledged for more than half the TTL. */
    suspendDue: ({ context, event }) => ackAge(context, timeOf(context, event)) > context.ttlMs / 2,
    /** An acknowledgement that brings the session back within TTL/2. */
    ackRestores: ({ context, event }) => {
      const out = acked(context, event);
      const last = out.patch?.lastAckAt ?? context.lastAckAt;
      return timeOf(context, event) - last <= context.ttlMs / 2;
    },
    openInFlight: ({ context }) => context.openInFlight,
  },
}).createMachine({
  id: 'session',
  // xstate's pure `transition()` builds a throwaway actor that evaluates this factory with no
  // input on every step: answer that case cheaply instead of throwing.
  context: ({ input }) => initialSessionContext(input ?? inertInput),
  initial: 'connecting',
  states: {
    connecting: {
      entry: 'requestOpen',
      on: {
        'session.opened': { target: 'active', actions: { type: 'run', params: { step: 'opened' } } },
        'session.openFailed': { actions: { type: 'run', params: { step: 'openFailed' } } },
        'session.tick': { actions: ['noteTime', 'retryOpenIfDue'] },
        'session.serverLost': { actions: 'serverLost' },
        'session.serverBack': { actions: 'serverBack' },
        'session.close': [{ guard: 'openInFlight', target: 'closing' }, { target: 'closed' }],
      },
    },
    active: {
      entry: 'announceActive',
      on: {
        'session.tick': [
          { guard: 'lostDue', target: 'expired', actions: 'noteTime' },
          // Suspended: failover (entry) and a keepalive at once, through whichever node is next.
          {
            guard: 'suspendDue',
            target: 'suspended',
            actions: [
              { type: 'run', params: { step: 'advance' } },
              { type: 'sendKeepalive', params: { force: true } },
            ],
          },
          {
            actions: [
              { type: 'run', params: { step: 'advance' } },
              { type: 'sendKeepalive', params: { force: false } },
            ],
          },
        ],
        'session.keepaliveAcked': { actions: { type: 'run', params: { step: 'acked' } } },
        'session.keepaliveFailed': { actions: { type: 'run', params: { step: 'failed' } } },
        'session.serverLost': { target: 'suspended', actions: 'serverLost' },
        'session.serverBack': { actions: 'serverBack' },
        'session.expiredByServer': { target: 'expired', actions: 'noteTime' },
        'session.close': { target: 'closing', actions: ['noteTime', 'closeRequest'] },
      },
    },
    suspended: {
      entry: 'announceSuspended',
      on: {
        'session.tick': [
          { guard: 'lostDue', target: 'expired', actions: 'noteTime' },
          {
            actions: [
              { type: 'run', params: { step: 'advance' } },
              { type: 'sendKeepalive', params: { force: false } },
            ],
          },
        ],
        'session.keepaliveAcked': [
          { guard: 'ackRestores', target: 'active', actions: { type: 'run', params: { step: 'acked' } } },
          { actions: { type: 'run', params: { step: 'acked' } } },
        ],
        'session.keepaliveFailed': { actions: { type: 'run', params: { step: 'failed' } } },
        'session.serverLost': { actions: 'serverLost' },
        // Back on the server: prove ourselves at once rather than at the next interval.
        'session.serverBack': [
          { guard: 'lostDue', target: 'expired', actions: 'noteTime' },
          { actions: ['serverBack', { type: 'sendKeepalive', params: { force: true } }] },
        ],
        'session.expiredByServer': { target: 'expired', actions: 'noteTime' },
        'session.close': { target: 'closing', actions: ['noteTime', 'closeRequest'] },
      },
    },
    expired: {
      entry: 'announceLost',
      on: {
        'session.tick': { actions: 'noteTime' },
        'session.reopen': { target: 'connecting', actions: 'forgetSession' },
        'session.close': { target: 'closed', actions: 'noteTime' },
      },
    },
    closing: {
      on: {
        'session.tick': { actions: 'noteTime' },
        // Closed while the open was in flight: the session exists now, so close it.
        'session.opened': { actions: [{ type: 'run', params: { step: 'opened' } }, 'closeRequest'] },
        'session.openFailed': { target: 'closed', actions: 'noteTime' },
        'session.closeDone': { target: 'closed', actions: 'noteTime' },
        'session.expiredByServer': { target: 'closed', actions: 'noteTime' },
      },
    },
    closed: {
      entry: 'announceClosed',
      type: 'final',
    },
  },
});

export type SessionMachine = typeof sessionMachine;
export type SessionSnapshot = SnapshotFrom<typeof sessionMachine>;

function effectsOf(actions: readonly { type: string; params?: unknown }[]): SessionEffect[] {
  const out: SessionEffect[] = [];
  for (const a of actions)
    if (a.type === 'xstate.emit') out.push((a.params as { event: SessionEffect }).event);
  return out;
}

/**
 * The earliest time at which a `session.tick` can change anything (send, retry, suspend,
 * expire, time a keepalive out), or null when only other events can: a runtime may arm one
 * timer for it instead of ticking at a fixed rate. Tick at or after it; a tick at exactly the
 * suspension threshold does nothing (suspension needs *more* than TTL/2), so tick again a
 * little later when the answer does not move.
 */
export function nextWakeup(snapshot: SessionSnapshot): number | null {
  const c = snapshot.context;
  const state = snapshot.value as string;
  if (state === 'connecting') return c.openInFlight ? null : c.nextOpenAt;
  if (state !== 'active' && state !== 'suspended') return null;
  let at = c.lastAckAt + c.ttlMs;
  if (state === 'active') at = Math.min(at, c.lastAckAt + c.ttlMs / 2);
  if (c.serverUp) at = Math.min(at, c.nextKeepaliveAt);
  const timeout = keepaliveInterval(c.ttlMs);
  for (const k of c.inflight) if (!k.failed) at = Math.min(at, k.sentAt + timeout);
  return at;
}

/** The pure step: (snapshot, event) -> (next snapshot, effects in the order to execute). */
export function stepSession(
  snapshot: SessionSnapshot,
  event: SessionEvent,
  machine: SessionMachine = sessionMachine,
): [SessionSnapshot, SessionEffect[]] {
  const [next, actions] = transition(machine, snapshot, event);
  return [next, effectsOf(actions)];
}

/** The initial snapshot and its effects (the first `openSession`). */
export function startSession(
  input: SessionInput,
  machine: SessionMachine = sessionMachine,
): [SessionSnapshot, SessionEffect[]] {
  const [s, actions] = initialTransition(machine, input);
  return [s, effectsOf(actions)];
}
