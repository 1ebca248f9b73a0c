/**
 * The Raft node's context, the log view the roles step against, and the pieces every role
 * shares: role changes, voting, effects. Role-specific logic lives in follower.ts,
 * candidate.ts and leader.ts.
 *
 * A step works on a draft: a private copy of the context plus the effects it produced, the
 * role the statechart is in (its state value is the only place the role is kept) and the log
 * reader the machine was made with (the context is plain data: no live store in it). Nothing
 * here reads a clock, draws a random number other than from `rng`, or performs IO.
 */
import type { Effect, RejectReason, Role } from './events.ts';
import type { Message, RequestVote } from './messages.ts';
import { nextRandom } from './prng.ts';
import type { Configuration, Entry, HardState, LogReader, NodeId, SnapshotMeta } from './types.ts';

export interface RaftOptions {
  /** Base election timeout in ticks; each node draws its timeout from [e, 2e) (§5.2). */
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  /** Appends in flight per follower in the replicate state (pipelining). */
  readonly maxInflight: number;
  /** Entries per append message (batching). */
  readonly maxAppendEntries: number;
  /** Ask for a snapshot once this many entries were applied since the last one; 0: never. */
  readonly snapshotThreshold: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  /** A learner is promoted only when its match index is within this many entries of the
   * leader's last index (thesis §4.2.1: catch up before voting). */
  readonly catchUpMargin: number;
}

export const defaultOptions: RaftOptions = {
  electionTicks: 10,
  heartbeatTicks: 1,
  maxInflight: 64,
  maxAppendEntries: 512,
  snapshotThreshold: 0,
  preVote: true,
  checkQuorum: true,
  catchUpMargin: 64,
};

/** Replication state of one peer, kept by the leader (etcd's Progress). */
export interface Progress {
  match: number;
  next: number;
  /** probe: one append at a time until a match is found; replicate: pipelined appends;
   * snapshot: an InstallSnapshot is in flight. */
  state: 'probe' | 'replicate' | 'snapshot';
  probeSent: boolean;
  /** Last index of each append in flight, oldest first. */
  inflight: number[];
  recentActive: boolean;
  ackedSeq: number;
  pendingSnapshot: number;
  snapshotElapsed: number;
}

/** A progress entry as the context holds it and a step first sees it: shared, read-only. */
export type SharedProgress = Readonly<Omit<Progress, 'inflight'>> & { readonly inflight: readonly number[] };

export interface PendingRead {
  readonly ids: readonly string[];
  /** The commit index the read waits for; -1 until this leader committed an entry of its term. */
  readonly index: number;
  readonly seq: number;
  /** The follower that forwarded it, or null for a local read. */
  readonly from: NodeId | null;
}

/** The machine's context: plain data (an inspector shows it as it is). The role is the
 * statechart's state value (`roleOf`); the log is read through the machine's port. */
export interface RaftContext {
  readonly id: NodeId;
  readonly opts: RaftOptions;
  readonly term: number;
  readonly vote: NodeId | null;
  readonly leader: NodeId | null;
  readonly commit: number;
  /** Highest index handed to the runtime in an `apply` effect. */
  readonly applying: number;
  /** Highest index the runtime reported applied. */
  readonly applied: number;
  /** Highest index known durable in the current log (entries beyond it live in `unstable`). */
  readonly persisted: number;
  /** Entries appended but not yet reported persisted; a contiguous tail of the log that
   * overrides the reader from its first index on. */
  readonly unstable: readonly Entry[];
  readonly snapshot: SnapshotMeta;
  /** An installed snapshot is being written: the reader is stale until it is persisted. */
  readonly awaitingRestore: boolean;
  /** Configuration entries in the log after the snapshot, ascending. */
  readonly configs: readonly { readonly index: number; readonly config: Configuration }[];
  readonly electionElapsed: number;
  readonly heartbeatElapsed: number;
  readonly randomizedElectionTimeout: number;
  readonly rng: number;
  readonly votes: Readonly<Record<NodeId, boolean>>;
  readonly progress: Readonly<Record<NodeId, SharedProgress>>;
  readonly seq: number;
  readonly reads: readonly PendingRead[];
  /** Index of the current leader's first entry of its term (its no-op). */
  readonly termStart: number;
  readonly transferee: NodeId | null;
  readonly transferElapsed: number;
  readonly snapshotPending: boolean;
  /** The last hard state handed to a `persist` effect. */
  readonly savedHardState: HardState;
  readonly stats: { readonly elections: number; readonly dropped: number };
}

/** What a machine starts from (plain data; the log comes through the machine's port). */
export interface RaftInput {
  readonly id: NodeId;
  readonly hardState?: HardState;
  readonly snapshot?: SnapshotMeta;
  readonly applied?: number;
  readonly seed: number;
  readonly options?: Partial<RaftOptions>;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** The context with the log it describes: what the log-reading helpers below need. */
export interface LogView extends RaftContext {
  readonly log: LogReader;
}

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

export function initialContext(input: RaftInput, log: LogReader): RaftContext {
  const opts = { ...defaultOptions, ...input.options };
  const snapshot: SnapshotMeta = input.snapshot ?? {
    index: log.firstIndex() - 1,
    term: log.term(log.firstIndex() - 1) ?? 0,
    config: { voters: [], learners: [] },
  };
  const hs = input.hardState ?? { term: 0, vote: null, commit: 0 };
  const last = log.lastIndex();
  const configs: { index: number; config: Configuration }[] = [];
  if (last >= log.firstIndex()) {
    for (const e of log.entries(log.firstIndex(), last + 1)) {
      if (e.type === 'config') configs.push({ index: e.index, config: e.config });
    }
  }
  const commit = Math.max(snapshot.index, Math.min(hs.commit, last));
  const applied = Math.max(snapshot.index, Math.min(input.applied ?? 0, commit));
  const [r, rng] = nextRandom(input.seed);
  return {
    id: input.id,
    opts,
    term: hs.term,
    vote: hs.vote,
    leader: null,
    commit,
    applying: applied,
    applied,
    persisted: last,
    unstable: [],
    snapshot,
    awaitingRestore: false,
    configs,
    electionElapsed: 0,
    heartbeatElapsed: 0,
    randomizedElectionTimeout: opts.electionTicks + Math.floor(r * opts.electionTicks),
    rng,
    votes: {},
    progress: {},
    seq: 0,
    reads: [],
    termStart: 0,
    transferee: null,
    transferElapsed: 0,
    snapshotPending: false,
    savedHardState: hs,
    stats: { elections: 0, dropped: 0 },
  };
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
// Membership, derived from the log (thesis §4.1).

export function currentConfig(d: RaftContext): Configuration {
  const c = d.configs;
  return c.length > 0 ? c[c.length - 1]!.config : d.snapshot.config;
}

export function configAt(d: RaftContext, index: number): Configuration {
  for (let i = d.configs.length - 1; i >= 0; i--)
    if (d.configs[i]!.index <= index) return d.configs[i]!.config;
  return d.snapshot.config;
}

export function lastConfigIndex(d: RaftContext): number {
  const c = d.configs;
  return c.length > 0 ? c[c.length - 1]!.index : d.snapshot.index;
}

export function isVoter(d: RaftContext, id: NodeId = d.id): boolean {
  return currentConfig(d).voters.includes(id);
}

export function quorum(config: Configuration): number {
  return Math.floor(config.voters.length / 2) + 1;
}

/** Peers the leader replicates to: voters and learners other than itself. */
export function replicationTargets(d: RaftContext): NodeId[] {
  const c = currentConfig(d);
  const out: NodeId[] = [];
  for (const id of c.voters) if (id !== d.id) out.push(id);
  for (const id of c.learners) if (id !== d.id) out.push(id);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Effects.

export function send(d: Draft, to: NodeId, message: Message, afterPersist = true): void {
  d.effects.push({ type: 'send', to, message, afterPersist });
}

/** Answers reads `ids` forwarded by node `to` that this node cannot serve (index -1: refused). */
export function refuseForwardedRead(d: Draft, to: NodeId, ids: readonly string[]): void {
  send(d, to, { type: 'raft.forwardReadResult', term: d.term, from: d.id, ids, index: -1 });
}

export function failReads(d: Draft, reason: RejectReason): void {
  const local = d.reads.filter((r) => r.from === null).flatMap((r) => r.ids);
  if (local.length > 0) d.effects.push({ type: 'readFailed', ids: local, reason, leader: d.leader });
  for (const r of d.reads) if (r.from !== null) refuseForwardedRead(d, r.from, r.ids);
  d.reads = [];
}

// ---------------------------------------------------------------------------------------------
// Role changes: the only places `role`, `term` and `vote` change together.

function resetTimers(d: Draft): void {
  const [r, rng] = nextRandom(d.rng);
  d.rng = rng;
  d.randomizedElectionTimeout = d.opts.electionTicks + Math.floor(r * d.opts.electionTicks);
  d.electionElapsed = 0;
  d.heartbeatElapsed = 0;
}

function reset(d: Draft, term: number): void {
  if (d.term !== term) {
    d.term = term;
    d.vote = null;
  }
  d.leader = null;
  resetTimers(d);
  d.votes = {};
  resetProgress(d);
  d.transferee = null;
  d.transferElapsed = 0;
}

function announce(d: Draft): void {
  d.effects.push({ type: 'roleChanged', role: d.role, term: d.term, leader: d.leader });
}

export function becomeFollower(d: Draft, term: number, leader: NodeId | null): void {
  const wasLeader = d.role === 'leader';
  const changed = d.role !== 'follower' || term !== d.term || leader !== d.leader;
  if (wasLeader || d.reads.length > 0) failReads(d, 'NOT_LEADER');
  reset(d, term);
  d.role = 'follower';
  d.leader = leader;
  if (changed) announce(d);
}

/**
 * Asks every other voter for its vote at `term`, showing our last log index and term (§5.4.1).
 * A real request waits for our own vote to be persisted (afterPersist); a pre-vote changes no
 * persistent state (thesis §9.6), so it leaves at once.
 */
function requestVotes(d: Draft, r: { term: number; preVote: boolean; transfer: boolean }): void {
  const li = lastIndex(d);
  const lt = lastTerm(d);
  for (const peer of currentConfig(d).voters) {
    if (peer === d.id) continue;
    send(
      d,
      peer,
      {
        type: 'raft.requestVote',
        term: r.term,
        from: d.id,
        lastIndex: li,
        lastTerm: lt,
        preVote: r.preVote,
        transfer: r.transfer,
      },
      !r.preVote,
    );
  }
}

/** Pre-vote (thesis §9.6): ask whether we could win at term + 1 without disturbing anyone. */
export function becomePreCandidate(d: Draft): void {
  const term = d.term;
  reset(d, term);
  d.role = 'preCandidate';
  d.votes = { [d.id]: true };
  announce(d);
  requestVotes(d, { term: term + 1, preVote: true, transfer: false });
}

/** §5.2: increment the term, vote for ourselves, ask the others. The vote is persisted before
 * any request leaves (afterPersist), so a crash cannot make us vote twice in this term. */
export function becomeCandidate(d: Draft, transfer: boolean): void {
  reset(d, d.term + 1);
  d.role = 'candidate';
  d.vote = d.id;
  d.votes = { [d.id]: true };
  announce(d);
  requestVotes(d, { term: d.term, preVote: false, transfer });
}

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

export function newProgress(d: LogView): Progress {
  return {
    match: 0,
    next: lastIndex(d) + 1,
    state: 'probe',
    probeSent: false,
    inflight: [],
    recentActive: true,
    ackedSeq: 0,
    pendingSnapshot: 0,
    snapshotElapsed: 0,
  };
}

export function countVotes(d: RaftContext): {
  granted: number;
  rejected: number;
  quorum: number;
  voters: number;
} {
  const c = currentConfig(d);
  let granted = 0;
  let rejected = 0;
  for (const id of c.voters) {
    const v = d.votes[id];
    if (v === true) granted++;
    else if (v === false) rejected++;
  }
  return { granted, rejected, quorum: quorum(c), voters: c.voters.length };
}

// ---------------------------------------------------------------------------------------------
// Shared message handling.

/** Whether the node is inside a leader lease: it heard from a live leader less than an
 * election timeout ago, so it ignores requests to vote (thesis §4.2.3, §9.6). */
export function inLease(d: RaftContext): boolean {
  return d.opts.checkQuorum && d.leader !== null && d.electionElapsed < d.opts.electionTicks;
}

/** §5.2, §5.4.1, thesis §9.6: grant a (pre-)vote when the candidate's log is up to date and we
 * have not voted for someone else in this term (a pre-vote only asks about term + 1). */
export function handleVoteRequest(d: Draft, m: RequestVote): void {
  const canVote = m.preVote
    ? m.term > d.term || (d.vote === null && d.leader === null) || d.vote === m.from
    : d.vote === m.from || (d.vote === null && d.leader === null);
  const granted = canVote && isUpToDate(d, m.lastIndex, m.lastTerm);
  if (granted && !m.preVote) {
    d.vote = m.from;
    d.electionElapsed = 0;
  }
  send(d, m.from, {
    type: 'raft.voteResult',
    term: granted && m.preVote ? m.term : d.term,
    from: d.id,
    granted,
    preVote: m.preVote,
  });
}

/** Whether a message moves us to its (newer) term before any role logic runs. A pre-vote
 * request and a granted pre-vote do not: they speak of a term nobody is in yet. A vote request
 * inside a leader lease is ignored outright, unless a leader transfer started it. */
export function classifyTerm(d: RaftContext, m: Message): 'newer' | 'current' | 'stale' | 'ignore' {
  if (m.term > d.term) {
    if (m.type === 'raft.requestVote') {
      if (!m.transfer && inLease(d)) return 'ignore';
      if (m.preVote) return 'current';
    }
    if (m.type === 'raft.voteResult' && m.preVote && m.granted) return 'current';
    return 'newer';
  }
  return m.term < d.term ? 'stale' : 'current';
}

/** The leader a message of a newer term names, if any. */
export function leaderOf(m: Message): NodeId | null {
  return m.type === 'raft.appendEntries' || m.type === 'raft.heartbeat' || m.type === 'raft.installSnapshot'
    ? m.from
    : null;
}

/** Messages from an older term: tell a stale leader or pre-candidate our term so it steps
 * down (needed with pre-vote and check-quorum, or a partitioned node could stay stuck);
 * drop the rest. */
export function answerOutOfTerm(d: Draft, m: Message): void {
  if (m.term >= d.term) {
    d.stats.dropped++;
    return;
  }
  if (m.type === 'raft.appendEntries' || m.type === 'raft.heartbeat') {
    send(d, m.from, {
      type: 'raft.appendResult',
      term: d.term,
      from: d.id,
      success: false,
      index: 0,
      hintIndex: 0,
      hintTerm: 0,
      seq: 0,
    });
  } else if (m.type === 'raft.requestVote' && m.preVote) {
    send(d, m.from, { type: 'raft.voteResult', term: d.term, from: d.id, granted: false, preVote: true });
  } else {
    d.stats.dropped++;
  }
}

/** Bookkeeping every role does when the runtime reports a write durable. */
export function handlePersisted(d: Draft, index: number, term: number): void {
  if (termAt(d, index) !== term) return; // a write since overwritten: its ack says nothing now
  if (d.awaitingRestore && index >= d.snapshot.index) d.awaitingRestore = false;
  if (index > d.persisted) d.persisted = index;
  const u = d.unstable;
  if (u.length > 0 && index >= u[0]!.index) {
    d.unstable = u.slice(index - u[0]!.index + 1);
    d.unstableOwned = false;
  }
}

export function handleApplied(d: Draft, index: number): void {
  if (index > d.applied) d.applied = Math.min(index, d.applying);
  const t = d.opts.snapshotThreshold;
  if (t > 0 && !d.snapshotPending && d.applied - d.snapshot.index >= t) {
    d.snapshotPending = true;
    d.effects.push({ type: 'snapshot', index: d.applied });
  }
}

/** The runtime made a snapshot at `index` durable: it becomes the one we send to laggards,
 * and the log may drop what it covers. */
export function handleSnapshotTaken(d: Draft, index: number): void {
  d.snapshotPending = false;
  const term = termAt(d, index);
  if (index <= d.snapshot.index || index > d.applied || term === undefined) return;
  const meta: SnapshotMeta = { index, term, config: configAt(d, index) };
  d.snapshot = meta;
  d.configs = d.configs.filter((c) => c.index > index);
  d.effects.push({ type: 'compact', snapshot: meta });
}
