/**
 * Number options of the `ensemble` commands, checked before anything starts: a bad value is a
 * `TypeError` naming the option (the commands print it and exit 1), never NaN sent on.
 */

/** A whole number `>= min` from option `option`, or undefined when absent. */
export function wholeArg(option: string, v: string | number | undefined, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = typeof v === 'number' ? v : v.trim() === '' ? Number.NaN : Number(v);
  if (!Number.isSafeInteger(n) || n < min)
    throw new TypeError(
      `${option} takes a whole number of at least ${min}, not ${JSON.stringify(String(v))}`,
    );
  return n;
}
