/**
 * Waiting in tests on a condition (a status field, a watch event, a metric, a key appearing),
 * never on a fixed sleep (STYLE.md, habit 12): the condition is polled until it holds or a
 * deadline passes. Deadlines are generous, since a loaded CI machine is slow; a test that passes
 * returns as soon as the condition holds, so a generous deadline costs nothing.
 *
 * Contracts:
 * - `fn` is called at once, then every `intervalMs` after the previous call settled (never two
 *   calls at a time), and once more at or after the deadline before giving up.
 * - An error thrown by `fn` rejects the wait at once: a failing probe is a failure, not "not yet".
 *   Probes that may fail while a fault heals catch their own errors and return false.
 */

export interface WaitOptions {
  /** Give up after this long (default 10 000 ms). */
  readonly timeoutMs?: number;
  /** What is awaited, in the error on timeout ("the key expires"). */
  readonly what?: string;
  /** Time between two calls of the condition (default 20 ms). */
  readonly intervalMs?: number;
}

/** The condition did not hold within the deadline. */
export class WaitTimeoutError extends Error {
  override readonly name = 'WaitTimeoutError';
  readonly code = 'WAIT_TIMEOUT';
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
  ) {
    super(`not within ${timeoutMs} ms: ${what}`);
  }
}

/** Resolves with the first truthy value `fn` returns; rejects with `WaitTimeoutError` after the deadline. */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  options: WaitOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 20;
  if (!(timeoutMs >= 0) || !(intervalMs >= 0)) throw new TypeError('timeoutMs and intervalMs must be >= 0');
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (performance.now() >= deadline) throw new WaitTimeoutError(options.what ?? 'the condition', timeoutMs);
    await new Promise((r) => setTimeout(r, Math.min(intervalMs, Math.max(0, deadline - performance.now()))));
  }
}

/**
 * Resolves or rejects as `promise` does, or rejects with `WaitTimeoutError` if it has not settled
 * within `timeoutMs`. The timer is cleared as soon as `promise` settles, so a passing test does
 * not keep its process alive until the deadline.
 */
export async function within<T>(
  promise: Promise<T>,
  options: { readonly timeoutMs: number; readonly what: string },
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new WaitTimeoutError(options.what, options.timeoutMs)),
      options.timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}
