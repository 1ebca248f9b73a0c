/**
 * The client session machine's inputs (events) and outputs (effects). The machine performs no
 * IO and reads no clock: the runtime feeds monotonic milliseconds (`performance.now()` or a
 * virtual clock) in `now`, and executes the effects it gets back, in order.
 *
 * Runtime contract:
 * - `openSession`: ask a node to open a session (`sessionOpen`), then feed `session.opened` or
 *   `session.openFailed`. The machine retries with backoff; each retry is a new request (a retry
 *   may choose a new id: an attempt that committed unseen becomes an orphan that expires).
 * - `sendKeepalive`: publish the keepalive (with the secret) and, when a node answers, feed
 *   `session.keepaliveAcked` with the same `seq`. A keepalive not acknowledged within one
 *   keepalive interval counts as failed without being told; feed `session.keepaliveFailed` for a
 *   fast failure (no responders, connection closed).
 * - `failover`: try another node (and, for `suspended`, another NATS server); no answer needed.
 * - `closeSession`: ask for `sessionClose`, then feed `session.closeDone` (success or not: an
 *   unclosed session expires by itself).
 * - `stateChanged`: tell the application (Curator's connection states; `CLOSED` on close).
 * Feed `session.tick` often enough for the cadence wanted (a tenth of the TTL is plenty), or
 * arm one timer at `nextWakeup(snapshot)` after every step.
 */

export type ConnectionState = 'CONNECTED' | 'SUSPENDED' | 'RECONNECTED' | 'LOST' | 'CLOSED';

/** Why the machine asks the runtime to try another node or server. */
export type FailoverReason = 'openFailed' | 'keepaliveFailed' | 'suspended';

export type SessionEvent =
  | {
      readonly type: 'session.opened';
      readonly id: string;
      readonly secret: string | Uint8Array;
      /** The TTL the cluster granted (it may differ from the one asked for). */
      readonly ttlMs: number;
      readonly now?: number;
    }
  | { readonly type: 'session.openFailed'; readonly now?: number }
  | { readonly type: 'session.tick'; readonly now: number }
  | {
      readonly type: 'session.keepaliveAcked';
      readonly now: number;
      /** The `seq` of the acknowledged `sendKeepalive`; without it the ack counts from `now`. */
      readonly seq?: number;
    }
  | { readonly type: 'session.keepaliveFailed'; readonly now: number; readonly seq?: number }
  /** The NATS connection dropped (the client library is reconnecting). */
  | { readonly type: 'session.serverLost'; readonly now?: number }
  /** The NATS connection is back. */
  | { readonly type: 'session.serverBack'; readonly now?: number }
  /** A `SESSION_EXPIRED` error was seen: the cluster ended the session. */
  | { readonly type: 'session.expiredByServer'; readonly now?: number }
  | { readonly type: 'session.close'; readonly now?: number }
  | { readonly type: 'session.closeDone'; readonly now?: number }
  /** After `LOST`: open a fresh session (its ephemeral keys are gone; the application re-creates
   * them on `CONNECTED`). */
  | {
      readonly type: 'session.reopen';
      readonly now?: number;
      readonly id?: string;
      readonly secret?: string | Uint8Array;
    };

export type SessionEffect =
  | {
      readonly type: 'openSession';
      readonly ttlMs: number;
      /** Set when the client chose the id and secret; otherwise the proposing node does. */
      readonly id?: string;
      readonly secret?: string | Uint8Array;
    }
  | {
      readonly type: 'sendKeepalive';
      readonly id: string;
      readonly secret: string | Uint8Array;
      readonly seq: number;
    }
  | { readonly type: 'closeSession'; readonly id: string; readonly secret: string | Uint8Array }
  | { readonly type: 'failover'; readonly reason: FailoverReason }
  | {
      readonly type: 'stateChanged';
      readonly state: ConnectionState;
      /** The session the change is about (null before one was opened). */
      readonly session: string | null;
    };

export type SessionEffectOf<T extends SessionEffect['type']> = Extract<SessionEffect, { type: T }>;

export interface SessionInput {
  /** The runtime's monotonic clock at start. */
  readonly now: number;
  /** The TTL to ask for. */
  readonly ttlMs: number;
  /** Client-chosen id and secret (DESIGN: chosen by the client or by the proposing node). */
  readonly id?: string;
  readonly secret?: string | Uint8Array;
  /** First delay before retrying a failed open; doubles per failure, up to 16 times that. Default
   * a tenth of the TTL. */
  readonly openRetryMs?: number;
}

/** The machine's state names. */
export type SessionStateName = 'connecting' | 'active' | 'suspended' | 'expired' | 'closing' | 'closed';
