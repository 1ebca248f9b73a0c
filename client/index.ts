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
 * followers forward. Every write is tagged with a session and a sequence number (Raft thesis
 * §6.3), so a retry after a timeout or a leader change returns the first answer and never applies
 * twice. NOT_LEADER, NO_QUORUM and TIMEOUT are retried with backoff until the request's deadline;
 * every other error is thrown as its own class (protocol/errors.ts, client/errors.ts).
 *
 * Lifecycle: `close()` ends the sessions (their ephemeral keys go at once), every open watch and
 * every pending request or waiting recipe with a `ClosedError`, and the connection; nothing the
 * client started keeps the process alive afterwards.
 */
import { setMaxListeners } from 'node:events';
import { type ConnectionOptions, type NatsConnection, connect as natsConnect } from '@nats-io/transport-node';
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
} from '../protocol/index.ts';
import {
  decodeEnvelope,
  decodeReply,
  EnsembleError,
  encodeEnvelope,
  inboxPrefix,
  isCount,
  isToken,
  LEADER_HEADER,
  NotLeaderError,
  opKinds,
  type Subjects,
  subjects as subjectTable,
  TimeoutError,
  UnknownOutcomeError,
} from '../protocol/index.ts';
import { ClosedError, SessionLostError } from './errors.ts';
import { type InspectObserver, sanitizedObserver } from './inspect.ts';
import { Barrier, type BarrierOptions, DoubleBarrier } from './recipes/barrier.ts';
import { Config, type ConfigOptions } from './recipes/config.ts';
import { Counter } from './recipes/counter.ts';
import { Election } from './recipes/election.ts';
import { Lock, ReadWriteLock, type RecipeOptions } from './recipes/lock.ts';
import { Queue } from './recipes/queue.ts';
import { Registry } from './recipes/registry.ts';
import { Semaphore } from './recipes/semaphore.ts';
import { Session, type SessionListener, SessionRunner, type SessionState, within } from './session.ts';
import { abortable, bytes, type Value } from './util.ts';
import { WatchGroups, type WatchItem, type WatchOptions, WatchStream, type WatchTarget } from './watch.ts';

export * from '../protocol/index.ts';
export * from './errors.ts';
export type { InspectObserver } from './inspect.ts';
export type { Barrier, BarrierOptions, DoubleBarrier } from './recipes/barrier.ts';
export type { Config, ConfigOptions, ConfigSchema, ConfigSnapshot } from './recipes/config.ts';
export type { Counter } from './recipes/counter.ts';
export type { Election, LeaderInfo, Leadership } from './recipes/election.ts';
export type { AcquireOptions, Lock, LockHold, ReadWriteLock, RecipeOptions } from './recipes/lock.ts';
export type { Queue, QueueItem, TakeOptions } from './recipes/queue.ts';
export type {
  Health,
  Instance,
  InstanceInfo,
  PickStrategy,
  Registration,
  Registry,
  ServiceView,
} from './recipes/registry.ts';
export type { Permit, Semaphore } from './recipes/semaphore.ts';
export type { Session, SessionListener, SessionState } from './session.ts';
export type { Value } from './util.ts';
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
  readonly servers?: string | readonly string[];
  /** The cluster name (default `dev`). */
  readonly cluster?: string;
  readonly prefix?: string;
  /** NATS user and password (nats.conf: `client`). */
  readonly user?: string;
  readonly pass?: string;
  /**
   * TLS to the NATS servers: `caFile` the CA that signed their certificates (PEM), and for
   * mutual TLS this client's `certFile` and `keyFile`. Needed when the servers require TLS.
   */
  readonly tls?: TlsOptions;
  /** Per-request deadline including retries (default 10 s). */
  readonly timeoutMs?: number;
  /** Session TTL (default 10 s). Keepalives go every third of it. */
  readonly sessionTtlMs?: number;
  /** Open a session at connect (default true): needed for ephemeral keys, watches and recipes. */
  readonly session?: boolean;
  /**
   * An existing NATS connection to use (`close` leaves it open). Nodes answer into the
   * requester's inbox and nats.conf lets a user read only below `_INBOX.<user>`, so it must have
   * been opened with `inboxPrefix: '_INBOX.<user>'` (`user`, or the connection's own user);
   * `connect` checks that and throws a `TypeError` otherwise.
   */
  readonly nats?: NatsConnection;
  /**
   * An XState inspection observer that sees this client's session machines (connecting,
   * active, suspended, expired), sanitized (client/inspect.ts): e.g.
   * `createWebSocketInspector({ url: 'ws://127.0.0.1:4280' }).inspect` from `@statelyai/inspect`
   * shows them on the page of `ensemble inspect`, or in Stately's inspector.
   */
  readonly inspect?: InspectObserver;
}

export interface TlsOptions {
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
}

export interface ReadOptions {
  /** A local, possibly stale read on whichever node answers (default: linearizable). */
  readonly serializable?: boolean;
  readonly revision?: number;
}

export interface PageOptions extends ReadOptions {
  readonly limit?: number;
  readonly after?: string;
}

export interface WriteOptions {
  /** The session the write is tagged with (default: the connection's own session). Ephemeral
   * keys belong to it. */
  readonly session?: Session;
}

export interface PutOptions extends WriteOptions {
  readonly ifAbsent?: boolean;
  readonly ifVersion?: number;
  /** Deleted when the write's session ends. */
  readonly ephemeral?: boolean;
}

export interface TxnSpec extends WriteOptions {
  readonly compare: readonly Compare[];
  readonly success: readonly TxnOp[];
  readonly failure?: readonly TxnOp[];
}

export interface SessionInfo {
  readonly id: string;
  readonly ttlMs: number;
}

/**
 * Whether sending `body` again after `e` is safe and may help: NOT_LEADER and NO_QUORUM applied
 * nothing; a transport failure, TIMEOUT or UNKNOWN_OUTCOME may have applied the request, so it is
 * sent again only when a second apply is harmless: reads and status, writes tagged with a session
 * (the cluster answers a retried sequence number from its exactly-once table), and session opens
 * and closes (a second open leaves an orphan that expires; a close is idempotent).
 */
/** The reason an attempt is cut short when a new leader announces itself. */
const LEADER_MOVED = Object.freeze({ leaderMoved: true });

function retryable(op: Op, body: unknown, e: unknown): boolean {
  if (e instanceof EnsembleError && (e.code === 'NOT_LEADER' || e.code === 'NO_QUORUM')) return true;
  const unknown = !(e instanceof EnsembleError) || e.code === 'TIMEOUT' || e.code === 'UNKNOWN_OUTCOME';
  if (!unknown) return false;
  const kind = opKinds[op];
  return (
    (kind !== 'write' && kind !== 'admin') ||
    (body as { client?: unknown }).client !== undefined ||
    op === 'sessionOpen' ||
    op === 'sessionClose'
  );
}

type WriteOp = 'put' | 'delete' | 'txn' | 'createSequential';

export class Client implements AsyncDisposable {
  private leader: string | null = null;
  /** The highest term a leader announced itself in (`P.leader`). */
  private leaderTerm = 0;
  /** Aborted when a new leader announces itself: attempts at the old one are sent again at once. */
  private leaderMoved = new AbortController();
  private groups: WatchGroups | null = null;
  private readonly sessions = new Set<Session>();
  private readonly watches = new Set<WatchStream>();
  /** Aborted (reason: ClosedError) when `close` begins: pending requests and waits end with it. */
  private readonly closing = new AbortController();
  private registryInstance: Registry | null = null;
  /**
   * The highest revision any answer to this client carried (its session's open, reads, writes):
   * a watch without `fromRevision` starts just after it, so it sees every write this client
   * makes after calling `watch`, whichever reaches the cluster first. -1 until an answer carried
   * one (0 is a revision: a new cluster's, which its session's open reports).
   */
  seenRevision = -1;
  /** The connection's own session (reopened by itself after LOST), or null without one. */
  defaultSession: Session | null = null;
  closed = false;

  /** @internal use `connect` */
  constructor(
    readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly opts: ConnectOptions,
    private readonly ownsConnection: boolean,
    /** @internal */
    readonly inboxUser: string,
  ) {
    // Every pending request and every waiting recipe listens here: no leak, just many.
    setMaxListeners(0, this.closing.signal);
    setMaxListeners(0, this.leaderMoved.signal);
  }

  /**
   * Follows the leaders' announcements (`P.leader`): a newly elected leader says so at once, and
   * requests in flight to the old one that are safe to send again go to it without waiting out
   * their attempt (a leader's crash then costs about an election, not an attempt timeout).
   */
  followLeaders(): void {
    this.nc.subscribe(this.subjects.leaderAnnounce(), {
      callback: (err, msg) => {
        if (err) return;
        const d = decodeEnvelope(msg.data, { cluster: this.subjects.cluster });
        const b = d.ok ? (d.envelope.body as { leader?: unknown; term?: unknown }) : null;
        if (b === null || !isToken(b.leader) || !isCount(b.term) || b.term <= this.leaderTerm) return;
        this.leaderTerm = b.term;
        if (b.leader === this.leader) return;
        this.leader = b.leader;
        const moved = this.leaderMoved;
        this.leaderMoved = new AbortController();
        setMaxListeners(0, this.leaderMoved.signal);
        moved.abort(LEADER_MOVED);
      },
    });
  }

  get cluster(): string {
    return this.subjects.cluster;
  }

  /**
   * How long one attempt waits for an answer before the request is sent again (retries are safe
   * only for what `retryable` allows): two of the cluster's election timeouts once a node told
   * it (`status`), so a request caught by a leader's crash moves to the next leader quickly.
   */
  private attemptMs = 1500;

  /** The default request deadline, retries included. */
  get timeoutMs(): number {
    return this.opts.timeoutMs ?? 10_000;
  }

  /** Aborts (reason: `ClosedError`) when the client closes. */
  get signal(): AbortSignal {
    return this.closing.signal;
  }

  /** The connection's session, or null. */
  get sessionInfo(): SessionInfo | null {
    const s = this.defaultSession;
    return s?.id ? { id: s.id, ttlMs: s.ttlMs } : null;
  }

  /** Connection state of the session (CONNECTED, SUSPENDED, RECONNECTED, LOST, CLOSED), as
   * Curator reports it; returns a function that stops listening. */
  onSessionState(listener: SessionListener): () => void {
    return this.needSession().onState(listener);
  }

  /** The session's current connection state, or null without a session. */
  get sessionState(): SessionState | null {
    return this.defaultSession?.state ?? null;
  }

  /** Asks any node who leads, so writes go straight there (best effort). */
  async learnLeader(): Promise<void> {
    try {
      const s = await this.status();
      this.leader = s.leader;
      if (s.electionTimeoutMs > 0) this.attemptMs = Math.max(200, 2 * s.electionTimeoutMs);
    } catch {
      this.leader = null;
    }
  }

  /**
   * Opens another session with its own TTL (etcd's leases): keys written with `{ session }` are
   * tied to its life, recipes given `{ session }` hold through it. Kept alive until `revoke()`
   * (or the client closes); once lost it stays ended.
   */
  async session(options: { readonly ttlMs: number }): Promise<Session> {
    if (!Number.isFinite(options?.ttlMs) || options.ttlMs <= 0)
      throw new RangeError('session: ttlMs must be a positive number of milliseconds');
    this.checkOpen();
    const s = this.startSession(options.ttlMs, false);
    try {
      await within(s.ready, this.timeoutMs, 'could not open a session in time');
    } catch (err) {
      await s.revoke().catch(() => {});
      throw err;
    }
    return s;
  }

  /** @internal Opens the connection's own session. */
  async openSession(ttlMs: number): Promise<void> {
    const s = this.startSession(ttlMs, true);
    this.defaultSession = s;
    void (async () => {
      for await (const st of this.nc.status()) {
        if (st.type === 'disconnect') for (const x of this.sessions) x.runner.serverLost();
        if (st.type === 'reconnect') for (const x of this.sessions) x.runner.serverBack();
      }
    })().catch(() => {});
    await within(s.ready, this.timeoutMs, 'could not open a session in time');
  }

  private startSession(ttlMs: number, reopen: boolean): Session {
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
          await this.call('sessionClose', { id, secret }, { timeoutMs: 3000, unstoppable: true });
        },
        failover: () => {
          this.leader = null;
        },
      },
      ttlMs,
      reopen,
      this.opts.inspect ? sanitizedObserver(this.opts.inspect) : undefined,
    );
    const session = new Session(runner, async () => {
      this.sessions.delete(session);
      await runner.close();
    });
    this.sessions.add(session);
    return session;
  }

  // -------------------------------------------------------------------------------------------
  // Keys.

  async get(key: string, options: ReadOptions = {}): Promise<KeyValue | null> {
    return (await this.call('get', { key, ...options })).kv;
  }

  /** A get that also tells the revision it read at (to watch from the next one). */
  async read(key: string, options: ReadOptions = {}): Promise<ApiResults['get']> {
    return this.call('get', { key, ...options });
  }

  /** The value as text, or null. */
  async getText(key: string, options: ReadOptions = {}): Promise<string | null> {
    const kv = await this.get(key, options);
    return kv === null ? null : new TextDecoder().decode(kv.value);
  }

  async put(key: string, value: Value, options: PutOptions = {}): Promise<KeyMeta & { revision: number }> {
    const { session, ...rest } = options;
    const r = await this.write('put', { key, value: bytes(value), ...rest }, session);
    return { ...r.kv, revision: r.revision };
  }

  /** Deletes `key` (and everything below it with `subtree`); returns how many keys went. */
  async delete(
    key: string,
    options: WriteOptions & { subtree?: boolean; ifVersion?: number } = {},
  ): Promise<number> {
    const { session, ...rest } = options;
    return (await this.write('delete', { key, ...rest }, session)).deleted;
  }

  async list(key: string, options: PageOptions = {}): Promise<ApiResults['list']> {
    return this.call('list', { key, ...options });
  }

  async range(prefix: string, options: PageOptions = {}): Promise<ApiResults['range']> {
    return this.call('range', { prefix, ...options });
  }

  /** Every key starting with `prefix`, all pages, read at one revision. */
  async rangeAll(
    prefix: string,
    options: ReadOptions = {},
  ): Promise<{ readonly kvs: KeyValue[]; readonly revision: number }> {
    const kvs: KeyValue[] = [];
    let r = await this.range(prefix, options);
    const revision = r.revision;
    kvs.push(...r.kvs);
    while (r.more && r.kvs.length > 0) {
      r = await this.range(prefix, { ...options, revision, after: r.kvs.at(-1)!.key });
      kvs.push(...r.kvs);
    }
    return { kvs, revision };
  }

  async txn(t: TxnSpec): Promise<ApiResults['txn']> {
    return this.write('txn', { compare: t.compare, success: t.success, failure: t.failure ?? [] }, t.session);
  }

  async createSequential(
    prefix: string,
    value: Value,
    options: WriteOptions & { ephemeral?: boolean } = {},
  ): Promise<KeyMeta & { revision: number }> {
    const { session, ...rest } = options;
    const r = await this.write('createSequential', { prefix, value: bytes(value), ...rest }, session);
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
  // Who may do what (admin only): key grants per NATS user, kept in the replicated tree.

  /**
   * Lets `user` read and/or write the keys starting with `prefix` (`/` for all), replacing an
   * earlier grant on the same prefix. Options default to both.
   */
  async authGrant(user: string, prefix: string, perm: { read?: boolean; write?: boolean } = {}) {
    return this.call('authGrant', { user, prefix, read: perm.read ?? true, write: perm.write ?? true });
  }

  /** Drops the grant of `user` on exactly `prefix`; `revoked` says whether there was one. */
  async authRevoke(user: string, prefix: string) {
    return this.call('authRevoke', { user, prefix });
  }

  /** Every grant (or those of `user`), by user then prefix. */
  async authList(user?: string) {
    return this.call('authList', user === undefined ? {} : { user });
  }

  // -------------------------------------------------------------------------------------------
  // Watches.

  /**
   * Events of a key, a prefix or a subtree, from `fromRevision` on (default: from now, that is
   * just after the last revision this client heard of, so every write it makes after this call
   * is seen even if it reaches the cluster first; after history that old was compacted, from the
   * oldest revision kept), in
   * revision order, with no gaps and no duplicates, across node failures: the stream resumes on
   * another node from the last revision it delivered. Ends with a `CompactedError` when the
   * revision asked for was compacted, with a `ClosedError` when the client closes. Break out of
   * the loop (or `return()`) to cancel.
   */
  watch(target: WatchTarget, options: WatchOptions = {}): WatchStream {
    this.checkOpen();
    const session = this.defaultSession;
    if (session === null) throw new TypeError('watch needs a session: connect with session enabled');
    this.groups ??= new WatchGroups(this);
    const sessions = {
      now: () => within(session.runner.waitOpen(), this.timeoutMs, 'no open session for the watch'),
      expired: () => session.runner.expired(),
    };
    const stream = new WatchStream(this, this.groups, sessions, target, options, () =>
      this.watches.delete(stream),
    );
    this.watches.add(stream);
    return stream;
  }

  // -------------------------------------------------------------------------------------------
  // Recipes (client/recipes): each built on sessions, sequential ephemeral keys, txn and watches.

  /** A FIFO-fair mutex with a fencing token (keys under `/locks/<name>`). */
  lock(name: string, options: RecipeOptions = {}): Lock {
    return new Lock(this, name, options);
  }

  /** Shared readers, exclusive writers, in arrival order (keys under `/locks/<name>`). */
  readWriteLock(name: string, options: RecipeOptions = {}): ReadWriteLock {
    return new ReadWriteLock(this, name, options);
  }

  /** Leader election with a fencing token (keys under `/elections/<name>`). */
  election(name: string, options: RecipeOptions = {}): Election {
    return new Election(this, name, options);
  }

  /** A barrier one party sets and removes while others wait on it (key `/barriers/<name>`). */
  barrier(name: string, options: BarrierOptions = {}): Barrier {
    return new Barrier(this, name, options);
  }

  /** `count` parties enter together and leave together (keys under `/barriers/<name>`). */
  doubleBarrier(name: string, count: number, options: RecipeOptions = {}): DoubleBarrier {
    return new DoubleBarrier(this, name, count, options);
  }

  /** At most `permits` holders at a time, in arrival order (keys under `/semaphores/<name>`). */
  semaphore(name: string, permits: number, options: RecipeOptions = {}): Semaphore {
    return new Semaphore(this, name, permits, options);
  }

  /** A distributed FIFO queue whose items are each completed exactly once (`/queues/<name>`). */
  queue(name: string, options: RecipeOptions = {}): Queue {
    return new Queue(this, name, options);
  }

  /** An integer changed atomically (key `/counters/<name>`). */
  counter(name: string, options: RecipeOptions = {}): Counter {
    return new Counter(this, name, options);
  }

  /** The keys under `prefix` as one typed configuration, with live updates. */
  config<T = Record<string, string>>(prefix: string, options: ConfigOptions<T> = {}): Config<T> {
    return new Config<T>(this, prefix, options);
  }

  /** Service registration and discovery under `/services/<service>/<instance>`. */
  get registry(): Registry {
    this.registryInstance ??= new Registry(this);
    return this.registryInstance;
  }

  // -------------------------------------------------------------------------------------------
  // Internal: used by watches and recipes.

  /** @internal The connection's session; throws a `TypeError` without one. */
  needSession(): Session {
    if (this.defaultSession === null)
      throw new TypeError('this needs a session: connect without `session: false`');
    return this.defaultSession;
  }

  /** @internal Throws `ClosedError` once `close` has begun. */
  checkOpen(): void {
    if (this.closing.signal.aborted) throw new ClosedError();
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

  /** A write, tagged with `session` (default: the connection's own, if any). */
  private async write<K extends WriteOp>(
    op: K,
    body: Omit<ApiRequests[K], 'client'>,
    session: Session | undefined = this.defaultSession ?? undefined,
  ): Promise<ApiResults[K]> {
    this.checkOpen();
    if (session === undefined) return this.call(op, body as ApiRequests[K]);
    // While the session is being reopened the write waits, but not past its deadline: nothing
    // was sent then, so it fails as not applied.
    const begun = session.begin();
    const { tag, end } = await within(begun, this.timeoutMs, `${op}: no open session`).catch(
      (err: unknown) => {
        // A sequence number taken after the deadline is given back at once (never sent).
        begun.then(
          (b) => b.end(),
          () => {},
        );
        throw err instanceof TimeoutError
          ? new SessionLostError(
              session.id ?? '(none)',
              `${op}: no open session within ${this.timeoutMs} ms; nothing was sent`,
            )
          : err;
      },
    );
    try {
      return await this.call(op, { ...body, client: tag } as ApiRequests[K]);
    } finally {
      end();
    }
  }

  /** Sends to the leader when known, else to any node; retries what is worth retrying. */
  private call<K extends Op>(
    op: K,
    body: ApiRequests[K],
    options: { readonly timeoutMs?: number; readonly unstoppable?: boolean } = {},
  ): Promise<ApiResults[K]> {
    return this.retrying(
      op,
      body,
      () => (this.leader === null ? this.subjects.api(op) : this.subjects.nodeApi(this.leader, op)),
      (err) => {
        if (err instanceof NotLeaderError) this.leader = err.leader;
        else if (!(err instanceof EnsembleError)) this.leader = null; // no responders, transport trouble
      },
      options.timeoutMs,
      options.unstoppable,
      true,
    );
  }

  /**
   * Sends `body` to `subject()` until an answer, a final error or the deadline: NOT_LEADER,
   * NO_QUORUM, TIMEOUT and transport failures are retried with backoff, after `noted` saw them
   * (it may throw to stop). `close` ends it with a `ClosedError` unless `unstoppable` (the
   * session close itself).
   */
  private async retrying<K extends Op>(
    op: K,
    body: ApiRequests[K],
    subject: () => string,
    noted: (err: unknown) => void = () => {},
    timeoutMs = this.timeoutMs,
    unstoppable = false,
    followLeader = false,
  ): Promise<ApiResults[K]> {
    const stop = unstoppable ? null : this.closing.signal;
    const deadline = performance.now() + timeoutMs;
    // Only what may be sent twice moves at a leader's announcement (the first may have applied).
    const movable = followLeader && retryable(op, body, new UnknownOutcomeError(null));
    let delay = 20;
    for (;;) {
      try {
        const signal =
          movable && this.leader !== null
            ? stop === null
              ? this.leaderMoved.signal
              : AbortSignal.any([stop, this.leaderMoved.signal])
            : stop;
        return await this.request<K>(
          subject(),
          body,
          Math.max(50, Math.min(this.attemptMs, deadline - performance.now())),
          signal,
        );
      } catch (err) {
        if (err instanceof ClosedError) throw err;
        if (err === LEADER_MOVED) {
          if (performance.now() > deadline) throw new TimeoutError(`${op} did not complete in time`);
          continue; // to the new leader, now
        }
        noted(err);
        if (!retryable(op, body, err) || performance.now() + delay > deadline) {
          throw err instanceof EnsembleError
            ? err
            : new TimeoutError(`${op} failed: ${(err as Error).message}`, { cause: err });
        }
        await abortable(new Promise((r) => setTimeout(r, delay)), stop);
        delay = Math.min(500, delay * 2);
      }
    }
  }

  private async request<K extends Op>(
    subject: string,
    body: unknown,
    timeout = 3000,
    stop: AbortSignal | null = this.closing.signal,
  ): Promise<ApiResults[K]> {
    if (stop?.aborted) throw stop.reason;
    const msg = await abortable(
      this.nc.request(subject, encodeEnvelope(body, { cluster: this.subjects.cluster }), { timeout }),
      stop,
    );
    // A follower relayed the leader's answer: talk to the leader directly from now on.
    const hinted = msg.headers?.get(LEADER_HEADER);
    if (hinted) this.leader = hinted;
    const r = decodeReply<ApiResults[K]>(msg.data, { cluster: this.subjects.cluster });
    if (!r.ok) {
      if (r.error.code === 'SESSION_EXPIRED') this.sessionExpired(body);
      throw r.error;
    }
    const revision = (r.result as { revision?: unknown } | null)?.revision;
    if (typeof revision === 'number' && revision > this.seenRevision) this.seenRevision = revision;
    return r.result;
  }

  /** A write of a session the cluster no longer knows: tell that session's machine. */
  private sessionExpired(body: unknown): void {
    const id = (body as { client?: { session?: unknown } } | null)?.client?.session;
    for (const s of this.sessions) if (s.id !== null && s.id === id) s.runner.expired();
  }

  /**
   * Ends every open watch and pending request with a `ClosedError`, closes the sessions (their
   * ephemeral keys go at once) and the connection (unless it was given in `nats`).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort(new ClosedError());
    for (const w of [...this.watches]) w.close(new ClosedError());
    await Promise.all([...this.sessions].map((s) => s.revoke().catch(() => {})));
    this.registryInstance?.stop();
    if (this.ownsConnection) await this.nc.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Connects to the cluster and (unless `session: false`) opens the connection's session. */
export async function connect(options: ConnectOptions = {}): Promise<Client> {
  const cluster = options.cluster ?? 'dev';
  const subjects = subjectTable({ cluster, ...(options.prefix ? { prefix: options.prefix } : {}) });
  let user = options.user ?? 'client';
  let nc = options.nats;
  if (nc !== undefined) {
    const own = (nc as { options?: ConnectionOptions }).options;
    user = options.user ?? own?.user ?? user;
    const wanted = inboxPrefix(user);
    if (own !== undefined && own.inboxPrefix !== wanted)
      throw new TypeError(
        `the NATS connection's inbox prefix is ${JSON.stringify(own.inboxPrefix ?? '_INBOX')}, but nodes answer user ${user} only below ${wanted}: connect it with { inboxPrefix: '${wanted}' }`,
      );
  } else {
    const given = options.servers ?? 'nats://127.0.0.1:4222';
    nc = await natsConnect({
      servers: typeof given === 'string' ? [given] : [...given],
      ...(options.user !== undefined || options.pass !== undefined ? { user } : {}),
      ...(options.pass !== undefined ? { pass: options.pass } : {}),
      inboxPrefix: inboxPrefix(user),
      ...(options.tls ? { tls: { ...options.tls } } : {}),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 200,
      name: `ensemble-client-${cluster}`,
    });
  }
  const client = new Client(nc, subjects, options, options.nats === undefined, user);
  client.followLeaders();
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
