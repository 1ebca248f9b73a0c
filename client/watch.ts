/**
 * Watches on the client: one logical stream per `watch()`, resumed across nodes.
 *
 * Under a stream, one server-side watch at a time, on the node that took the request. Its
 * messages come two ways:
 * - direct, in the stream's own inbox, numbered by `seq`: the replay from history, errors, and
 *   the live events until the stream joins its group. The client acknowledges what its consumer
 *   has taken (every `ACK_EVERY` messages, or soon after), so the node sends at most a window
 *   ahead of the consumer and a slow consumer pauses its watch on the node, never the node.
 * - shared, on the group subject the watch result names: after the client subscribed to it
 *   (once per connection and subject, however many streams use it: `WatchGroups`) and said so,
 *   the node moves the watch onto the group's stream; a `join` message says from which group
 *   message on. Nothing is acknowledged there; when the consumer falls `highWater` items behind,
 *   the stream leaves the node and comes back from its last revision once the consumer caught up.
 *
 * Any gap in either numbering, an error that is worth a retry, or silence longer than
 * `silenceMs` while the consumer waits: the stream resumes, on any node, from the revision after
 * the last one it received, dropping whatever it already had. So the application sees every
 * revision once, in order.
 */
import { createInbox, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type {
  ApiRequests,
  ApiResults,
  WatchEvent,
  WatchGroupMessage,
  WatchMessage,
} from '../protocol/index.ts';
import { decodeCbor, EnsembleError, fromWire, inboxPrefix, isToken, watchInbox } from '../protocol/index.ts';
import type { Client } from './index.ts';

export type WatchTarget =
  | { readonly key: string }
  | { readonly prefix: string }
  | { readonly subtree: string };

export interface WatchOptions {
  readonly fromRevision?: number;
  /** Each event also carries the key's previous value. */
  readonly prevValue?: boolean;
  /** Also yield `{ type: 'progress', revision }` when the node reports progress while idle. */
  readonly progressNotify?: boolean;
  /** Resume when nothing (not even a heartbeat) arrived for this long (default 3500 ms). */
  readonly silenceMs?: number;
  /** Follow the node's shared stream for this target once caught up (default true). */
  readonly shared?: boolean;
  /** Events held for a slow consumer before the stream steps off the live stream (default 10k). */
  readonly highWater?: number;
}

export type WatchItem = WatchEvent | { readonly type: 'progress'; readonly revision: number };

/** Acknowledge after this many consumed messages (the node's window is 64 by default). */
const ACK_EVERY = 8;
const ACK_DELAY_MS = 20;
/** Group messages kept while waiting for the `join` that says which of them count. */
const EARLY_GROUP_MESSAGES = 256;

/** How long a watch request waits for the client's watch node before asking any node. */
const PREFERRED_MS = 1500;
/** Errors after which a resume is tried again later. */
const TRANSIENT = new Set(['TIMEOUT', 'NO_QUORUM', 'NOT_LEADER']);

let watchCounter = 0;

/** Decodes a `{ v, cluster, body }` watch message loosely; `null` if it is not one. */
function bodyOf(data: Uint8Array): unknown {
  const d = decodeCbor(data);
  if (!d.ok) return null;
  const env = d.value as { body?: unknown } | null;
  return env && typeof env === 'object' && 'body' in env ? env.body : null;
}

interface GroupEntry {
  readonly sub: Subscription;
  readonly streams: Set<WatchStream>;
}

/**
 * What a client's watches share: one node they all go to while it answers (so watches of one
 * target share one group there), and one subscription per group subject.
 */
export class WatchGroups {
  private readonly entries = new Map<string, GroupEntry>();
  private readonly nc: NatsConnection;
  /** Set when the server refused a group subscription (an older nats.conf): direct only. */
  refused = false;
  /** The node the watches go to, once one answered. */
  private node: string | null = null;
  /** The any-node request that is choosing `node`. */
  private choosing: Promise<unknown> | null = null;

  constructor(private readonly client: Client) {
    this.nc = client.nc;
  }

  /**
   * Starts a watch: on the watch node (briefly, and not at all once nobody listens there: it
   * may be the one that died), else on any node, which becomes the watch node.
   */
  async request(
    body: ApiRequests['watch'],
    /** Another id and inbox for the next attempt (the first node may still take this one). */
    again: () => ApiRequests['watch'] = () => body,
  ): Promise<ApiResults['watch']> {
    if (this.node === null && this.choosing !== null) await this.choosing.catch(() => {});
    const node = this.node;
    if (node !== null) {
      try {
        return await this.client.requestAny('watch', body, node, {
          timeoutMs: PREFERRED_MS,
          noRespondersFinal: true,
        });
      } catch (err) {
        if (err instanceof EnsembleError && !TRANSIENT.has(err.code)) throw err;
        if (this.node === node) this.node = null;
        // It may still start that watch (a paused node wakes): tell it to drop it.
        void this.client
          .requestAny('watchCancel', { id: body.id, session: body.session, secret: body.secret }, node)
          .catch(() => {});
      }
      body = again();
    }
    const asked = this.client.requestAny('watch', body);
    if (this.node === null) this.choosing = asked;
    const r = await asked;
    this.node ??= r.node;
    return r;
  }

  /** The session's watches moved to `node` (WATCH_MOVED): later watches go there. */
  movedTo(node: string): void {
    if (isToken(node)) this.node = node;
  }

  /** Subscribes `stream` to `subject`; true once the server has the subscription. */
  async join(subject: string, stream: WatchStream): Promise<boolean> {
    if (this.refused) return false;
    let entry = this.entries.get(subject);
    if (entry === undefined) {
      const streams = new Set<WatchStream>();
      const sub = this.nc.subscribe(subject, {
        callback: (err, msg) => {
          if (err) {
            this.refused = true;
            this.entries.delete(subject);
            for (const s of streams) s.groupLost();
            return;
          }
          const m = bodyOf(msg.data) as WatchGroupMessage | null;
          if (m === null || typeof m.seq !== 'number' || !Array.isArray(m.events)) return;
          for (const s of streams) s.onGroup(subject, m);
        },
      });
      entry = { sub, streams };
      this.entries.set(subject, entry);
    }
    entry.streams.add(stream);
    await this.nc.flush(); // the server has the subscription before the node is told to use it
    return !entry.sub.isClosed() && this.entries.get(subject) === entry;
  }

  leave(subject: string, stream: WatchStream): void {
    const entry = this.entries.get(subject);
    if (entry === undefined || !entry.streams.delete(stream)) return;
    if (entry.streams.size === 0) {
      entry.sub.unsubscribe();
      this.entries.delete(subject);
    }
  }

  /** Subscriptions open (tests). */
  get size(): number {
    return this.entries.size;
  }
}

/** One logical watch; under it, one server-side watch per node it was served by. */
export class WatchStream implements AsyncIterableIterator<WatchItem> {
  private nextRevision: number | undefined;
  private id = '';
  private node = '';
  /** The last direct message taken in order. */
  private seq = 0;
  private sub: Subscription | null = null;
  private group: string | null = null;
  /** Joined: the group generation, and the last group message taken. */
  private joined: { gen: number; seq: number } | null = null;
  private early: WatchGroupMessage[] = [];
  private lastHeard = performance.now();
  private readonly items: WatchItem[] = [];
  /** For acknowledgements: how many items ever queued and taken, and where each direct message ends. */
  private queued = 0;
  private taken = 0;
  private readonly marks: { end: number; seq: number }[] = [];
  private consumedSeq = 0;
  private ackedSeq = 0;
  private ackTimer: NodeJS.Timeout | null = null;
  /** Off the node because the consumer is behind; back once it has caught up. */
  private stalled = false;
  private waiter: (() => void) | null = null;
  private failure: unknown = null;
  private ended = false;
  private resuming: Promise<void> | null = null;
  private readonly watchdog: NodeJS.Timeout;
  private readonly highWater: number;
  /** Resumes so far (for tests and metrics). */
  resumes = 0;
  /** Of those, resumes because a message began past the next revision the stream lacked. */
  revisionGaps = 0;
  /** The start a watch "from now" chose itself, until it delivered something. */
  private implicitFrom: number | null;

  constructor(
    private readonly client: Client,
    private readonly groups: WatchGroups,
    /**
     * The session the watch runs under, asked at every (re)open: the connection's own session
     * reopens under a new id after it was lost, and the watch goes on under that one (the
     * node-side watch of the old session ended with it).
     */
    private readonly sessions: {
      now(): Promise<{ id: string; secret: Uint8Array }>;
      /** The cluster said the session is gone: the connection reopens one (or ends). */
      expired(): void;
    },
    private readonly target: WatchTarget,
    private readonly options: WatchOptions,
    /** Called once when the stream ends, however it ends. */
    private readonly onEnd: () => void = () => {},
  ) {
    // "From now": from just after the last revision this client heard of, so every write it
    // makes after this call is seen, even one that reaches the cluster before the watch does.
    const implicit =
      options.fromRevision === undefined && client.seenRevision >= 0 ? client.seenRevision + 1 : undefined;
    this.nextRevision = options.fromRevision ?? implicit;
    this.implicitFrom = implicit ?? null;
    this.highWater = options.highWater ?? 10_000;
    this.resume(false);
    const silence = options.silenceMs ?? 3500;
    this.watchdog = setInterval(
      () => {
        // Silence counts only while the consumer waits: a node may rightly hold back from one
        // that has not taken what it has.
        if (this.ended || this.stalled || this.resuming !== null || this.items.length > 0) return;
        if (performance.now() - this.lastHeard > silence) this.resume();
      },
      Math.max(100, silence / 4),
    );
    this.watchdog.unref?.();
  }

  /**
   * The revision of the next event already received and not yet taken, or undefined when none
   * is: a revision is complete once the next buffered event has another one (or none is left),
   * since a node never splits a revision across messages.
   */
  get bufferedRevision(): number | undefined {
    return this.items[0]?.revision;
  }

  /** Whether the stream currently follows its node's shared group stream. */
  get shared(): boolean {
    return this.joined !== null;
  }

  /** The session of the current open (acknowledgements and cancels go with it). */
  private session: { id: string; secret: Uint8Array } = { id: '', secret: new Uint8Array(0) };

  /**
   * A fresh watch id and inbox for one request: each attempt gets its own, so a node that
   * answers late (a paused one) serves an id nobody listens to any more instead of a second
   * stream into this one (its messages would move `nextRevision` past what the other sent).
   */
  private attempt(): ApiRequests['watch'] {
    this.sub?.unsubscribe();
    this.id = `w${++watchCounter}x${Math.floor(performance.now())}`;
    this.seq = 0;
    this.consumedSeq = 0;
    this.ackedSeq = 0;
    this.marks.length = 0;
    this.queued = this.taken = 0;
    const inbox = watchInbox(createInbox(inboxPrefix(this.client.inboxUser)), this.id);
    const id = this.id;
    this.sub = this.client.nc.subscribe(inbox, {
      callback: (err, msg) => void (!err && this.onDirect(id, msg.data)),
    });
    return {
      id,
      inbox,
      session: this.session.id,
      secret: this.session.secret,
      ...this.target,
      ...(this.nextRevision !== undefined ? { fromRevision: this.nextRevision } : {}),
      ...(this.options.prevValue ? { prevValue: true } : {}),
      ...(this.options.progressNotify ? { progressNotify: true } : {}),
    } as ApiRequests['watch'];
  }

  private async open(): Promise<void> {
    this.detach();
    const session = await this.sessions.now();
    if (this.ended) return;
    this.session = session;
    const first = this.attempt();
    const r = await this.groups.request(first, () => this.attempt());
    const id = this.id;
    if (r.id !== id) return;
    this.node = r.node;
    this.nextRevision ??= r.revision;
    this.lastHeard = performance.now();
    if (r.group !== undefined && this.options.shared !== false && !this.groups.refused) {
      this.group = r.group;
      if (await this.groups.join(r.group, this)) {
        if (id === this.id && !this.ended) this.sendAck(true);
      } else this.group = null;
    }
  }

  /** Drops the server-side watch's subscriptions (the node's side ends by cancel or silence). */
  private detach(): void {
    this.sub?.unsubscribe();
    this.sub = null;
    if (this.group !== null) this.groups.leave(this.group, this);
    this.group = null;
    this.joined = null;
    this.early = [];
    if (this.ackTimer) clearTimeout(this.ackTimer);
    this.ackTimer = null;
  }

  private onDirect(id: string, data: Uint8Array): void {
    if (id !== this.id || this.ended) return;
    const m = bodyOf(data) as WatchMessage | null;
    if (m === null || m.id !== this.id || typeof m.seq !== 'number' || !Array.isArray(m.events)) return;
    this.lastHeard = performance.now();
    if (m.seq !== this.seq + 1) return this.resume(); // a message was lost
    this.seq = m.seq;
    if (m.error) {
      const e = fromWire(m.error);
      if (e.code === 'WATCH_BEHIND') this.stall();
      else if (e.code === 'SESSION_EXPIRED') {
        this.sessions.expired();
        this.resume();
      } else if (e.code === 'WATCH_MOVED') {
        // The session's watches are served by another node now: resume there.
        this.groups.movedTo(String((m.error as { node?: unknown }).node ?? ''));
        this.resume();
      } else this.fail(e);
      return;
    }
    if (this.lacks(m.from)) return;
    this.take(m);
    this.marks.push({ end: this.queued, seq: m.seq });
    this.consumed();
    if (m.join) {
      this.joined = { gen: m.join.gen, seq: m.join.seq };
      const early = this.early;
      this.early = [];
      for (const g of early) if (this.group !== null) this.onGroup(this.group, g);
    }
    this.wake();
  }

  /** A message of the group subject (called by `WatchGroups` for every stream on it). */
  onGroup(subject: string, m: WatchGroupMessage): void {
    if (subject !== this.group || this.ended) return;
    const j = this.joined;
    if (j === null) {
      this.early.push(m);
      if (this.early.length > EARLY_GROUP_MESSAGES) this.early.shift();
      return;
    }
    if (m.gen !== j.gen || m.seq <= j.seq) return; // another life of the group, or before ours
    this.lastHeard = performance.now();
    if (m.seq !== j.seq + 1) return this.resume(); // a message was lost
    j.seq = m.seq;
    if (this.lacks(m.from)) return;
    this.take(m);
    if (this.items.length > this.highWater) this.stall();
    this.wake();
  }

  /** The group subscription is gone (refused by the server): back to direct delivery. */
  groupLost(): void {
    this.group = null;
    if (!this.ended) this.resume();
  }

  /**
   * A message that accounts for revisions from `from` on, when the stream has not had every one
   * below it: revisions went missing between two messages whose `seq` followed each other (a node
   * that lost its place). Resumes from the first revision lacking, like a lost message; true if so.
   */
  private lacks(from: number | undefined): boolean {
    if (typeof from !== 'number' || this.nextRevision === undefined || from <= this.nextRevision)
      return false;
    this.revisionGaps++;
    this.resume();
    return true;
  }

  private take(m: WatchMessage | WatchGroupMessage): void {
    for (const e of m.events) {
      if (this.nextRevision !== undefined && e.revision < this.nextRevision) continue; // had it
      this.items.push(e);
      this.queued++;
    }
    if (this.nextRevision === undefined || m.revision + 1 > this.nextRevision)
      this.nextRevision = m.revision + 1;
    if (m.progress && this.options.progressNotify) {
      this.items.push({ type: 'progress', revision: m.revision });
      this.queued++;
    }
  }

  /** Direct messages whose items the consumer has all taken are acknowledged, a few at a time. */
  private consumed(): void {
    while (this.marks.length > 0 && this.marks[0]!.end <= this.taken)
      this.consumedSeq = this.marks.shift()!.seq;
    if (this.consumedSeq - this.ackedSeq >= ACK_EVERY) this.sendAck(false);
    else if (this.consumedSeq > this.ackedSeq && this.ackTimer === null) {
      this.ackTimer = setTimeout(() => {
        this.ackTimer = null;
        if (this.consumedSeq > this.ackedSeq) this.sendAck(false);
      }, ACK_DELAY_MS);
      this.ackTimer.unref();
    }
  }

  private sendAck(shared: boolean): void {
    if (this.node === '') return;
    this.ackedSeq = this.consumedSeq;
    this.client.publish('watchAck', this.node, {
      id: this.id,
      session: this.session.id,
      secret: this.session.secret,
      seq: this.consumedSeq,
      ...(shared ? { shared: true } : {}),
    });
  }

  /** The consumer is behind: leave the node until it has caught up, then resume. */
  private stall(): void {
    if (this.stalled) return;
    this.stalled = true;
    this.cancelOnNode();
    this.detach();
    this.id = '';
  }

  private cancelOnNode(): void {
    if (this.node === '' || this.id === '') return;
    void this.client
      .requestAny(
        'watchCancel',
        { id: this.id, session: this.session.id, secret: this.session.secret },
        this.node,
      )
      .catch(() => {});
  }

  private resume(counted = true): void {
    if (this.resuming !== null || this.ended) return;
    if (counted) this.resumes++;
    this.stalled = false;
    this.cancelOnNode(); // the old watch, if its node still runs it
    let again = false;
    this.resuming = this.open()
      .catch((err) => {
        // "From now" started at the client's last known revision, older than the history kept
        // (an idle client): start at the oldest kept revision instead, still before the call.
        if (
          err instanceof EnsembleError &&
          err.code === 'COMPACTED' &&
          this.implicitFrom !== null &&
          this.nextRevision === this.implicitFrom
        ) {
          this.nextRevision = (err as EnsembleError & { compactRevision: number }).compactRevision + 1;
          this.implicitFrom = this.nextRevision;
          again = true;
          return;
        }
        // The session ended under the watch: the connection opens a new one and the watchdog
        // resumes under it. A final answer (COMPACTED, a bad request, no session any more) ends
        // the stream, and so does any other failure of the first open; otherwise the watchdog
        // tries again.
        if (err instanceof EnsembleError && err.code === 'SESSION_EXPIRED') return this.sessions.expired();
        if (!counted || (err instanceof EnsembleError && !TRANSIENT.has(err.code))) this.fail(err);
      })
      .finally(() => {
        this.resuming = null;
        if (again) this.resume(false);
      });
  }

  private fail(err: unknown): void {
    this.failure = err;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  async next(): Promise<IteratorResult<WatchItem>> {
    for (;;) {
      const item = this.items.shift();
      if (item !== undefined) {
        this.taken++;
        if (this.items.length === 0) this.lastHeard = Math.max(this.lastHeard, performance.now() - 1);
        if (this.stalled && this.items.length <= this.highWater / 4) this.resume();
        else this.consumed();
        return { value: item, done: false };
      }
      if (this.failure !== null) {
        const err = this.failure;
        this.failure = null;
        await this.return();
        throw err;
      }
      if (this.ended) return { value: undefined, done: true };
      if (this.stalled) this.resume();
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
  }

  /**
   * Ends the stream at once with `err` (the client is closing: its session's end cancels the
   * watch on the node): a waiting or later `next()` throws it once, then the stream is done.
   */
  close(err: unknown): void {
    if (this.ended) return;
    this.failure = err;
    this.items.length = 0;
    this.end();
  }

  private end(): void {
    this.ended = true;
    clearInterval(this.watchdog);
    this.detach();
    this.wake();
    this.onEnd();
  }

  async return(): Promise<IteratorResult<WatchItem>> {
    if (!this.ended) {
      const [node, id] = [this.node, this.id];
      this.end();
      if (node !== '' && id !== '') {
        await this.client
          .requestAny('watchCancel', { id, session: this.session.id, secret: this.session.secret }, node)
          .catch(() => {});
      }
    }
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<WatchItem> {
    return this;
  }
}
