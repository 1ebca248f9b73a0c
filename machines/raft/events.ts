/**
 * The machine's inputs (events) and outputs (effects). The machine never performs IO: every
 * step returns the next snapshot plus effects, emitted in the order the runtime must honour.
 *
 * Runtime contract, in emission order:
 * - `persist` starts a durable write; writes complete in FIFO order (group commit may merge
 *   them). When a write carrying entries is durable, feed `raft.persisted` with its last entry.
 *   `restore` is a write too (same FIFO): replace the state machine and reset the log to the
 *   snapshot atomically, then feed `raft.persisted` with the snapshot's index and term.
 * - `send` with `afterPersist` is held until every write emitted before it is durable: votes,
 *   append answers and anything sent after a term change leave only then (§5.1, Figure 2).
 *   The leader's own replication messages go at once: it may send appends while its write is
 *   in flight and counts itself only once persisted (thesis §10.2.1).
 * - `apply` hands committed entries, in index order, never an entry not yet durable here.
 *   Report progress with `raft.applied`.
 * - `readReady`: serve the read once the state machine has applied at least `index`.
 * - `snapshot`: take a snapshot at the applied index (>= `index`), make it durable, then feed
 *   `raft.snapshotTaken`; `compact`: the log may drop entries <= `snapshot.index` from then on.
 */
import type { Message } from './messages.ts';
import type { Entry, HardState, NodeId, SnapshotMeta } from './types.ts';

export type MembershipChange =
  | { readonly type: 'addLearner'; readonly node: NodeId }
  | { readonly type: 'promote'; readonly node: NodeId }
  | { readonly type: 'remove'; readonly node: NodeId };

/** Events that are not peer messages. */
export type LocalEvent =
  | { readonly type: 'raft.tick' }
  | {
      readonly type: 'raft.propose';
      readonly commands: readonly { readonly id: string; readonly data: unknown }[];
    }
  | { readonly type: 'raft.readIndex'; readonly ids: readonly string[] }
  | { readonly type: 'raft.persisted'; readonly index: number; readonly term: number }
  | { readonly type: 'raft.applied'; readonly index: number }
  | { readonly type: 'raft.snapshotTaken'; readonly index: number }
  | { readonly type: 'raft.snapshotFailed'; readonly to: NodeId }
  | { readonly type: 'raft.changeMembership'; readonly id: string; readonly change: MembershipChange }
  | { readonly type: 'raft.transferLeader'; readonly to: NodeId };

export type RaftEvent = Message | LocalEvent;

/** Stable reasons a request was not taken; the API maps them onto its error codes. */
export type RejectReason =
  | 'NOT_LEADER'
  | 'TRANSFERRING'
  | 'NOT_READY'
  | 'CHANGE_PENDING'
  | 'NOT_CAUGHT_UP'
  | 'INVALID';

export type Effect =
  | { readonly type: 'persist'; readonly hardState?: HardState; readonly entries: readonly Entry[] }
  | { readonly type: 'send'; readonly to: NodeId; readonly message: Message; readonly afterPersist: boolean }
  | {
      readonly type: 'sendSnapshot';
      readonly to: NodeId;
      readonly message: Message & { type: 'raft.installSnapshot' };
    }
  | { readonly type: 'restore'; readonly snapshot: SnapshotMeta; readonly data: unknown }
  | { readonly type: 'apply'; readonly entries: readonly Entry[] }
  | {
      readonly type: 'proposed';
      readonly ids: readonly string[];
      readonly index: number;
      readonly term: number;
    }
  | {
      readonly type: 'proposeFailed';
      readonly ids: readonly string[];
      readonly reason: RejectReason;
      readonly leader: NodeId | null;
    }
  | { readonly type: 'readReady'; readonly ids: readonly string[]; readonly index: number }
  | {
      readonly type: 'readFailed';
      readonly ids: readonly string[];
      readonly reason: RejectReason;
      readonly leader: NodeId | null;
    }
  | {
      readonly type: 'changeResult';
      readonly id: string;
      readonly ok: boolean;
      readonly index: number;
      readonly reason?: RejectReason;
      readonly leader: NodeId | null;
    }
  | { readonly type: 'snapshot'; readonly index: number }
  | { readonly type: 'compact'; readonly snapshot: SnapshotMeta }
  | {
      readonly type: 'roleChanged';
      readonly role: Role;
      readonly term: number;
      readonly leader: NodeId | null;
    };

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

export type EffectOf<T extends Effect['type']> = Extract<Effect, { type: T }>;
