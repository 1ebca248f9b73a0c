/** Small helpers of the client and its recipes. */

/** A key's value as the client takes it: bytes, or text sent as its UTF-8 bytes. */
export type Value = string | Uint8Array;

const enc = new TextEncoder();
export const bytes = (v: Value): Uint8Array => (typeof v === 'string' ? enc.encode(v) : v);

/** `promise`, or the signal's reason as soon as it aborts (the promise itself runs on, ignored). */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | null | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
