/**
 * Errors the client raises by itself, never received from a node: one class per condition, a
 * stable `code`, `name` set, `cause` kept (as the wire errors in protocol/errors.ts, which the
 * client also throws). Programmer mistakes (a bad option, an invalid recipe name, negative
 * permits) throw `TypeError` or `RangeError` at once.
 */

import { EnsembleError } from '../protocol/index.ts';

export type ClientErrorCode = 'CLOSED' | 'NOT_HELD' | 'SESSION_LOST';

/** An error the client raised by itself; like every error of Ensemble, an `EnsembleError`. */
export abstract class ClientError extends EnsembleError {
  abstract override readonly code: ClientErrorCode;
}

/** The client was closed: every pending request, open watch and waiting recipe ends with this. */
export class ClosedError extends ClientError {
  readonly code = 'CLOSED' as const;
  override readonly name = 'ClosedError';
  constructor(message = 'the client is closed', options?: { readonly cause?: unknown }) {
    super(message, options);
  }
}

/**
 * What was to be released, proclaimed or acknowledged is not held (any more): a lock released
 * twice, a leader that resigned or lost its session, a queue claim that expired. Nothing was
 * written.
 */
export class NotHeldError extends ClientError {
  readonly code = 'NOT_HELD' as const;
  override readonly name = 'NotHeldError';
  constructor(
    readonly key: string,
    message = `${key} is not held`,
    options?: { readonly cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The session that held something (a lock, a leadership, a permit, a registration) is gone:
 * expired in the cluster or given up by the client after a full TTL without an acknowledged
 * keepalive. Its ephemeral keys are deleted (or will be within the cluster's grace); anything
 * guarded by a fencing token of it can no longer be written.
 */
export class SessionLostError extends ClientError {
  readonly code = 'SESSION_LOST' as const;
  override readonly name = 'SessionLostError';
  constructor(
    readonly session: string,
    message = `session ${session} was lost`,
    options?: { readonly cause?: unknown },
  ) {
    super(message, options);
  }
}
