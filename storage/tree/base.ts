/**
 * The key tree's logic, shared by `MemoryTree` and `RocksTree`: deterministic apply with
 * exactly-once answers, MVCC reads over the retained history, snapshots. Subclasses only decide
 * where the changes of each apply go (`record`) and how a restored state becomes durable.
 *
 * Applies, snapshots and restores run one at a time, in call order. Reads are synchronous and
 * see only whole applies: a long apply (a big subtree delete, a session with many keys) works on
 * the live tree in slices, yielding to the event loop, while readers see a copy-on-write clone
 * taken before it started.
 */
import type { SnapshotMeta } from '../../machines/raft/index.ts';
import type {
  Command,
  CommandOf,
  Compare,
  Grant,
  KeyMeta,
  KeyValue,
  OpResult,
  TxnOp,
} from '../../protocol/index.ts';
import {
  type ApiLimits,
  BadPathError,
  BadRequestError,
  CompactedError,
  decodeCommand,
  defaultApiLimits,
  EnsembleError,
  ExistsError,
  fromWire,
  PAGE_BYTES,
  SessionExpiredError,
  TooLargeError,
  VersionMismatchError,
} from '../../protocol/index.ts';
import { yieldToEventLoop } from '../codec.ts';
import { StorageFatalError } from '../errors.ts';
import type { BTree } from './btree.ts';
import {
  fieldsOf,
  freeze,
  grantRecords,
  metaOf,
  newSession,
  type Perm,
  type SessionState,
  sessionInfo,
  setGrant,
  type TreeData,
  type TreeMeta,
} from './data.ts';
import {
  afterSubtree,
  ancestorsOf,
  checkPath,
  checkPrefix,
  childPrefix,
  comparePaths,
  parentOf,
} from './path.ts';
import type { SessionFields } from './records.ts';
import { DEFAULT_CHUNK_BYTES, dumpChunks, parseDump } from './snapshot.ts';
import type {
  ApplyOutcome,
  ChildList,
  CommandResult,
  EventBatch,
  EventFilter,
  KeyTree,
  RangeResult,
  ReadOptions,
  RestoreInfo,
  SessionInfo,
  SnapshotOptions,
  StoredOutcome,
  TreeEvent,
  TreeSnapshot,
} from './types.ts';

/** Keys changed between two yields of a long apply. */
/** A put or a delete, in a command or in a txn (without the command's tag). */
type PutOp = Omit<CommandOf<'put'>, 'client'>;
type DeleteOp = Omit<CommandOf<'delete'>, 'client'>;

const SLICE = 4096;

/** What one apply changed, for the durable copy. `keys` holds the final state of each key. */
export interface Change {
  readonly keys: ReadonlyMap<string, KeyValue | null>;
  readonly events: readonly TreeEvent[];
  readonly sessions: readonly [string, SessionFields | null][];
  readonly results: readonly [string, number, StoredOutcome | null][];
  readonly counters: readonly [string, number][];
  /** Grants set (`Perm`) or dropped (`null`). */
  readonly grants: readonly [string, string, Perm | null][];
  /** Key creators set (a user) or dropped (`null`: the key is gone). */
  readonly creators: readonly [string, string | null][];
  /** History at and below this revision was dropped. */
  readonly compactTo: number | null;
  readonly meta: TreeMeta;
}

/** The changes of the command being applied, undone if it fails. */
class Mutation {
  readonly events: TreeEvent[] = [];
  /** Each touched key as it was before the command (`undefined`: absent). */
  readonly orig = new Map<string, KeyValue | undefined>();
  /** Each touched key as it is now (`null`: deleted). */
  readonly final = new Map<string, KeyValue | null>();
  readonly counters = new Map<string, number>();
  readonly grants: [string, string, Perm | null][] = [];
  /** The client user whose command this is: recorded as the creator of keys it creates. */
  user: string | null = null;
  opened: SessionState | null = null;
  ended: SessionState | null = null;
  compactTo: number | null = null;

  constructor(
    readonly rev: number,
    /** The command may yield: readers were given a clone of the keys before it started. */
    readonly long: boolean,
  ) {}
}

const meta = (kv: KeyValue): KeyMeta => ({
  key: kv.key,
  version: kv.version,
  createRevision: kv.createRevision,
  modRevision: kv.modRevision,
  session: kv.session,
});

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(
    Buffer.from(a.buffer, a.byteOffset, a.byteLength),
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

function holds(c: Compare, kv: KeyValue | undefined): boolean {
  let cmp: number;
  switch (c.target) {
    case 'exists': {
      const same = (kv !== undefined) === c.value;
      return c.result === 'eq' ? same : !same;
    }
    case 'value':
      if (kv === undefined) return false;
      cmp = compareBytes(kv.value, c.value as Uint8Array);
      break;
    default:
      cmp = (kv?.[c.target] ?? 0) - (c.value as number);
  }
  switch (c.result) {
    case 'eq':
      return cmp === 0;
    case 'ne':
      return cmp !== 0;
    case 'lt':
      return cmp < 0;
    case 'gt':
      return cmp > 0;
  }
}

function mayTakeLong(cmd: Command): boolean {
  switch (cmd.op) {
    case 'delete':
      return cmd.subtree === true;
    case 'txn':
      return [...cmd.success, ...cmd.failure].some((o) => o.op === 'delete' && o.subtree === true);
    case 'sessionClose':
    case 'sessionExpire':
      return true;
    default:
      return false;
  }
}

export function filterOf(filter: EventFilter | undefined): (key: string) => boolean {
  if (filter === undefined) return () => true;
  if ('key' in filter) return (k) => k === filter.key;
  if ('prefix' in filter) return (k) => k.startsWith(filter.prefix);
  if ('subtree' in filter) {
    const base = childPrefix(filter.subtree);
    return (k) => k === filter.subtree || k.startsWith(base);
  }
  return () => true;
}

/** First index of `history` whose revision is `> revision`. */
function firstAfter(history: readonly TreeEvent[], revision: number): number {
  let lo = 0;
  let hi = history.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (history[mid]!.revision > revision) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** The keys as they were at a past revision: current keys, overlaid by undoing later events. */
interface Overlay {
  readonly prev: Map<string, KeyValue | null>;
  readonly sorted: string[];
}

export abstract class BaseTree implements KeyTree {
  protected data: TreeData;
  /** The keys readers see: `data.keys`, or a clone of it while a long apply runs. */
  private view: BTree<string, KeyValue>;
  private tail: Promise<unknown> = Promise.resolve();
  protected failure: StorageFatalError | null = null;
  private closed = false;
  readonly limits: ApiLimits;

  /** `dataBytes`, computed on first use, then kept up to date by every apply. */
  private bytes: number | null = null;
  /** Open sessions per owner, computed on first use, then kept up to date. */
  private owners: Map<string, number> | null = null;
  /** Live keys per creator, computed on first use, then kept up to date. */
  private keyCounts: Map<string, number> | null = null;

  protected constructor(data: TreeData, limits: Partial<ApiLimits> = {}) {
    this.data = data;
    this.view = data.keys;
    this.limits = { ...defaultApiLimits, ...limits };
  }

  /** Takes the changes of one apply to the durable copy (in apply order). */
  protected abstract record(change: Change): void | Promise<void>;
  /** Makes `data` (a whole restored state) the durable state, atomically. */
  protected abstract persistRestored(data: TreeData): Promise<void>;
  protected abstract syncMedium(): Promise<void>;
  protected abstract closeMedium(): Promise<void>;

  get appliedIndex(): number {
    return this.data.appliedIndex;
  }

  get dataBytes(): number {
    if (this.bytes === null) {
      let n = 0;
      for (const [key, kv] of this.data.keys.entries()) n += kvBytes(key, kv);
      for (const e of this.data.history) n += eventBytes(e);
      this.bytes = n;
    }
    return this.bytes;
  }

  keysOf(user: string): number {
    if (this.keyCounts === null) {
      this.keyCounts = new Map();
      for (const u of this.data.creators.values()) this.keyCounts.set(u, (this.keyCounts.get(u) ?? 0) + 1);
    }
    return this.keyCounts.get(user) ?? 0;
  }

  private countKey(user: string, delta: number): void {
    if (this.keyCounts === null) return;
    const n = (this.keyCounts.get(user) ?? 0) + delta;
    if (n > 0) this.keyCounts.set(user, n);
    else this.keyCounts.delete(user);
  }

  sessionsOf(owner: string): number {
    if (this.owners === null) {
      this.owners = new Map();
      for (const s of this.data.sessions.values())
        if (s.owner) this.owners.set(s.owner, (this.owners.get(s.owner) ?? 0) + 1);
    }
    return this.owners.get(owner) ?? 0;
  }
  get revision(): number {
    return this.data.revision;
  }
  get compactRevision(): number {
    return this.data.compactRevision;
  }
  get raftMeta(): SnapshotMeta | null {
    return this.data.raftMeta;
  }

  /** Runs `fn` after everything queued before it. */
  protected serial<T>(fn: () => Promise<T> | T): Promise<T> {
    this.queued++;
    const run = this.tail.then(() => {
      if (this.failure) throw this.failure;
      if (this.closed) throw new StorageFatalError('key tree is closed');
      return fn();
    });
    this.tail = run.then(this.dequeue, this.dequeue);
    return run;
  }

  /** Operations queued by `serial` (or an eager apply) that have not settled. */
  private queued = 0;
  private readonly dequeue = (): void => {
    this.queued--;
  };

  /** Marks the tree failed: every later call rejects with the error (the node must stop). */
  protected fail(err: StorageFatalError): void {
    this.failure ??= err;
  }

  apply(index: number, command: unknown): Promise<ApplyOutcome | null> {
    return this.applyQueued(index, command);
  }

  private applyQueued(index: number, command: unknown): Promise<ApplyOutcome | null> {
    if (!Number.isSafeInteger(index) || index < 1) {
      return Promise.reject(new TypeError(`log index must be a positive safe integer, got ${index}`));
    }
    return this.serial(() => (index <= this.data.appliedIndex ? null : this.applyOne(index, command, false)));
  }

  /**
   * `apply`, without a turn of the event loop when it can: with nothing queued before it, a
   * command that is not long and a medium that records it synchronously, the outcome comes back
   * at once; otherwise a promise, and later operations wait for it as for `apply`. The node's
   * applier uses it so a batch of committed entries is applied, and answered, in one go (one
   * socket write for all the answers instead of one per entry).
   */
  applyEager(index: number, command: unknown): ApplyOutcome | null | Promise<ApplyOutcome | null> {
    if (this.queued > 0 || this.failure || this.closed) return this.applyQueued(index, command);
    if (!Number.isSafeInteger(index) || index < 1) return this.applyQueued(index, command);
    if (index <= this.data.appliedIndex) return null;
    let out: ApplyOutcome | Promise<ApplyOutcome>;
    try {
      out = this.applyOne(index, command, false);
    } catch (err) {
      return Promise.reject(err);
    }
    if (out instanceof Promise) {
      this.queued++;
      this.tail = out.then(this.dequeue, this.dequeue);
    }
    return out;
  }

  /**
   * `apply`, at once: for a tree whose medium records synchronously (the in-memory tree, in the
   * simulator) and a caller that never overlaps it with `apply`. Long commands run straight through.
   * Throws `TypeError` when the medium cannot record synchronously.
   */
  applyNow(index: number, command: unknown): ApplyOutcome | null {
    if (!Number.isSafeInteger(index) || index < 1)
      throw new TypeError(`log index must be a positive safe integer, got ${index}`);
    if (this.failure) throw this.failure;
    if (index <= this.data.appliedIndex) return null;
    const out = this.applyOne(index, command, true);
    if (out instanceof Promise) throw new TypeError('applyNow: this tree records asynchronously');
    return out;
  }

  private applyOne(index: number, input: unknown, now: boolean): ApplyOutcome | Promise<ApplyOutcome> {
    const d = this.data;
    let cmd: Command;
    try {
      cmd = decodeCommand(input, this.limits);
    } catch (err) {
      if (!(err instanceof EnsembleError)) throw err;
      return this.finish(index, null, null, err);
    }
    const tag = 'client' in cmd ? cmd.client : undefined;
    if (tag !== undefined) {
      const session = d.sessions.get(tag.session);
      if (session === undefined) return this.finish(index, null, null, new SessionExpiredError(tag.session));
      if (tag.seq < session.lowSeq) {
        const err = new BadRequestError(`sequence ${tag.seq} of session ${tag.session} was already answered`);
        return this.finish(index, null, null, err);
      }
      const prior = session.results.get(tag.seq);
      if (prior !== undefined) return this.finish(index, null, tag, prior, true);
    }
    const m = new Mutation(d.revision + 1, mayTakeLong(cmd));
    if ('user' in cmd && typeof cmd.user === 'string') m.user = cmd.user;
    const done = (result: CommandResult) => {
      const revision = m.events.length > 0 ? m.rev : d.revision;
      return this.finish(index, m, tag ?? null, { ok: true, revision, result });
    };
    const failed = (err: unknown) => {
      this.rollback(m);
      if (!(err instanceof EnsembleError)) throw err;
      return this.finish(index, null, tag ?? null, err);
    };
    if (!m.long) {
      let result: CommandResult;
      try {
        result = this.execute(cmd, m, tag?.session ?? null);
      } catch (err) {
        return failed(err);
      }
      return done(result);
    }
    const steps = this.executeLong(cmd, m, tag?.session ?? null);
    if (now) {
      let result: CommandResult;
      try {
        let r = steps.next();
        while (!r.done) r = steps.next();
        result = r.value;
      } catch (err) {
        return failed(err);
      }
      return done(result);
    }
    this.view = d.keys.clone();
    return (async () => {
      let result: CommandResult;
      try {
        for (let r = steps.next(); ; r = steps.next()) {
          if (r.done) {
            result = r.value;
            break;
          }
          await yieldToEventLoop();
        }
      } catch (err) {
        return failed(err);
      }
      return done(result);
    })();
  }

  /** Undoes a failed command: back to the clone readers saw during a long apply, else key by key. */
  private rollback(m: Mutation): void {
    const d = this.data;
    if (this.view !== d.keys) d.keys = this.view;
    else for (const [key, kv] of m.orig) kv === undefined ? d.keys.delete(key) : d.keys.set(key, kv);
    this.view = d.keys;
  }

  /** Commits `m` (if any), records the answer for exactly-once, advances the applied index. */
  private finish(
    index: number,
    m: Mutation | null,
    tag: { session: string; seq: number; lowSeq: number } | null,
    answer: StoredOutcome | EnsembleError,
    replayed = false,
  ): ApplyOutcome | Promise<ApplyOutcome> {
    const d = this.data;
    const stored: StoredOutcome =
      answer instanceof EnsembleError ? { ok: false, revision: d.revision, error: answer.toWire() } : answer;
    const sessions: [string, SessionFields | null][] = [];
    const results: [string, number, StoredOutcome | null][] = [];
    let counters: [string, number][] = [];
    let grants: [string, string, Perm | null][] = [];
    const creators: [string, string | null][] = [];
    if (m !== null) {
      let bytes = 0;
      if (m.events.length > 0) {
        // Revisions are consecutive, and history holds them in order: a watch reads it as the
        // one source. A command that started at another revision than the one it ends at would
        // break both (watches would skip or repeat a revision): the tree stops instead.
        if (m.rev !== d.revision + 1) {
          const err = new StorageFatalError(`apply of ${index} made revision ${m.rev} after ${d.revision}`);
          this.fail(err);
          throw err;
        }
        d.revision = m.rev;
        for (const e of m.events) {
          d.history.push(e);
          bytes += eventBytes(e);
        }
      }
      for (const [key, before] of m.orig) {
        const now = m.final.get(key) ?? null;
        bytes += kvBytes(key, now) - kvBytes(key, before);
        if (now === null) {
          const was = d.creators.get(key);
          if (was !== undefined) {
            d.creators.delete(key);
            creators.push([key, null]);
            this.countKey(was, -1);
          }
        } else if (before === undefined && m.user !== null) {
          d.creators.set(key, m.user);
          creators.push([key, m.user]);
          this.countKey(m.user, 1);
        }
        if (before?.session) d.sessions.get(before.session)?.ephemerals.delete(key);
        if (now?.session) d.sessions.get(now.session)?.ephemerals.add(key);
      }
      counters = [...m.counters];
      for (const [parent, next] of counters) d.counters.set(parent, next);
      grants = m.grants;
      for (const [user, prefix, perm] of grants) setGrant(d, user, prefix, perm);
      if (m.opened !== null) {
        if (m.opened.owner) this.owners?.set(m.opened.owner, (this.owners.get(m.opened.owner) ?? 0) + 1);
        d.sessions.set(m.opened.id, m.opened);
        sessions.push([m.opened.id, fieldsOf(m.opened)]);
      }
      if (m.ended !== null) {
        const owner = m.ended.owner;
        if (owner && this.owners) {
          const n = (this.owners.get(owner) ?? 1) - 1;
          if (n > 0) this.owners.set(owner, n);
          else this.owners.delete(owner);
        }
        d.sessions.delete(m.ended.id);
        sessions.push([m.ended.id, null]);
        for (const seq of m.ended.results.keys()) results.push([m.ended.id, seq, null]);
      }
      if (m.compactTo !== null) {
        d.compactRevision = m.compactTo;
        const cut = firstAfter(d.history, m.compactTo);
        for (let i = 0; i < cut; i++) bytes -= eventBytes(d.history[i]!);
        d.history = d.history.slice(cut);
      }
      if (this.bytes !== null) this.bytes += bytes;
    }
    // Exactly-once (thesis §6.3): drop answers the client has seen, keep this one.
    const session = tag === null ? undefined : d.sessions.get(tag.session);
    if (tag !== null && session !== undefined) {
      if (tag.lowSeq > session.lowSeq) {
        session.lowSeq = tag.lowSeq;
        for (const seq of [...session.results.keys()]) {
          if (seq < tag.lowSeq) {
            session.results.delete(seq);
            results.push([session.id, seq, null]);
          }
        }
        sessions.push([session.id, fieldsOf(session)]);
      }
      if (!replayed && tag.seq >= session.lowSeq) {
        session.results.set(tag.seq, stored);
        results.push([session.id, tag.seq, stored]);
      }
    }
    d.appliedIndex = index;
    this.view = d.keys;
    const recorded = this.record({
      keys: m?.final ?? new Map(),
      events: m?.events ?? [],
      sessions,
      results,
      counters,
      grants,
      creators,
      compactTo: m?.compactTo ?? null,
      meta: metaOf(d),
    });
    const error = answer instanceof EnsembleError ? answer : stored.ok ? null : fromWire(stored.error);
    const outcome: ApplyOutcome = stored.ok
      ? { ok: true, revision: stored.revision, result: stored.result, replayed }
      : { ok: false, revision: stored.revision, error: error!, replayed };
    return recorded instanceof Promise ? recorded.then(() => outcome) : outcome;
  }

  /** Commands that cannot take long: run without yielding, so no reader sees them half done. */
  private execute(cmd: Command, m: Mutation, owner: string | null): CommandResult {
    switch (cmd.op) {
      case 'put':
        return { op: 'put', kv: meta(this.put(m, cmd, owner)) };
      case 'delete':
        return { op: 'delete', deleted: this.deleteKey(m, cmd) };
      case 'createSequential':
        return { op: 'createSequential', kv: meta(this.createSequential(m, cmd, owner)) };
      case 'txn': {
        const succeeded = this.compare(cmd.compare);
        this.checkTxnAnswer(succeeded ? cmd.success : cmd.failure);
        const results: OpResult[] = [];
        for (const op of succeeded ? cmd.success : cmd.failure) {
          results.push(
            op.op === 'delete' ? { op: 'delete', deleted: this.deleteKey(m, op) } : this.txnOp(m, op, owner),
          );
        }
        return { op: 'txn', succeeded, results };
      }
      case 'sessionOpen': {
        const known = this.data.sessions.get(cmd.id);
        if (known !== undefined) {
          // A retried open (same secret and TTL) answers as the first did.
          if (known.ttlMs === cmd.ttlMs && compareBytes(known.secret, cmd.secret) === 0) {
            return { op: 'sessionOpen', id: cmd.id };
          }
          throw new ExistsError(cmd.id, `session ${cmd.id} already exists`);
        }
        m.opened = newSession({
          id: cmd.id,
          secret: cmd.secret,
          ttlMs: cmd.ttlMs,
          lowSeq: 0,
          ...(cmd.owner ? { owner: cmd.owner } : {}),
        });
        return { op: 'sessionOpen', id: cmd.id };
      }
      case 'compact': {
        const d = this.data;
        if (cmd.revision <= d.compactRevision) throw new CompactedError(d.compactRevision);
        if (cmd.revision > d.revision) {
          throw new BadRequestError(
            `cannot compact at future revision ${cmd.revision} (current ${d.revision})`,
          );
        }
        m.compactTo = cmd.revision;
        return { op: 'compact', compactRevision: cmd.revision };
      }
      case 'authGrant':
        m.grants.push([cmd.user, cmd.prefix, { read: cmd.read === true, write: cmd.write === true }]);
        return { op: 'authGrant', user: cmd.user, prefix: cmd.prefix };
      case 'authRevoke': {
        const revoked = this.data.grants.get(cmd.user)?.has(cmd.prefix) === true;
        if (revoked) m.grants.push([cmd.user, cmd.prefix, null]);
        return { op: 'authRevoke', user: cmd.user, prefix: cmd.prefix, revoked };
      }
      case 'sessionClose':
      case 'sessionExpire':
        throw new TypeError(`${cmd.op} takes the long path`);
    }
  }

  /**
   * Commands that may touch many keys: a generator that yields after every slice, so the node's
   * apply gives the event loop a turn there while readers see a clone (an in-memory tree applied
   * in a simulation runs it straight through).
   */
  private *executeLong(cmd: Command, m: Mutation, owner: string | null): Generator<void, CommandResult> {
    switch (cmd.op) {
      case 'delete':
        return { op: 'delete', deleted: yield* this.delete(m, cmd) };
      case 'txn': {
        const succeeded = this.compare(cmd.compare);
        this.checkTxnAnswer(succeeded ? cmd.success : cmd.failure);
        const results: OpResult[] = [];
        for (const op of succeeded ? cmd.success : cmd.failure) {
          results.push(
            op.op === 'delete'
              ? { op: 'delete', deleted: yield* this.delete(m, op) }
              : this.txnOp(m, op, owner),
          );
        }
        return { op: 'txn', succeeded, results };
      }
      case 'sessionClose':
      case 'sessionExpire': {
        const s = this.data.sessions.get(cmd.id);
        if (s === undefined) throw new SessionExpiredError(cmd.id);
        const keys = [...s.ephemerals].sort(comparePaths);
        let n = 0;
        for (const key of keys) {
          this.remove(m, key);
          if (++n % SLICE === 0) yield;
        }
        m.ended = s;
        return { op: cmd.op, id: cmd.id, deleted: keys.length };
      }
      default:
        return this.execute(cmd, m, owner);
    }
  }

  /**
   * Refuses (TOO_LARGE, before any change) a branch whose gets would answer more than a page's
   * byte budget (`PAGE_BYTES`): an answer must fit a NATS message. Counts each get's key and the
   * value it will see (a put earlier in the branch, else the stored one); deletes are ignored,
   * which can only overcount. Deterministic: every node refuses the same txn.
   */
  private checkTxnAnswer(ops: readonly TxnOp[]): void {
    const put = new Map<string, number>();
    let total = 0;
    for (const op of ops) {
      if (op.op === 'put') put.set(op.key, op.value.length);
      else if (op.op === 'get')
        total += op.key.length + (put.get(op.key) ?? this.data.keys.get(op.key)?.value.length ?? 0);
    }
    if (total > PAGE_BYTES)
      throw new TooLargeError(
        total,
        PAGE_BYTES,
        `the txn's gets would answer ${total} bytes, more than ${PAGE_BYTES}`,
      );
  }

  private compare(compares: readonly Compare[]): boolean {
    const keys = this.data.keys;
    return compares.every((c) => holds(c, keys.get(c.key)));
  }

  private txnOp(m: Mutation, op: PutOp | Extract<TxnOp, { op: 'get' }>, owner: string | null): OpResult {
    if (op.op === 'get') return { op: 'get', kv: this.data.keys.get(op.key) ?? null };
    return { op: 'put', kv: meta(this.put(m, op, owner)) };
  }

  private set(m: Mutation, key: string, kv: KeyValue | null): void {
    const keys = this.data.keys;
    if (!m.orig.has(key)) m.orig.set(key, keys.get(key));
    if (kv === null) keys.delete(key);
    else keys.set(key, kv);
    m.final.set(key, kv);
  }

  private remove(m: Mutation, key: string): number {
    const prev = this.data.keys.get(key);
    if (prev === undefined) return 0;
    this.set(m, key, null);
    m.events.push({
      type: 'delete',
      key,
      revision: m.rev,
      value: null,
      prevValue: prev.value,
      kv: null,
      prev,
    });
    return 1;
  }

  private put(m: Mutation, op: PutOp, owner: string | null): KeyValue {
    const keys = this.data.keys;
    const { key } = op;
    for (const a of ancestorsOf(key)) {
      if (keys.get(a)?.session) throw new BadPathError(key, `${key} is below ephemeral key ${a}`);
    }
    const prev = keys.get(key);
    if (op.ifAbsent && prev !== undefined) throw new ExistsError(key);
    if (op.ifVersion !== undefined && (prev?.version ?? 0) !== op.ifVersion) {
      throw new VersionMismatchError(op.ifVersion, prev?.version ?? 0);
    }
    if (op.ephemeral) {
      if (owner === null) throw new BadRequestError('an ephemeral key needs a client session');
      const below = keys.getPairOrNextHigher(childPrefix(key));
      if (below?.[0].startsWith(childPrefix(key))) {
        throw new BadPathError(key, `${key} has keys below it and cannot be ephemeral`);
      }
    }
    const kv: KeyValue = {
      key,
      value: op.value,
      version: (prev?.version ?? 0) + 1,
      createRevision: prev?.createRevision ?? m.rev,
      modRevision: m.rev,
      session: op.ephemeral ? owner : null,
    };
    this.set(m, key, kv);
    m.events.push({
      type: 'put',
      key,
      revision: m.rev,
      value: kv.value,
      prevValue: prev?.value ?? null,
      kv,
      prev: prev ?? null,
    });
    return kv;
  }

  /** Deletes `op.key` alone (no subtree); returns how many keys went (0 or 1). */
  private deleteKey(m: Mutation, op: DeleteOp): number {
    const self = op.key === '/' ? undefined : this.data.keys.get(op.key);
    if (op.ifVersion !== undefined && (self?.version ?? 0) !== op.ifVersion) {
      throw new VersionMismatchError(op.ifVersion, self?.version ?? 0);
    }
    return self === undefined ? 0 : this.remove(m, op.key);
  }

  /** Deletes `op.key` and, with `subtree`, every key below it, in path order; yields every slice. */
  private *delete(m: Mutation, op: DeleteOp): Generator<void, number> {
    let deleted = this.deleteKey(m, op);
    if (!op.subtree) return deleted;
    const keys = this.data.keys;
    const base = childPrefix(op.key);
    const victims: string[] = [];
    for (let p = keys.getPairOrNextHigher(base); p?.[0].startsWith(base); p = keys.nextHigherPair(p[0])) {
      victims.push(p[0]);
      if (victims.length % SLICE === 0) yield;
    }
    for (const key of victims) {
      deleted += this.remove(m, key);
      if (deleted % SLICE === 0) yield;
    }
    return deleted;
  }

  private createSequential(
    m: Mutation,
    cmd: { prefix: string; value: Uint8Array; ephemeral?: boolean },
    owner: string | null,
  ): KeyValue {
    const parent = parentOf(`${cmd.prefix}0`);
    const keys = this.data.keys;
    let next = m.counters.get(parent) ?? this.data.counters.get(parent) ?? 0;
    let key: string;
    // Skip numbers whose key was taken by a plain put: the counter never goes back.
    do {
      if (next > 9_999_999_999) throw new BadRequestError(`sequence numbers under ${parent} are exhausted`);
      key = cmd.prefix + String(next).padStart(10, '0');
      next++;
    } while (keys.has(key));
    const kv = this.put(m, { op: 'put', key, value: cmd.value, ephemeral: cmd.ephemeral ?? false }, owner);
    m.counters.set(parent, next);
    return kv;
  }

  // ---- reads -------------------------------------------------------------------------------

  private atRevision(revision: number | undefined): number {
    const d = this.data;
    if (revision === undefined) return d.revision;
    if (!Number.isSafeInteger(revision) || revision < 0)
      throw new BadRequestError('revision must be a non-negative integer');
    if (revision < d.compactRevision) throw new CompactedError(d.compactRevision);
    if (revision > d.revision)
      throw new BadRequestError(`revision ${revision} is in the future (current ${d.revision})`);
    return revision;
  }

  private overlay(revision: number, matches: (key: string) => boolean): Overlay | null {
    if (revision === this.data.revision) return null;
    const h = this.data.history;
    const prev = new Map<string, KeyValue | null>();
    for (let i = firstAfter(h, revision); i < h.length; i++) {
      const e = h[i]!;
      if (!prev.has(e.key) && matches(e.key)) prev.set(e.key, e.prev);
    }
    return { prev, sorted: [...prev.keys()].sort(comparePaths) };
  }

  /** The first key `>= from` (`> from` unless `inclusive`) as of the overlay's revision. */
  private seek(ov: Overlay | null, from: string, inclusive: boolean): KeyValue | undefined {
    const view = this.view;
    let p = inclusive ? view.getPairOrNextHigher(from) : view.nextHigherPair(from);
    if (ov === null) return p?.[1];
    while (p !== undefined && ov.prev.has(p[0])) p = view.nextHigherPair(p[0]);
    const s = ov.sorted;
    let lo = 0;
    let hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = comparePaths(s[mid]!, from);
      if (c < 0 || (c === 0 && !inclusive)) lo = mid + 1;
      else hi = mid;
    }
    let o: KeyValue | undefined;
    for (; lo < s.length && o === undefined; lo++) o = ov.prev.get(s[lo]!) ?? undefined;
    if (o === undefined) return p?.[1];
    if (p === undefined) return o;
    return comparePaths(o.key, p[0]) < 0 ? o : p[1];
  }

  private limitOf(limit: number | undefined): number {
    if (limit === undefined) return Number.POSITIVE_INFINITY;
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new BadRequestError('limit must be a positive integer');
    return limit;
  }

  get(key: string, options: Pick<ReadOptions, 'revision'> = {}): KeyValue | null {
    checkPath(key, this.limits.maxKeyBytes);
    const revision = this.atRevision(options.revision);
    if (revision !== this.data.revision) {
      const h = this.data.history;
      for (let i = firstAfter(h, revision); i < h.length; i++) if (h[i]!.key === key) return h[i]!.prev;
    }
    return this.view.get(key) ?? null;
  }

  range(prefix: string, options: ReadOptions = {}): RangeResult {
    checkPrefix(prefix, this.limits.maxKeyBytes);
    const revision = this.atRevision(options.revision);
    const limit = this.limitOf(options.limit);
    const ov = this.overlay(revision, (k) => k.startsWith(prefix));
    const after = options.after;
    if (after !== undefined && typeof after !== 'string') throw new BadRequestError('after must be a string');
    const resume = after !== undefined && comparePaths(after, prefix) >= 0;
    const budget = options.maxBytes ?? Number.POSITIVE_INFINITY;
    const kvs: KeyValue[] = [];
    let bytes = 0;
    let more = false;
    for (
      let kv = this.seek(ov, resume ? after : prefix, !resume);
      kv?.key.startsWith(prefix);
      kv = this.seek(ov, kv.key, false)
    ) {
      if (kvs.length >= limit || (kvs.length > 0 && bytes >= budget)) {
        more = true;
        break;
      }
      kvs.push(kv);
      bytes += kv.key.length + kv.value.length;
    }
    return { kvs, more, revision };
  }

  listChildren(path: string, options: ReadOptions = {}): ChildList {
    checkPath(path, this.limits.maxKeyBytes, true);
    const revision = this.atRevision(options.revision);
    const limit = this.limitOf(options.limit);
    const base = childPrefix(path);
    const ov = this.overlay(revision, (k) => k.startsWith(base));
    const after = options.after;
    if (after !== undefined && (typeof after !== 'string' || after.includes('/') || after === '')) {
      throw new BadRequestError('after must be a child name');
    }
    const names: string[] = [];
    let more = false;
    let from = after === undefined ? base : afterSubtree(base + after);
    for (let kv = this.seek(ov, from, true); kv?.key.startsWith(base); kv = this.seek(ov, from, true)) {
      const rest = kv.key.slice(base.length);
      const slash = rest.indexOf('/');
      const name = slash < 0 ? rest : rest.slice(0, slash);
      if (names.length >= limit) {
        more = true;
        break;
      }
      names.push(name);
      from = afterSubtree(base + name);
    }
    return { names, more, revision };
  }

  eventsSince(from: number, filter?: EventFilter, options: { readonly limit?: number } = {}): EventBatch {
    const d = this.data;
    if (!Number.isSafeInteger(from) || from < 0)
      throw new BadRequestError('from must be a non-negative integer');
    if (from <= d.compactRevision) throw new CompactedError(d.compactRevision);
    if (filter !== undefined) {
      if ('key' in filter) checkPath(filter.key, this.limits.maxKeyBytes);
      else if ('prefix' in filter) checkPrefix(filter.prefix, this.limits.maxKeyBytes);
      else if ('subtree' in filter) checkPath(filter.subtree, this.limits.maxKeyBytes, true);
    }
    const limit = this.limitOf(options.limit);
    const matches = filterOf(filter);
    const h = d.history;
    const events: TreeEvent[] = [];
    let i = firstAfter(h, from - 1);
    for (; i < h.length; i++) {
      const e = h[i]!;
      if (events.length >= limit && e.revision !== events.at(-1)?.revision) break;
      if (matches(e.key)) events.push(e);
    }
    const next = i < h.length ? h[i]!.revision : Math.max(from, d.revision + 1);
    return { events, next };
  }

  perms(user: string): ReadonlyMap<string, Perm> {
    return this.data.grants.get(user) ?? NO_PERMS;
  }

  grants(user?: string): Grant[] {
    return grantRecords(this.data, user).map(([u, prefix, p]) => ({
      user: u,
      prefix,
      read: p.read,
      write: p.write,
    }));
  }

  session(id: string): SessionInfo | null {
    const s = this.data.sessions.get(id);
    return s === undefined ? null : sessionInfo(s);
  }

  sessions(): SessionInfo[] {
    return [...this.data.sessions.values()]
      .map(sessionInfo)
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  // ---- snapshots ---------------------------------------------------------------------------

  snapshot(options: SnapshotOptions = {}): Promise<TreeSnapshot> {
    const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 16) {
      return Promise.reject(new TypeError('chunkBytes must be an integer >= 16'));
    }
    return this.serial(() => {
      const raftMeta = options.raftMeta ?? null;
      if (raftMeta !== null && raftMeta.index !== this.data.appliedIndex) {
        throw new TypeError(
          `raftMeta.index ${raftMeta.index} is not the applied index ${this.data.appliedIndex}`,
        );
      }
      const frozen = freeze(this.data, raftMeta);
      return {
        appliedIndex: frozen.meta.appliedIndex,
        revision: frozen.meta.revision,
        raftMeta,
        [Symbol.asyncIterator]: () => dumpChunks(frozen, chunkBytes),
      };
    });
  }

  restore(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<RestoreInfo> {
    return this.serial(async () => {
      const data = await parseDump(chunks);
      await this.persistRestored(data);
      this.data = data;
      this.view = data.keys;
      this.bytes = null;
      this.owners = null;
      this.keyCounts = null;
      return { appliedIndex: data.appliedIndex, revision: data.revision, raftMeta: data.raftMeta };
    });
  }

  sync(): Promise<void> {
    return this.serial(() => this.syncMedium());
  }

  /** Replaces the whole live state (a restore the subclass made durable itself). */
  protected replaceState(data: TreeData): void {
    this.data = data;
    this.view = data.keys;
    this.bytes = null;
    this.owners = null;
    this.keyCounts = null;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.tail;
    this.closed = true;
    await this.closeMedium();
  }
}

const NO_PERMS: ReadonlyMap<string, Perm> = new Map();

const kvBytes = (key: string, kv: KeyValue | null | undefined): number =>
  kv ? key.length + kv.value.length + 32 : 0;
const eventBytes = (e: TreeEvent): number =>
  e.key.length + (e.value?.length ?? 0) + (e.prevValue?.length ?? 0) + 48;
