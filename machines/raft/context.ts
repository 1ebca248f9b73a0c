/**
 * The Raft node's context: plain data (the role is the statechart's state value; the log is the
 * machine's port), the options, and where a node starts from.
 */

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
  /**
   * Entries a snapshot leaves in the log (etcd's catch-up entries; at most half the threshold):
   * a follower a little behind catches up from the log instead of needing the whole tree.
   */
  readonly snapshotCatchUpEntries: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  /** A learner is promoted only when its match index is within this many entries of the
   * leader's last index (thesis §4.2.1: catch up before voting). */
  readonly catchUpMargin: number;
  /**
   * Tell followers a new commit index at once, in a quiet heartbeat (no answer), instead of with
   * the next append or heartbeat: followers apply, and serve watches and reads, a heartbeat
   * interval sooner at low load. Off by default (the simulator's checks were calibrated
   * without it and run both ways); the node turns it on.
   */
  readonly commitNotice: boolean;
}

export const defaultOptions: RaftOptions = {
  electionTicks: 10,
  heartbeatTicks: 1,
  maxInflight: 64,
  maxAppendEntries: 512,
  snapshotThreshold: 0,
  snapshotCatchUpEntries: 5000,
  preVote: true,
  checkQuorum: true,
  catchUpMargin: 64,
  commitNotice: false,
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
  /** The highest commit index sent to this peer (in an append or a heartbeat). */
  toldCommit: number;
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
  /** Index of the last snapshot the runtime took (the log may keep entries below it). */
  readonly snapshotTaken: number;
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

/** The context with the log it describes: what the log-reading helpers below need. */
export interface LogView extends RaftContext {
  readonly log: LogReader;
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
    snapshotTaken: snapshot.index,
    savedHardState: hs,
    stats: { elections: 0, dropped: 0 },
  };
}
