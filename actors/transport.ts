/**
 * The NATS transport between peers. Outgoing messages are batched per peer within one turn of
 * the event loop into a single frame (one publish carries every message the node had for that
 * peer), so a busy leader sends one frame per follower per turn, not one per message.
 * Incoming frames are decoded and validated (machines/raft/frames.ts); anything malformed, from
 * another cluster, from a node that is not a member, or addressed elsewhere is dropped and
 * counted, never answered.
 *
 * Snapshots travel as chunk requests, one at a time (each acknowledged before the next), so a
 * large snapshot neither floods the follower nor exceeds max_payload.
 *
 * Chaos (a node started with `--chaos`): the node's `ChaosFilter` (actors/chaos.ts) decides the
 * fate of everything sent to or received from a peer by id: Raft frames (out in `flush`, in once
 * the frame names its sender), snapshot chunks and their acknowledgements, and, through
 * `chaosConnection`, the requests other actors make of peers (forwarded client requests,
 * session-age rounds). A dropped message is counted in `counters.drops.chaos`; a dropped request
 * fails as a lost one does, when its timeout expires.
 */
import {
  headers,
  type Msg,
  type NatsConnection,
  type Payload,
  type PublishOptions,
  type RequestOptions,
  type Subscription,
  type SubscriptionOptions,
} from '@nats-io/transport-node';
import {
  type EffectOf,
  type Message,
  type NodeId,
  type RaftEvent,
  type SnapshotChunk,
  type SnapshotMeta,
  validatePeerFrame,
  validateSnapshotChunk,
} from '../machines/raft/index.ts';
import type { Subjects } from '../protocol/index.ts';
import {
  type DropCounts,
  decodePeer,
  decodeReply,
  encodePeer,
  encodeReply,
  isToken,
  newDropCounts,
} from '../protocol/index.ts';
import { ChaosFilter, type ChaosVerdict, PASS } from './chaos.ts';

export interface TransportOptions {
  readonly nc: NatsConnection;
  readonly subjects: Subjects;
  readonly cluster: string;
  readonly self: NodeId;
  /** This node's incarnation: peers pin it and refuse a node whose data was wiped. */
  readonly incarnation: string;
  readonly raft: (event: RaftEvent) => void;
  readonly log?: (line: string) => void;
  /** Whether `id` may talk to us (a member, or anyone while we know no configuration). */
  readonly admits: (id: NodeId) => boolean;
  /** The snapshot to ship: chunks of the state machine at (or after) `meta.index`. */
  readonly snapshotChunks: (meta: SnapshotMeta) => Promise<AsyncIterable<Uint8Array>>;
  readonly chunkTimeoutMs?: number;
  /** The chaos filter of a `--chaos` node (default: an empty one, which passes everything). */
  readonly chaos?: ChaosFilter;
}

export interface TransportCounters {
  framesIn: number;
  framesOut: number;
  messagesIn: number;
  messagesOut: number;
  snapshotsSent: number;
  snapshotsReceived: number;
  readonly drops: DropCounts & {
    invalid: number;
    notMember: number;
    incarnation: number;
    /** Peer messages the chaos filter dropped, in and out. */
    readonly chaos: number;
  };
}

export class Transport {
  readonly counters: TransportCounters;
  /** The fault filter (chaos tests): outlives restarts of the transport. */
  readonly chaos: ChaosFilter;
  /** Deliveries the chaos filter delayed: cancelled when the transport stops. */
  private readonly delayed = new Set<NodeJS.Timeout>();
  private readonly out = new Map<NodeId, Message[]>();
  private flushScheduled = false;
  private subs: Subscription[] = [];
  /** Chunks of the snapshot being received, by sender. */
  private incoming = new Map<
    NodeId,
    { meta: SnapshotMeta; term: number; chunks: Uint8Array[]; next: number }
  >();
  private sending = new Set<NodeId>();
  /** When a failed snapshot to each peer was last logged. */
  private readonly snapshotFailureSaid = new Map<NodeId, number>();
  /** The incarnation first heard from each member. A node whose data directory was wiped comes
   * back with a new one: it may have voted in a term it no longer remembers, so it is refused
   * until it is removed and added again (which forgets the pin). */
  private readonly pins = new Map<NodeId, string>();

  constructor(private readonly opts: TransportOptions) {
    const chaos = opts.chaos ?? new ChaosFilter();
    this.chaos = chaos;
    this.counters = {
      framesIn: 0,
      framesOut: 0,
      messagesIn: 0,
      messagesOut: 0,
      snapshotsSent: 0,
      snapshotsReceived: 0,
      drops: {
        ...newDropCounts(),
        invalid: 0,
        notMember: 0,
        incarnation: 0,
        get chaos() {
          return chaos.dropped;
        },
      },
    };
  }

  /** Runs `fn` after `ms` (a delay the chaos filter asked for), unless the transport stops first. */
  private later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.delayed.delete(timer);
      fn();
    }, ms);
    this.delayed.add(timer);
  }

  start(): void {
    const { nc, subjects, self } = this.opts;
    this.subs.push(
      nc.subscribe(subjects.peer(self), { callback: (err, msg) => void (!err && this.receive(msg.data)) }),
    );
    this.subs.push(
      nc.subscribe(subjects.snapshot(self), { callback: (err, msg) => void (!err && this.onChunk(msg)) }),
    );
  }

  stop(): void {
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    this.out.clear();
    for (const t of this.delayed) clearTimeout(t);
    this.delayed.clear();
  }

  send(to: NodeId, message: Message): void {
    const q = this.out.get(to);
    if (q === undefined) this.out.set(to, [message]);
    else q.push(message);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const { nc, subjects, cluster, self } = this.opts;
    for (const [to, msgs] of this.out) {
      const fate = this.chaos.decide(to, 'out', msgs.length);
      if (fate.drop) continue;
      this.counters.framesOut++;
      this.counters.messagesOut += msgs.length;
      const frame = encodePeer({ from: self, to, inc: this.opts.incarnation, msgs }, cluster);
      const publish = () => {
        try {
          nc.publish(subjects.peer(to), frame);
        } catch {
          // A closed or reconnecting connection: Raft retries by itself (heartbeats, probes).
        }
      };
      if (fate.delayMs > 0) this.later(fate.delayMs, publish);
      else publish();
    }
    this.out.clear();
  }

  private receive(data: Uint8Array): void {
    const { cluster, self } = this.opts;
    const drops = this.counters.drops;
    const decoded = decodePeer(data, { cluster, drops });
    if (!decoded.ok) return;
    const v = validatePeerFrame(decoded.body, self);
    if (!v.ok) {
      drops.invalid++;
      return;
    }
    const frame = v.frame;
    const fate = this.chaos.decide(frame.from, 'in', frame.msgs.length);
    if (fate.drop) return;
    if (fate.delayMs > 0) this.later(fate.delayMs, () => this.accept(frame));
    else this.accept(frame);
  }

  /** A valid frame for this node: delivered if its sender is a member with the pinned incarnation. */
  private accept(frame: {
    readonly from: NodeId;
    readonly inc: string;
    readonly msgs: readonly Message[];
  }): void {
    const drops = this.counters.drops;
    const from = frame.from;
    if (!this.opts.admits(from)) {
      this.pins.delete(from);
      drops.notMember++;
      return;
    }
    const pinned = this.pins.get(from);
    if (pinned === undefined) this.pins.set(from, frame.inc);
    else if (pinned !== frame.inc) {
      if (drops.incarnation++ % 1000 === 0) {
        this.opts.log?.(
          `refusing ${from}: incarnation ${frame.inc}, expected ${pinned} (data wiped? remove and add it again)`,
        );
      }
      return;
    }
    this.counters.framesIn++;
    this.counters.messagesIn += frame.msgs.length;
    for (const m of frame.msgs) this.opts.raft(m);
  }

  /** A configuration without these nodes took effect: forget their incarnations, so a node
   * removed and added again is heard with whatever incarnation it has now. */
  forgetNonMembers(members: readonly NodeId[]): void {
    for (const id of this.pins.keys()) if (!members.includes(id)) this.pins.delete(id);
  }

  /** Streams a snapshot to `to`, chunk by chunk; reports failure to the machine. */
  sendSnapshot(to: NodeId, message: EffectOf<'sendSnapshot'>['message']): void {
    if (this.sending.has(to)) return;
    this.sending.add(to);
    const { nc, subjects, cluster, self } = this.opts;
    const timeout = this.opts.chunkTimeoutMs ?? 10_000;
    const started = performance.now();
    let bytes = 0;
    let seq = 0;
    void (async () => {
      const chunks = await this.opts.snapshotChunks(message.snapshot);
      let pending: Uint8Array | null = null;
      const ship = async (data: Uint8Array, last: boolean) => {
        const body = { from: self, term: message.term, snapshot: message.snapshot, seq: seq++, last, data };
        bytes += data.length;
        const reply = await chaosRequest(this.chaos, to, { timeout }, (o) =>
          nc.request(subjects.snapshot(to), encodePeer(body, cluster), o),
        );
        // The acknowledgement is a reply envelope ({ v, cluster, result }), not a request one
        // (decodeEnvelope wants a body): read as a request, every chunk looked refused.
        const d = decodeReply(reply.data, { cluster });
        if (!d.ok || d.result !== true) throw new Error('snapshot chunk refused');
      };
      for await (const c of chunks) {
        if (pending !== null) await ship(pending, false);
        pending = c;
      }
      await ship(pending ?? new Uint8Array(0), true);
      this.counters.snapshotsSent++;
      this.opts.log?.(
        `sent a snapshot (log index ${message.snapshot.index}, ${seq} chunks, ${(bytes / 2 ** 20).toFixed(1)} MiB) to ${to} in ${Math.round(performance.now() - started)} ms`,
      );
    })()
      .catch((err: unknown) => {
        // Said once a minute per peer at most: a dead peer fails every attempt.
        const now = performance.now();
        if (now - (this.snapshotFailureSaid.get(to) ?? Number.NEGATIVE_INFINITY) >= 60_000) {
          this.snapshotFailureSaid.set(to, now);
          this.opts.log?.(
            `a snapshot to ${to} failed after ${seq} chunks: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
        this.opts.raft({ type: 'raft.snapshotFailed', to });
      })
      .finally(() => this.sending.delete(to));
  }

  /** A snapshot chunk request: taken (or refused) and acknowledged, unless the filter drops it. */
  private onChunk(msg: Msg): void {
    const { cluster } = this.opts;
    const decoded = decodePeer(msg.data, { cluster, drops: this.counters.drops });
    const v = decoded.ok ? validateSnapshotChunk(decoded.body) : null;
    if (v !== null && !v.ok) this.counters.drops.invalid++;
    const chunk = v?.ok ? v.chunk : null;
    const handle = () => {
      const ok = chunk !== null && this.receiveChunk(chunk);
      if (!msg.reply || (chunk !== null && this.chaos.decide(chunk.from, 'out').drop)) return;
      msg.respond(encodeReply(ok ? { result: true } : { result: false }, { cluster }));
    };
    const fate = chunk === null ? PASS : this.chaos.decide(chunk.from, 'in');
    if (fate.drop) return;
    if (fate.delayMs > 0) this.later(fate.delayMs, handle);
    else handle();
  }

  /** One chunk of an incoming snapshot; the last one hands the whole to the machine. */
  private receiveChunk(c: SnapshotChunk): boolean {
    if (!this.opts.admits(c.from)) {
      this.counters.drops.notMember++;
      return false;
    }
    let cur = this.incoming.get(c.from);
    if (c.seq === 0) {
      cur = { meta: c.snapshot, term: c.term, chunks: [], next: 0 };
      this.incoming.set(c.from, cur);
    }
    if (cur === undefined || c.seq !== cur.next || c.snapshot.index !== cur.meta.index) return false;
    cur.chunks.push(c.data);
    cur.next++;
    if (c.last) {
      this.incoming.delete(c.from);
      this.counters.snapshotsReceived++;
      const size = cur.chunks.reduce((s, d) => s + d.length, 0);
      this.opts.log?.(
        `received a snapshot from ${c.from} (log index ${c.snapshot.index}, ${cur.chunks.length} chunks, ${(size / 2 ** 20).toFixed(1)} MiB): installing`,
      );
      this.opts.raft({
        type: 'raft.installSnapshot',
        term: c.term,
        from: c.from,
        snapshot: c.snapshot,
        data: cur.chunks,
      });
    }
    return true;
  }
}

// ---- chaos: requests to and from peers -----------------------------------------------------

/** The header a `--chaos` node puts on its requests to peers: who sends (the receiver's `in` rules). */
export const CHAOS_FROM_HEADER = 'Ensemble-Chaos-From';

/** A request the chaos filter lost: it fails as one lost on the network does, at its timeout. */
function lost(ms: number): Promise<never> {
  return new Promise((_, reject) => {
    const err = Object.assign(new Error('timeout (the chaos filter dropped the request or its reply)'), {
      name: 'TimeoutError',
    });
    setTimeout(() => reject(err), Math.max(0, ms)).unref();
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * A request to peer `to` through the chaos filter: the request is dropped or delayed by the `out`
 * rules, its reply by the `in` rules; a dropped one (or one delayed past its timeout) rejects when
 * the timeout expires. `send` makes the request with the timeout left.
 */
export async function chaosRequest(
  chaos: ChaosFilter,
  to: NodeId,
  opts: RequestOptions,
  send: (opts: RequestOptions) => Promise<Msg>,
): Promise<Msg> {
  if (chaos.rules.length === 0) return send(opts);
  const start = performance.now();
  const left = () => opts.timeout - (performance.now() - start);
  const out = chaos.decide(to, 'out');
  if (out.drop || out.delayMs >= opts.timeout) return lost(left());
  if (out.delayMs > 0) await sleep(out.delayMs);
  const reply = await send({ ...opts, timeout: Math.max(1, Math.round(left())) });
  const back = chaos.decide(to, 'in');
  if (back.drop || back.delayMs >= left()) return lost(left());
  if (back.delayMs > 0) await sleep(back.delayMs);
  return reply;
}

/** `msg` with its replies to `to` going through the `out` rules. */
function guardReplies(
  msg: Msg,
  to: NodeId,
  chaos: ChaosFilter,
  later: (ms: number, fn: () => void) => void,
): Msg {
  const respond = (payload?: Payload, opts?: PublishOptions): boolean => {
    const fate = chaos.decide(to, 'out');
    if (fate.drop) return true;
    if (fate.delayMs === 0) return msg.respond(payload, opts);
    later(fate.delayMs, () => msg.respond(payload, opts));
    return true;
  };
  return new Proxy(msg, {
    get(target, prop) {
      if (prop === 'respond') return respond;
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

/**
 * The NATS connection of a `--chaos` node as the actors that call peers outside the transport see
 * it (the API's forwarded requests, the session keeper's age rounds): requests and publishes to a
 * peer's subjects (`P.peer.<id>[.…]`) go through the `out` rules (replies through the `in` rules)
 * and carry `CHAOS_FROM_HEADER`; requests on this node's own peer subjects from a peer that says
 * who it is go through the `in` rules (their replies through the `out` rules). Anything else
 * passes untouched.
 */
export function chaosConnection(
  nc: NatsConnection,
  o: { readonly subjects: Subjects; readonly self: NodeId; readonly chaos: ChaosFilter },
): NatsConnection {
  const { chaos, self } = o;
  const root = `${o.subjects.prefix}.peer.`;
  const peerOf = (subject: string): NodeId | null => {
    if (!subject.startsWith(root)) return null;
    const id = subject.slice(root.length).split('.', 1)[0];
    return isToken(id) ? id : null;
  };
  const stamped = (h: RequestOptions['headers']) => {
    const out = h ?? headers();
    out.set(CHAOS_FROM_HEADER, self);
    return out;
  };
  const later = (ms: number, fn: () => void) => void setTimeout(fn, ms);
  const request = (subject: string, payload?: Payload, opts?: RequestOptions): Promise<Msg> => {
    const to = peerOf(subject);
    if (to === null || to === self) return nc.request(subject, payload, opts);
    return chaosRequest(chaos, to, opts ?? { timeout: 1000 }, (r) =>
      nc.request(subject, payload, { ...r, headers: stamped(r.headers) }),
    );
  };
  const publish = (subject: string, payload?: Payload, opts?: PublishOptions): void => {
    const to = peerOf(subject);
    if (to === null || to === self) return nc.publish(subject, payload, opts);
    const fate: ChaosVerdict = chaos.decide(to, 'out');
    if (fate.drop) return;
    const send = () => nc.publish(subject, payload, { ...opts, headers: stamped(opts?.headers) });
    if (fate.delayMs > 0) later(fate.delayMs, send);
    else send();
  };
  const subscribe = (subject: string, opts?: SubscriptionOptions): Subscription => {
    const callback = opts?.callback;
    if (callback === undefined || peerOf(subject) !== self) return nc.subscribe(subject, opts);
    const sub: Subscription = nc.subscribe(subject, {
      ...opts,
      callback: (err, msg) => {
        const from = err ? '' : (msg.headers?.get(CHAOS_FROM_HEADER) ?? '');
        if (!isToken(from)) return callback(err, msg);
        const fate = chaos.decide(from, 'in');
        if (fate.drop) return;
        const guarded = guardReplies(msg, from, chaos, later);
        if (fate.delayMs === 0) return callback(null, guarded);
        later(fate.delayMs, () => {
          if (!sub.isClosed()) callback(null, guarded);
        });
      },
    });
    return sub;
  };
  return new Proxy(nc, {
    get(target, prop) {
      if (prop === 'request') return request;
      if (prop === 'publish') return publish;
      if (prop === 'subscribe') return subscribe;
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}
