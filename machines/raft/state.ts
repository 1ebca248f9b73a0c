/**
 * The pieces every role shares: membership derived from the log, effects, role changes, voting,
 * the term check and the runtime's reports. Role-specific logic lives in follower.ts,
 * candidate.ts and leader.ts; the context in context.ts, the draft a step works on and the log
 * view in draft.ts. Nothing here reads a clock, draws a random number other than from `rng`, or
 * performs IO.
 */
import type { LogView, Progress, RaftContext } from './context.ts';
import { type Draft, isUpToDate, lastIndex, lastTerm, resetProgress, termAt } from './draft.ts';
import type { RejectReason } from './events.ts';
import type { Message, RequestVote } from './messages.ts';
import { nextRandom } from './prng.ts';
import type { Configuration, NodeId, SnapshotMeta } from './types.ts';

export * from './context.ts';
export * from './draft.ts';

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
    toldCommit: 0,
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
  if (t > 0 && !d.snapshotPending && d.applied - Math.max(d.snapshot.index, d.snapshotTaken) >= t) {
    d.snapshotPending = true;
    d.effects.push({ type: 'snapshot', index: d.applied });
  }
}

/**
 * The runtime made the state machine durable at `index`: the log may drop what it covers, but
 * keeps the last `snapshotCatchUpEntries` (at most half the threshold) so a follower a little
 * behind catches up from the log; what it drops is then covered by the snapshot sent to laggards.
 */
export function handleSnapshotTaken(d: Draft, taken: number): void {
  d.snapshotPending = false;
  if (taken > d.applied) return;
  if (taken > d.snapshotTaken) d.snapshotTaken = taken;
  const keep = Math.min(d.opts.snapshotCatchUpEntries, Math.floor(d.opts.snapshotThreshold / 2));
  const index = taken - Math.max(0, keep);
  const term = termAt(d, index);
  if (index <= d.snapshot.index || term === undefined) return;
  const meta: SnapshotMeta = { index, term, config: configAt(d, index) };
  d.snapshot = meta;
  d.configs = d.configs.filter((c) => c.index > index);
  d.effects.push({ type: 'compact', snapshot: meta });
}
