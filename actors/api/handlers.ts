/**
 * What each op does on a node, once ingress decoded, validated and routed it here:
 * - writes become log commands (protocol's `commandOf`), batched per turn of the event loop into
 *   one `raft.propose`, and are answered when applied at the index they got;
 * - linearizable reads are batched into one `raft.readIndex` (thesis §6.4) and served once the
 *   applier reached the read index; serializable reads at once;
 * - sessions are checked in one place (`session`); watches go to the watch hub after a ReadIndex
 *   barrier; membership changes and leader transfers go to the machine and are answered from its
 *   effects (`changeResult`, `roleChanged`).
 * Nothing here knows NATS; every request held is in the pending table, with a deadline.
 */
import { randomBytes } from 'node:crypto';
import {
  currentConfig,
  type Effect,
  type Entry,
  type MembershipChange,
  type NodeId,
  type RaftEvent,
  type RaftReader,
} from '../../machines/raft/index.ts';
import {
  type ApiResults,
  BadRequestError,
  type Caller,
  type Command,
  commandOf,
  EnsembleError,
  encodeCommand,
  InternalError,
  mayDeliverTo,
  NotLeaderError,
  type Outcome,
  PAGE_BYTES,
  PAGE_DEFAULT,
  PAGE_MAX,
  PEER_CALLER,
  PermissionDeniedError,
  QuotaExceededError,
  SessionExpiredError,
  SUPPORTED_PROTOCOL_VERSIONS,
  type ValidRequest,
} from '../../protocol/index.ts';
import type { ApplyOutcome, KeyTree, SessionInfo } from '../../storage/index.ts';
import type { Applier } from '../applier.ts';
import type { WatchHub } from '../watches.ts';
import { authorize } from './auth.ts';
import { type PendingRead, type PendingTable, settleReads } from './pending.ts';
import { addsData, addsEphemeral, databaseFull, defaultQuotas, type Quotas, RateLimiter } from './quotas.ts';
import type { Answer, ApiCounters, Reply } from './reply.ts';

export interface HandlerPorts {
  readonly self: NodeId;
  readonly cluster: string;
  /** The Raft tick (ms): election timeouts are counted in ticks. */
  readonly tickMs: number;
  readonly raft: (event: RaftEvent) => void;
  /** The running Raft machine: role, context (term, leader, commit, configuration). */
  readonly machine: RaftReader;
  readonly tree: KeyTree;
  readonly applier: Pick<Applier, 'index' | 'whenApplied'>;
  readonly watches: Pick<WatchHub, 'add' | 'cancel' | 'ack' | 'sessionEnded'>;
  readonly answer: Answer;
  readonly pending: PendingTable;
  readonly counters: ApiCounters;
  /** A session's keepalive was heard (the session keeper records it). */
  readonly onKeepalive?: (session: string) => void;
  /** A keepalive of a session not known here yet (the keeper keeps it until it is). */
  readonly onUnknownKeepalive?: (session: string, secret: Uint8Array) => void;
  /** Runs `fn` after the current turn (default `setImmediate`): what one turn asked for goes
   * to the machine as one batch. */
  readonly defer?: (fn: () => void) => void;
  /** A new session's id and secret (default: random). */
  readonly newSession?: () => { readonly id: string; readonly secret: Uint8Array };
  /** Quotas (default `defaultQuotas`). */
  readonly quotas?: Partial<Quotas>;
}

const randomSession = () => ({
  id: randomBytes(12).toString('hex'),
  secret: new Uint8Array(randomBytes(16)),
});

export class ApiHandlers {
  private proposeQueue: { id: string; data: Uint8Array }[] = [];
  private readQueue: PendingRead[] = [];
  private flushScheduled = false;
  readonly quotas: Quotas;
  private readonly rate: RateLimiter;

  constructor(private readonly p: HandlerPorts) {
    this.quotas = { ...defaultQuotas, ...p.quotas };
    this.rate = new RateLimiter(this.quotas.requestsPerSecond);
  }

  /** Bytes the tree holds (what the database quota counts). */
  get dataBytes(): number {
    return this.p.tree.dataBytes;
  }

  /** True while the tree holds more than the database quota (writes that add data are refused). */
  get databaseFull(): boolean {
    return this.p.tree.dataBytes >= this.quotas.databaseBytes;
  }

  /**
   * Serves a valid request routed to this node, if `caller` may make it (`authorize`: admin ops,
   * key grants; a watch delivers only to the caller's own inbox). Never throws.
   */
  dispatch(v: ValidRequest, reply: Reply, caller: Caller = PEER_CALLER): void {
    const { answer, watches, tree } = this.p;
    try {
      const denied = authorize(v, caller, (user) => tree.perms(user));
      if (denied !== null) {
        this.p.counters.denied++;
        return answer(reply, { error: denied });
      }
      const limited = this.rate.take(caller);
      if (limited !== null) {
        this.p.counters.rateLimited++;
        return answer(reply, { error: limited });
      }
      switch (v.op) {
        case 'get':
        case 'list':
        case 'range':
          return this.read(v, reply);
        case 'status':
          return answer(reply, { result: this.status(caller.kind !== 'client') });
        case 'authList': {
          const user = v.request.user;
          return this.barrier((ok) =>
            ok
              ? answer(reply, { result: { grants: tree.grants(user), revision: tree.revision } })
              : answer(reply, { error: new NotLeaderError(this.p.machine.context().leader) }),
          );
        }
        case 'sessionKeepalive': {
          // Answered after a ReadIndex barrier: a node that has not applied the session's open
          // (or its close) yet would otherwise answer from the past.
          const { id, secret } = v.request;
          if (this.knownSession(id, secret) !== null) this.p.onKeepalive?.(id);
          return this.barrier((ok) => {
            if (!ok) return answer(reply, { error: new NotLeaderError(this.p.machine.context().leader) });
            const s = this.knownSession(id, secret);
            if (s === null) return answer(reply, { error: new SessionExpiredError(id) });
            this.p.onKeepalive?.(id);
            answer(reply, { result: { ttlMs: s.ttlMs } satisfies ApiResults['sessionKeepalive'] });
          });
        }
        case 'watch': {
          const r = v.request;
          if (!mayDeliverTo(caller, r.inbox)) {
            this.p.counters.denied++;
            return answer(reply, {
              error: new PermissionDeniedError(caller.user, `${r.inbox} is not an inbox of ${caller.user}`),
            });
          }
          // A ReadIndex round first: the watch starts from state at least as new as anything
          // acknowledged before it (a compaction included), even on a lagging follower.
          return this.barrier(() =>
            this.session(r.session, r.secret, (s) => {
              if (s === null) return answer(reply, { error: new SessionExpiredError(r.session) });
              const started = watches.add(r);
              if ('error' in started) return answer(reply, { error: started.error });
              answer(reply, {
                result: { id: r.id, node: this.p.self, revision: started.revision, group: started.group },
              });
            }),
          );
        }
        case 'watchCancel': {
          const r = v.request;
          return this.session(r.session, r.secret, (s) => {
            if (s === null) return answer(reply, { error: new SessionExpiredError(r.session) });
            answer(reply, { result: { cancelled: watches.cancel(r.session, r.id) } });
          });
        }
        case 'watchAck': {
          const r = v.request;
          // Synchronous: a watch exists here only for a session this node knows.
          if (this.knownSession(r.session, r.secret) === null) {
            this.p.counters.badInput++;
            return answer(reply, { error: new SessionExpiredError(r.session) });
          }
          watches.ack(r.session, r.id, r.seq, r.shared === true);
          return answer(reply, { result: {} });
        }
        case 'memberAdd':
          return this.change(reply, { type: 'addLearner', node: v.request.id });
        case 'memberPromote':
          return this.change(reply, { type: 'promote', node: v.request.id });
        case 'memberRemove':
          return this.change(reply, { type: 'remove', node: v.request.id });
        case 'transferLeader':
          return this.transfer(reply, v.request.to);
        default:
          return this.write(v, reply, caller);
      }
    } catch (err) {
      answer(reply, { error: err instanceof EnsembleError ? err : new InternalError(String(err)) });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Sessions: the one check.

  /** The session if this node knows it and `secret` is its secret, else null. */
  knownSession(id: string, secret: Uint8Array): SessionInfo | null {
    const s = this.p.tree.session(id);
    return s !== null && sameBytes(s.secret, secret) ? s : null;
  }

  /**
   * Calls back with the session if `secret` is its secret, else null: at once when this node
   * knows the session, after a ReadIndex barrier when it does not yet (opened a moment ago
   * through another node).
   */
  session(id: string, secret: Uint8Array, then: (s: SessionInfo | null) => void): void {
    if (this.p.tree.session(id) !== null) return then(this.knownSession(id, secret));
    this.barrier((ok) => then(ok ? this.knownSession(id, secret) : null));
  }

  /**
   * A keepalive heard on the keepalive subject: what to answer, or null to stay silent (the node
   * does not know the session and is not the leader: another node may).
   */
  keepalive(id: string, secret: Uint8Array): Outcome | null {
    const s = this.p.tree.session(id);
    const leader = this.p.machine.role() === 'leader';
    if (s === null) {
      // Unknown here: expired, forged, or opened but not applied on this node yet (its log
      // lags). The keeper keeps it aside and counts it once the session is known here with
      // that secret (an open applied later counts as a later contact anyway; a session learnt
      // from a snapshot would otherwise show no contact at all).
      this.p.onUnknownKeepalive?.(id, secret);
      // Only a leader that knows its commit index (it committed an entry of its term, §6.4) and
      // applied up to it may say the session is gone: a new leader's commit index can lag behind
      // an open the previous leader committed and answered.
      const ctx = this.p.machine.context();
      return leader && ctx.termStart > 0 && ctx.commit >= ctx.termStart && this.p.applier.index >= ctx.commit
        ? { error: new SessionExpiredError(id) }
        : null;
    }
    if (!sameBytes(s.secret, secret)) {
      this.p.counters.forgedKeepalives++;
      return leader ? { error: new SessionExpiredError(id) } : null;
    }
    this.p.onKeepalive?.(id);
    return { result: { ttlMs: s.ttlMs } };
  }

  // -------------------------------------------------------------------------------------------
  // Writes: one proposal batch per turn; answered when applied at the index they got.

  private write(v: ValidRequest, reply: Reply, caller: Caller): void {
    const refused = this.overQuota(v, caller);
    if (refused !== null) {
      this.p.counters.quotaExceeded++;
      return this.p.answer(reply, { error: refused });
    }
    let command = commandOf(v, this.p.newSession ?? randomSession);
    if (command === null) return this.p.answer(reply, { error: new InternalError(`${v.op} is not a write`) });
    // A client's session records whose it is, and a client's write who creates its new keys:
    // sessions and keys per user are counted by them.
    if (caller.kind === 'client') {
      if (command.op === 'sessionOpen') command = { ...command, owner: caller.user };
      else if (command.op === 'put' || command.op === 'createSequential' || command.op === 'txn')
        command = { ...command, user: caller.user };
    }
    // A write in a session, or a session's close, proves it knows the session's secret.
    const tag = (v.request as { client?: { session: string; secret: Uint8Array } }).client;
    const owner = tag ?? (v.op === 'sessionClose' ? (v.request as { id: string; secret: Uint8Array }) : null);
    if (owner === null) return this.propose(v, command, reply);
    const sid = 'session' in owner ? owner.session : owner.id;
    const ephemeral = addsEphemeral(v);
    this.session(sid, owner.secret, (s) => {
      if (s === null) return this.p.answer(reply, { error: new SessionExpiredError(sid) });
      if (ephemeral && s.ephemeralKeys >= this.quotas.keysPerSession) {
        this.p.counters.quotaExceeded++;
        return this.p.answer(reply, {
          error: new QuotaExceededError('keysPerSession', this.quotas.keysPerSession),
        });
      }
      this.propose(v, command, reply);
    });
  }

  /** The quota a write would break, if any: the database's, or the caller's sessions. */
  private overQuota(v: ValidRequest, caller: Caller): EnsembleError | null {
    const { tree } = this.p;
    if (addsData(v) && this.databaseFull) return databaseFull(this.quotas, tree.dataBytes);
    if (
      caller.kind === 'client' &&
      v.op !== 'sessionOpen' &&
      addsData(v) &&
      tree.keysOf(caller.user) >= this.quotas.keysPerUser &&
      !(v.op === 'put' && tree.get(v.request.key) !== null) // an overwrite creates no key
    )
      return new QuotaExceededError('keysPerUser', this.quotas.keysPerUser);
    if (
      v.op === 'sessionOpen' &&
      caller.kind === 'client' &&
      tree.sessionsOf(caller.user) >= this.quotas.sessionsPerUser
    )
      return new QuotaExceededError('sessionsPerUser', this.quotas.sessionsPerUser);
    return null;
  }

  private propose(v: ValidRequest, command: Command, reply: Reply): void {
    const extra =
      command.op === 'sessionOpen'
        ? { id: command.id, secret: command.secret, ttlMs: command.ttlMs }
        : undefined;
    const id = this.p.pending.addWrite({ op: v.op, reply, ...(extra ? { extra } : {}) });
    this.proposeQueue.push({ id, data: encodeCommand(command) });
    this.schedule();
  }

  /** Proposes a session expiry (the leader's session keeper calls this); returns the
   * proposal's id (a refusal names it in `proposeFailed`). */
  expire(session: string): string {
    return this.proposeInternal({ op: 'sessionExpire', id: session });
  }

  compact(revision: number): string {
    return this.proposeInternal({ op: 'compact', revision });
  }

  /** Proposes a command of the node's own (no client waits for it). */
  private proposeInternal(cmd: Parameters<typeof encodeCommand>[0]): string {
    const id = this.p.pending.id('x');
    this.proposeQueue.push({ id, data: encodeCommand(cmd) });
    this.schedule();
    return id;
  }

  // -------------------------------------------------------------------------------------------
  // Reads: linearizable through one ReadIndex per batch, or local when serializable.

  private read(v: ValidRequest, reply: Reply): void {
    this.p.counters.reads++;
    const serve = () => this.serve(v, reply);
    if ((v.request as { serializable?: boolean }).serializable) return serve();
    this.readQueue.push({ serve, reply });
    this.schedule();
  }

  /** Calls back once this node has applied everything committed before the call (a ReadIndex
   * round) with true; with false if the round failed (no leader, no quorum, the deadline). */
  barrier(done: (ok: boolean) => void): void {
    this.readQueue.push({ done });
    this.schedule();
  }

  private serve(v: ValidRequest, reply: Reply): void {
    const { tree, answer } = this.p;
    try {
      switch (v.op) {
        case 'get': {
          const r = v.request;
          const kv = tree.get(r.key, r.revision !== undefined ? { revision: r.revision } : {});
          return answer(reply, { result: { kv, revision: tree.revision } });
        }
        case 'list':
          return answer(reply, { result: tree.listChildren(v.request.key, readOptions(v.request)) });
        case 'range':
          return answer(reply, { result: tree.range(v.request.prefix, readOptions(v.request)) });
        default:
          return answer(reply, { error: new InternalError('not a read') });
      }
    } catch (err) {
      answer(reply, { error: err instanceof EnsembleError ? err : new InternalError(String(err)) });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Membership and leader transfer.

  private change(reply: Reply, change: MembershipChange): void {
    const id = this.p.pending.addChange(reply);
    this.p.raft({ type: 'raft.changeMembership', id, change });
  }

  /** Asks the machine to hand leadership over; answered when the role change shows it done. */
  private transfer(reply: Reply, to: string | undefined): void {
    const ctx = this.p.machine.context();
    const voters = currentConfig(ctx).voters;
    let target = to;
    if (target === undefined) {
      let best = -1;
      for (const [peer, pr] of Object.entries(ctx.progress)) {
        if (voters.includes(peer) && pr.match > best) {
          best = pr.match;
          target = peer;
        }
      }
    }
    if (target === undefined || !voters.includes(target) || target === this.p.self) {
      return this.p.answer(reply, {
        error: new BadRequestError(`cannot transfer leadership to ${target ?? 'nobody'}`),
      });
    }
    const previous = this.p.pending.transfer;
    if (previous !== null)
      this.p.answer(previous.reply, { error: new BadRequestError('another leader transfer was asked for') });
    this.p.pending.transfer = { to: target, reply, deadline: this.p.pending.deadline() };
    this.p.raft({ type: 'raft.transferLeader', to: target });
  }

  // -------------------------------------------------------------------------------------------
  // Effects of the machine and outcomes of the applier.

  effect(e: Effect): void {
    const { pending, answer, applier } = this.p;
    switch (e.type) {
      case 'proposed':
        for (let i = 0; i < e.ids.length; i++) pending.placed(e.ids[i]!, e.index + i, e.term);
        return;
      case 'proposeFailed':
        for (const id of e.ids) {
          const w = pending.takeWrite(id);
          if (w !== undefined) answer(w.reply, { error: new NotLeaderError(e.leader) });
        }
        return;
      case 'readReady':
        for (const id of e.ids) {
          const batch = pending.takeReads(id);
          if (batch === undefined) continue;
          applier.whenApplied(e.index, () => {
            for (const r of batch) {
              if ('done' in r) r.done(true);
              else r.serve();
            }
          });
        }
        return;
      case 'readFailed':
        for (const id of e.ids) {
          const batch = pending.takeReads(id);
          if (batch !== undefined) settleReads(batch, answer, new NotLeaderError(e.leader));
        }
        return;
      case 'changeResult': {
        const c = pending.changes.get(e.id);
        if (c === undefined) return;
        if (!e.ok) {
          pending.changes.delete(e.id);
          const error =
            e.reason === 'NOT_LEADER'
              ? new NotLeaderError(e.leader)
              : new BadRequestError(`membership change refused: ${e.reason ?? 'unknown'}`);
          return answer(c.reply, { error });
        }
        c.index = e.index;
        applier.whenApplied(e.index, () => {
          if (!pending.changes.delete(e.id)) return;
          answer(c.reply, { result: { members: currentConfig(this.p.machine.context()), index: e.index } });
        });
        return;
      }
      case 'roleChanged': {
        const t = pending.transfer;
        if (t !== null && e.role !== 'leader' && e.leader === t.to) {
          pending.transfer = null;
          answer(t.reply, { result: { leader: t.to } });
        }
        return;
      }
      default:
        return;
    }
  }

  applied(entry: Entry, outcome: ApplyOutcome | null): void {
    if (outcome?.ok && (outcome.result.op === 'sessionClose' || outcome.result.op === 'sessionExpire')) {
      this.p.watches.sessionEnded(outcome.result.id);
    }
    const w = this.p.pending.takeAt(entry.index);
    if (w === undefined) return;
    if (w.term !== entry.term || outcome === null) {
      // Another leader's entry took this index: ours was lost with the old term.
      return this.p.answer(w.reply, {
        error: new NotLeaderError(this.p.machine.context().leader, 'leader changed; retry'),
      });
    }
    if (!outcome.ok) return this.p.answer(w.reply, { error: outcome.error });
    const { op: _op, ...rest } = outcome.result as { op: string } & Record<string, unknown>;
    const result =
      w.op === 'sessionOpen'
        ? { ...w.extra, revision: outcome.revision }
        : { ...rest, revision: outcome.revision, ...(outcome.replayed ? { replayed: true } : {}) };
    this.p.answer(w.reply, { result });
  }

  // -------------------------------------------------------------------------------------------

  private schedule(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    const defer = this.p.defer ?? setImmediate;
    defer(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    const { counters, raft, pending } = this.p;
    if (this.proposeQueue.length > 0) {
      const commands = this.proposeQueue;
      this.proposeQueue = [];
      counters.proposals += commands.length;
      counters.proposalBatches++;
      raft({ type: 'raft.propose', commands });
    }
    if (this.readQueue.length > 0) {
      const id = pending.addReads(this.readQueue);
      this.readQueue = [];
      counters.readBatches++;
      raft({ type: 'raft.readIndex', ids: [id] });
    }
  }

  /** This node's view; session ids only for a `trusted` caller (a peer or an admin). */
  status(trusted = true): ApiResults['status'] {
    const c = this.p.machine.context();
    const role = this.p.machine.role();
    return {
      id: this.p.self,
      cluster: this.p.cluster,
      role: role === 'preCandidate' ? 'candidate' : role,
      term: c.term,
      leader: c.leader,
      commitIndex: c.commit,
      appliedIndex: this.p.applier.index,
      lastIndex: this.p.machine.lastIndex(),
      revision: this.p.tree.revision,
      members: currentConfig(c),
      electionTimeoutMs: c.opts.electionTicks * this.p.tickMs,
      protocol: SUPPORTED_PROTOCOL_VERSIONS,
      dataBytes: this.p.tree.dataBytes,
      alarms: this.databaseFull ? ['NOSPACE'] : [],
      sessions: trusted
        ? this.p.tree
            .sessions()
            .slice(0, 1000)
            .map((x) => ({ id: x.id, ttlMs: x.ttlMs, ephemeralKeys: x.ephemeralKeys }))
        : [],
    };
  }
}

/** A page as the protocol bounds it (PAGE_DEFAULT, PAGE_MAX, PAGE_BYTES), whatever was asked. */
function readOptions(r: { limit?: number; after?: string; revision?: number }) {
  return {
    limit: Math.min(r.limit ?? PAGE_DEFAULT, PAGE_MAX),
    maxBytes: PAGE_BYTES,
    ...(r.after !== undefined ? { after: r.after } : {}),
    ...(r.revision !== undefined ? { revision: r.revision } : {}),
  };
}

/** Compares in constant time: a secret is not guessed byte by byte. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}
