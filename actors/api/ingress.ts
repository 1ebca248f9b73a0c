/**
 * The API's door on NATS: subscribes, decodes, validates, and routes every request.
 *
 * - `P.node.<self>.api.<op>`: this node. Writes and admin ops on a follower answer NOT_LEADER
 *   with the leader's id, so clients learn where to go; reads are served here (ReadIndex).
 * - `P.api.<op>`: any node (queue group). A follower forwards writes and admin ops to the
 *   leader on `P.peer.<leader>.forward` and relays the leader's answer byte for byte.
 * - `P.peer.<self>.forward`: requests forwarded by followers (peers only, by nats.conf).
 * - `P.session.keepalive`: keepalives, heard by every node.
 * The API is announced as a NATS service (`$SRV` discovery). Every reply mirrors the request's
 * format (CBOR or JSON) and goes only to a client inbox or to the reply subject nats-server mapped
 * for a request from another account. Who asks comes from nats-server's `Nats-Request-Info`
 * header (protocol/caller.ts), never from the body; a forwarded request carries it to the leader. Bad input of any kind gets a typed error
 * (or, on the keepalive subject, is dropped and counted); nothing a client sends can throw out of
 * a handler.
 */
import { type Service, Svcm } from '@nats-io/services';
import { headers, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { NodeId, RaftReader } from '../../machines/raft/index.ts';
import pkg from '../../package.json' with { type: 'json' };
import {
  type ApiLimits,
  type ApiResults,
  BadRequestError,
  type Caller,
  callerOf,
  type DecodedEnvelope,
  decodeEnvelope,
  decodePeer,
  encodeDecodeError,
  encodeEnvelope,
  encodePeer,
  isReplySubject,
  LEADER_HEADER,
  NotLeaderError,
  opKinds,
  ops,
  PermissionDeniedError,
  REQUEST_INFO_HEADER,
  type Subjects,
  UnknownOutcomeError,
  validateRequest,
} from '../../protocol/index.ts';
import type { ApiHandlers } from './handlers.ts';
import type { Answer, ApiCounters, Reply } from './reply.ts';

/** The version the API announces as a NATS service: the package's (package.json). */
export const SERVICE_VERSION: string = pkg.version;

export interface IngressPorts {
  readonly nc: NatsConnection;
  readonly subjects: Subjects;
  readonly cluster: string;
  readonly self: NodeId;
  readonly machine: RaftReader;
  readonly limits?: Partial<ApiLimits>;
  /** How long a forwarded request waits for the leader's answer. */
  readonly forwardTimeoutMs: number;
  readonly handlers: ApiHandlers;
  readonly answer: Answer;
  readonly counters: ApiCounters;
  /** Users treated as admins (default `DEFAULT_ADMINS`: `admin`). */
  readonly admins?: readonly string[];
}

export class ApiIngress {
  private subs: Subscription[] = [];
  private service: Promise<Service> | null = null;
  /** Requests forwarded to a leader and not answered yet. */
  private readonly forwards = new Map<
    number,
    { readonly leader: NodeId; readonly op: string; readonly reply: Reply }
  >();
  private forwardSeq = 0;

  constructor(private readonly p: IngressPorts) {}

  start(): void {
    const { nc, subjects, self, cluster } = this.p;
    // Two endpoints with wildcard subjects, so unknown ops still reach us and get UNKNOWN_OP.
    this.service = new Svcm(nc)
      .add({
        name: 'ensemble',
        version: SERVICE_VERSION,
        description: 'Ensemble coordination cluster: key tree, sessions, watches over request/reply',
        metadata: { cluster, node: self, prefix: subjects.prefix, ops: ops.join(',') },
        queue: subjects.apiQueue,
      })
      .then((svc) => {
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
      nc.subscribe(subjects.sessionKeepalive(), { callback: (e, m) => void (!e && this.onKeepalive(m)) }),
    );
  }

  /** Resolves once the API endpoints are subscribed at the server (tests wait for it). */
  async ready(): Promise<void> {
    await this.service;
    await this.p.nc.flush();
  }

  /** Stops serving; the promise resolves once the endpoints are unsubscribed at the server. */
  stop(): Promise<void> {
    const stopped = (this.service?.then((svc) => svc.stop()) ?? Promise.resolve())
      .then(() => this.p.nc.flush())
      .catch(() => {});
    this.service = null;
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    return stopped;
  }

  private onApi(msg: Msg, anyNode: boolean): void {
    this.p.counters.requests++;
    const parsed = this.p.subjects.parseApi(msg.subject);
    const decoded = decodeEnvelope(msg.data, { cluster: this.p.cluster, headers: msg.headers ?? null });
    const reply: Reply = {
      format: decoded.format,
      base64: decoded.base64,
      respond: (bytes, leader) => {
        if (!msg.reply || !isReplySubject(msg.reply)) return;
        if (leader === undefined) msg.respond(bytes);
        else {
          const h = headers();
          h.set(LEADER_HEADER, leader);
          msg.respond(bytes, { headers: h });
        }
      },
    };
    if (!decoded.ok) return this.refuse(reply, decoded);
    if (parsed === null) return this.p.answer(reply, { error: new BadRequestError('not an API subject') });
    const caller = callerOf(msg.headers?.get(REQUEST_INFO_HEADER), this.p.admins);
    if (caller === null) {
      this.p.counters.denied++;
      return this.p.answer(reply, { error: new PermissionDeniedError('', 'the request names no NATS user') });
    }
    this.route(parsed.op, decoded.envelope.body, reply, anyNode ? msg : null, caller);
  }

  /** A request a follower forwarded: served here as if sent to this node directly. */
  private onForward(msg: Msg): void {
    const peer = decodePeer(msg.data, { cluster: this.p.cluster });
    if (!peer.ok || !msg.reply) return;
    const b = peer.body as { op?: unknown; format?: unknown; data?: unknown; caller?: unknown };
    const caller = callerFrame(b.caller);
    if (
      typeof b.op !== 'string' ||
      !(b.data instanceof Uint8Array) ||
      (b.format !== 'cbor' && b.format !== 'json') ||
      caller === null
    ) {
      this.p.counters.badInput++;
      return;
    }
    const decoded = decodeEnvelope(b.data, { cluster: this.p.cluster, format: b.format });
    const reply: Reply = {
      format: decoded.format,
      base64: decoded.base64,
      respond: (bytes) => msg.respond(bytes),
    };
    if (!decoded.ok) return this.refuse(reply, decoded);
    this.route(b.op, decoded.envelope.body, reply, null, caller);
  }

  /**
   * Validates, then serves here, forwards to the leader (`forwardable`: a request that came on the
   * any-node subject), or answers NOT_LEADER with the leader this node knows.
   */
  private route(op: string, body: unknown, reply: Reply, forwardable: Msg | null, caller: Caller): void {
    const v = validateRequest(op, body, this.p.limits);
    if (!v.ok) {
      this.p.counters.badInput++;
      return this.p.answer(reply, { error: v.error });
    }
    const kind = opKinds[v.op];
    if ((kind === 'write' || kind === 'admin') && this.p.machine.role() !== 'leader') {
      const ctx = this.p.machine.context();
      if (forwardable !== null && ctx.leader !== null && ctx.leader !== this.p.self)
        return this.forward(ctx.leader, v.op, forwardable, reply, caller);
      return this.p.answer(reply, { error: new NotLeaderError(ctx.leader) });
    }
    this.p.handlers.dispatch(v, reply, caller);
  }

  /**
   * Forwards to the leader and relays its answer. If nobody listens there (no responders), the
   * request was never delivered: NOT_LEADER (nothing applied). If the leader does not answer in
   * time, or another leader is elected first (`leaderChanged`), the write may have been proposed:
   * UNKNOWN_OUTCOME at once, so the client retries under its session tag on the new leader.
   */
  private forward(leader: NodeId, op: string, msg: Msg, reply: Reply, caller: Caller): void {
    this.p.counters.forwarded++;
    const { nc, subjects, cluster } = this.p;
    const id = ++this.forwardSeq;
    this.forwards.set(id, { leader, op, reply });
    // Who asked travels with the request: the leader checks it as this node would have.
    const body = {
      op,
      format: reply.format,
      data: msg.data,
      caller: { kind: caller.kind, user: caller.user },
    };
    nc.request(subjects.forward(leader), encodePeer(body, cluster), {
      timeout: this.p.forwardTimeoutMs,
    }).then(
      (r) => {
        if (this.forwards.delete(id)) reply.respond(r.data, leader);
      },
      (err: unknown) => {
        if (!this.forwards.delete(id)) return;
        const nobody = (err as { isNoResponders?: () => boolean }).isNoResponders?.() === true;
        const now = this.p.machine.context().leader;
        this.p.answer(reply, {
          error: nobody
            ? new NotLeaderError(now === leader ? null : now, `leader ${leader} is gone; nothing was applied`)
            : new UnknownOutcomeError(
                now,
                `leader ${leader} did not answer in time; the write may have been applied`,
              ),
        });
      },
    );
  }

  /**
   * A leader was elected (or none is known): forwards to another one get UNKNOWN_OUTCOME now; if
   * it is this node, it says so on `P.leader`, so clients move their requests here at once.
   */
  leaderChanged(leader: NodeId | null): void {
    if (leader === this.p.self) {
      try {
        const { term } = this.p.machine.context();
        this.p.nc.publish(
          this.p.subjects.leaderAnnounce(),
          encodeEnvelope({ leader, term }, { cluster: this.p.cluster }),
        );
      } catch {
        // NATS is down: clients learn the leader from their next answer instead.
      }
    }
    for (const [id, f] of this.forwards) {
      if (f.leader === leader) continue;
      // A leader transfer that moved leadership did what was asked: the new leader is the answer.
      if (f.op === 'transferLeader') {
        if (leader === null) continue;
        this.forwards.delete(id);
        this.p.answer(f.reply, { result: { leader } satisfies ApiResults['transferLeader'] });
        continue;
      }
      this.forwards.delete(id);
      this.p.answer(f.reply, {
        error: new UnknownOutcomeError(
          leader,
          `leader ${f.leader} lost its leadership; the write may have been applied`,
        ),
      });
    }
  }

  private refuse(reply: Reply, decoded: DecodedEnvelope & { ok: false }): void {
    this.p.counters.badInput++;
    this.p.counters.errors++;
    reply.respond(encodeDecodeError(decoded, this.p.cluster));
  }

  /**
   * A keepalive published (or sent as a request) on the keepalive subject: every node records it;
   * the nodes that know the session answer, the leader answers SESSION_EXPIRED for one it does not.
   */
  private onKeepalive(msg: Msg): void {
    const d = decodeEnvelope(msg.data, { cluster: this.p.cluster, headers: msg.headers ?? null });
    const v = d.ok ? validateRequest('sessionKeepalive', d.envelope.body, this.p.limits) : null;
    if (v === null || !v.ok || v.op !== 'sessionKeepalive') {
      this.p.counters.badInput++;
      return;
    }
    const outcome = this.p.handlers.keepalive(v.request.id, v.request.secret);
    if (outcome !== null && msg.reply && isReplySubject(msg.reply))
      this.p.answer({ format: d.format, base64: d.base64, respond: (bytes) => msg.respond(bytes) }, outcome);
  }
}

/** The caller a follower sent with a forwarded request (peers are trusted to tell the truth). */
function callerFrame(c: unknown): Caller | null {
  if (typeof c !== 'object' || c === null) return null;
  const { kind, user } = c as { kind?: unknown; user?: unknown };
  if ((kind !== 'peer' && kind !== 'admin' && kind !== 'client') || typeof user !== 'string') return null;
  return { kind, user };
}
