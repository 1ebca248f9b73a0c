/**
 * Every message one Raft node sends another: one tagged union, dot-cased event names, so a
 * decoded frame is fed to the machine as it is. `term` is the sender's current term, except in
 * a pre-vote request, which carries the term the sender would campaign in (thesis §9.6), and in
 * the answer to it, which echoes that term when granted.
 */
import type { Entry, NodeId, SnapshotMeta } from './types.ts';

export interface AppendEntries {
  readonly type: 'raft.appendEntries';
  readonly term: number;
  readonly from: NodeId;
  readonly prevIndex: number;
  readonly prevTerm: number;
  readonly entries: readonly Entry[];
  /** Leader's commit index: followers commit up to min(commit, last new entry) (§5.3). */
  readonly commit: number;
  /** Leader's broadcast round, echoed in the answer; confirms leadership for ReadIndex. */
  readonly seq: number;
}

export interface AppendResult {
  readonly type: 'raft.appendResult';
  readonly term: number;
  readonly from: NodeId;
  readonly success: boolean;
  /** On success the last index known to match the leader; on rejection the rejected prevIndex. */
  readonly index: number;
  /** On rejection: the largest index <= min(prevIndex, last) whose term is <= prevTerm, and its
   * term, so the leader skips a whole term per round trip (fast backtracking, §5.3). */
  readonly hintIndex: number;
  readonly hintTerm: number;
  readonly seq: number;
}

export interface Heartbeat {
  readonly type: 'raft.heartbeat';
  readonly term: number;
  readonly from: NodeId;
  /** min(leader commit, follower match): never past what the follower is known to hold. */
  readonly commit: number;
  readonly seq: number;
  /** A commit notice: the follower takes the commit index and does not answer. */
  readonly quiet?: boolean;
}

export interface HeartbeatResult {
  readonly type: 'raft.heartbeatResult';
  readonly term: number;
  readonly from: NodeId;
  readonly seq: number;
}

export interface RequestVote {
  readonly type: 'raft.requestVote';
  readonly term: number;
  readonly from: NodeId;
  readonly lastIndex: number;
  readonly lastTerm: number;
  readonly preVote: boolean;
  /** Set by an election that a leader transfer started (timeoutNow): voters ignore their
   * leader lease for it (thesis §3.10). */
  readonly transfer: boolean;
}

export interface VoteResult {
  readonly type: 'raft.voteResult';
  readonly term: number;
  readonly from: NodeId;
  readonly granted: boolean;
  readonly preVote: boolean;
}

export interface InstallSnapshot {
  readonly type: 'raft.installSnapshot';
  readonly term: number;
  readonly from: NodeId;
  readonly snapshot: SnapshotMeta;
  /** The state machine image; the machine never looks inside. The runtime fills it (or
   * streams it in chunks and delivers the whole) — the machine emits `sendSnapshot` without it. */
  readonly data?: unknown;
}

export interface InstallSnapshotResult {
  readonly type: 'raft.installSnapshotResult';
  readonly term: number;
  readonly from: NodeId;
  /** The follower's last index known to match after handling the snapshot. */
  readonly index: number;
  readonly seq: number;
}

export interface TimeoutNow {
  readonly type: 'raft.timeoutNow';
  readonly term: number;
  readonly from: NodeId;
}

/** A follower asks the leader for a read index on behalf of its clients (thesis §6.4). */
export interface ForwardRead {
  readonly type: 'raft.forwardRead';
  readonly term: number;
  readonly from: NodeId;
  readonly ids: readonly string[];
}

/** `index` -1: the receiver could not serve the read (not leader any more). */
export interface ForwardReadResult {
  readonly type: 'raft.forwardReadResult';
  readonly term: number;
  readonly from: NodeId;
  readonly ids: readonly string[];
  readonly index: number;
}

export type Message =
  | AppendEntries
  | AppendResult
  | Heartbeat
  | HeartbeatResult
  | RequestVote
  | VoteResult
  | InstallSnapshot
  | InstallSnapshotResult
  | TimeoutNow
  | ForwardRead
  | ForwardReadResult;

export type MessageType = Message['type'];

export const messageTypes: readonly MessageType[] = [
  'raft.appendEntries',
  'raft.appendResult',
  'raft.heartbeat',
  'raft.heartbeatResult',
  'raft.requestVote',
  'raft.voteResult',
  'raft.installSnapshot',
  'raft.installSnapshotResult',
  'raft.timeoutNow',
  'raft.forwardRead',
  'raft.forwardReadResult',
];

const messageTypeSet: ReadonlySet<string> = new Set(messageTypes);

export function isMessage(event: { type: string }): event is Message {
  return messageTypeSet.has(event.type);
}
