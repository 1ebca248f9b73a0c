/**
 * Errors of the storage layer: a corrupted record, an I/O failure, a data directory of another
 * node. Each is fatal to the node that meets it (crash-only: stop, restart from disk); none is an
 * answer to a client (a node that hits one stops instead of answering).
 */
import { EnsembleError, type ErrorOptions } from '../protocol/index.ts';

/** A stored record or a snapshot stream that cannot be decoded or fails its checks. */
export class CorruptedError extends EnsembleError {
  readonly code = 'CORRUPTED' as const;
  override readonly name = 'CorruptedError';
  constructor(message = 'corrupted data', options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * An I/O failure of the storage (unwritable directory, full disk, failed fsync, use after close).
 * The node must stop: stop acknowledging and exit non-zero, then restart from disk. Never retry
 * a failed fsync: the kernel may have dropped the dirty pages it could not write.
 */
export class StorageFatalError extends EnsembleError {
  readonly code = 'STORAGE_FATAL' as const;
  override readonly name = 'StorageFatalError';
  constructor(message = 'storage failure', options?: ErrorOptions) {
    super(message, options);
  }
}

/** A data directory that belongs to another cluster or node than the one opening it. */
export class IdentityMismatchError extends EnsembleError {
  readonly code = 'IDENTITY_MISMATCH' as const;
  override readonly name = 'IdentityMismatchError';
  constructor(message = 'data directory belongs to another cluster or node', options?: ErrorOptions) {
    super(message, options);
  }
}

/** Wraps anything thrown by an I/O layer as a `StorageFatalError`, keeping it as `cause`. */
export function storageFatal(what: string, cause: unknown): StorageFatalError {
  if (cause instanceof StorageFatalError) return cause;
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new StorageFatalError(`${what}: ${detail}`, { cause });
}
