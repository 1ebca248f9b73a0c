/**
 * Quotas: what one user, one session or the whole cluster may hold, and how fast one user may
 * ask. Checked by the node that takes a request (the leader for what goes through the log); each
 * refusal is a typed error (QUOTA_EXCEEDED, RATE_LIMITED) and nothing is done. Deletes, session
 * closes and compaction are never refused by a quota: they are how room is made.
 */
import {
  type Caller,
  type EnsembleError,
  QuotaExceededError,
  RateLimitedError,
  type ValidRequest,
} from '../../protocol/index.ts';

export interface Quotas {
  /** Bytes the key tree may hold, history included (etcd's `--quota-backend-bytes`). */
  readonly databaseBytes: number;
  /** Open sessions one NATS user may have. */
  readonly sessionsPerUser: number;
  /** Ephemeral keys one session may own. */
  readonly keysPerSession: number;
  /** Live keys one NATS user may have created (keys it created and nobody deleted). */
  readonly keysPerUser: number;
  /** Requests per second one user may send to one node (a burst of twice that); 0: no limit. */
  readonly requestsPerSecond: number;
}

/** Defaults: etcd's 2 GiB backend quota; generous per-user bounds a benchmark never meets. */
export const defaultQuotas: Quotas = {
  databaseBytes: 2 * 1024 ** 3,
  sessionsPerUser: 10_000,
  keysPerSession: 10_000,
  keysPerUser: 1_000_000,
  requestsPerSecond: 50_000,
};

/** True for a request that adds data (refused while the database quota is used up). */
export function addsData(v: ValidRequest): boolean {
  switch (v.op) {
    case 'put':
    case 'createSequential':
    case 'sessionOpen':
      return true;
    case 'txn':
      return [...v.request.success, ...v.request.failure].some((o) => o.op === 'put');
    default:
      return false;
  }
}

/** True for a request that creates ephemeral keys in its session. */
export function addsEphemeral(v: ValidRequest): boolean {
  switch (v.op) {
    case 'put':
    case 'createSequential':
      return v.request.ephemeral === true;
    case 'txn':
      return [...v.request.success, ...v.request.failure].some((o) => o.op === 'put' && o.ephemeral === true);
    default:
      return false;
  }
}

/**
 * A token bucket per user: `rate` tokens a second, at most `2 × rate` saved. Peers and admins are
 * not limited. Users idle for a minute are forgotten, so the table stays small.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private swept = 0;

  constructor(
    private readonly rate: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The error to answer with if `caller` is over its rate, else null (a token is taken). */
  take(caller: Caller): EnsembleError | null {
    if (this.rate <= 0 || caller.kind !== 'client') return null;
    const t = this.now();
    const burst = 2 * this.rate;
    let b = this.buckets.get(caller.user);
    if (b === undefined) {
      b = { tokens: burst, at: t };
      this.buckets.set(caller.user, b);
    } else {
      b.tokens = Math.min(burst, b.tokens + ((t - b.at) * this.rate) / 1000);
      b.at = t;
    }
    if (t - this.swept > 60_000) this.sweep(t);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return null;
    }
    return new RateLimitedError(Math.ceil(((1 - b.tokens) * 1000) / this.rate));
  }

  private sweep(t: number): void {
    this.swept = t;
    for (const [user, b] of this.buckets) if (t - b.at > 60_000) this.buckets.delete(user);
  }
}

/** The quota error for a full database. */
export const databaseFull = (q: Quotas, bytes: number): EnsembleError =>
  new QuotaExceededError(
    'databaseBytes',
    q.databaseBytes,
    `the database holds ${bytes} bytes, its quota is ${q.databaseBytes}: delete keys or compact history`,
  );
