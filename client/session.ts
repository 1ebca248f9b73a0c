/**
 * Sessions on the client: `SessionRunner` runs the session machine (machines/session) for one
 * session: opens it, sends keepalives as requests on the keepalive subject (every node hears
 * them; the first node that knows the session answers, the leader answers SESSION_EXPIRED for one
 * it does not know), reports NATS disconnects, and tells listeners about state changes
 * (CONNECTED, SUSPENDED, RECONNECTED, LOST, CLOSED), as Curator does. `Session` is what an
 * application holds: the connection's own session, or another one from `client.session()` (etcd's
 * leases: keys tied to a shorter or longer life than the connection's).
 */
import { setMaxListeners } from 'node:events';
import { createActor, type InspectionEvent } from 'xstate';
import type { ConnectionState, SessionEffect, SessionEvent } from '../machines/session/index.ts';
import { sessionMachine } from '../machines/session/index.ts';
import type { ClientTag } from '../protocol/index.ts';
import { EnsembleError, TimeoutError } from '../protocol/index.ts';
import { ClosedError, SessionLostError } from './errors.ts';

export interface SessionPorts {
  open(ttlMs: number): Promise<{ id: string; secret: Uint8Array; ttlMs: number }>;
  keepalive(id: string, secret: Uint8Array, timeoutMs: number): Promise<void>;
  close(id: string, secret: Uint8Array): Promise<void>;
  /** Forget the leader (try other nodes next). */
  failover(): void;
}

export type SessionState = ConnectionState | 'CONNECTING';
export type SessionListener = (state: ConnectionState, session: string | null) => void;

interface Open {
  readonly id: string;
  readonly secret: Uint8Array;
  readonly ttlMs: number;
}

const bytes = (s: string | Uint8Array): Uint8Array =>
  typeof s === 'string' ? new TextEncoder().encode(s) : s;

export class SessionRunner {
  private readonly actor;
  private readonly listeners = new Set<SessionListener>();
  private readonly timer: NodeJS.Timeout;
  current: Open | null = null;
  state: SessionState = 'CONNECTING';
  private readyResolve!: () => void;
  private readyReject!: (err: unknown) => void;
  /** Resolves once the first session is open; rejects if the client closes first. */
  readonly ready: Promise<void>;
  private closedResolve!: () => void;
  private readonly closedPromise: Promise<void>;
  private openWaiters: { resolve: (s: Open) => void; reject: (err: unknown) => void }[] = [];
  private lostId: string | null = null;

  constructor(
    private readonly ports: SessionPorts,
    ttlMs: number,
    /** After LOST, open a fresh session (the connection's own session does; extra ones do not). */
    private readonly reopen: boolean,
    /** Sees the session machine (`connect({ inspect })`), already sanitized. */
    inspect?: (event: InspectionEvent) => void,
  ) {
    this.ready = new Promise((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    this.ready.catch(() => {});
    this.closedPromise = new Promise((resolve) => {
      this.closedResolve = resolve;
    });
    this.actor = createActor(sessionMachine, {
      input: { now: performance.now(), ttlMs },
      ...(inspect ? { inspect } : {}),
    });
    this.actor.on('*', (e) => this.perform(e as SessionEffect));
    this.actor.start();
    this.timer = setInterval(
      () => this.send({ type: 'session.tick', now: performance.now() }),
      Math.max(20, ttlMs / 10),
    );
    this.timer.unref();
  }

  onState(listener: SessionListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  send(e: SessionEvent): void {
    if (this.actor.getSnapshot().status !== 'active') return;
    this.actor.send(e);
  }

  serverLost(): void {
    this.send({ type: 'session.serverLost', now: performance.now() });
  }

  serverBack(): void {
    this.send({ type: 'session.serverBack', now: performance.now() });
  }

  /** A SESSION_EXPIRED answer to a write: the cluster ended the session. */
  expired(): void {
    this.send({ type: 'session.expiredByServer', now: performance.now() });
  }

  /** One keepalive now, outside the machine's cadence; its acknowledgement counts from its send time. */
  async keepaliveNow(timeoutMs: number): Promise<void> {
    const s = this.current;
    if (s === null) throw new SessionLostError('(none)', 'the session is not open');
    const sentAt = performance.now();
    try {
      await this.ports.keepalive(s.id, s.secret, timeoutMs);
    } catch (err) {
      if (err instanceof EnsembleError && err.code === 'SESSION_EXPIRED') this.expired();
      throw err;
    }
    this.send({ type: 'session.keepaliveAcked', now: sentAt });
  }

  /** The send time of the newest acknowledged keepalive: the cluster heard from us no earlier. */
  get lastAckAt(): number {
    return this.actor.getSnapshot().context.lastAckAt;
  }

  /** The open session; waits while one is being (re)opened. Rejects once there will be none. */
  waitOpen(): Promise<Open> {
    if (this.current !== null) return Promise.resolve(this.current);
    if (this.state === 'CLOSED') return Promise.reject(new ClosedError('the session is closed'));
    if (this.state === 'LOST' && !this.reopen)
      return Promise.reject(new SessionLostError(this.lostId ?? '(none)'));
    return new Promise((resolve, reject) => this.openWaiters.push({ resolve, reject }));
  }

  async close(): Promise<void> {
    this.readyReject(new ClosedError());
    this.send({ type: 'session.close', now: performance.now() });
    if (this.actor.getSnapshot().status === 'active') {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.closedPromise, new Promise((r) => (timer = setTimeout(r, 3000)))]);
      clearTimeout(timer);
    }
    clearInterval(this.timer);
    this.actor.stop();
    if (this.state !== 'CLOSED') this.changed('CLOSED', this.current?.id ?? null);
  }

  private perform(e: SessionEffect): void {
    switch (e.type) {
      case 'openSession':
        this.ports.open(e.ttlMs).then(
          (s) => {
            this.current = s;
            this.send({ type: 'session.opened', ...s, now: performance.now() });
          },
          () => this.send({ type: 'session.openFailed', now: performance.now() }),
        );
        return;
      case 'sendKeepalive': {
        const interval = Math.max(100, (this.current?.ttlMs ?? 3000) / 3);
        this.ports.keepalive(e.id, bytes(e.secret), interval).then(
          () => this.send({ type: 'session.keepaliveAcked', now: performance.now(), seq: e.seq }),
          (err) => {
            if (err instanceof EnsembleError && err.code === 'SESSION_EXPIRED') this.expired();
            else this.send({ type: 'session.keepaliveFailed', now: performance.now(), seq: e.seq });
          },
        );
        return;
      }
      case 'closeSession':
        this.ports
          .close(e.id, bytes(e.secret))
          .catch(() => {})
          .finally(() => this.send({ type: 'session.closeDone', now: performance.now() }));
        return;
      case 'failover':
        this.ports.failover();
        return;
      case 'stateChanged':
        this.changed(e.state, e.session);
        if (e.state === 'LOST' && this.reopen) this.send({ type: 'session.reopen', now: performance.now() });
        return;
    }
  }

  private changed(state: ConnectionState, session: string | null): void {
    this.state = state;
    if (state === 'LOST') this.lostId = session;
    if (state === 'CLOSED') this.closedResolve();
    if (state === 'LOST' || state === 'CLOSED') this.current = null;
    const waiters = this.openWaiters;
    if (state === 'CONNECTED' || state === 'RECONNECTED') {
      this.readyResolve();
      this.openWaiters = [];
      for (const w of waiters) if (this.current) w.resolve(this.current);
    } else if (state === 'CLOSED' || (state === 'LOST' && !this.reopen)) {
      this.openWaiters = [];
      const err =
        state === 'CLOSED' ? new ClosedError('the session is closed') : new SessionLostError(session ?? '');
      for (const w of waiters) w.reject(err);
    }
    for (const l of this.listeners) l(state, session);
  }
}

/**
 * A session as the application holds it: an id, a TTL, a state, ephemeral keys that go with it,
 * and an `AbortSignal` that fires when it is lost. Writes pass `{ session }` to be tagged with it
 * (ephemeral keys then belong to it; retries are answered once, Raft thesis §6.3).
 *
 * The connection's own session (`client.defaultSession`) reopens by itself after LOST (a new
 * id; what the old one held is gone); a session from `client.session()` ends for good when lost
 * or revoked, as an etcd lease does.
 */
export class Session implements AsyncDisposable {
  private seq = 0;
  private readonly unanswered = new Set<number>();
  /** The session id `seq` counts for. */
  private seqFor: string | null = null;
  private hold: { id: string; ctl: AbortController } | null = null;

  /** @internal */
  constructor(
    /** @internal */
    readonly runner: SessionRunner,
    private readonly closing: () => Promise<void>,
  ) {
    runner.onState((state, id) => {
      if ((state === 'LOST' || state === 'CLOSED') && this.hold !== null && this.hold.id === id) {
        this.hold.ctl.abort(state === 'LOST' ? new SessionLostError(id) : new ClosedError());
        this.hold = null;
      }
    });
  }

  /** The open session's id, or null while (re)connecting or after it ended. */
  get id(): string | null {
    return this.runner.current?.id ?? null;
  }

  /** The TTL the cluster granted (or the one asked for, before). */
  get ttlMs(): number {
    return this.runner.current?.ttlMs ?? 0;
  }

  get state(): SessionState {
    return this.runner.state;
  }

  /** Resolves once the session is open (the first time). */
  get ready(): Promise<void> {
    return this.runner.ready;
  }

  /**
   * Calls `listener` on each state change (CONNECTED, SUSPENDED, RECONNECTED, LOST, CLOSED),
   * with the session id it is about; returns a function that stops listening.
   */
  onState(listener: SessionListener): () => void {
    return this.runner.onState(listener);
  }

  /**
   * A signal that aborts when the session open now is lost (reason `SessionLostError`) or closed
   * (`ClosedError`): pass it to work that must stop when what the session holds is gone. Throws
   * `SessionLostError` if no session is open.
   */
  get signal(): AbortSignal {
    const id = this.id;
    if (id === null) throw new SessionLostError(this.runner.state, 'the session is not open');
    if (this.hold === null || this.hold.id !== id) {
      this.hold = { id, ctl: new AbortController() };
      setMaxListeners(0, this.hold.ctl.signal); // one listener per wait or hold in the session
    }
    return this.hold.ctl.signal;
  }

  /** Sends one keepalive now (keepalives also go by themselves every third of the TTL). */
  async keepAlive(timeoutMs = 3000): Promise<{ readonly ttlMs: number }> {
    await this.runner.keepaliveNow(timeoutMs);
    return { ttlMs: this.ttlMs };
  }

  /**
   * How long the session surely lives without another keepalive: the TTL counted from the send
   * time of the newest acknowledged keepalive (a lower bound of what the cluster grants, since it
   * counts from when it heard that keepalive). 0 when not open.
   */
  timeToLive(): { readonly id: string | null; readonly ttlMs: number; readonly remainingMs: number } {
    const id = this.id;
    if (id === null) return { id, ttlMs: 0, remainingMs: 0 };
    const remainingMs = Math.max(0, Math.round(this.runner.lastAckAt + this.ttlMs - performance.now()));
    return { id, ttlMs: this.ttlMs, remainingMs };
  }

  /** Ends the session: its ephemeral keys are deleted at once, in one revision. */
  revoke(): Promise<void> {
    return this.closing();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.revoke();
  }

  /**
   * @internal The exactly-once tag of a new write in this session; call `end` once its answer
   * (or a final failure) arrived. Waits while the session is being (re)opened; throws
   * `SessionLostError` or `ClosedError` when there will be none.
   */
  async begin(): Promise<{ readonly tag: ClientTag; end(): void }> {
    const s = await this.runner.waitOpen();
    if (this.seqFor !== s.id) {
      this.seqFor = s.id;
      this.seq = 0;
      this.unanswered.clear();
    }
    const seq = ++this.seq;
    this.unanswered.add(seq);
    let lowSeq = seq;
    for (const x of this.unanswered) if (x < lowSeq) lowSeq = x;
    return {
      tag: { session: s.id, secret: s.secret, seq, lowSeq },
      end: () => {
        if (this.seqFor === s.id) this.unanswered.delete(seq);
      },
    };
  }
}

/** Rejects with a `TimeoutError` when `promise` takes longer than `ms`; the timer never outlives it. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new TimeoutError(what)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
