/**
 * The follower role: accept the leader's log, vote, forward reads. Messages arrive here only
 * after the term check (state.ts classifyTerm), so `m.term` is our term unless noted.
 */
import type { LocalEvent } from './events.ts';
import type { AppendEntries, Heartbeat, InstallSnapshot, Message } from './messages.ts';
import {
  appendToLog,
  type Draft,
  findConflictByTerm,
  firstIndex,
  handleVoteRequest,
  lastIndex,
  matchTerm,
  refuseForwardedRead,
  send,
  termAt,
} from './state.ts';

export function stepFollower(d: Draft, m: Message): void {
  switch (m.type) {
    case 'raft.appendEntries':
      heardFromLeader(d, m.from);
      handleAppendEntries(d, m);
      return;
    case 'raft.heartbeat':
      heardFromLeader(d, m.from);
      handleHeartbeat(d, m);
      return;
    case 'raft.installSnapshot':
      heardFromLeader(d, m.from);
      handleInstallSnapshot(d, m);
      return;
    case 'raft.requestVote':
      handleVoteRequest(d, m);
      return;
    case 'raft.forwardReadResult':
      if (m.index >= 0) d.effects.push({ type: 'readReady', ids: m.ids, index: m.index });
      else d.effects.push({ type: 'readFailed', ids: m.ids, reason: 'NOT_LEADER', leader: d.leader });
      return;
    case 'raft.forwardRead':
      refuseForwardedRead(d, m.from, m.ids);
      return;
    default:
      // Answers to requests of an earlier role, or a timeoutNow we cannot act on.
      d.stats.dropped++;
  }
}

/** Local requests while not leader: proposals are refused with a hint, reads are forwarded. */
export function followerLocal(d: Draft, e: LocalEvent): void {
  switch (e.type) {
    case 'raft.propose':
      d.effects.push({
        type: 'proposeFailed',
        ids: e.commands.map((c) => c.id),
        reason: 'NOT_LEADER',
        leader: d.leader,
      });
      return;
    case 'raft.readIndex':
      if (d.role === 'follower' && d.leader !== null) {
        send(d, d.leader, { type: 'raft.forwardRead', term: d.term, from: d.id, ids: e.ids }, false);
      } else {
        d.effects.push({ type: 'readFailed', ids: e.ids, reason: 'NOT_LEADER', leader: d.leader });
      }
      return;
    case 'raft.changeMembership':
      d.effects.push({
        type: 'changeResult',
        id: e.id,
        ok: false,
        index: 0,
        reason: 'NOT_LEADER',
        leader: d.leader,
      });
      return;
    default:
      d.stats.dropped++;
  }
}

function heardFromLeader(d: Draft, leader: string): void {
  d.electionElapsed = 0;
  if (d.leader !== leader) {
    d.leader = leader;
    d.effects.push({ type: 'roleChanged', role: d.role, term: d.term, leader });
  }
}

function reply(
  d: Draft,
  to: string,
  success: boolean,
  index: number,
  hintIndex: number,
  hintTerm: number,
  seq: number,
) {
  send(d, to, {
    type: 'raft.appendResult',
    term: d.term,
    from: d.id,
    success,
    index,
    hintIndex,
    hintTerm,
    seq,
  });
}

/** §5.3: accept entries that follow a matching (prevIndex, prevTerm), truncate the first
 * conflicting suffix, advance commit to min(leaderCommit, index of last new entry). */
function handleAppendEntries(d: Draft, m: AppendEntries): void {
  if (m.prevIndex < d.commit) {
    // Everything up to commit is known to match; answer so the leader moves on.
    reply(d, m.from, true, d.commit, 0, 0, m.seq);
    return;
  }
  if (!matchTerm(d, m.prevIndex, m.prevTerm)) {
    const [hintIndex, hintTerm] = findConflictByTerm(d, Math.min(m.prevIndex, lastIndex(d)), m.prevTerm);
    reply(d, m.from, false, m.prevIndex, hintIndex, hintTerm, m.seq);
    return;
  }
  const lastNew = m.prevIndex + m.entries.length;
  // Skip entries we already hold; a duplicate or reordered append must not truncate anything.
  let i = 0;
  const last = lastIndex(d);
  while (i < m.entries.length) {
    const e = m.entries[i]!;
    if (e.index > last || termAt(d, e.index) !== e.term) break;
    i++;
  }
  if (i < m.entries.length) appendToLog(d, i === 0 ? m.entries : m.entries.slice(i));
  const commit = Math.min(m.commit, lastNew);
  if (commit > d.commit) d.commit = commit;
  reply(d, m.from, true, lastNew, 0, 0, m.seq);
}

function handleHeartbeat(d: Draft, m: Heartbeat): void {
  const commit = Math.min(m.commit, lastIndex(d));
  if (commit > d.commit) d.commit = commit;
  if (m.quiet !== true)
    send(d, m.from, { type: 'raft.heartbeatResult', term: d.term, from: d.id, seq: m.seq });
}

/** §7: a snapshot newer than our commit replaces the state machine and the log, unless our
 * log already holds its last entry (then we only learn it is committed). */
function handleInstallSnapshot(d: Draft, m: InstallSnapshot): void {
  const s = m.snapshot;
  const answer = (index: number) =>
    send(d, m.from, { type: 'raft.installSnapshotResult', term: d.term, from: d.id, index, seq: 0 });
  if (s.index <= d.commit) {
    answer(d.commit);
    return;
  }
  if (s.index >= firstIndex(d) - 1 && matchTerm(d, s.index, s.term)) {
    d.commit = s.index;
    answer(s.index);
    return;
  }
  d.effects.push({ type: 'restore', snapshot: s, data: m.data });
  d.snapshot = s;
  d.awaitingRestore = true;
  d.unstable = [];
  d.unstableOwned = false;
  d.configs = [];
  d.commit = s.index;
  d.applying = s.index;
  d.applied = s.index;
  d.persisted = s.index;
  d.snapshotPending = false;
  d.snapshotTaken = Math.max(d.snapshotTaken, s.index);
  answer(s.index);
}
