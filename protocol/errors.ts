/**
 * Errors of Ensemble: one class per condition, each with a stable `code`. Codes are stable across
 * versions, messages are not. Errors cross the wire as `{ code, message, ...extra }` (`toWire`)
 * and are rebuilt as the same class by `fromWire`. Programmer mistakes (a wrong argument type, a
 * broken precondition of an internal API) throw `TypeError` or `RangeError`, never one of these.
 */

/** The codes that cross the wire, each rebuilt as its class by `fromWire`. */
export type ErrorCode =
  | 'NOT_LEADER'
  | 'NO_QUORUM'
  | 'TIMEOUT'
  | 'UNKNOWN_OUTCOME'
  | 'BAD_REQUEST'
  | 'TOO_LARGE'
  | 'BAD_PATH'
  | 'VERSION_MISMATCH'
  | 'COMPACTED'
  | 'SESSION_EXPIRED'
  | 'NOT_FOUND'
  | 'EXISTS'
  | 'UNKNOWN_OP'
  | 'LIMIT_EXCEEDED'
  | 'WATCH_BEHIND'
  | 'PERMISSION_DENIED'
  | 'QUOTA_EXCEEDED'
  | 'RATE_LIMITED'
  | 'WATCH_MOVED'
  | 'INTERNAL'
  | 'UNSUPPORTED_VERSION'
  | 'WRONG_CLUSTER';

/** An error as it crosses the wire (CBOR or JSON): a code, a message, and per-code extras. */
export interface WireError {
  readonly code: string;
  readonly message: string;
  readonly [extra: string]: unknown;
}

export interface ErrorOptions {
  readonly cause?: unknown;
}

/**
 * Every error of Ensemble. The wire codes (`ErrorCode`) are rebuilt by `fromWire`; other layers
 * add their own (storage/errors.ts, client/errors.ts), which reach a remote peer as `INTERNAL`
 * with the code in `remoteCode`.
 */
export abstract class EnsembleError extends Error {
  abstract readonly code: string;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
  }

  /** Extra fields that travel with the code (e.g. the leader id of NOT_LEADER). */
  protected extra(): Record<string, unknown> {
    return {};
  }

  toWire(): WireError {
    return { code: this.code, message: this.message, ...this.extra() };
  }
}

/**
 * This node is not the leader; `leader` is the leader it knows of, if any. A write answered so
 * was not applied and will not be: safe to send again (to `leader`).
 */
export class NotLeaderError extends EnsembleError {
  readonly code = 'NOT_LEADER' as const;
  override readonly name = 'NotLeaderError';
  constructor(
    readonly leader: string | null,
    message = leader === null ? 'not the leader; leader unknown' : `not the leader; try ${leader}`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { leader: this.leader };
  }
}

export class NoQuorumError extends EnsembleError {
  readonly code = 'NO_QUORUM' as const;
  override readonly name = 'NoQuorumError';
  constructor(message = 'no quorum', options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * Nothing was answered in time. A write answered so may have been applied, or may still be: send
 * it again under its session tag (exactly-once), or read to find out.
 */
export class TimeoutError extends EnsembleError {
  readonly code = 'TIMEOUT' as const;
  override readonly name = 'TimeoutError';
  constructor(message = 'timed out', options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * The write may or may not have been applied: the leader it was forwarded to stopped answering or
 * lost its leadership after it may have proposed it. Send it again under its session tag (the
 * cluster applies a tagged write once), or read to find out. `leader`: the leader known now.
 */
export class UnknownOutcomeError extends EnsembleError {
  readonly code = 'UNKNOWN_OUTCOME' as const;
  override readonly name = 'UnknownOutcomeError';
  constructor(
    readonly leader: string | null,
    message = 'the write may or may not have been applied; retry it under its session tag',
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { leader: this.leader };
  }
}

/** A malformed request or command: wrong shape, wrong types, out-of-range numbers. */
export class BadRequestError extends EnsembleError {
  readonly code = 'BAD_REQUEST' as const;
  override readonly name = 'BadRequestError';
  constructor(message = 'bad request', options?: ErrorOptions) {
    super(message, options);
  }
}

/** Something exceeds a configured limit; `size` and `limit` are in the limit's unit (bytes, ops). */
export class TooLargeError extends EnsembleError {
  readonly code = 'TOO_LARGE' as const;
  override readonly name = 'TooLargeError';
  constructor(
    readonly size: number,
    readonly limit: number,
    message = `too large: ${size} > ${limit}`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { size: this.size, limit: this.limit };
  }
}

/** An invalid key path, or a path the tree refuses (e.g. one below an ephemeral key). */
export class BadPathError extends EnsembleError {
  readonly code = 'BAD_PATH' as const;
  override readonly name = 'BadPathError';
  constructor(
    readonly path: string,
    message = `bad path: ${JSON.stringify(path)}`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { path: this.path };
  }
}

/** A conditional write found another version (`actual`; 0 when the key is absent). */
export class VersionMismatchError extends EnsembleError {
  readonly code = 'VERSION_MISMATCH' as const;
  override readonly name = 'VersionMismatchError';
  constructor(
    readonly expected: number,
    readonly actual: number,
    message = `version mismatch: expected ${expected}, found ${actual}`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { expected: this.expected, actual: this.actual };
  }
}

/** The revision asked for is below the compaction point `compactRevision` (history before it is gone). */
export class CompactedError extends EnsembleError {
  readonly code = 'COMPACTED' as const;
  override readonly name = 'CompactedError';
  constructor(
    readonly compactRevision: number,
    message = `revision compacted (compaction revision ${compactRevision})`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { compactRevision: this.compactRevision };
  }
}

export class SessionExpiredError extends EnsembleError {
  readonly code = 'SESSION_EXPIRED' as const;
  override readonly name = 'SessionExpiredError';
  constructor(
    readonly session: string,
    message = `session ${JSON.stringify(session)} expired or unknown`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { session: this.session };
  }
}

export class NotFoundError extends EnsembleError {
  readonly code = 'NOT_FOUND' as const;
  override readonly name = 'NotFoundError';
  constructor(
    readonly key: string,
    message = `not found: ${JSON.stringify(key)}`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { key: this.key };
  }
}

export class ExistsError extends EnsembleError {
  readonly code = 'EXISTS' as const;
  override readonly name = 'ExistsError';
  constructor(
    readonly key: string,
    message = `already exists: ${JSON.stringify(key)}`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { key: this.key };
  }
}

export class UnknownOpError extends EnsembleError {
  readonly code = 'UNKNOWN_OP' as const;
  override readonly name = 'UnknownOpError';
  constructor(
    readonly op: string,
    message = `unknown operation: ${JSON.stringify(op)}`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { op: this.op };
  }
}

/** An error whose code this build does not know (`remoteCode`), or a bug reported by a peer. */
export class InternalError extends EnsembleError {
  readonly code = 'INTERNAL' as const;
  override readonly name = 'InternalError';
  constructor(
    message = 'internal error',
    readonly remoteCode: string | null = null,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return this.remoteCode === null ? {} : { remoteCode: this.remoteCode };
  }
}

const num = (v: unknown, fallback: number): number =>
  typeof v === 'number' && Number.isFinite(v) ? v : fallback;
const str = (v: unknown, fallback: string): string => (typeof v === 'string' ? v : fallback);

const builders: Record<ErrorCode, (w: Record<string, unknown>, message: string) => EnsembleError> = {
  NOT_LEADER: (w, m) => new NotLeaderError(typeof w.leader === 'string' ? w.leader : null, m),
  NO_QUORUM: (_, m) => new NoQuorumError(m),
  TIMEOUT: (_, m) => new TimeoutError(m),
  UNKNOWN_OUTCOME: (w, m) => new UnknownOutcomeError(typeof w.leader === 'string' ? w.leader : null, m),
  BAD_REQUEST: (_, m) => new BadRequestError(m),
  TOO_LARGE: (w, m) => new TooLargeError(num(w.size, 0), num(w.limit, 0), m),
  BAD_PATH: (w, m) => new BadPathError(str(w.path, ''), m),
  VERSION_MISMATCH: (w, m) => new VersionMismatchError(num(w.expected, 0), num(w.actual, 0), m),
  COMPACTED: (w, m) => new CompactedError(num(w.compactRevision, 0), m),
  SESSION_EXPIRED: (w, m) => new SessionExpiredError(str(w.session, ''), m),
  NOT_FOUND: (w, m) => new NotFoundError(str(w.key, ''), m),
  EXISTS: (w, m) => new ExistsError(str(w.key, ''), m),
  UNKNOWN_OP: (w, m) => new UnknownOpError(str(w.op, ''), m),
  INTERNAL: (w, m) => new InternalError(m, typeof w.remoteCode === 'string' ? w.remoteCode : null),
  UNSUPPORTED_VERSION: (w, m) =>
    new UnsupportedVersionError(
      typeof w.version === 'number' ? w.version : null,
      Array.isArray(w.supported) ? w.supported.filter((x): x is number => typeof x === 'number') : [],
      m,
    ),
  WRONG_CLUSTER: (w, m) => new WrongClusterError(str(w.cluster, ''), str(w.got, ''), m),
  LIMIT_EXCEEDED: (w, m) => new LimitExceededError(str(w.limit, ''), num(w.max, 0), m),
  WATCH_BEHIND: (w, m) => new WatchBehindError(num(w.revision, 0), m),
  PERMISSION_DENIED: (w, m) => new PermissionDeniedError(str(w.user, ''), m),
  QUOTA_EXCEEDED: (w, m) => new QuotaExceededError(str(w.quota, ''), num(w.max, 0), m),
  RATE_LIMITED: (w, m) => new RateLimitedError(num(w.retryAfterMs, 0), m),
  WATCH_MOVED: (w, m) => new WatchMovedError(str(w.node, ''), m),
};

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(builders, code);
}

/**
 * Rebuilds the error class of a wire error. Never throws: an object that is not a wire error
 * becomes a `BadRequestError`, an unknown code an `InternalError` carrying `remoteCode`.
 */
export function fromWire(obj: unknown): EnsembleError {
  if (typeof obj !== 'object' || obj === null || typeof (obj as { code?: unknown }).code !== 'string') {
    return new BadRequestError('malformed error object');
  }
  const w = obj as Record<string, unknown>;
  const code = w.code as string;
  const message = typeof w.message === 'string' ? w.message : code;
  return isErrorCode(code) ? builders[code](w, message) : new InternalError(message, code);
}

/**
 * A message in a protocol version this node does not speak (`version`: what it carried, `null`
 * when it carried none); `supported` lists the versions this node speaks. Distinct from
 * `VERSION_MISMATCH`, which is a conditional write that found another key version.
 */
export class UnsupportedVersionError extends EnsembleError {
  readonly code = 'UNSUPPORTED_VERSION' as const;
  override readonly name = 'UnsupportedVersionError';
  constructor(
    readonly version: number | null,
    readonly supported: readonly number[],
    message = `unsupported protocol version ${String(version)}; supported: ${supported.join(', ')}`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { version: this.version, supported: [...this.supported] };
  }
}

/** A message addressed to another cluster: `cluster` is this node's cluster id, `got` the message's. */
export class WrongClusterError extends EnsembleError {
  readonly code = 'WRONG_CLUSTER' as const;
  override readonly name = 'WrongClusterError';
  constructor(
    readonly cluster: string,
    readonly got: string,
    message = `message for cluster ${JSON.stringify(got)} reached cluster ${JSON.stringify(cluster)}`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { cluster: this.cluster, got: this.got };
  }
}

/** A per-client limit was reached (`limit` names it: `watches`, ...; `max` is its value). */
export class LimitExceededError extends EnsembleError {
  readonly code = 'LIMIT_EXCEEDED' as const;
  override readonly name = 'LimitExceededError';
  constructor(
    readonly limit: string,
    readonly max: number,
    message = `limit of ${max} ${limit} reached`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { limit: this.limit, max: this.max };
  }
}

/** A watcher fell too far behind and was cancelled; resume from `revision` (the next one it needs). */
export class WatchBehindError extends EnsembleError {
  readonly code = 'WATCH_BEHIND' as const;
  override readonly name = 'WatchBehindError';
  constructor(
    readonly revision: number,
    message = `watcher fell behind; resume from revision ${revision}`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { revision: this.revision };
  }
}

/**
 * The caller may not do this: an admin op asked by a client, or a key (or prefix, or a branch of
 * a txn, or a watch target) outside the caller's grants. Nothing was done; asking again is useless
 * until an admin grants it.
 */
export class PermissionDeniedError extends EnsembleError {
  readonly code = 'PERMISSION_DENIED' as const;
  override readonly name = 'PermissionDeniedError';
  constructor(
    readonly user: string,
    message = `permission denied to ${JSON.stringify(user)}`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { user: this.user };
  }
}

/**
 * A quota is used up (`quota` names it: `databaseBytes`, `sessionsPerUser`, `keysPerSession`,
 * `keysPerUser`, `watchesPerSession`; `max` is its value). Nothing was done. Deletes and
 * compaction still work, so room can be made.
 */
export class QuotaExceededError extends EnsembleError {
  readonly code = 'QUOTA_EXCEEDED' as const;
  override readonly name = 'QuotaExceededError';
  constructor(
    readonly quota: string,
    readonly max: number,
    message = `quota ${quota} of ${max} is used up`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { quota: this.quota, max: this.max };
  }
}

/** The caller sent more requests than its rate allows; nothing was done; retry after `retryAfterMs`. */
export class RateLimitedError extends EnsembleError {
  readonly code = 'RATE_LIMITED' as const;
  override readonly name = 'RateLimitedError';
  constructor(
    readonly retryAfterMs: number,
    message = `rate limited; retry after ${retryAfterMs} ms`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { retryAfterMs: this.retryAfterMs };
  }
}

/**
 * The watch's session now has its watches on another node (`node`): a session holds watches on
 * one node at a time, so the per-session limit holds across the cluster. Resume the watch (from
 * the next revision) on the session's watch node.
 */
export class WatchMovedError extends EnsembleError {
  readonly code = 'WATCH_MOVED' as const;
  override readonly name = 'WatchMovedError';
  constructor(
    readonly node: string,
    message = `the session's watches moved to node ${node}; resume there`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  protected override extra() {
    return { node: this.node };
  }
}
