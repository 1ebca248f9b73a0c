/**
 * The request API of one node, in three parts: ingress (NATS, decoding, validation, routing and
 * forwarding), handlers (what each op does), and the pending table (every request held, with its
 * deadline). `Api` wires them for the node.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Effect, Entry, NodeId, RaftEvent, RaftReader } from '../../machines/raft/index.ts';
import type { ApiLimits, ApiResults, Subjects } from '../../protocol/index.ts';
import { TimeoutError } from '../../protocol/index.ts';
import type { ApplyOutcome, KeyTree } from '../../storage/index.ts';
import type { Applier } from '../applier.ts';
import type { WatchHub } from '../watches.ts';
import { ApiHandlers } from './handlers.ts';
import { ApiIngress } from './ingress.ts';
import { PendingTable } from './pending.ts';
import type { Quotas } from './quotas.ts';
import { type ApiCounters, answerWith, newCounters } from './reply.ts';

export { ApiHandlers, type HandlerPorts } from './handlers.ts';
export { SERVICE_VERSION } from './ingress.ts';
export { PendingTable } from './pending.ts';
export { defaultQuotas, type Quotas } from './quotas.ts';
export { type Answer, type ApiCounters, answerWith, newCounters, type Reply } from './reply.ts';

export interface ApiOptions {
  readonly nc: NatsConnection;
  readonly subjects: Subjects;
  readonly cluster: string;
  readonly self: NodeId;
  /** The Raft tick (ms). */
  readonly tickMs: number;
  readonly raft: (event: RaftEvent) => void;
  /** The running Raft machine: role, context (term, leader, commit, configuration). */
  readonly machine: RaftReader;
  readonly tree: KeyTree;
  readonly applier: Applier;
  readonly limits?: Partial<ApiLimits>;
  /** How long a request may wait for the log, the leader or the machine before TIMEOUT. */
  readonly requestTimeoutMs?: number;
  /** Session keepalives heard (every node records them; the leader expires sessions). */
  readonly onKeepalive?: (session: string) => void;
  /** Keepalives of sessions not known here yet. */
  readonly onUnknownKeepalive?: (session: string, secret: Uint8Array) => void;
  readonly watches: WatchHub;
  /** Quotas (default `defaultQuotas`). */
  readonly quotas?: Partial<Quotas>;
  /** Users treated as admins (default `admin`). */
  readonly admins?: readonly string[];
}

export class Api {
  readonly counters: ApiCounters = newCounters();
  readonly pending: PendingTable;
  private readonly handlers: ApiHandlers;
  private readonly ingress: ApiIngress;
  private readonly self: NodeId;

  constructor(opts: ApiOptions) {
    this.self = opts.self;
    const timeoutMs = opts.requestTimeoutMs ?? 5000;
    const answer = answerWith(opts.cluster, this.counters);
    this.pending = new PendingTable(answer, timeoutMs);
    this.handlers = new ApiHandlers({
      self: opts.self,
      cluster: opts.cluster,
      tickMs: opts.tickMs,
      raft: opts.raft,
      machine: opts.machine,
      tree: opts.tree,
      applier: opts.applier,
      watches: opts.watches,
      answer,
      pending: this.pending,
      counters: this.counters,
      ...(opts.onKeepalive ? { onKeepalive: opts.onKeepalive } : {}),
      ...(opts.onUnknownKeepalive ? { onUnknownKeepalive: opts.onUnknownKeepalive } : {}),
      ...(opts.quotas ? { quotas: opts.quotas } : {}),
    });
    this.ingress = new ApiIngress({
      nc: opts.nc,
      subjects: opts.subjects,
      cluster: opts.cluster,
      self: opts.self,
      machine: opts.machine,
      ...(opts.limits ? { limits: opts.limits } : {}),
      forwardTimeoutMs: timeoutMs,
      handlers: this.handlers,
      answer,
      counters: this.counters,
      ...(opts.admins ? { admins: opts.admins } : {}),
    });
  }

  /** Bytes the key tree holds, history included. */
  get dataBytes(): number {
    return this.handlers.dataBytes;
  }

  /** True while the database quota is used up (the NOSPACE alarm). */
  get databaseFull(): boolean {
    return this.handlers.databaseFull;
  }

  /** Starts ingress (again, after a restart: requests held meanwhile are still answered). */
  start(): void {
    this.pending.start();
    this.ingress.start();
  }

  /** Stops ingress only: a restart loses no request already held. */
  stop(): void {
    this.ingress.stop();
  }

  /** The node stops: ingress too, and every request held gets TIMEOUT. */
  close(): void {
    this.ingress.stop();
    this.pending.drain(new TimeoutError('node stopping'));
  }

  /** Effects of the Raft machine that concern requests (proposals, reads, changes, roles). */
  effect(e: Effect): void {
    if (e.type === 'roleChanged') this.ingress.leaderChanged(e.role === 'leader' ? this.self : e.leader);
    this.handlers.effect(e);
  }

  /** An entry was applied (with the tree's outcome, or null for a non-command entry). */
  applied(entry: Entry, outcome: ApplyOutcome | null): void {
    this.handlers.applied(entry, outcome);
  }

  /** Proposes a session expiry (the leader's session keeper). */
  expire(session: string): string {
    return this.handlers.expire(session);
  }

  /** Proposes a compaction of the history at and below `revision` (the leader's retention). */
  compact(revision: number): string {
    return this.handlers.compact(revision);
  }

  status(): ApiResults['status'] {
    return this.handlers.status();
  }
}
