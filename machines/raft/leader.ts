/**
 * The leader role: replicate (batched, pipelined, fast backtracking), commit by counting only
 * entries of its own term (§5.4.2), serve ReadIndex (thesis §6.4), change membership one
 * server at a time (thesis §4.1), transfer leadership (thesis §3.10), check quorum.
 */
import type { LocalEvent, MembershipChange } from './events.ts';
import type { Message } from './messages.ts';
import {
  addProgress,
  appendToLog,
  currentConfig,
  type Draft,
  entriesBetween,
  findConflictByTerm,
  handleVoteRequest,
  lastConfigIndex,
  lastIndex,
  newProgress,
  type Progress,
  progressOf,
  quorum,
  type RaftContext,
  removeProgress,
  replicationTargets,
  resetProgress,
  type SharedProgress,
  send,
  termAt,
} from './state.ts';
import type { Configuration, Entry, NodeId } from './types.ts';

export function becomeLeader(d: Draft): void {
  d.role = 'leader';
  d.leader = d.id;
  d.stats.elections++;
  resetProgress(d);
  for (const peer of replicationTargets(d)) addProgress(d, peer, newProgress(d));
  d.reads = [];
  d.effects.push({ type: 'roleChanged', role: 'leader', term: d.term, leader: d.id });
  // Thesis §6.4 / §5.4.2: an entry of our own term must commit before earlier entries count as
  // committed and before ReadIndex can answer.
  const index = lastIndex(d) + 1;
  d.termStart = index;
  appendToLog(d, [{ index, term: d.term, type: 'noop' }]);
  broadcastAppend(d, true);
}

export function stepLeader(d: Draft, m: Message): void {
  switch (m.type) {
    case 'raft.appendResult':
      return handleAppendResult(d, m.from, m.success, m.index, m.hintIndex, m.hintTerm, m.seq);
    case 'raft.heartbeatResult':
      return handleHeartbeatResult(d, m.from, m.seq);
    case 'raft.installSnapshotResult':
      return handleSnapshotResult(d, m.from, m.index);
    case 'raft.requestVote':
      return handleVoteRequest(d, m);
    case 'raft.forwardRead':
      return registerRead(d, m.ids, m.from);
    default:
      // Two leaders in one term cannot happen (§5.2); votes and other answers arrive late.
      d.stats.dropped++;
  }
}

export function leaderLocal(d: Draft, e: LocalEvent): void {
  switch (e.type) {
    case 'raft.propose':
      return propose(d, e.commands);
    case 'raft.readIndex':
      return registerRead(d, e.ids, null);
    case 'raft.changeMembership':
      return changeMembership(d, e.id, e.change);
    case 'raft.transferLeader':
      return transferLeader(d, e.to);
    case 'raft.snapshotFailed': {
      // Try again after an election timeout, not at the next heartbeat: each attempt dumps the
      // whole tree, and a follower that failed one (down, or its NATS cut) will likely fail more.
      const pr = progressOf(d, e.to);
      if (pr?.state === 'snapshot')
        pr.snapshotElapsed = Math.max(pr.snapshotElapsed, 3 * d.opts.electionTicks);
      return;
    }
    default:
      d.stats.dropped++;
  }
}

// ---------------------------------------------------------------------------------------------
// Replication.

function paused(d: Draft, pr: SharedProgress): boolean {
  if (pr.state === 'probe') return pr.probeSent;
  if (pr.state === 'replicate') return pr.inflight.length >= d.opts.maxInflight;
  return true;
}

function toProbe(pr: Progress, next: number): void {
  pr.state = 'probe';
  pr.next = Math.max(next, pr.match + 1);
  pr.probeSent = false;
  pr.inflight = [];
}

function toReplicate(pr: Progress): void {
  pr.state = 'replicate';
  pr.next = pr.match + 1;
  pr.probeSent = false;
  pr.inflight = [];
}

/** Sends the next batch to `peer`, or a snapshot when the entries it needs were compacted. */
function sendAppend(d: Draft, peer: NodeId, sendIfEmpty: boolean): boolean {
  const seen = d.progress[peer];
  if (seen === undefined || paused(d, seen)) return false;
  const pr = progressOf(d, peer)!;
  const prevIndex = pr.next - 1;
  const prevTerm = termAt(d, prevIndex);
  if (prevTerm === undefined) return sendSnapshot(d, peer, pr);
  const last = lastIndex(d);
  const hi = Math.min(last + 1, pr.next + d.opts.maxAppendEntries);
  if (hi <= pr.next && !sendIfEmpty) return false;
  const entries: Entry[] = hi > pr.next ? entriesBetween(d, pr.next, hi) : [];
  send(
    d,
    peer,
    {
      type: 'raft.appendEntries',
      term: d.term,
      from: d.id,
      prevIndex,
      prevTerm,
      entries,
      commit: d.commit,
      seq: d.seq,
    },
    false,
  );
  // The follower takes the commit index up to the last entry of this append, if it matches.
  const told = Math.min(d.commit, entries.length > 0 ? hi - 1 : prevIndex);
  if (told > pr.toldCommit) pr.toldCommit = told;
  if (pr.state === 'replicate') {
    if (entries.length > 0) {
      pr.next = hi;
      pr.inflight.push(hi - 1);
    }
  } else {
    pr.probeSent = true;
  }
  return true;
}

function sendSnapshot(d: Draft, peer: NodeId, pr: Progress): boolean {
  if (!pr.recentActive) return false; // don't ship a whole snapshot to a node that may be down
  pr.state = 'snapshot';
  pr.pendingSnapshot = d.snapshot.index;
  pr.snapshotElapsed = 0;
  pr.inflight = [];
  d.effects.push({
    type: 'sendSnapshot',
    to: peer,
    message: { type: 'raft.installSnapshot', term: d.term, from: d.id, snapshot: d.snapshot },
  });
  return true;
}

function broadcastAppend(d: Draft, sendIfEmpty: boolean): void {
  for (const peer in d.progress) sendAppend(d, peer, sendIfEmpty);
}

function broadcastHeartbeat(d: Draft): void {
  for (const peer in d.progress) {
    const seen = d.progress[peer]!;
    const commit = Math.min(seen.match, d.commit);
    if (commit > seen.toldCommit) progressOf(d, peer)!.toldCommit = commit;
    send(d, peer, { type: 'raft.heartbeat', term: d.term, from: d.id, commit, seq: d.seq }, false);
  }
}

/**
 * A new commit index goes to every follower that has not been sent it, at once, in a quiet
 * heartbeat (no answer): otherwise it would wait for the next append or heartbeat, up to
 * heartbeatTicks, and a watch or read served by a follower would see a write that much later
 * (80 ms p50 at 10 writes/s). Only to a peer whose pipeline is idle: under load the appends
 * carry the commit index, and notices there cost 16% of puts/s (measured).
 */
function tellCommit(d: Draft): void {
  if (!d.opts.commitNotice) return;
  for (const peer in d.progress) {
    const seen = d.progress[peer]!;
    const commit = Math.min(seen.match, d.commit);
    // A peer with appends in flight is told by the append its answer brings, or by the notice
    // then (this runs again on every answer that moves its match): under load, no notices.
    if (commit <= seen.toldCommit || seen.inflight.length > 0) continue;
    progressOf(d, peer)!.toldCommit = commit;
    send(
      d,
      peer,
      { type: 'raft.heartbeat', term: d.term, from: d.id, commit, seq: d.seq, quiet: true },
      false,
    );
  }
}

function handleAppendResult(
  d: Draft,
  from: NodeId,
  success: boolean,
  index: number,
  hintIndex: number,
  hintTerm: number,
  seq: number,
): void {
  const pr = progressOf(d, from);
  if (pr === undefined) return;
  acknowledge(d, pr, seq);
  if (!success) {
    // Fast backtracking (§5.3): jump past the follower's whole conflicting term.
    if (pr.state === 'replicate' ? index <= pr.match : index !== pr.next - 1) return; // stale
    let next = hintIndex;
    if (hintTerm > 0) next = findConflictByTerm(d, hintIndex, hintTerm)[0];
    toProbe(pr, Math.min(index, next + 1));
    sendAppend(d, from, true);
    return;
  }
  const advanced = index > pr.match;
  if (advanced) {
    pr.match = index;
    if (pr.next <= index) pr.next = index + 1;
  }
  while (pr.inflight.length > 0 && pr.inflight[0]! <= index) pr.inflight.shift();
  if (pr.state === 'probe') toReplicate(pr);
  else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) toProbe(pr, pr.match + 1);
  // A new commit index goes with the appends sent now, and to the other followers in a quiet
  // heartbeat (no answer): not an empty append each, whose answers would double the messages
  // per write, which is what bounds throughput here.
  if (advanced) maybeCommit(d);
  while (sendAppend(d, from, false)) {}
  // Also a follower whose answer came after the commit: it holds more now, so it may be told more.
  if (advanced) tellCommit(d);
  if (d.transferee === from && pr.match === lastIndex(d)) sendTimeoutNow(d, from);
}

function handleHeartbeatResult(d: Draft, from: NodeId, seq: number): void {
  const pr = progressOf(d, from);
  if (pr === undefined) return;
  acknowledge(d, pr, seq);
  if (pr.state === 'probe') pr.probeSent = false;
  // A lost append would otherwise leave a full pipeline waiting forever: free one slot.
  if (pr.state === 'replicate' && pr.inflight.length >= d.opts.maxInflight) pr.inflight.shift();
  // An empty append probes where the follower really is when pipelined appends were lost.
  if (pr.match < lastIndex(d)) sendAppend(d, from, true);
}

function handleSnapshotResult(d: Draft, from: NodeId, index: number): void {
  const pr = progressOf(d, from);
  if (pr === undefined) return;
  pr.recentActive = true;
  if (index > pr.match) pr.match = index;
  toProbe(pr, pr.match + 1);
  sendAppend(d, from, false);
}

function acknowledge(d: Draft, pr: Progress, seq: number): void {
  pr.recentActive = true;
  if (seq > pr.ackedSeq) {
    pr.ackedSeq = seq;
    confirmReads(d);
  }
}

/** §5.3, §5.4.2: commit the highest index a quorum of voters holds durably, but only by
 * counting replicas of an entry of the current term. The leader counts itself once its own
 * write is durable (thesis §10.2.1). */
function maybeCommit(d: Draft): boolean {
  const config = currentConfig(d);
  const matches: number[] = [];
  for (const id of config.voters) matches.push(id === d.id ? d.persisted : (d.progress[id]?.match ?? 0));
  matches.sort((a, b) => b - a);
  const candidate = matches[quorum(config) - 1] ?? 0;
  if (candidate <= d.commit || termAt(d, candidate) !== d.term) return false;
  d.commit = candidate;
  // Reads that waited for this term's first commit now have their index (thesis §6.4).
  if (d.reads.some((r) => r.index < 0))
    d.reads = d.reads.map((r) => (r.index < 0 ? { ...r, index: d.commit } : r));
  confirmReads(d);
  return true;
}

/** Called when our own write became durable. */
export function leaderPersisted(d: Draft): void {
  if (maybeCommit(d)) tellCommit(d);
}

// ---------------------------------------------------------------------------------------------
// Ticks and quorum.

export function tickLeader(d: Draft): void {
  d.heartbeatElapsed++;
  d.electionElapsed++;
  if (d.electionElapsed >= d.opts.electionTicks) {
    d.electionElapsed = 0;
    for (const peer in d.progress) progressOf(d, peer)!.recentActive = false;
    if (d.transferee !== null) d.transferee = null; // transfer did not finish in time: resume
  }
  for (const peer in d.progress) {
    if (d.progress[peer]!.state !== 'snapshot') continue;
    const pr = progressOf(d, peer)!;
    if (++pr.snapshotElapsed > 4 * d.opts.electionTicks) toProbe(pr, pr.match + 1);
  }
  if (d.heartbeatElapsed >= d.opts.heartbeatTicks) {
    d.heartbeatElapsed = 0;
    broadcastHeartbeat(d);
  }
}

/** Check-quorum (thesis §6.2): at the end of each election timeout, a leader that has not
 * heard from a quorum of voters steps down, so a partitioned leader stops serving. */
export function quorumLost(ctx: RaftContext): boolean {
  if (!ctx.opts.checkQuorum || ctx.electionElapsed + 1 < ctx.opts.electionTicks) return false;
  const config = currentConfig(ctx);
  let active = 0;
  for (const id of config.voters) if (id === ctx.id || ctx.progress[id]?.recentActive) active++;
  return active < quorum(config);
}

/** Thesis §4.2.2: a leader that removed itself steps down once that configuration commits. */
export function removedFromConfig(ctx: RaftContext): boolean {
  return ctx.commit >= lastConfigIndex(ctx) && !currentConfig(ctx).voters.includes(ctx.id);
}

// ---------------------------------------------------------------------------------------------
// Proposals, reads, membership, transfer.

function propose(d: Draft, commands: readonly { readonly id: string; readonly data: unknown }[]): void {
  if (commands.length === 0) return;
  const ids = commands.map((c) => c.id);
  if (d.transferee !== null) {
    d.effects.push({ type: 'proposeFailed', ids, reason: 'TRANSFERRING', leader: d.leader });
    return;
  }
  const first = lastIndex(d) + 1;
  const entries: Entry[] = commands.map((c, i) => ({
    index: first + i,
    term: d.term,
    type: 'normal',
    data: c.data,
  }));
  appendToLog(d, entries);
  d.effects.push({ type: 'proposed', ids, index: first, term: d.term });
  broadcastAppend(d, false);
}

/** Thesis §6.4: record the commit index, confirm we are still leader with a round of
 * heartbeats acknowledged by a quorum, then the read may be served once applied there. */
function registerRead(d: Draft, ids: readonly string[], from: NodeId | null): void {
  if (ids.length === 0) return;
  const ownTermCommitted = termAt(d, d.commit) === d.term;
  d.seq++;
  d.reads = [...d.reads, { ids, index: ownTermCommitted ? d.commit : -1, seq: d.seq, from }];
  confirmReads(d);
  if (d.reads.length > 0) broadcastHeartbeat(d);
}

function confirmReads(d: Draft): void {
  if (d.reads.length === 0) return;
  const config = currentConfig(d);
  const q = quorum(config);
  let done = 0;
  for (const r of d.reads) {
    if (r.index < 0) break;
    let acks = 0;
    for (const id of config.voters) if (id === d.id || (d.progress[id]?.ackedSeq ?? 0) >= r.seq) acks++;
    if (acks < q) break;
    if (r.from === null) d.effects.push({ type: 'readReady', ids: r.ids, index: r.index });
    else
      send(d, r.from, {
        type: 'raft.forwardReadResult',
        term: d.term,
        from: d.id,
        ids: r.ids,
        index: r.index,
      });
    done++;
  }
  if (done > 0) d.reads = d.reads.slice(done);
}

function changeMembership(d: Draft, id: string, change: MembershipChange): void {
  const reject = (reason: 'NOT_READY' | 'CHANGE_PENDING' | 'NOT_CAUGHT_UP' | 'INVALID'): void => {
    d.effects.push({ type: 'changeResult', id, ok: false, index: 0, reason, leader: d.leader });
  };
  // The 2015 fix to single-server changes: only after an entry of this term has committed.
  if (d.commit < d.termStart) return reject('NOT_READY');
  if (lastConfigIndex(d) > d.commit) return reject('CHANGE_PENDING');
  const c = currentConfig(d);
  const isVoter = c.voters.includes(change.node);
  const isLearner = c.learners.includes(change.node);
  let next: Configuration;
  switch (change.type) {
    case 'addLearner':
      if (isVoter || isLearner) return reject('INVALID');
      next = { voters: c.voters, learners: [...c.learners, change.node] };
      break;
    case 'promote': {
      if (!isLearner) return reject('INVALID');
      const pr = d.progress[change.node];
      if (pr === undefined || pr.match + d.opts.catchUpMargin < lastIndex(d)) return reject('NOT_CAUGHT_UP');
      next = { voters: [...c.voters, change.node], learners: c.learners.filter((n) => n !== change.node) };
      break;
    }
    case 'remove':
      if (!isVoter && !isLearner) return reject('INVALID');
      if (isVoter && c.voters.length === 1) return reject('INVALID');
      next = {
        voters: c.voters.filter((n) => n !== change.node),
        learners: c.learners.filter((n) => n !== change.node),
      };
      break;
  }
  const index = lastIndex(d) + 1;
  // In force from the moment it is appended (thesis §4.1): replicate to the new set, starting
  // a newcomer at the configuration entry itself, so the entry that names it is the first sent.
  for (const peer of [...next.voters, ...next.learners]) {
    if (peer !== d.id && d.progress[peer] === undefined) addProgress(d, peer, newProgress(d));
  }
  for (const peer in d.progress) {
    if (!next.voters.includes(peer) && !next.learners.includes(peer)) removeProgress(d, peer);
  }
  appendToLog(d, [{ index, term: d.term, type: 'config', config: next }]);
  if (d.transferee !== null && !next.voters.includes(d.transferee)) d.transferee = null;
  d.effects.push({ type: 'changeResult', id, ok: true, index, leader: d.leader });
  broadcastAppend(d, false);
}

function transferLeader(d: Draft, to: NodeId): void {
  if (to === d.id || !currentConfig(d).voters.includes(to) || d.progress[to] === undefined) return;
  d.transferee = to;
  d.electionElapsed = 0; // the transfer gets one election timeout to finish
  const pr = d.progress[to]!;
  if (pr.match === lastIndex(d)) sendTimeoutNow(d, to);
  else sendAppend(d, to, true);
}

function sendTimeoutNow(d: Draft, to: NodeId): void {
  send(d, to, { type: 'raft.timeoutNow', term: d.term, from: d.id }, false);
}
