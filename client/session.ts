/**
 * Runs the client session machine (machines/session) for a `Client`: opens the session,
 * sends keepalives as requests on the keepalive subject (every node hears them; the first node
 * that knows the session answers, the leader answers SESSION_EXPIRED for one it does not know),
 * reports NATS disconnects, and tells the application about state changes (CONNECTED,
 * SUSPENDED, RECONNECTED, LOST, CLOSED), as Curator does.
 */
import { createActor } from 'xstate';
import type { ConnectionState, SessionEffect, SessionEvent } from '../machines/session/index.ts';
import { sessionMachine } from '../machines/session/index.ts';
import { EnsembleError } from '../protocol/errors.ts';

export interface SessionPorts {
  open(ttlMs: number): Promise<{ id: string; secret: Uint8Array; ttlMs: number }>;
  keepalive(id: string, secret: Uint8Array, timeoutMs: number): Promise<void>;
  close(id: string, secret: Uint8Array): Promise<void>;
  /** Forget the leader (try other nodes next). */
  failover(): void;
}

export type SessionListener = (state: ConnectionState, session: string | null) => void;

export class SessionRunner {
  private readonly actor;
  private readonly listeners = new Set<SessionListener>();
  private timer: NodeJS.Timeout | null = null;
  current: { id: string; secret: Uint8Array; ttlMs: number } | null = null;
  state: ConnectionState | 'CONNECTING' = 'CONNECTING';
  private readyResolve!: () => void;
  private readyReject!: (err: unknown) => void;
  /** Resolves once the first session is open; rejects if the client closes first. */
  readonly ready: Promise<void>;
  private closedResolve!: () => void;
  private readonly closedPromise: Promise<void>;

  constructor(
    private readonly ports: SessionPorts,
    ttlMs: number,
  ) {
    this.ready = new Promise((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    this.ready.catch(() => {});
    this.closedPromise = new Promise((resolve) => {
      this.closedResolve = resolve;
    });
    this.actor = createActor(sessionMachine, { input: { now: performance.now(), ttlMs } });
    this.actor.on('*', (e) => this.perform(e as SessionEffect));
    this.actor.start();
    this.timer = setInterval(
      () => this.send({ type: 'session.tick', now: performance.now() }),
      Math.max(20, ttlMs / 10),
    );
    this.timer.unref?.();
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

  async close(): Promise<void> {
    this.readyReject(new Error('client closed'));
    this.send({ type: 'session.close', now: performance.now() });
    if (this.actor.getSnapshot().status === 'active') await Promise.race([this.closedPromise, sleep(3000)]);
    if (this.timer) clearInterval(this.timer);
    this.actor.stop();
  }

  private perform(e: SessionEffect): void {
    switch (e.type) {
      case 'openSession':
        this.ports.open(e.ttlMs).then(
          (s) => {
            this.current = s;
            this.send({
              type: 'session.opened',
              id: s.id,
              secret: s.secret,
              ttlMs: s.ttlMs,
              now: performance.now(),
            });
          },
          () => this.send({ type: 'session.openFailed', now: performance.now() }),
        );
        return;
      case 'sendKeepalive': {
        const secret = typeof e.secret === 'string' ? new TextEncoder().encode(e.secret) : e.secret;
        const interval = Math.max(100, (this.current?.ttlMs ?? 3000) / 3);
        this.ports.keepalive(e.id, secret, interval).then(
          () => this.send({ type: 'session.keepaliveAcked', now: performance.now(), seq: e.seq }),
          (err) => {
            if (err instanceof EnsembleError && err.code === 'SESSION_EXPIRED') this.expired();
            else this.send({ type: 'session.keepaliveFailed', now: performance.now(), seq: e.seq });
          },
        );
        return;
      }
      case 'closeSession': {
        const secret = typeof e.secret === 'string' ? new TextEncoder().encode(e.secret) : e.secret;
        this.ports
          .close(e.id, secret)
          .catch(() => {})
          .finally(() => this.send({ type: 'session.closeDone', now: performance.now() }));
        return;
      }
      case 'failover':
        this.ports.failover();
        return;
      case 'stateChanged':
        this.state = e.state;
        if (e.state === 'CONNECTED') this.readyResolve();
        if (e.state === 'CLOSED') this.closedResolve();
        if (e.state === 'LOST' || e.state === 'CLOSED') this.current = null;
        for (const l of this.listeners) l(e.state, e.session);
        return;
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
