/**
 * What chaos workers record (one JSON object a line, see worker.ts) and reading it back.
 * Times are milliseconds since the epoch with sub-millisecond precision
 * (`performance.timeOrigin + performance.now()`), comparable across processes of one machine.
 */
import { readFile } from 'node:fs/promises';
import type { HistoryOp, Op, OpResult } from '../sim/linearizability.ts';

export const CHAOS_PREFIX = '/chaos/';
export const chaosKey = (i: number): string => `${CHAOS_PREFIX}k${i}`;
/** The counter the workers increment under the lock recipe. */
export const COUNTER = `${CHAOS_PREFIX}counter`;

/** xorshift32 in [0, 1), seeded: a run's faults and each worker's choices repeat for one seed. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

/** A watch event as recorded: revision, type, key, value (null for a delete). */
export type WatchedEvent = readonly [number, 'put' | 'delete', string, string | null];

export type ChaosRecord =
  /** A linearizable op; `response: null`: indeterminate (it may or may not have applied). */
  | {
      readonly t: 'op';
      readonly client: string;
      readonly invoke: number;
      readonly response: number | null;
      readonly op: Op;
      readonly result?: OpResult;
      /** The revision a write applied at. */
      readonly revision?: number;
      readonly error?: string;
    }
  /** An op refused with a code after which nothing applied (left out of the history). */
  | {
      readonly t: 'failed';
      readonly client: string;
      readonly invoke: number;
      readonly at: number;
      readonly op: Op;
      readonly error: string;
    }
  | {
      readonly t: 'seq';
      readonly invoke: number;
      readonly response: number | null;
      readonly value: string;
      readonly key: string | null;
      readonly revision?: number;
      readonly error?: string;
    }
  | { readonly t: 'session'; readonly at: number; readonly id: string | null; readonly state: string }
  /** An answer SESSION_EXPIRED for `session`, while the client held it to be in `state`. */
  | { readonly t: 'expired'; readonly at: number; readonly session: string | null; readonly state: string }
  /** An increment of the counter under the lock, acknowledged (fencing token of the hold). */
  | {
      readonly t: 'inc';
      readonly invoke: number;
      readonly response: number;
      readonly to: number;
      readonly token: number;
      readonly revision: number;
    }
  | { readonly t: 'watchStart'; readonly at: number; readonly from: number }
  | { readonly t: 'watch'; readonly events: readonly WatchedEvent[]; readonly upTo: number }
  | { readonly t: 'watchEnd'; readonly at: number; readonly upTo: number; readonly target: number }
  | {
      readonly t: 'ephemeral';
      readonly at: number;
      readonly session: string | null;
      readonly acked: number;
      readonly missing: readonly string[];
      readonly stale: readonly string[];
    }
  | { readonly t: 'note'; readonly at: number; readonly text: string }
  | {
      readonly t: 'end';
      readonly at: number;
      readonly session: string | null;
      readonly stats: Readonly<Record<string, number>>;
    };

/** One worker's records, in order; a torn last line (a killed worker) is skipped. */
export async function readRecords(file: string): Promise<ChaosRecord[]> {
  const out: ChaosRecord[] = [];
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    if (line === '') continue;
    try {
      out.push(JSON.parse(line) as ChaosRecord);
    } catch {
      // a line cut short by a kill
    }
  }
  return out;
}

/** The linearizable ops of some workers' records, as the checker's history. */
export function historyOf(records: readonly ChaosRecord[]): HistoryOp[] {
  const h: HistoryOp[] = [];
  for (const r of records) {
    if (r.t !== 'op') continue;
    if (r.response === null) h.push({ client: r.client, invoke: r.invoke, response: null, op: r.op });
    else h.push({ client: r.client, invoke: r.invoke, response: r.response, op: r.op, result: r.result! });
  }
  return h;
}
