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
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import {
  type EffectOf,
  type Message,
  type NodeId,
  type RaftEvent,
  type SnapshotMeta,
  validatePeerFrame,
  validateSnapshotChunk,
} from '../machines/raft/index.ts';
import type { Subjects } from '../protocol/index.ts';
import {
  type DropCounts,
  decodeEnvelope,
  decodePeer,
  encodePeer,
  encodeReply,
  newDropCounts,
} from '../protocol/index.ts';

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
}

export interface TransportCounters {
  framesIn: number;
  framesOut: number;
  messagesIn: number;
  messagesOut: number;
  snapshotsSent: number;
  snapshotsReceived: number;
  readonly drops: DropCounts & { invalid: number; notMember: number; incarnation: number };
}

export class Transport {
  readonly counters: TransportCounters = {
    framesIn: 0,
    framesOut: 0,
    messagesIn: 0,
    messagesOut: 0,
    snapshotsSent: 0,
    snapshotsReceived: 0,
    drops: { ...newDropCounts(), invalid: 0, notMember: 0, incarnation: 0 },
  };
  private readonly out = new Map<NodeId, Message[]>();
  private flushScheduled = false;
  private subs: Subscription[] = [];
  /** Chunks of the snapshot being received, by sender. */
  private incoming = new Map<
    NodeId,
    { meta: SnapshotMeta; term: number; chunks: Uint8Array[]; next: number }
  >();
  private sending = new Set<NodeId>();
  /** The incarnation first heard from each member. A node whose data directory was wiped comes
   * back with a new one: it may have voted in a term it no longer remembers, so it is refused
   * until it is removed and added again (which forgets the pin). */
  private readonly pins = new Map<NodeId, string>();

  constructor(private readonly opts: TransportOptions) {}

  start(): void {
    const { nc, subjects, self } = this.opts;
    this.subs.push(
      nc.subscribe(subjects.peer(self), { callback: (err, msg) => void (!err && this.receive(msg.data)) }),
    );
    this.subs.push(
      nc.subscribe(subjects.snapshot(self), {
        callback: (err, msg) => {
          if (err) return;
          const ok = this.receiveChunk(msg.data);
          if (msg.reply)
            msg.respond(
              encodeReply(ok ? { result: true } : { result: false }, { cluster: this.opts.cluster }),
            );
        },
      }),
    );
  }

  stop(): void {
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    this.out.clear();
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
      this.counters.framesOut++;
      this.counters.messagesOut += msgs.length;
      try {
        nc.publish(
          subjects.peer(to),
          encodePeer({ from: self, to, inc: this.opts.incarnation, msgs }, cluster),
        );
      } catch {
        // A closed or reconnecting connection: Raft retries by itself (heartbeats, probes).
      }
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
    const from = v.frame.from;
    if (!this.opts.admits(from)) {
      this.pins.delete(from);
      drops.notMember++;
      return;
    }
    const pinned = this.pins.get(from);
    if (pinned === undefined) this.pins.set(from, v.frame.inc);
    else if (pinned !== v.frame.inc) {
      if (drops.incarnation++ % 1000 === 0) {
        this.opts.log?.(
          `refusing ${from}: incarnation ${v.frame.inc}, expected ${pinned} (data wiped? remove and add it again)`,
        );
      }
      return;
    }
    this.counters.framesIn++;
    this.counters.messagesIn += v.frame.msgs.length;
    for (const m of v.frame.msgs) this.opts.raft(m);
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
    void (async () => {
      const chunks = await this.opts.snapshotChunks(message.snapshot);
      let seq = 0;
      let pending: Uint8Array | null = null;
      const ship = async (data: Uint8Array, last: boolean) => {
        const body = { from: self, term: message.term, snapshot: message.snapshot, seq: seq++, last, data };
        const reply = await nc.request(subjects.snapshot(to), encodePeer(body, cluster), { timeout });
        const d = decodeEnvelope(reply.data, { cluster, format: 'cbor' });
        if (!d.ok || (d.envelope as unknown as { result?: unknown }).result !== true) {
          const r = (d.ok ? (d.envelope as unknown as { result?: unknown }) : {}).result;
          if (r !== true) throw new Error('snapshot chunk refused');
        }
      };
      for await (const c of chunks) {
        if (pending !== null) await ship(pending, false);
        pending = c;
      }
      await ship(pending ?? new Uint8Array(0), true);
      this.counters.snapshotsSent++;
    })()
      .catch(() => this.opts.raft({ type: 'raft.snapshotFailed', to }))
      .finally(() => this.sending.delete(to));
  }

  /** One chunk of an incoming snapshot; the last one hands the whole to the machine. */
  private receiveChunk(data: Uint8Array): boolean {
    const { cluster } = this.opts;
    const decoded = decodePeer(data, { cluster, drops: this.counters.drops });
    if (!decoded.ok) return false;
    const v = validateSnapshotChunk(decoded.body);
    if (!v.ok) {
      this.counters.drops.invalid++;
      return false;
    }
    const c = v.chunk;
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
