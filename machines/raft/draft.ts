/**
 * A step works on a draft: a private copy of the context plus the effects it produced, the role
 * the statechart is in and the log reader the machine was made with. Opening one copies nothing
 * that the step does not change (the progress record per peer, `progressOf`; votes and reads are
 * replaced, never changed in place); closing one returns the next context and the step's
 * effects in Raft's order. Also the log view the roles step against: the durable log overlaid
 * with the unstable tail.
 */
import type { LogView, Progress, RaftContext, SharedProgress } from './context.ts';
import type { Effect, Role } from './events.ts';
import type { Entry, HardState, LogReader, NodeId } from './types.ts';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** A context being stepped: mutable, with the effects of this step, the role the step starts
 * in (role changes set it; the statechart's transition moves to the same state) and the log. */
export interface Draft extends Omit<Mutable<RaftContext>, 'progress' | 'stats'> {
  readonly log: LogReader;
  role: Role;
  /** Read-only here, shared with the context the step started from: write through
   * `progressOf` (which copies a peer's entry the first time a step changes it), replace the
   * whole record with `resetProgress`. */
  progress: Readonly<Record<NodeId, SharedProgress>>;
  /** Peers whose entry in `progress` this step already copied (null: the record is shared). */
  progressOwned: Set<NodeId> | null;
  stats: { elections: number; dropped: number };
  readonly effects: Effect[];
  /** Lowest log index written by this step, or Infinity. */
  appendFrom: number;
  unstableOwned: boolean;
}

/** Opens a step on `ctx`: nothing is copied until changed (the progress record per peer,
 * `progressOf`; votes and reads are replaced, never changed in place). */
export function openDraft(ctx: RaftContext, log: LogReader, role: Role): Draft {
  // Field by field, like contextOf: one object shape, copied fast.
  return {
    id: ctx.id,
    opts: ctx.opts,
    term: ctx.term,
    vote: ctx.vote,
    leader: ctx.leader,
    commit: ctx.commit,
    applying: ctx.applying,
    applied: ctx.applied,
    persisted: ctx.persisted,
    unstable: ctx.unstable,
    snapshot: ctx.snapshot,
    awaitingRestore: ctx.awaitingRestore,
    configs: ctx.configs,
    electionElapsed: ctx.electionElapsed,
    heartbeatElapsed: ctx.heartbeatElapsed,
    randomizedElectionTimeout: ctx.randomizedElectionTimeout,
    rng: ctx.rng,
    votes: ctx.votes,
    progress: ctx.progress,
    seq: ctx.seq,
    reads: ctx.reads,
    termStart: ctx.termStart,
    transferee: ctx.transferee,
    transferElapsed: ctx.transferElapsed,
    snapshotPending: ctx.snapshotPending,
    snapshotTaken: ctx.snapshotTaken,
    savedHardState: ctx.savedHardState,
    stats: { elections: ctx.stats.elections, dropped: ctx.stats.dropped },
    log,
    role,
    progressOwned: null,
    effects: [],
    appendFrom: Number.POSITIVE_INFINITY,
    unstableOwned: false,
  };
}

/** Ends a step: the persist effect goes first (it may hold the sends after it), then the
 * step's own effects, then the committed entries now safe to apply. */
export function closeDraft(d: Draft): [RaftContext, Effect[]] {
  const effects: Effect[] = [];
  const hsChanged = d.term !== d.savedHardState.term || d.vote !== d.savedHardState.vote;
  const writes = d.appendFrom !== Number.POSITIVE_INFINITY;
  if (hsChanged || writes) {
    const hardState: HardState = { term: d.term, vote: d.vote, commit: d.commit };
    d.savedHardState = hardState;
    const off = d.unstable[0]?.index ?? 0;
    const entries = writes ? d.unstable.slice(d.appendFrom - off) : [];
    effects.push({ type: 'persist', hardState, entries });
  }
  for (const e of d.effects) effects.push(e);
  const ready = Math.min(d.commit, d.persisted);
  if (ready > d.applying && !d.awaitingRestore) {
    effects.push({ type: 'apply', entries: entriesBetween(d, d.applying + 1, ready + 1) });
    d.applying = ready;
  }
  return [contextOf(d), effects];
}

/** The context a draft ends with, field by field (one object shape for every step: a rest
 * pattern here made V8 copy slowly, a quarter of the simulator's time). */
function contextOf(d: Draft): RaftContext {
  return {
    id: d.id,
    opts: d.opts,
    term: d.term,
    vote: d.vote,
    leader: d.leader,
    commit: d.commit,
    applying: d.applying,
    applied: d.applied,
    persisted: d.persisted,
    unstable: d.unstable,
    snapshot: d.snapshot,
    awaitingRestore: d.awaitingRestore,
    configs: d.configs,
    electionElapsed: d.electionElapsed,
    heartbeatElapsed: d.heartbeatElapsed,
    randomizedElectionTimeout: d.randomizedElectionTimeout,
    rng: d.rng,
    votes: d.votes,
    progress: d.progress,
    seq: d.seq,
    reads: d.reads,
    termStart: d.termStart,
    transferee: d.transferee,
    transferElapsed: d.transferElapsed,
    snapshotPending: d.snapshotPending,
    snapshotTaken: d.snapshotTaken,
    savedHardState: d.savedHardState,
    stats: d.stats,
  };
}

// ---------------------------------------------------------------------------------------------
// The log view: reader (durable) overlaid with the unstable tail.

export function lastIndex(d: LogView): number {
  const u = d.unstable;
  if (u.length > 0) return u[u.length - 1]!.index;
  return d.awaitingRestore ? d.snapshot.index : d.log.lastIndex();
}

export function firstIndex(d: LogView): number {
  return d.awaitingRestore ? d.snapshot.index + 1 : d.log.firstIndex();
}

/** Term of entry `i`, for `i` in [firstIndex - 1, lastIndex]; undefined outside. */
export function termAt(d: LogView, i: number): number | undefined {
  const u = d.unstable;
  if (u.length > 0 && i >= u[0]!.index) return u[i - u[0]!.index]?.term;
  if (i === d.snapshot.index) return d.snapshot.term;
  if (d.awaitingRestore) return undefined;
  return d.log.term(i);
}

export function lastTerm(d: LogView): number {
  return termAt(d, lastIndex(d)) ?? 0;
}

/** Entries [lo, hi); requires firstIndex <= lo <= hi <= lastIndex + 1. */
export function entriesBetween(d: LogView, lo: number, hi: number): Entry[] {
  if (lo >= hi) return [];
  const u = d.unstable;
  const off = u.length > 0 ? u[0]!.index : hi;
  const out = lo < off ? d.log.entries(lo, Math.min(hi, off)) : [];
  if (hi > off) {
    const from = Math.max(lo, off) - off;
    for (let i = from; i < hi - off; i++) out.push(u[i]!);
  }
  return out;
}

export function matchTerm(d: LogView, index: number, term: number): boolean {
  return termAt(d, index) === term;
}

/** §5.4.1: a candidate's log is at least as up-to-date as ours. */
export function isUpToDate(d: LogView, index: number, term: number): boolean {
  const lt = lastTerm(d);
  return term > lt || (term === lt && index >= lastIndex(d));
}

/** The largest index <= `index` whose term is <= `term` (used on both sides of fast backtracking). */
export function findConflictByTerm(d: LogView, index: number, term: number): [number, number] {
  const floor = firstIndex(d) - 1;
  for (let i = index; i >= floor; i--) {
    const t = termAt(d, i);
    if (t === undefined) return [i, 0];
    if (t <= term) return [i, t];
  }
  return [floor, termAt(d, floor) ?? 0];
}

/** Appends `entries` (contiguous, starting at or below lastIndex + 1), truncating whatever
 * conflicting suffix they replace. Committed entries are never replaced (§5.3, Figure 3). */
export function appendToLog(d: Draft, entries: readonly Entry[]): void {
  if (entries.length === 0) return;
  const k = entries[0]!.index;
  if (k <= d.commit) throw new Error(`raft invariant: overwriting committed index ${k} <= ${d.commit}`);
  if (k > lastIndex(d) + 1) throw new Error(`raft invariant: gap appending ${k} after ${lastIndex(d)}`);
  const u = d.unstable;
  const off = u.length > 0 ? u[0]!.index : k;
  if (u.length === 0 || k <= off) {
    d.unstable = entries.slice();
  } else {
    const keep = d.unstableOwned ? (u as Entry[]) : u.slice(0, k - off);
    if (d.unstableOwned) keep.length = k - off;
    for (const e of entries) keep.push(e);
    d.unstable = keep;
  }
  d.unstableOwned = true;
  d.persisted = Math.min(d.persisted, k - 1);
  d.appendFrom = Math.min(d.appendFrom, k);
  let configs = d.configs;
  if (configs.length > 0 && configs[configs.length - 1]!.index >= k)
    configs = configs.filter((c) => c.index < k);
  for (const e of entries)
    if (e.type === 'config') configs = [...configs, { index: e.index, config: e.config }];
  d.configs = configs;
}

// ---------------------------------------------------------------------------------------------
// Progress, copied on write.

/** The leader's progress of `peer`, writable in this step (copied the first time). */
export function progressOf(d: Draft, peer: NodeId): Progress | undefined {
  const p = d.progress[peer];
  if (p === undefined) return undefined;
  const record = ownRecord(d);
  if (d.progressOwned!.has(peer)) return p as Progress;
  const own: Progress = { ...p, inflight: p.inflight.slice() };
  record[peer] = own;
  d.progressOwned!.add(peer);
  return own;
}

function ownRecord(d: Draft): Record<NodeId, SharedProgress> {
  if (d.progressOwned === null) {
    d.progress = { ...d.progress };
    d.progressOwned = new Set();
  }
  return d.progress as Record<NodeId, SharedProgress>;
}

/** Starts tracking `peer` (a new leader's peers, a configuration change's newcomer). */
export function addProgress(d: Draft, peer: NodeId, p: Progress): void {
  ownRecord(d)[peer] = p;
  d.progressOwned!.add(peer);
}

/** Stops tracking `peer` (removed by a configuration change). */
export function removeProgress(d: Draft, peer: NodeId): void {
  delete ownRecord(d)[peer];
  d.progressOwned!.delete(peer);
}

/** Forgets every peer (a role change). */
export function resetProgress(d: Draft): void {
  d.progress = {};
  d.progressOwned = new Set();
}
