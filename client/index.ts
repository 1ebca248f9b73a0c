/**
 * The TypeScript client of Ensemble, over NATS request/reply.
 *
 *   const c = await connect({ servers: ['nats://127.0.0.1:4222'], cluster: 'dev' });
 *   await c.put('/config/db', 'postgres://…');
 *   const kv = await c.get('/config/db');
 *   await c.close();
 *
 * Writes and linearizable reads go straight to the leader's per-node subject once the client
 * knows it (from NOT_LEADER hints and status); before that, to the any-node subject, where
 * followers forward. Every write is tagged with the client's session and a sequence number
 * (Raft thesis §6.3), so a retry after a timeout or a leader change returns the first answer
 * and never applies twice. NOT_LEADER, NO_QUORUM and TIMEOUT are retried with backoff until the
 * request's deadline; every other error is thrown as its own class (protocol/errors.ts).
 */
import {
  createInbox,
  type NatsConnection,
  connect as natsConnect,
  type Subscription,
} from '@nats-io/transport-node';
import type {
  ApiRequests,
  ApiResults,
  Compare,
  KeyMeta,
  KeyValue,
  NodeStatus,
  Op,
  TxnOp,
  WatchEvent,
  WatchMessage,
} from '../protocol/api.ts';
import { decodeCbor, decodeReply, encodeEnvelope, LEADER_HEADER } from '../protocol/codec.ts';
import { EnsembleError, fromWire, NotLeaderError, TimeoutError } from '../protocol/errors.ts';
import { inboxPrefix, type Subjects, subjects as subjectTable, watchInbox } from '../protocol/subjects.ts';
import { type SessionListener, SessionRunner } from './session.ts';

export * from '../protocol/errors.ts';
export type { Compare, KeyMeta, KeyValue, NodeStatus, TxnOp, WatchEvent };

export interface ConnectOptions {
  /** NATS server URLs (give all of them). */
  readonly servers: string | readonly string[];
  /** The cluster name (default `dev`). */
  readonly cluster?: string;
  readonly prefix?: string;
  /** NATS user and password (nats.conf: `client`). */
  readonly user?: string;
  readonly pass?: string;
  /** Per-request deadline including retries (default 10 s). */
  readonly timeoutMs?: number;
  /** Session TTL (default 10 s). Keepalives go every third of it. */
  readonly sessionTtlMs?: number;
  /** Open a session at connect (default true): needed for ephemeral keys and exactly-once. */
  readonly session?: boolean;
  /** Use an existing NATS connection (not closed by `close`). */
  readonly nats?: NatsConnection;
}

export type Value = string | Uint8Array;

export interface ReadOptions {
  /** A local, possibly stale read on whichever node answers (default: linearizable). */
  readonly serializable?: boolean;
  readonly revision?: number;
}

export interface PageOptions extends ReadOptions {
  readonly limit?: number;
  readonly after?: string;
}

export interface PutOptions {
  readonly ifAbsent?: boolean;
  readonly ifVersion?: number;
  /** Deleted when this client's session ends. */
  readonly ephemeral?: boolean;
}

export interface SessionInfo {
  readonly id: string;
  readonly ttlMs: number;
}

const enc = new TextEncoder();
const bytes = (v: Value): Uint8Array => (typeof v === 'string' ? enc.encode(v) : v);
const retryable = (e: unknown): boolean =>
  e instanceof EnsembleError && (e.code === 'NOT_LEADER' || e.code === 'NO_QUORUM' || e.code === 'TIMEOUT');

export class Client implements AsyncDisposable {
  private leader: string | null = null;
  private seq = 0;
  private readonly unanswered = new Set<number>();
  private runner: SessionRunner | null = null;
  closed = false;

  constructor(
    readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly opts: ConnectOptions,
    private readonly ownsConnection: boolean,
  ) {}

  get cluster(): string {
    return this.subjects.cluster;
  }

  /** The session opened at connect, or null. */
  get sessionInfo(): SessionInfo | null {
    const s = this.session;
    return s && { id: s.id, ttlMs: s.ttlMs };
  }

  private get session(): { id: string; secret: Uint8Array; ttlMs: number } | null {
    return this.runner?.current ?? null;
  }

  /** Connection state of the session (CONNECTED, SUSPENDED, RECONNECTED, LOST, CLOSED), as
   * Curator reports it; returns a function that stops listening. */
  onSessionState(listener: SessionListener): () => void {
    if (this.runner === null) throw new TypeError('no session: connect with session enabled');
    return this.runner.onState(listener);
  }

  /** The session's current connection state, or null without a session. */
  get sessionState(): string | null {
    return this.runner?.state ?? null;
  }

  /** Asks any node who leads, so writes go straight there (best effort). */
  async learnLeader(): Promise<void> {
    try {
      this.leader = (await this.status()).leader;
    } catch {
      this.leader = null;
    }
  }

  /** Opens the session and keeps it alive (the session machine, machines/session). */
  async openSession(ttlMs: number): Promise<void> {
    const runner = new SessionRunner(
      {
        open: async (ttl) => {
          const r = await this.call('sessionOpen', { ttlMs: ttl });
          return { id: r.id, secret: r.secret, ttlMs: r.ttlMs };
        },
        keepalive: async (id, secret, timeout) => {
          // A request on the keepalive subject: every node hears it, the first that knows the
          // session answers.
          const msg = await this.nc.request(
            this.subjects.sessionKeepalive(),
            encodeEnvelope({ id, secret }, { cluster: this.subjects.cluster }),
            { timeout },
          );
          const r = decodeReply(msg.data, { cluster: this.subjects.cluster });
          if (!r.ok) throw r.error;
        },
        close: async (id, secret) => {
          await this.call('sessionClose', { id, secret });
        },
        failover: () => {
          this.leader = null;
        },
      },
      ttlMs,
    );
    this.runner = runner;
    void (async () => {
      for await (const s of this.nc.status()) {
        if (s.type === 'disconnect') runner.serverLost();
        if (s.type === 'reconnect') runner.serverBack();
      }
    })().catch(() => {});
    const deadline = this.opts.timeoutMs ?? 10_000;
    await Promise.race([
      runner.ready,
      new Promise((_, reject) =>
        setTimeout(() => reject(new TimeoutError('could not open a session in time')), deadline),
      ),
    ]);
  }

  // -------------------------------------------------------------------------------------------
  // Keys.

  async get(key: string, options: ReadOptions = {}): Promise<KeyValue | null> {
    return (await this.call('get', { key, ...options })).kv;
  }

  /** The value as text, or null. */
  async getText(key: string, options: ReadOptions = {}): Promise<string | null> {
    const kv = await this.get(key, options);
    return kv === null ? null : new TextDecoder().decode(kv.value);
  }

  async put(key: string, value: Value, options: PutOptions = {}): Promise<KeyMeta & { revision: number }> {
    const r = await this.write('put', { key, value: bytes(value), ...options });
    return { ...r.kv, revision: r.revision };
  }

  /** Deletes `key` (and everything below it with `subtree`); returns how many keys went. */
  async delete(key: string, options: { subtree?: boolean; ifVersion?: number } = {}): Promise<number> {
    return (await this.write('delete', { key, ...options })).deleted;
  }

  async list(key: string, options: PageOptions = {}): Promise<ApiResults['list']> {
    return this.call('list', { key, ...options });
  }

  async range(prefix: string, options: PageOptions = {}): Promise<ApiResults['range']> {
    return this.call('range', { prefix, ...options });
  }

  async txn(t: { compare: readonly Compare[]; success: readonly TxnOp[]; failure?: readonly TxnOp[] }) {
    return this.write('txn', { compare: t.compare, success: t.success, failure: t.failure ?? [] });
  }

  async createSequential(prefix: string, value: Value, options: { ephemeral?: boolean } = {}) {
    const r = await this.write('createSequential', { prefix, value: bytes(value), ...options });
    return { ...r.kv, revision: r.revision };
  }

  // -------------------------------------------------------------------------------------------
  // Cluster.

  /** Status of one node (default: whichever answers). */
  async status(node?: string): Promise<NodeStatus> {
    const subject = node === undefined ? this.subjects.api('status') : this.subjects.nodeApi(node, 'status');
    return this.request<'status'>(subject, {});
  }

  async memberAdd(id: string) {
    return this.call('memberAdd', { id });
  }

  async memberPromote(id: string) {
    return this.call('memberPromote', { id });
  }

  async memberRemove(id: string) {
    return this.call('memberRemove', { id });
  }

  /** Drops history at and below `revision`: watches and past reads below it get COMPACTED. */
  async compact(revision: number): Promise<ApiResults['compact']> {
    return this.call('compact', { revision });
  }

  async transferLeader(to?: string) {
    return this.call('transferLeader', to === undefined ? {} : { to });
  }

  // -------------------------------------------------------------------------------------------
  // Watches.

  /**
   * Events of a key, a prefix or a subtree, from `fromRevision` on (default: from now), in
   * revision order, with no gaps and no duplicates, across node failures: the stream resumes on
   * another node from the last revision it delivered. Ends with a `CompactedError` when the
   * revision asked for was compacted. Break out of the loop (or `return()`) to cancel.
   */
  watch(target: WatchTarget, options: WatchOptions = {}): AsyncIterableIterator<WatchItem> {
    const s = this.session;
    if (s === null) throw new TypeError('watch needs a session: connect with session enabled');
    return new WatchStream(this, s, target, options);
  }

  /** @internal */
  async requestAny<K extends Op>(op: K, body: ApiRequests[K], node?: string): Promise<ApiResults[K]> {
    const deadline = performance.now() + (this.opts.timeoutMs ?? 10_000);
    let delay = 20;
    for (;;) {
      const subject = node === undefined ? this.subjects.api(op) : this.subjects.nodeApi(node, op);
      try {
        return await this.request<K>(
          subject,
          body,
          Math.max(100, Math.min(3000, deadline - performance.now())),
        );
      } catch (err) {
        const again = !(err instanceof EnsembleError) || retryable(err);
        if (!again || performance.now() + delay > deadline || this.closed) throw err;
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(500, delay * 2);
      }
    }
  }

  /** @internal */
  publish(op: Op, node: string, body: unknown): void {
    try {
      this.nc.publish(
        this.subjects.nodeApi(node, op),
        encodeEnvelope(body, { cluster: this.subjects.cluster }),
      );
    } catch {
      // reconnecting
    }
  }

  /** @internal */
  get inboxUser(): string {
    return this.opts.user ?? 'client';
  }

  // -------------------------------------------------------------------------------------------

  /** A write in the session: one sequence number for every retry of it. */
  private async write<K extends 'put' | 'delete' | 'txn' | 'createSequential'>(
    op: K,
    body: Omit<ApiRequests[K], 'client'>,
  ): Promise<ApiResults[K]> {
    const s = this.session;
    if (s === null) return this.call(op, body as ApiRequests[K]);
    const seq = ++this.seq;
    this.unanswered.add(seq);
    try {
      const lowSeq = Math.min(...this.unanswered);
      return await this.call(op, {
        ...body,
        client: { session: s.id, secret: s.secret, seq, lowSeq },
      } as ApiRequests[K]);
    } finally {
      this.unanswered.delete(seq);
    }
  }

  /** Sends to the leader when known, else to any node; retries what is worth retrying. */
  private async call<K extends Op>(op: K, body: ApiRequests[K]): Promise<ApiResults[K]> {
    const deadline = performance.now() + (this.opts.timeoutMs ?? 10_000);
    let delay = 20;
    for (;;) {
      const subject = this.leader === null ? this.subjects.api(op) : this.subjects.nodeApi(this.leader, op);
      try {
        return await this.request<K>(
          subject,
          body,
          Math.max(100, Math.min(3000, deadline - performance.now())),
        );
      } catch (err) {
        if (err instanceof NotLeaderError) this.leader = err.leader;
        else if (!(err instanceof EnsembleError)) this.leader = null; // no responders, transport trouble
        if (
          !(retryable(err) || !(err instanceof EnsembleError)) ||
          performance.now() + delay > deadline ||
          this.closed
        ) {
          throw err instanceof EnsembleError
            ? err
            : new TimeoutError(`${op} failed: ${(err as Error).message}`, { cause: err });
        }
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(500, delay * 2);
      }
    }
  }

  private async request<K extends Op>(
    subject: string,
    body: unknown,
    timeout = 3000,
  ): Promise<ApiResults[K]> {
    const msg = await this.nc.request(subject, encodeEnvelope(body, { cluster: this.subjects.cluster }), {
      timeout,
    });
    // A follower relayed the leader's answer: talk to the leader directly from now on.
    const hinted = msg.headers?.get(LEADER_HEADER);
    if (hinted) this.leader = hinted;
    const r = decodeReply<ApiResults[K]>(msg.data, { cluster: this.subjects.cluster });
    if (!r.ok) throw r.error;
    return r.result;
  }

  /** Closes the session (its ephemeral keys go at once) and the connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.runner?.close().catch(() => {});
    this.closed = true;
    if (this.ownsConnection) await this.nc.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

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
}

export type WatchItem = WatchEvent | { readonly type: 'progress'; readonly revision: number };

let watchCounter = 0;

/** One logical watch; under it, one server-side watch per node it was served by. */
class WatchStream implements AsyncIterableIterator<WatchItem> {
  private nextRevision: number | undefined;
  private id = '';
  private node = '';
  private seq = 0;
  private sub: Subscription | null = null;
  private lastHeard = performance.now();
  private readonly items: WatchItem[] = [];
  private waiter: (() => void) | null = null;
  private failure: unknown = null;
  private ended = false;
  private resuming: Promise<void> | null = null;
  private readonly watchdog: NodeJS.Timeout;
  /** Resumes so far (for tests and metrics). */
  resumes = 0;

  constructor(
    private readonly client: Client,
    private readonly session: { id: string; secret: Uint8Array },
    private readonly target: WatchTarget,
    private readonly options: WatchOptions,
  ) {
    this.nextRevision = options.fromRevision;
    this.resuming = this.open().finally(() => {
      this.resuming = null;
    });
    this.resuming.catch((err) => this.fail(err));
    const silence = options.silenceMs ?? 3500;
    this.watchdog = setInterval(
      () => {
        if (!this.ended && this.resuming === null && performance.now() - this.lastHeard > silence)
          this.resume();
      },
      Math.max(100, silence / 4),
    );
    this.watchdog.unref?.();
  }

  private async open(): Promise<void> {
    this.sub?.unsubscribe();
    this.id = `w${++watchCounter}x${Math.floor(performance.now())}`;
    this.seq = 0;
    const inbox = watchInbox(createInbox(inboxPrefix(this.client.inboxUser)), this.id);
    const id = this.id;
    this.sub = this.client.nc.subscribe(inbox, {
      callback: (err, msg) => void (!err && this.onMessage(id, msg.data)),
    });
    const r = await this.client.requestAny('watch', {
      id,
      inbox,
      session: this.session.id,
      secret: this.session.secret,
      ...this.target,
      ...(this.nextRevision !== undefined ? { fromRevision: this.nextRevision } : {}),
      ...(this.options.prevValue ? { prevValue: true } : {}),
      ...(this.options.progressNotify ? { progressNotify: true } : {}),
    } as ApiRequests['watch']);
    this.node = r.node;
    this.nextRevision ??= r.revision;
    this.lastHeard = performance.now();
  }

  private onMessage(id: string, data: Uint8Array): void {
    if (id !== this.id || this.ended) return;
    // Watch messages travel as request-style envelopes ({v, cluster, body}).
    const env = decodeEnvelopeLoose(data);
    if (env === null) return;
    const m = env as WatchMessage;
    if (m.id !== this.id) return;
    this.lastHeard = performance.now();
    if (m.seq !== this.seq + 1) {
      this.resume(); // a message was lost: resume from the last revision delivered
      return;
    }
    this.seq = m.seq;
    if (m.error) {
      const e = fromWire(m.error);
      if (e.code === 'WATCH_BEHIND') this.resume();
      else this.fail(e);
      return;
    }
    for (const e of m.events) {
      if (this.nextRevision !== undefined && e.revision < this.nextRevision) continue; // already delivered before a resume
      this.items.push(e);
    }
    if (this.nextRevision === undefined || m.revision + 1 > this.nextRevision)
      this.nextRevision = m.revision + 1;
    if (m.progress && this.options.progressNotify)
      this.items.push({ type: 'progress', revision: m.revision });
    this.client.publish('watchAck', this.node, { id: this.id, session: this.session.id, seq: m.seq });
    this.wake();
  }

  private resume(): void {
    if (this.resuming !== null || this.ended) return;
    this.resumes++;
    this.resuming = this.open()
      .catch((err) => {
        if (err instanceof EnsembleError && err.code === 'COMPACTED') this.fail(err);
        // otherwise the watchdog tries again
      })
      .finally(() => {
        this.resuming = null;
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
      if (item !== undefined) return { value: item, done: false };
      if (this.failure !== null) {
        const err = this.failure;
        await this.return();
        throw err;
      }
      if (this.ended) return { value: undefined, done: true };
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
  }

  async return(): Promise<IteratorResult<WatchItem>> {
    if (!this.ended) {
      this.ended = true;
      clearInterval(this.watchdog);
      this.sub?.unsubscribe();
      this.wake();
      if (this.node !== '') {
        await this.client
          .requestAny(
            'watchCancel',
            { id: this.id, session: this.session.id, secret: this.session.secret },
            this.node,
          )
          .catch(() => {});
      }
    }
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<WatchItem> {
    return this;
  }
}

function decodeEnvelopeLoose(data: Uint8Array): unknown {
  const d = decodeCbor(data);
  if (!d.ok) return null;
  const env = d.value as { body?: unknown } | null;
  return env && typeof env === 'object' && 'body' in env ? env.body : null;
}

export async function connect(options: ConnectOptions): Promise<Client> {
  const cluster = options.cluster ?? 'dev';
  const subjects = subjectTable({ cluster, ...(options.prefix ? { prefix: options.prefix } : {}) });
  const servers = typeof options.servers === 'string' ? [options.servers] : [...options.servers];
  const user = options.user ?? 'client';
  const nc =
    options.nats ??
    (await natsConnect({
      servers,
      ...(options.user !== undefined || options.pass !== undefined ? { user } : {}),
      ...(options.pass !== undefined ? { pass: options.pass } : {}),
      inboxPrefix: inboxPrefix(user),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 200,
      name: `ensemble-client-${cluster}`,
    }));
  const client = new Client(nc, subjects, options, options.nats === undefined);
  await client.learnLeader();
  if (options.session !== false) {
    try {
      await client.openSession(options.sessionTtlMs ?? 10_000);
    } catch (err) {
      await client.close().catch(() => {});
      throw err;
    }
  }
  return client;
}
