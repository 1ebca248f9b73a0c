/**
 * A simulated node's state, the simulation's options and result, and its agenda items.
 */
import type { Actor } from 'xstate';
import type { ApiHandlers, Executor, PendingTable } from '../../actors/index.ts';
import {
  type Effect,
  type Message,
  type RaftEvent,
  type RaftMachine,
  type RaftOptions,
  type RaftReader,
  type RaftSnapshot,
  type RaftVariant,
  type Role,
  roleOf,
} from '../../machines/raft/index.ts';
import { type ApplyOutcome, MemoryTree } from '../../storage/index.ts';
import type { CheckOptions, Violation } from './checker.ts';
import type { SimDisk, SimState } from './disk.ts';
import type { ScheduleName } from './nemesis.ts';
import type { SessionItem, SessionSimOptions, SessionStats } from './sessions.ts';

export const TICK_MS = 10;

export interface SimOptions {
  readonly seed: number;
  readonly nodes: number;
  /** Raft-level events processed while faults are injected (session events do not count, so
   * sessions leave a seed's Raft coverage as it was); then faults heal and liveness is checked. */
  readonly steps: number;
  readonly faults?: boolean;
  /** A Raft machine with planted bugs (planted.ts), to prove the checker works. */
  readonly variant?: RaftVariant;
  /** A runtime with planted mistakes (planted.ts), to prove the checks catch them. */
  readonly mistakes?: RuntimeMistakes;
  readonly raft?: Partial<RaftOptions>;
  /** Stop at the first violation (the default) or collect all. */
  readonly stopOnViolation?: boolean;
  /** Clients with sessions and ephemeral keys, and the leader's expiry (on by default, off in
   * schedules whose faults the session checker does not model: skewed clocks, pauses, slow
   * disks). Configuring sessions makes `random` the default schedule. */
  readonly sessions?: SessionSimOptions | false;
  /** The fault schedule (nemesis.ts); by default chosen from the seed, so any range of seeds
   * covers every schedule. */
  readonly schedule?: ScheduleName;
  /** Which layers of safety checks run (all by default). */
  readonly checks?: CheckOptions;
}

/** Deliberate runtime mistakes for the teeth tests; the real runtime is never edited. */
export interface RuntimeMistakes {
  /** Sends messages meant to wait for a write (votes, acks) before it is durable. */
  readonly sendBeforePersist?: boolean;
  /** Serves a confirmed read without waiting for the node to apply up to its read index. */
  readonly readBeforeApply?: boolean;
  /** The applier acknowledges an entry (answers, advances the applied index reads wait for)
   * while the tree it serves reads from gets the entry only at the node's next tick. */
  readonly ackBeforeApply?: boolean;
  /** Takes an applied entry for the node's own proposal by its index alone, ignoring the term
   * (so a write replaced by another leader's entry is answered with that entry's outcome). */
  readonly answerByIndex?: boolean;
  /** Applies a command to a node's tree in place of `tree.applyNow`. */
  readonly apply?: (node: string, index: number, data: unknown, tree: MemoryTree) => ApplyOutcome | null;
}

export interface SimResult {
  readonly seed: number;
  readonly nodes: number;
  readonly schedule: ScheduleName;
  readonly steps: number;
  readonly time: number;
  readonly commits: number;
  readonly acked: number;
  readonly reads: number;
  readonly elections: number;
  readonly crashes: number;
  readonly snapshotsInstalled: number;
  readonly configChanges: number;
  readonly transfers: number;
  readonly scenarios: number;
  /** From healing to the first client write committed, ms (-1: never). */
  readonly settleMs: number;
  readonly sessions: SessionStats | null;
  readonly violations: readonly Violation[];
  readonly trace: readonly string[];
}

export type AgendaItem =
  | { readonly kind: 'tick'; readonly node: string; readonly life: number }
  | { readonly kind: 'deliver'; readonly from: string; readonly to: string; readonly message: Message }
  | { readonly kind: 'diskDone'; readonly node: string; readonly life: number }
  | { readonly kind: 'restart'; readonly node: string }
  | { readonly kind: 'client' }
  | { readonly kind: 'nemesis' }
  | { readonly kind: 'heal' }
  | { readonly kind: 'session'; readonly item: SessionItem }
  | { readonly kind: 'local'; readonly node: string; readonly life: number; readonly event: RaftEvent }
  | { readonly kind: 'resume'; readonly node: string; readonly life: number }
  /** Runs in the node's process: a request reaching its API, or work its API deferred. */
  | { readonly kind: 'run'; readonly node: string; readonly life: number; readonly fn: () => void };

/** A write on its way to the simulated disk (FIFO); `done` reports it durable to the executor. */
export interface Write {
  readonly effect: Extract<Effect, { type: 'persist' } | { type: 'restore' }>;
  readonly done: (err: unknown) => void;
}

export class SimNode {
  /** The Raft machine's state after its last step; null while the node is down. */
  snap: RaftSnapshot | null = null;
  /** The node's running Raft machine (as a node runs it) and the effects its last step emitted. */
  actor: Actor<RaftMachine> | null = null;
  readonly emitted: Effect[] = [];
  life = 0;
  sm: SimState;
  /** The real key tree; what it made durable survives a crash (`crash()`). */
  tree = new MemoryTree();
  /** [mistakes.ackBeforeApply] The tree reads see, behind `tree` by the entries in `backlog`. */
  lagging: { tree: MemoryTree; backlog: [number, unknown][] } | null = null;
  /** The real runtime of this life of the node. */
  executor: Executor | null = null;
  /** The index the state machine applied up to (the applier's). */
  applied = 0;
  writes: Write[] = [];
  lastDiskTime = 0;
  /** Proposals this node put in its log: index -> proposal id and term. */
  proposalAt = new Map<number, { readonly id: string; readonly term: number }>();
  /** What the runtime reads of the node's machine (role, context, last index). */
  machine: RaftReader | null = null;
  /** The node's real API handlers and their pending table (this life's). */
  api: ApiHandlers | null = null;
  pending: PendingTable | null = null;
  takenSnapshot: SimState | null = null;
  /** Received snapshots the executor installs, in order: each written to disk with the log's
   * reset (its `compact`). */
  pendingRestores: { readonly index: number; readonly data: SimState }[] = [];
  /** [fault] The process is stopped (SIGSTOP) until then: it neither ticks nor handles
   * anything; what reaches it waits in `inbox`, and it resumes with the state it had. */
  pausedUntil = 0;
  inbox: AgendaItem[] = [];
  /** [fault] This node's ticker period: clock-rate skew between nodes. */
  tickMs = TICK_MS;

  constructor(
    readonly id: string,
    readonly disk: SimDisk,
  ) {
    this.sm = { ...disk.snapshotData };
  }

  get up(): boolean {
    return this.snap !== null;
  }

  /** The role: the machine's state value (null while down). */
  get role(): Role | null {
    return this.snap === null ? null : roleOf(this.snap);
  }
}
