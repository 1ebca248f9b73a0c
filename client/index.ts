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
import { type NatsConnection, connect as natsConnect } from '@nats-io/transport-node';
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
} from '../protocol/api.ts';
import { decodeReply, encodeEnvelope, LEADER_HEADER } from '../protocol/codec.ts';
import { EnsembleError, NotLeaderError, TimeoutError } from '../protocol/errors.ts';
import { inboxPrefix, type Subjects, subjects as subjectTable } from '../protocol/subjects.ts';
import { type SessionListener, SessionRunner } from './session.ts';
import { WatchGroups, type WatchItem, type WatchOptions, WatchStream, type WatchTarget } from './watch.ts';

export * from '../protocol/errors.ts';
export type {
  Compare,
  KeyMeta,
  KeyValue,
  NodeStatus,
  TxnOp,
  WatchEvent,
  WatchItem,
  WatchOptions,
  WatchTarget,
};

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
  private groups: WatchGroups | null = null;
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
    this.groups ??= new WatchGroups(this);
    return new WatchStream(this, this.groups, s, target, options);
  }

  /**
   * @internal A request to `node` (or any node), retried like every other until `timeoutMs`;
   * with `noRespondersFinal`, nobody listening on the subject (a dead node) ends it at once.
   */
  requestAny<K extends Op>(
    op: K,
    body: ApiRequests[K],
    node?: string,
    options: { readonly timeoutMs?: number; readonly noRespondersFinal?: boolean } = {},
  ): Promise<ApiResults[K]> {
    return this.retrying(
      op,
      body,
      () => (node === undefined ? this.subjects.api(op) : this.subjects.nodeApi(node, op)),
      (err) => {
        if (options.noRespondersFinal && (err as { isNoResponders?: () => boolean }).isNoResponders?.())
          throw err;
      },
      options.timeoutMs,
    );
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
  private call<K extends Op>(op: K, body: ApiRequests[K]): Promise<ApiResults[K]> {
    return this.retrying(
      op,
      body,
      () => (this.leader === null ? this.subjects.api(op) : this.subjects.nodeApi(this.leader, op)),
      (err) => {
        if (err instanceof NotLeaderError) this.leader = err.leader;
        else if (!(err instanceof EnsembleError)) this.leader = null; // no responders, transport trouble
      },
    );
  }

  /**
   * Sends `body` to `subject()` until an answer, a final error or the deadline: NOT_LEADER,
   * NO_QUORUM, TIMEOUT and transport failures are retried with backoff, after `noted` saw them
   * (it may throw to stop).
   */
  private async retrying<K extends Op>(
    op: K,
    body: ApiRequests[K],
    subject: () => string,
    noted: (err: unknown) => void = () => {},
    timeoutMs = this.opts.timeoutMs ?? 10_000,
  ): Promise<ApiResults[K]> {
    const deadline = performance.now() + timeoutMs;
    let delay = 20;
    for (;;) {
      try {
        return await this.request<K>(
          subject(),
          body,
          Math.max(100, Math.min(3000, deadline - performance.now())),
        );
      } catch (err) {
        noted(err);
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
