/**
 * The checks of a chaos run over what the workers recorded (records.ts): each returns the
 * violations it found (empty: passed), with enough detail to find them in the saved records.
 *
 * - linearizable: every key's history (puts, gets, compare-and-sets, deletes; indeterminate
 *   writes may or may not have applied) is linearizable against the key-tree model.
 * - watches: each watcher's events are in revision order with no revision seen twice; watchers
 *   agree on every revision they both cover (a gap or an invented event in one shows as a
 *   difference); each watcher reached the revision it was asked to.
 * - acknowledged writes: every acknowledged put and successful compare-and-set is in the watch
 *   streams at the revision it was acknowledged with, with its value.
 * - applied once: no value (every write's value is unique) is put twice.
 * - sequential creates: names and values unique, numbers grow with revisions.
 * - sessions: no worker's live session ended (expired) while it ran; every acknowledged
 *   ephemeral key of the live session was there at the end, none of an ended session was.
 */
import { checkHistory } from '../sim/linearizability.ts';
import type { FaultRecord } from './faults.ts';
import { CHAOS_PREFIX, type ChaosRecord, COUNTER, historyOf, type WatchedEvent } from './records.ts';

export interface CheckOutcome {
  readonly name: string;
  readonly violations: readonly string[];
  /** Extra facts for the report (e.g. "states explored"). */
  readonly detail?: string;
}

type Records = ReadonlyMap<string, readonly ChaosRecord[]>;

export function checkLinearizable(records: Records, maxStates = 200_000): CheckOutcome {
  const all = [...records.values()].flat();
  const history = historyOf(all);
  const r = checkHistory(history, { maxStates });
  if (r.ok === true)
    return { name: 'linearizable', violations: [], detail: `${history.length} ops, ${r.states} states` };
  if (r.ok === 'unknown')
    return {
      name: 'linearizable',
      violations: [],
      detail: `${history.length} ops; undecided within ${maxStates} states on ${r.key}`,
    };
  const ops = r.ops
    .map(
      (o) =>
        `  ${o.client} ${JSON.stringify(o.op)} @${o.invoke.toFixed(1)}-${o.response?.toFixed(1) ?? '?'} -> ${JSON.stringify(o.result ?? null)}`,
    )
    .join('\n');
  return {
    name: 'linearizable',
    violations: [`history of ${r.key} is not linearizable${r.minimal ? ' (minimal window)' : ''}:\n${ops}`],
  };
}

interface Watcher {
  readonly worker: string;
  readonly from: number;
  readonly upTo: number;
  readonly target: number | null;
  readonly byRevision: Map<number, WatchedEvent[]>;
}

function watchersOf(records: Records): { watchers: Watcher[]; violations: string[] } {
  const watchers: Watcher[] = [];
  const violations: string[] = [];
  for (const [worker, rs] of records) {
    let from: number | null = null;
    let upTo = 0;
    let target: number | null = null;
    const byRevision = new Map<number, WatchedEvent[]>();
    let last = 0;
    /** Where the worker checked its watch before closing: events after it (its client closing
     * part-way through a large revision) are not compared. */
    let ended: number | null = null;
    for (const r of rs) {
      if (r.t === 'watchStart') from = r.from;
      if (r.t === 'watchEnd') {
        // A progress message may have taken it the last step (no events to record).
        target = r.target;
        ended = Math.max(upTo, r.upTo);
      }
      if (r.t !== 'watch') continue;
      upTo = Math.max(upTo, r.upTo);
      for (const e of r.events) {
        const rev = e[0];
        if (rev < last) violations.push(`${worker}'s watch went back from revision ${last} to ${rev}`);
        last = Math.max(last, rev);
        const list = byRevision.get(rev) ?? [];
        // One revision changes a key once: the same key twice in it is a repeated delivery.
        if (list.some((x) => x[2] === e[2]))
          violations.push(`${worker}'s watch saw ${e[2]} at revision ${rev} twice`);
        list.push(e);
        byRevision.set(rev, list);
      }
    }
    // Only whole revisions count: `upTo` in the records is the last revision the watch had
    // completely (the last event's may still have had events to come).
    upTo = ended ?? upTo;
    if (from === null) continue;
    if (target !== null && upTo < target)
      violations.push(`${worker}'s watch reached revision ${upTo}, not ${target}`);
    watchers.push({ worker, from, upTo, target, byRevision });
  }
  return { watchers, violations };
}

const covers = (w: Watcher, rev: number) => rev >= w.from && rev <= w.upTo;
/** A revision's events for a message: all of a few, or how many and the first three. */
const brief = (es: readonly WatchedEvent[] | undefined): string =>
  (es ?? []).length <= 4
    ? JSON.stringify(es ?? [])
    : `${es!.length} events (${JSON.stringify(es!.slice(0, 3)).slice(0, -1)}, …])`;
const same = (a: readonly WatchedEvent[] | undefined, b: readonly WatchedEvent[] | undefined) =>
  JSON.stringify(a ?? []) === JSON.stringify(b ?? []);

export function checkWatches(records: Records): CheckOutcome {
  const { watchers, violations } = watchersOf(records);
  let compared = 0;
  const revisions = new Set<number>();
  for (const w of watchers) for (const r of w.byRevision.keys()) revisions.add(r);
  for (const rev of revisions) {
    const covering = watchers.filter((w) => covers(w, rev));
    for (let i = 1; i < covering.length; i++) {
      compared++;
      const a = covering[0]!;
      const b = covering[i]!;
      if (!same(a.byRevision.get(rev), b.byRevision.get(rev)) && violations.length < 20)
        violations.push(
          `watchers disagree at revision ${rev}: ${a.worker} saw ${brief(a.byRevision.get(rev))}, ${b.worker} saw ${brief(b.byRevision.get(rev))}`,
        );
    }
  }
  return {
    name: 'watch streams',
    violations,
    detail: `${watchers.length} watchers, ${revisions.size} revisions, ${compared} comparisons`,
  };
}

export function checkAcknowledged(records: Records): CheckOutcome {
  const { watchers } = watchersOf(records);
  const violations: string[] = [];
  let checked = 0;
  const putsOf = new Map<string, number>();
  for (const w of watchers)
    for (const [rev, es] of w.byRevision)
      for (const e of es)
        if (e[1] === 'put' && e[3] !== null)
          putsOf.set(`${e[3]}@${rev}`, (putsOf.get(`${e[3]}@${rev}`) ?? 0) + 1);
  for (const rs of records.values()) {
    for (const r of rs) {
      if (r.t !== 'op' || r.response === null || r.revision === undefined) continue;
      const value = r.op.type === 'put' || r.op.type === 'cas' ? r.op.value : null;
      if (value === null || (r.op.type === 'cas' && !(r.result as { succeeded?: boolean }).succeeded))
        continue;
      const w = watchers.find((x) => covers(x, r.revision!));
      if (w === undefined) continue;
      checked++;
      const es = w.byRevision.get(r.revision) ?? [];
      if (!es.some((e) => e[1] === 'put' && e[2] === (r.op as { key: string }).key && e[3] === value))
        violations.push(
          `acknowledged ${r.op.type} of ${value} at revision ${r.revision} is not in ${w.worker}'s watch there`,
        );
    }
  }
  // Applied once: a value in two put events (at two revisions) was applied twice.
  const seen = new Map<string, number>();
  for (const w of watchers)
    for (const [rev, es] of w.byRevision)
      for (const e of es) {
        if (e[1] !== 'put' || e[3] === null || e[2].startsWith(`${CHAOS_PREFIX}eph/`)) continue;
        const first = seen.get(e[3]);
        if (first === undefined) seen.set(e[3], rev);
        else if (first !== rev && violations.length < 20)
          violations.push(`value ${e[3]} was applied twice (revisions ${first} and ${rev})`);
      }
  return {
    name: 'acknowledged writes, applied once',
    violations,
    detail: `${checked} acknowledged writes found in watches`,
  };
}

export function checkSequential(records: Records): CheckOutcome {
  const violations: string[] = [];
  const keys = new Map<string, string>();
  const acked: { key: string; revision: number }[] = [];
  for (const rs of records.values())
    for (const r of rs) {
      if (r.t !== 'seq' || r.key === null) continue;
      const other = keys.get(r.key);
      if (other !== undefined)
        violations.push(`sequential key ${r.key} created twice (${other}, ${r.value})`);
      keys.set(r.key, r.value);
      acked.push({ key: r.key, revision: r.revision ?? 0 });
    }
  acked.sort((a, b) => a.revision - b.revision);
  for (let i = 1; i < acked.length; i++)
    if (acked[i]!.key <= acked[i - 1]!.key)
      violations.push(
        `sequential ${acked[i]!.key} (revision ${acked[i]!.revision}) after ${acked[i - 1]!.key}`,
      );
  return { name: 'sequential creates', violations, detail: `${acked.length} created` };
}

/**
 * A session may end two ways while its client runs: the client gives it up (LOST) after it could
 * not reach the cluster for a whole TTL (an outage: counted, not a violation), or the cluster
 * expires it. The cluster must not expire a session whose client was connected (its keepalives
 * flowing): an answer SESSION_EXPIRED while the client held the session CONNECTED is one.
 */
export function checkSessions(records: Records): CheckOutcome {
  const violations: string[] = [];
  let lost = 0;
  for (const [worker, rs] of records) {
    const told = new Set<string>();
    for (const r of rs) {
      if (r.t === 'session' && r.state === 'LOST') lost++;
      if (
        r.t === 'expired' &&
        r.session !== null &&
        r.state !== 'SUSPENDED' &&
        r.state !== 'LOST' &&
        !told.has(r.session)
      ) {
        told.add(r.session);
        violations.push(
          `${worker}'s session ${r.session} was expired by the cluster while the client was ${r.state}`,
        );
      }
      if (r.t === 'ephemeral' && r.missing.length > 0)
        violations.push(
          `${worker}: acknowledged ephemeral keys gone while their session lived: ${r.missing.slice(0, 5).join(', ')}`,
        );
    }
  }
  return {
    name: 'sessions and ephemeral keys',
    violations,
    detail: `${lost} sessions given up by their clients after an outage of a TTL`,
  };
}

/**
 * The lock recipe: the counter's puts in each watch stream go up by exactly one (a second holder
 * at the same time would write a value again, or skip one back), every acknowledged increment is
 * in the streams at its revision, and fencing tokens grow with the counter.
 */
export function checkLock(records: Records): CheckOutcome {
  const { watchers } = watchersOf(records);
  const violations: string[] = [];
  const valueAt = new Map<number, string>();
  for (const w of watchers) {
    let prev: number | null = null;
    for (const rev of [...w.byRevision.keys()].sort((a, b) => a - b))
      for (const e of w.byRevision.get(rev)!) {
        if (e[2] !== COUNTER || e[1] !== 'put') continue;
        const v = Number(e[3]);
        valueAt.set(rev, e[3]!);
        if (prev !== null && v !== prev + 1 && violations.length < 10)
          violations.push(
            `${w.worker}'s watch saw the locked counter go from ${prev} to ${v} (revision ${rev})`,
          );
        prev = v;
      }
  }
  const incs: { to: number; token: number; revision: number }[] = [];
  for (const rs of records.values()) for (const r of rs) if (r.t === 'inc') incs.push(r);
  for (const i of incs) {
    const seen = valueAt.get(i.revision);
    if (seen !== undefined && seen !== String(i.to))
      violations.push(
        `increment to ${i.to} acknowledged at revision ${i.revision}, where the counter became ${seen}`,
      );
  }
  incs.sort((a, b) => a.to - b.to);
  for (let k = 1; k < incs.length; k++) {
    if (incs[k]!.to === incs[k - 1]!.to)
      violations.push(`two holders both acknowledged writing ${incs[k]!.to}`);
    else if (incs[k]!.token < incs[k - 1]!.token)
      violations.push(
        `fencing token went back (${incs[k - 1]!.token} then ${incs[k]!.token}) at counter ${incs[k]!.to}`,
      );
  }
  return {
    name: 'lock recipe (fenced counter)',
    violations,
    detail: `${incs.length} acknowledged increments`,
  };
}

/** Client-seen write gaps after each fault that took the leader: kill (or pause) to each
 * worker's first acknowledged write after it. */
export function writeGaps(records: Records, faults: readonly FaultRecord[]): number[] {
  const acks = new Map<string, number[]>();
  for (const [worker, rs] of records) {
    const list: number[] = [];
    for (const r of rs) {
      if (r.t === 'op' && r.response !== null && r.op.type !== 'get') list.push(r.response);
      if (r.t === 'seq' && r.response !== null) list.push(r.response);
    }
    list.sort((a, b) => a - b);
    acks.set(worker, list);
  }
  const gaps: number[] = [];
  for (const f of faults) {
    if (!f.leaderLost) continue;
    for (const list of acks.values()) {
      const next = list.find((t) => t > f.at);
      if (next !== undefined) gaps.push(next - f.at);
    }
  }
  return gaps.sort((a, b) => a - b);
}

export const percentile = (sorted: readonly number[], p: number): number | null =>
  sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
