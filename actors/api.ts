/**
 * The request API of one node, over NATS request/reply.
 *
 * - `P.node.<self>.api.<op>`: this node. Writes and admin ops on a follower answer NOT_LEADER
 *   with the leader's id, so clients learn where to go; reads are served here (ReadIndex).
 * - `P.api.<op>`: any node (queue group). A follower forwards writes and admin ops to the
 *   leader on `P.peer.<leader>.forward` and relays the leader's answer byte for byte.
 * - `P.peer.<self>.forward`: requests forwarded by followers (peers only, by nats.conf).
 *
 * Writes are batched per turn of the event loop into one `raft.propose`; reads into one
 * `raft.readIndex` (thesis §6.4) and served once the applier reached the read index.
 * Every reply mirrors the request's format (CBOR or JSON). Bad input of any kind gets a typed
 * error; nothing a client sends can throw out of a handler.
 */
import { randomBytes } from 'node:crypto';
import { type Service, Svcm } from '@nats-io/services';
import { headers, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type {
  Effect,
  Entry,
  MembershipChange,
  NodeId,
  RaftContext,
  RaftEvent,
} from '../machines/raft/index.ts';
import { currentConfig, lastIndex } from '../machines/raft/index.ts';
import pkg from '../package.json' with { type: 'json' };
import type { ApiLimits, ApiResults, Op, ValidRequest } from '../protocol/index.ts';
import {
  BadRequestError,
  commandOf,
  type DecodedEnvelope,
  decodeEnvelope,
  decodePeer,
  EnsembleError,
  encodeCommand,
  encodeDecodeError,
  encodePeer,
  encodeReply,
  InternalError,
  isClientInbox,
  LEADER_HEADER,
  NotLeaderError,
  type Outcome,
  opKinds,
  ops,
  SessionExpiredError,
  SUPPORTED_PROTOCOL_VERSIONS,
  type Subjects,
  TimeoutError,
  validateRequest,
  type WireFormat,
} from '../protocol/index.ts';
import type { ApplyOutcome, KeyTree } from '../storage/index.ts';
import type { Applier } from './applier.ts';
import type { WatchHub } from './watches.ts';

export interface ApiOptions {
  readonly nc: NatsConnection;
  readonly subjects: Subjects;
  readonly cluster: string;
  readonly self: NodeId;
  readonly raft: (event: RaftEvent) => void;
  /** The machine's current context (role, term, leader, commit, configuration). */
  readonly state: () => RaftContext;
  readonly tree: KeyTree;
  readonly applier: Applier;
  readonly limits?: Partial<ApiLimits>;
  /** How long a write or read may wait for the log before answering TIMEOUT. */
  readonly requestTimeoutMs?: number;
  /** Session keepalives heard (every node records them; the leader expires sessions). */
  readonly onKeepalive?: (session: string) => void;
  readonly watches: WatchHub;
}

interface Reply {
  readonly format: WireFormat;
  readonly base64: boolean;
  /** `leader`: set on answers relayed from the leader, so clients learn where to go. */
  readonly respond: (bytes: Uint8Array, leader?: string) => void;
}

interface PendingWrite {
  readonly id: string;
  readonly op: Op;
  readonly reply: Reply;
  readonly deadline: number;
  readonly extra?: Record<string, unknown>;
  /** Set once the machine appended it: the index and term it got. */
  index?: number;
  term?: number;
}

/** A linearizable read waiting for its ReadIndex; `done` instead of `req` for a barrier. */
type PendingRead =
  | { readonly req: ValidRequest; readonly reply: Reply }
  | { readonly done: (ok: boolean) => void };

export interface ApiCounters {
  requests: number;
  errors: number;
  forwarded: number;
  proposals: number;
  proposalBatches: number;
  reads: number;
  readBatches: number;
  badInput: number;
  forgedKeepalives: number;
}

/** The version the API announces as a NATS service: the package's (package.json). */
export const SERVICE_VERSION: string = pkg.version;

export class Api {
  readonly counters: ApiCounters = {
    requests: 0,
    errors: 0,
    forwarded: 0,
    proposals: 0,
    proposalBatches: 0,
    reads: 0,
    readBatches: 0,
    badInput: 0,
    forgedKeepalives: 0,
  };
  private subs: Subscription[] = [];
  private service: Promise<Service> | null = null;
  private nextId = 0;
  private readonly writes = new Map<string, PendingWrite>();
  private readonly byIndex = new Map<number, PendingWrite>();
  private proposeQueue: { id: string; data: Uint8Array }[] = [];
  private readQueue: PendingRead[] = [];
  private readBatches = new Map<string, PendingRead[]>();
  private changes = new Map<string, PendingWrite>();
  private flushScheduled = false;
  private sweeper: NodeJS.Timeout | null = null;

  constructor(private readonly opts: ApiOptions) {}

  start(): void {
    const { nc, subjects, self, cluster } = this.opts;
    // The API is a NATS service (`nats micro ls` / $SRV discovery lists it): two endpoints with
    // wildcard subjects, so unknown ops still reach us and get UNKNOWN_OP.
    const service = new Svcm(nc).add({
      name: 'ensemble',
      version: SERVICE_VERSION,
      description: 'Ensemble coordination cluster: key tree, sessions, watches over request/reply',
      metadata: { cluster, node: self, prefix: subjects.prefix, ops: ops.join(',') },
      queue: subjects.apiQueue,
    });
    this.service = service.then((svc) => {
      svc.addEndpoint('api', {
        subject: subjects.apiWildcard(),
        queue: subjects.apiQueue,
        metadata: { scope: 'any node; followers forward writes to the leader' },
        handler: (e, m) => void (!e && this.onApi(m, true)),
      });
      svc.addEndpoint('node', {
        subject: subjects.nodeApiWildcard(self),
        metadata: { scope: `node ${self} only` },
        handler: (e, m) => void (!e && this.onApi(m, false)),
      });
      return svc;
    });
    this.service.catch(() => {});
    this.subs.push(
      nc.subscribe(subjects.forward(self), { callback: (e, m) => void (!e && this.onForward(m)) }),
    );
    this.subs.push(
      nc.subscribe(subjects.sessionKeepalive(), { callback: (e, m) => void (!e && this.onKeepalive(m)) }),
    );
    this.sweeper = setInterval(() => this.sweep(), 250);
    this.sweeper.unref?.();
  }

  stop(): void {
    void this.service?.then((svc) => svc.stop()).catch(() => {});
    this.service = null;
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    if (this.sweeper) clearInterval(this.sweeper);
    for (const w of this.writes.values()) this.answer(w.reply, { error: new TimeoutError('node stopping') });
    this.writes.clear();
    this.byIndex.clear();
  }

  // -------------------------------------------------------------------------------------------
  // Incoming requests.

  private onApi(msg: Msg, anyNode: boolean): void {
    this.counters.requests++;
    const parsed = this.opts.subjects.parseApi(msg.subject);
    const decoded = decodeEnvelope(msg.data, { cluster: this.opts.cluster, headers: msg.headers ?? null });
    const reply: Reply = {
      format: decoded.format,
      base64: decoded.base64,
      respond: (bytes, leader) => {
        if (!msg.reply || !isClientInbox(msg.reply)) return;
        if (leader === undefined) msg.respond(bytes);
        else {
          const h = headers();
          h.set(LEADER_HEADER, leader);
          msg.respond(bytes, { headers: h });
        }
      },
    };
    if (!decoded.ok) return this.refuse(reply, decoded);
    if (parsed === null) return this.answer(reply, { error: new BadRequestError('not an API subject') });
    const v = validateRequest(parsed.op, decoded.envelope.body, this.opts.limits);
    if (!v.ok) {
      this.counters.badInput++;
      return this.answer(reply, { error: v.error });
    }
    const kind = opKinds[v.op];
    const ctx = this.opts.state();
    if ((kind === 'write' || kind === 'admin') && ctx.role !== 'leader') {
      if (anyNode && ctx.leader !== null && ctx.leader !== this.opts.self) {
        return this.forward(ctx.leader, parsed.op, msg, reply);
      }
      return this.answer(reply, { error: new NotLeaderError(ctx.leader) });
    }
    this.dispatch(v, reply);
  }

  /** A request a follower forwarded: served here as if sent to this node directly. */
  private onForward(msg: Msg): void {
    const peer = decodePeer(msg.data, { cluster: this.opts.cluster });
    if (!peer.ok || !msg.reply) return;
    const b = peer.body as { op?: unknown; format?: unknown; data?: unknown };
    if (
      typeof b.op !== 'string' ||
      !(b.data instanceof Uint8Array) ||
      (b.format !== 'cbor' && b.format !== 'json')
    ) {
      this.counters.badInput++;
      return;
    }
    const decoded = decodeEnvelope(b.data, { cluster: this.opts.cluster, format: b.format });
    const reply: Reply = {
      format: decoded.format,
      base64: decoded.base64,
      respond: (bytes) => msg.respond(bytes),
    };
    if (!decoded.ok) return this.refuse(reply, decoded);
    const v = validateRequest(b.op, decoded.envelope.body, this.opts.limits);
    if (!v.ok) return this.answer(reply, { error: v.error });
    const ctx = this.opts.state();
    const kind = opKinds[v.op];
    if ((kind === 'write' || kind === 'admin') && ctx.role !== 'leader') {
      return this.answer(reply, { error: new NotLeaderError(ctx.leader) });
    }
    this.dispatch(v, reply);
  }

  private forward(leader: NodeId, op: string, msg: Msg, reply: Reply): void {
    this.counters.forwarded++;
    const { nc, subjects, cluster } = this.opts;
    const body = { op, format: reply.format, data: msg.data };
    nc.request(subjects.forward(leader), encodePeer(body, cluster), {
      timeout: this.opts.requestTimeoutMs ?? 5000,
    }).then(
      (r) => reply.respond(r.data, leader),
      () => this.answer(reply, { error: new NotLeaderError(leader, `leader ${leader} did not answer`) }),
    );
  }

  private refuse(reply: Reply, decoded: DecodedEnvelope & { ok: false }): void {
    this.counters.badInput++;
    this.counters.errors++;
    reply.respond(encodeDecodeError(decoded, this.opts.cluster));
  }

  private answer(reply: Reply, outcome: Outcome): void {
    if ('error' in outcome) this.counters.errors++;
    let bytes: Uint8Array;
    try {
      bytes = encodeReply(outcome, {
        cluster: this.opts.cluster,
        format: reply.format,
        base64: reply.base64,
      });
    } catch (err) {
      bytes = encodeReply(
        { error: new InternalError(`cannot encode the answer: ${(err as Error).message}`) },
        {
          cluster: this.opts.cluster,
          format: reply.format,
        },
      );
    }
    reply.respond(bytes);
  }

  // -------------------------------------------------------------------------------------------
  // Dispatch by op.

  private dispatch(v: ValidRequest, reply: Reply): void {
    try {
      switch (v.op) {
        case 'get':
        case 'list':
        case 'range':
          return this.read(v, reply);
        case 'status':
          return this.answer(reply, { result: this.status() });
        case 'sessionKeepalive': {
          const s = this.knownSession(v.request.id, v.request.secret);
          if (s === null) return this.answer(reply, { error: new SessionExpiredError(v.request.id) });
          this.opts.onKeepalive?.(v.request.id);
          return this.answer(reply, { result: { ttlMs: s.ttlMs } satisfies ApiResults['sessionKeepalive'] });
        }
        case 'watch': {
          const r = v.request;
          // A ReadIndex round first: the watch starts from state at least as new as anything
          // acknowledged before it (a compaction included), even on a lagging follower.
          void this.barrier()
            .then(() => this.sessionOk(r.session, r.secret))
            .then((ok) => {
              if (!ok) return this.answer(reply, { error: new SessionExpiredError(r.session) });
              const started = this.opts.watches.add(r);
              if ('error' in started) return this.answer(reply, { error: started.error });
              this.answer(reply, {
                result: { id: r.id, node: this.opts.self, revision: started.revision, group: started.group },
              });
            });
          return;
        }
        case 'watchCancel': {
          const r = v.request;
          void this.sessionOk(r.session, r.secret).then((ok) => {
            if (!ok) return this.answer(reply, { error: new SessionExpiredError(r.session) });
            this.answer(reply, { result: { cancelled: this.opts.watches.cancel(r.session, r.id) } });
          });
          return;
        }
        case 'watchAck': {
          const r = v.request;
          // Synchronous: a watch exists here only for a session this node knows.
          if (this.knownSession(r.session, r.secret) === null) {
            this.counters.badInput++;
            return this.answer(reply, { error: new SessionExpiredError(r.session) });
          }
          this.opts.watches.ack(r.session, r.id, r.seq, r.shared === true);
          return this.answer(reply, { result: {} });
        }
        case 'memberAdd':
          return this.change(reply, v.op, { type: 'addLearner', node: v.request.id });
        case 'memberPromote':
          return this.change(reply, v.op, { type: 'promote', node: v.request.id });
        case 'memberRemove':
          return this.change(reply, v.op, { type: 'remove', node: v.request.id });
        case 'transferLeader':
          return this.transfer(reply, v.request.to);
        default:
          return this.write(v, reply);
      }
    } catch (err) {
      this.answer(reply, { error: err instanceof EnsembleError ? err : new InternalError(String(err)) });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Writes: one proposal batch per turn; answered when applied at the index they got.

  private write(v: ValidRequest, reply: Reply): void {
    const command = commandOf(v, () => ({
      id: randomBytes(12).toString('hex'),
      secret: new Uint8Array(randomBytes(16)),
    }));
    if (command === null) return;
    const tag = (v.request as { client?: { session: string; secret: Uint8Array } }).client;
    if (tag !== undefined || v.op === 'sessionClose') {
      const sid = tag?.session ?? (v.request as { id: string }).id;
      const secret = tag?.secret ?? (v.request as { secret: Uint8Array }).secret;
      const known = this.opts.tree.session(sid);
      if (known === null) {
        // A session opened moments ago may not be applied here yet: wait for the commit index.
        const commit = this.opts.state().commit;
        if (this.opts.applier.index < commit) {
          void this.opts.applier.waitApplied(commit).then(() => this.write(v, reply));
          return;
        }
        return this.answer(reply, { error: new SessionExpiredError(sid) });
      }
      if (!sameBytes(known.secret, secret))
        return this.answer(reply, { error: new SessionExpiredError(sid) });
    }
    const id = `w${++this.nextId}`;
    const extra =
      command.op === 'sessionOpen'
        ? { id: command.id, secret: command.secret, ttlMs: command.ttlMs }
        : undefined;
    this.writes.set(id, {
      id,
      op: v.op,
      reply,
      deadline: performance.now() + (this.opts.requestTimeoutMs ?? 5000),
      ...(extra ? { extra } : {}),
    });
    this.proposeQueue.push({ id, data: encodeCommand(command) });
    this.schedule();
  }

  /** Proposes a session expiry (the leader's session keeper calls this). */
  expire(session: string): void {
    this.proposeQueue.push({
      id: `x${++this.nextId}`,
      data: encodeCommand({ op: 'sessionExpire', id: session }),
    });
    this.schedule();
  }

  // -------------------------------------------------------------------------------------------
  // Reads: linearizable through one ReadIndex per batch, or local when serializable.

  private read(v: ValidRequest, reply: Reply): void {
    this.counters.reads++;
    const r = v.request as { serializable?: boolean };
    if (r.serializable) return this.serve({ req: v, reply });
    this.readQueue.push({ req: v, reply });
    this.schedule();
  }

  /** Resolves once this node has applied everything committed before the call (a ReadIndex
   * round), so a session opened a moment ago through another node is known here. */
  private barrier(): Promise<boolean> {
    return new Promise((resolve) => {
      this.readQueue.push({ done: resolve });
      this.schedule();
    });
  }

  /** The session if this node knows it and `secret` is its secret, else null. */
  private knownSession(id: string, secret: Uint8Array) {
    const s = this.opts.tree.session(id);
    return s !== null && sameBytes(s.secret, secret) ? s : null;
  }

  /** Checks a session's secret here, after a barrier when the session is not known yet. */
  private async sessionOk(id: string, secret: Uint8Array): Promise<boolean> {
    if (this.opts.tree.session(id) === null && !(await this.barrier())) return false;
    return this.knownSession(id, secret) !== null;
  }

  private serve(p: { readonly req: ValidRequest; readonly reply: Reply }): void {
    const tree = this.opts.tree;
    try {
      switch (p.req.op) {
        case 'get': {
          const r = p.req.request;
          const kv = tree.get(r.key, r.revision !== undefined ? { revision: r.revision } : {});
          return this.answer(p.reply, { result: { kv, revision: tree.revision } });
        }
        case 'list': {
          const r = p.req.request;
          return this.answer(p.reply, { result: tree.listChildren(r.key, readOptions(r)) });
        }
        case 'range': {
          const r = p.req.request;
          return this.answer(p.reply, { result: tree.range(r.prefix, readOptions(r)) });
        }
        default:
          return this.answer(p.reply, { error: new InternalError('not a read') });
      }
    } catch (err) {
      this.answer(p.reply, { error: err instanceof EnsembleError ? err : new InternalError(String(err)) });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Membership and leader transfer.

  private change(reply: Reply, op: Op, change: MembershipChange): void {
    const id = `c${++this.nextId}`;
    this.changes.set(id, {
      id,
      op,
      reply,
      deadline: performance.now() + (this.opts.requestTimeoutMs ?? 5000),
    });
    this.opts.raft({ type: 'raft.changeMembership', id, change });
  }

  private transfer(reply: Reply, to: string | undefined): void {
    const ctx = this.opts.state();
    let target = to;
    if (target === undefined) {
      let best = -1;
      for (const [peer, pr] of Object.entries(ctx.progress)) {
        if (currentConfig(ctx).voters.includes(peer) && pr.match > best) {
          best = pr.match;
          target = peer;
        }
      }
    }
    if (target === undefined || !currentConfig(ctx).voters.includes(target) || target === this.opts.self) {
      return this.answer(reply, {
        error: new BadRequestError(`cannot transfer leadership to ${target ?? 'nobody'}`),
      });
    }
    this.opts.raft({ type: 'raft.transferLeader', to: target });
    const deadline = performance.now() + (this.opts.requestTimeoutMs ?? 5000);
    const check = () => {
      const now = this.opts.state();
      if (now.leader === target && now.role !== 'leader')
        return this.answer(reply, { result: { leader: target } });
      if (performance.now() > deadline)
        return this.answer(reply, { error: new TimeoutError('leader transfer did not finish') });
      setTimeout(check, 20);
    };
    setTimeout(check, 5);
  }

  // -------------------------------------------------------------------------------------------
  // Effects of the machine and outcomes of the applier.

  effect(e: Effect): void {
    switch (e.type) {
      case 'proposed':
        e.ids.forEach((id, i) => {
          const w = this.writes.get(id);
          if (w === undefined) return;
          w.index = e.index + i;
          w.term = e.term;
          this.byIndex.set(w.index, w);
        });
        return;
      case 'proposeFailed':
        for (const id of e.ids) {
          const w = this.writes.get(id);
          if (w === undefined) continue;
          this.writes.delete(id);
          this.answer(w.reply, { error: new NotLeaderError(e.leader) });
        }
        return;
      case 'readReady': {
        for (const id of e.ids) {
          const batch = this.readBatches.get(id);
          if (batch === undefined) continue;
          this.readBatches.delete(id);
          void this.opts.applier.waitApplied(e.index).then(() => {
            for (const p of batch) {
              if ('done' in p) p.done(true);
              else this.serve(p);
            }
          });
        }
        return;
      }
      case 'readFailed':
        for (const id of e.ids) {
          const batch = this.readBatches.get(id);
          if (batch === undefined) continue;
          this.readBatches.delete(id);
          for (const p of batch) {
            if ('done' in p) p.done(false);
            else this.answer(p.reply, { error: new NotLeaderError(e.leader) });
          }
        }
        return;
      case 'changeResult': {
        const w = this.changes.get(e.id);
        if (w === undefined) return;
        if (!e.ok) {
          this.changes.delete(e.id);
          const error =
            e.reason === 'NOT_LEADER'
              ? new NotLeaderError(e.leader)
              : new BadRequestError(`membership change refused: ${e.reason ?? 'unknown'}`);
          return this.answer(w.reply, { error });
        }
        w.index = e.index;
        void this.opts.applier.waitApplied(e.index).then(() => {
          if (!this.changes.delete(e.id)) return;
          this.answer(w.reply, { result: { members: currentConfig(this.opts.state()), index: e.index } });
        });
        return;
      }
      default:
        return;
    }
  }

  applied(entry: Entry, outcome: ApplyOutcome | null): void {
    if (outcome?.ok && (outcome.result.op === 'sessionClose' || outcome.result.op === 'sessionExpire')) {
      this.opts.watches.sessionEnded(outcome.result.id);
    }
    const w = this.byIndex.get(entry.index);
    if (w === undefined) return;
    this.byIndex.delete(entry.index);
    this.writes.delete(w.id);
    if (w.term !== entry.term || outcome === null) {
      // Another leader's entry took this index: ours was lost with the old term.
      return this.answer(w.reply, {
        error: new NotLeaderError(this.opts.state().leader, 'leader changed; retry'),
      });
    }
    if (!outcome.ok) return this.answer(w.reply, { error: outcome.error });
    const { op: _op, ...rest } = outcome.result as { op: string } & Record<string, unknown>;
    const result =
      w.op === 'sessionOpen'
        ? { ...w.extra }
        : { ...rest, revision: outcome.revision, ...(outcome.replayed ? { replayed: true } : {}) };
    this.answer(w.reply, { result });
  }

  // -------------------------------------------------------------------------------------------

  private schedule(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.proposeQueue.length > 0) {
      const commands = this.proposeQueue;
      this.proposeQueue = [];
      this.counters.proposals += commands.length;
      this.counters.proposalBatches++;
      this.opts.raft({ type: 'raft.propose', commands });
    }
    if (this.readQueue.length > 0) {
      const id = `r${++this.nextId}`;
      this.readBatches.set(id, this.readQueue);
      this.readQueue = [];
      this.counters.readBatches++;
      this.opts.raft({ type: 'raft.readIndex', ids: [id] });
    }
  }

  /** Answers TIMEOUT to requests the log did not settle in time. */
  private sweep(): void {
    const now = performance.now();
    for (const w of this.writes.values()) {
      if (w.deadline > now) continue;
      this.writes.delete(w.id);
      if (w.index !== undefined) this.byIndex.delete(w.index);
      this.answer(w.reply, {
        error: new TimeoutError('the write did not commit in time; retry (exactly-once with a session)'),
      });
    }
    for (const w of this.changes.values()) {
      if (w.deadline > now) continue;
      this.changes.delete(w.id);
      this.answer(w.reply, { error: new TimeoutError('the membership change did not commit in time') });
    }
  }

  status(): ApiResults['status'] {
    const c = this.opts.state();
    return {
      id: this.opts.self,
      cluster: this.opts.cluster,
      role: c.role === 'preCandidate' ? 'candidate' : c.role,
      term: c.term,
      leader: c.leader,
      commitIndex: c.commit,
      appliedIndex: this.opts.applier.index,
      lastIndex: lastIndex(c),
      revision: this.opts.tree.revision,
      members: currentConfig(c),
      protocol: SUPPORTED_PROTOCOL_VERSIONS,
      sessions: this.opts.tree
        .sessions()
        .slice(0, 1000)
        .map((x) => ({ id: x.id, ttlMs: x.ttlMs, ephemeralKeys: x.ephemeralKeys })),
    };
  }

  private onKeepalive(msg: Msg): void {
    const d = decodeEnvelope(msg.data, { cluster: this.opts.cluster, headers: msg.headers ?? null });
    if (!d.ok) {
      this.counters.badInput++;
      return;
    }
    const v = validateRequest('sessionKeepalive', d.envelope.body, this.opts.limits);
    if (!v.ok || v.op !== 'sessionKeepalive') {
      this.counters.badInput++;
      return;
    }
    // A keepalive sent as a request is answered by the nodes that know the session (the client
    // takes the first answer); for one it does not know, only the leader speaks: SESSION_EXPIRED.
    const answer = (outcome: Outcome) => {
      if (msg.reply && isClientInbox(msg.reply)) {
        msg.respond(encodeReply(outcome, { cluster: this.opts.cluster, format: d.format, base64: d.base64 }));
      }
    };
    const s = this.opts.tree.session(v.request.id);
    const leader = this.opts.state().role === 'leader';
    if (s === null) {
      // Unknown here: expired, forged, or opened but not applied on this node yet. The last
      // case loses nothing: applying the open counts as contact (SessionKeeper.opened), and
      // that is later than any keepalive ignored before it.
      if (leader && this.opts.applier.index >= this.opts.state().commit) {
        answer({ error: new SessionExpiredError(v.request.id) });
      }
      return;
    }
    if (!sameBytes(s.secret, v.request.secret)) {
      this.counters.forgedKeepalives++;
      if (leader) answer({ error: new SessionExpiredError(v.request.id) });
      return;
    }
    this.opts.onKeepalive?.(v.request.id);
    answer({ result: { ttlMs: s.ttlMs } });
  }
}

function readOptions(r: { limit?: number; after?: string; revision?: number }) {
  return {
    ...(r.limit !== undefined ? { limit: r.limit } : {}),
    ...(r.after !== undefined ? { after: r.after } : {}),
    ...(r.revision !== undefined ? { revision: r.revision } : {}),
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}
