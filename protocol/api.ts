/**
 * The request API: every operation's request, in one table of schemas (`requests`) from which
 * both the request types and `validateRequest` come, and every operation's result.
 *
 * An operation is named by the last token of its subject (`P.api.<op>` or
 * `P.node.<id>.api.<op>`); its body travels in the envelope's `body` (see codec.ts). Field rules
 * (paths, counters, bytes, `null` as absent, unknown fields ignored) are in schema.ts. Besides:
 * - Writes may carry `client`: the session, its secret, the write's sequence number and the lowest
 *   sequence number whose answer the client has not yet seen (exactly-once, Raft thesis §6.3). A
 *   retried sequence number is answered from the session's table instead of being applied again.
 *   Writes without `client` are applied once per request that reaches the leader (no dedup).
 * - Reads are linearizable (ReadIndex) unless `serializable: true` asks for a local read.
 * The log commands a write becomes (command.ts) share these field rules.
 */
import { BadPathError, BadRequestError, EnsembleError, TooLargeError, UnknownOpError } from './errors.ts';
import {
  type Accepts,
  type ApiLimits,
  absent,
  bool,
  count,
  defaultApiLimits,
  flag,
  inbox,
  isCount,
  isMap,
  key,
  list,
  obj,
  oneOf,
  opt,
  prefix,
  type Rule,
  secret,
  sequentialPrefix,
  sessionId,
  text,
  token,
  ttlMs,
  userName,
  value,
} from './schema.ts';

export {
  type ApiLimits,
  checkKey,
  checkPrefix,
  defaultApiLimits,
  MAX_SECRET_BYTES,
  MAX_TTL_MS,
} from './schema.ts';

// ---------------------------------------------------------------------------------------------
// Shapes on the wire

/** A key and its metadata. `version` counts puts since creation; revisions are global. */
export interface KeyValue {
  readonly key: string;
  readonly value: Uint8Array;
  readonly version: number;
  readonly createRevision: number;
  readonly modRevision: number;
  /** The session owning this ephemeral key, or `null` for a persistent key. */
  readonly session: string | null;
}

/** A key's metadata without its value (what writes answer). */
export type KeyMeta = Omit<KeyValue, 'value'>;

/** What a watch follows: one key, the keys starting with a raw prefix, or a path and below it. */
export type WatchTarget =
  | { readonly key: string }
  | { readonly prefix: string }
  | { readonly subtree: string };

export type CompareTarget = 'version' | 'modRevision' | 'createRevision' | 'value' | 'exists';
export type CompareResult = 'eq' | 'ne' | 'lt' | 'gt';

/**
 * `key`'s `target` compared with `value` by `result`. An absent key has version, modRevision and
 * createRevision 0; a `value` compare with an absent key is false. `exists` takes a boolean and
 * `eq`/`ne` only; `value` takes bytes; the others a counter.
 */
export interface Compare {
  readonly key: string;
  readonly target: CompareTarget;
  readonly result: CompareResult;
  readonly value: number | Uint8Array | boolean;
}

// ---------------------------------------------------------------------------------------------
// Field groups, shared by the requests here and the log commands (command.ts)

const TARGETS: ReadonlySet<string> = new Set(['version', 'modRevision', 'createRevision', 'value', 'exists']);
const RESULTS: ReadonlySet<string> = new Set(['eq', 'ne', 'lt', 'gt']);

export const compare: Rule<Compare, false> = {
  optional: false,
  parse(c, at, l) {
    if (!isMap(c)) throw new BadRequestError(`${at} must be a map`);
    const k = key().parse(c.key, `${at}.key`, l);
    const { target, result } = c;
    if (typeof target !== 'string' || !TARGETS.has(target))
      throw new BadRequestError(`${at}.target must be version, modRevision, createRevision, value or exists`);
    if (typeof result !== 'string' || !RESULTS.has(result))
      throw new BadRequestError(`${at}.result must be eq, ne, lt or gt`);
    let v: Compare['value'];
    if (target === 'value') v = value.parse(c.value, `${at}.value`, l);
    else if (target === 'exists') {
      v = bool.parse(c.value, `${at}.value`, l);
      if (result !== 'eq' && result !== 'ne')
        throw new BadRequestError(`${at}: an exists compare takes eq or ne`);
    } else {
      if (!isCount(c.value))
        throw new BadRequestError(`${at}: a ${target} compare needs a non-negative integer value`);
      v = c.value;
    }
    return { key: k, target: target as CompareTarget, result: result as CompareResult, value: v };
  },
};

/** The fields of a put, in a request, a txn and a log command. */
export const putFields = {
  key: key(),
  value,
  /** Fail with `EXISTS` if the key exists. */
  ifAbsent: flag,
  /** Fail with `VERSION_MISMATCH` unless the key's version is this (0: absent). */
  ifVersion: opt(count()),
  /** Owned by the write's session (`client`, required then); deleted when the session ends. */
  ephemeral: flag,
};

/** The fields of a delete: with `subtree`, everything below `key` too (`/`: every key). */
export const deleteFields = {
  key: key(true),
  subtree: flag,
  ifVersion: opt(count()),
};

/** Only a subtree delete may name the root. */
export const checkDelete = (d: { readonly key: string; readonly subtree?: boolean }): void => {
  if (d.key === '/' && !d.subtree) throw new BadPathError('/', 'the root is not a key');
};

/** The fields of a sequential create: `prefix` + a 10-digit number from the parent's counter. */
export const sequentialFields = { prefix: sequentialPrefix, value, ephemeral: flag };

export const txnOp = oneOf({
  put: obj(putFields),
  delete: obj(deleteFields, checkDelete),
  get: obj({ key: key() }),
});
export type TxnOp = Accepts<typeof txnOp>;

/** Compares and ops of one txn: at most `maxTxnOps` together, values within `maxRequestBytes`. */
export const txnFields = {
  compare: list(compare, (l) => l.maxTxnOps),
  success: list(txnOp, (l) => l.maxTxnOps),
  failure: list(txnOp, (l) => l.maxTxnOps),
};

export function checkTxn(
  t: {
    readonly compare: readonly Compare[];
    readonly success: readonly TxnOp[];
    readonly failure: readonly TxnOp[];
  },
  l: ApiLimits,
): void {
  const n = t.compare.length + t.success.length + t.failure.length;
  if (n > l.maxTxnOps)
    throw new TooLargeError(n, l.maxTxnOps, `txn of ${n} compares and ops exceeds ${l.maxTxnOps}`);
  let total = 0;
  for (const x of [...t.success, ...t.failure]) if (x.op === 'put') total += x.value.length;
  if (total > l.maxRequestBytes)
    throw new TooLargeError(
      total,
      l.maxRequestBytes,
      `txn values of ${total} bytes exceed ${l.maxRequestBytes}`,
    );
}

/** The exactly-once fields of a write (Raft thesis §6.3): `lowSeq <= seq`. */
export const tagFields = {
  /** The session id (from `sessionOpen`). */
  session: sessionId,
  /** This write's sequence number in the session. */
  seq: count(),
  /** The lowest sequence number whose answer the client has not yet received. */
  lowSeq: count(),
};

export const checkTag = (c: { readonly seq: number; readonly lowSeq: number }): void => {
  if (c.lowSeq > c.seq) throw new BadRequestError(`client.lowSeq ${c.lowSeq} is above client.seq ${c.seq}`);
};

/** A write's tag as a client sends it: with the session's secret, which proves it may write in it. */
export const clientTag = obj({ ...tagFields, secret }, checkTag);
export type ClientTag = Accepts<typeof clientTag>;

/** Ephemeral keys belong to the write's session: they need one. */
export function checkEphemeral(w: {
  readonly ephemeral?: boolean;
  readonly success?: readonly TxnOp[];
  readonly failure?: readonly TxnOp[];
  readonly client?: unknown;
}): void {
  if (w.client !== undefined) return;
  const ops = [...(w.success ?? []), ...(w.failure ?? [])];
  if (w.ephemeral || ops.some((x) => x.op === 'put' && x.ephemeral))
    throw new BadRequestError('an ephemeral key needs a session (client)');
}

const readFields = {
  /** A local read on the node that answers, possibly stale (default: linearizable). */
  serializable: flag,
  /** Read at this past revision (>= the compaction revision, else `COMPACTED`). */
  revision: opt(count(1)),
};

/**
 * Pages of `range` and `list`: at most `PAGE_MAX` items (`PAGE_DEFAULT` when no `limit` is given),
 * and a `range` page stops once its keys and values reach `PAGE_BYTES` (always at least one key),
 * so no answer outgrows a NATS message and no read holds a node for long. `more` says a page was
 * cut; ask again with `after` = its last key (or name) and `revision` = its revision for one view.
 */
export const PAGE_DEFAULT = 1000;
export const PAGE_MAX = 10_000;
export const PAGE_BYTES = 2 * 1024 * 1024;

const pageFields = {
  /** At most this many names or keys (the node may return fewer, with `more`). */
  limit: opt(count(1)),
  /** Continue after this name or key (the last one of the previous page). */
  after: opt(text),
};

/** `key`, or `/` when absent. */
const listKey: Rule<string, false> = {
  optional: false,
  parse: (v, at, l) => key(true).parse(absent(v) ? '/' : v, at, l),
};

/** Whom and which keys a grant is about. */
export const grantFields = { user: userName, prefix };

const ownSession = {
  session: sessionId,
  /** The session's secret: only its holder may act on it. */
  secret,
};

// ---------------------------------------------------------------------------------------------
// Requests: one schema per op

export const requests = {
  get: obj({ key: key(), ...readFields }),
  put: obj({ ...putFields, client: opt(clientTag) }, checkEphemeral),
  delete: obj({ ...deleteFields, client: opt(clientTag) }, checkDelete),
  /** Immediate children (keys and implied folders) of `key` (default `/`). */
  list: obj({ key: listKey, ...pageFields, ...readFields }),
  /** Keys starting with the raw string `prefix` (e.g. `/services/` or `/a/b`), in path order. */
  range: obj({ prefix, ...pageFields, ...readFields }),
  /** If every compare holds, apply `success`, else `failure`; atomically, in one revision. */
  txn: obj({ ...txnFields, client: opt(clientTag) }, (t, l) => {
    checkTxn(t, l);
    checkEphemeral(t);
  }),
  createSequential: obj({ ...sequentialFields, client: opt(clientTag) }, checkEphemeral),
  status: obj({}),
  /** Adds node `id` as a learner (it receives the log, does not vote); promote it afterwards. */
  memberAdd: obj({ id: token('node id') }),
  /** Turns learner `id` into a voter. */
  memberPromote: obj({ id: token('node id') }),
  memberRemove: obj({ id: token('node id') }),
  /** Hands leadership to `to` (default: the most up-to-date voter) (thesis §3.10). */
  transferLeader: obj({ to: opt(token('node id')) }),
  /**
   * Opens a session of `ttlMs`. `id` and `secret` are chosen by the client or, when absent, by the
   * node that proposes the session (never inside apply).
   */
  sessionOpen: obj({ ttlMs, id: opt(sessionId), secret: opt(secret) }),
  /** Proves the session alive (also published, without reply, on the keepalive subject). */
  sessionKeepalive: obj({ id: sessionId, secret }),
  /** Ends the session; its ephemeral keys are deleted in the same revision. */
  sessionClose: obj({ id: sessionId, secret }),
  /**
   * Starts a watch: events of one `key`, of keys starting with `prefix`, or of a `subtree` (the
   * path and below), from `fromRevision` on (default: the node's next revision), delivered to
   * `inbox` (the client's own inbox) as `WatchMessage`s. A watch belongs to a session and ends
   * with it. `prevValue` adds each key's previous value; `progressNotify` marks the periodic
   * progress heartbeats for the application too.
   */
  watch: obj(
    {
      id: token('watch id'),
      key: opt(key()),
      prefix: opt(prefix),
      subtree: opt(key(true)),
      fromRevision: opt(count(1)),
      prevValue: flag,
      progressNotify: flag,
      inbox,
      ...ownSession,
    },
    (w) => {
      if ([w.key, w.prefix, w.subtree].filter((x) => x !== undefined).length !== 1)
        throw new BadRequestError('a watch takes exactly one of key, prefix, subtree');
    },
  ),
  watchCancel: obj({ id: token('watch id'), ...ownSession }),
  /**
   * Published (no reply) to the serving node's `watchAck` subject: the client consumed the watch's
   * messages up to `seq`. `shared: true` says the client has subscribed to the watch's `group`
   * subject (from the watch result), so the node may move the watch onto that shared stream.
   */
  watchAck: obj({ id: token('watch id'), ...ownSession, seq: count(), shared: flag }),
  /** Drops history below `revision` (watches and past reads below it get COMPACTED; reads at it still work). */
  compact: obj({ revision: count(1) }),
  /**
   * Sets what `user` may do with keys starting with the raw string `prefix` (`/` for every key):
   * `read` (get, list, range, watch, txn compares and gets) and `write` (put, delete, sequential
   * creates, txn puts and deletes). Replaces an earlier grant of the same user and prefix. A
   * request is allowed when one grant of its user covers every key it may touch.
   */
  authGrant: obj({ ...grantFields, read: flag, write: flag }),
  /** Drops the grant of `user` on `prefix` (exactly that prefix). */
  authRevoke: obj(grantFields),
  /** Every grant, by user (or of one `user`). */
  authList: obj({ user: opt(userName) }),
};

/** Every operation's request body. */
export type ApiRequests = { [K in keyof typeof requests]: Accepts<(typeof requests)[K]> };
export type Op = keyof ApiRequests;

export type GetRequest = ApiRequests['get'];
export type PutRequest = ApiRequests['put'];
export type DeleteRequest = ApiRequests['delete'];
export type ListRequest = ApiRequests['list'];
export type RangeRequest = ApiRequests['range'];
export type TxnRequest = ApiRequests['txn'];
export type CreateSequentialRequest = ApiRequests['createSequential'];
export type SessionOpenRequest = ApiRequests['sessionOpen'];
export type WatchRequest = ApiRequests['watch'];
export type WatchAckRequest = ApiRequests['watchAck'];

/** One event of a watch. */
export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly key: string;
  readonly revision: number;
  /** The value after a put; absent for a delete. */
  readonly value?: Uint8Array;
  readonly version?: number;
  readonly createRevision?: number;
  readonly modRevision?: number;
  /** With `prevValue`: the value before this event, if the key existed. */
  readonly prevValue?: Uint8Array;
}

/**
 * What a node sends to a watch's inbox, in `{ v, cluster, body }`: `seq` counts the messages of
 * this watch (1, 2, …; a gap means one was lost: resume). `revision`: everything up to it has
 * been sent. `events` are whole revisions, in order. A progress heartbeat has no events and
 * `progress: true`. `error` ends the watch (`COMPACTED`, `WATCH_BEHIND`, `SESSION_EXPIRED`).
 */
export interface WatchMessage {
  readonly id: string;
  readonly seq: number;
  readonly revision: number;
  /**
   * The first revision this message accounts for: it holds every event of the watch from `from`
   * through `revision` (none, for a progress or join message: nothing happened since). A client
   * whose next revision is below `from` lacks revisions: it resumes, as for a gap in `seq`.
   * Absent on errors.
   */
  readonly from?: number;
  readonly progress?: boolean;
  readonly error?: { readonly code: string; readonly message: string; readonly [k: string]: unknown };
  /**
   * The watch moved onto its shared stream: from here on its events are the `WatchGroupMessage`s
   * of generation `gen` on the group subject with `seq` above this one (private messages still
   * carry errors). Sent only after the client acknowledged with `shared: true`.
   */
  readonly join?: { readonly gen: number; readonly seq: number };
  /** Always the last field (the node splices one encoding of the events into many messages). */
  readonly events: readonly WatchEvent[];
}

/**
 * What a node publishes on a watch group's subject (`P.watch.<node>.<group>`): the events of every
 * revision for all the watches on the node with the same target and options. `gen` names the
 * group's life on that node (a group emptied and made again starts a new one), `seq` counts its
 * messages; a client that sees a gap or a silence longer than the heartbeat resumes privately.
 */
export interface WatchGroupMessage {
  readonly group: string;
  readonly gen: number;
  readonly seq: number;
  readonly revision: number;
  /** As in `WatchMessage`: the message accounts for every revision from `from` through `revision`. */
  readonly from: number;
  readonly progress?: boolean;
  readonly events: readonly WatchEvent[];
}

export type OpResult =
  | { readonly op: 'put'; readonly kv: KeyMeta }
  | { readonly op: 'delete'; readonly deleted: number }
  | { readonly op: 'get'; readonly kv: KeyValue | null };

export interface Members {
  readonly voters: readonly string[];
  readonly learners: readonly string[];
}

export type Role = 'follower' | 'candidate' | 'leader';

export interface NodeStatus {
  /** The node that answered. */
  readonly id: string;
  readonly cluster: string;
  readonly role: Role;
  readonly term: number;
  /** The leader this node knows of, or `null`. */
  readonly leader: string | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastIndex: number;
  /** The key tree's revision at `appliedIndex`. */
  readonly revision: number;
  readonly members: Members;
  /** The cluster's election timeout (ms): a client waits about twice this per attempt. */
  readonly electionTimeoutMs: number;
  /** Protocol versions this node speaks. */
  readonly protocol: readonly number[];
  /** Bytes the key tree holds, history included (the database quota counts them). */
  readonly dataBytes: number;
  /** `NOSPACE` while the database quota is used up: writes that add data are refused. */
  readonly alarms: readonly string[];
  /** Open sessions (the first 1000, to admins only), with their TTL and ephemeral keys. */
  readonly sessions: readonly {
    readonly id: string;
    readonly ttlMs: number;
    readonly ephemeralKeys: number;
  }[];
}

/** Fields every write result may carry. */
export interface WriteResult {
  /** The tree's revision after the write. */
  readonly revision: number;
  /** The answer came from the session's exactly-once table: the write was not applied again. */
  readonly replayed?: boolean;
}

/** Every operation's result. */
export interface ApiResults {
  get: { readonly kv: KeyValue | null; readonly revision: number };
  put: WriteResult & { readonly kv: KeyMeta };
  delete: WriteResult & { readonly deleted: number };
  list: { readonly names: readonly string[]; readonly more: boolean; readonly revision: number };
  range: { readonly kvs: readonly KeyValue[]; readonly more: boolean; readonly revision: number };
  txn: WriteResult & { readonly succeeded: boolean; readonly results: readonly OpResult[] };
  createSequential: WriteResult & { readonly kv: KeyMeta };
  status: NodeStatus;
  /** `index`: the log index of the configuration entry. */
  memberAdd: { readonly members: Members; readonly index: number };
  memberPromote: { readonly members: Members; readonly index: number };
  memberRemove: { readonly members: Members; readonly index: number };
  transferLeader: { readonly leader: string };
  /** `revision`: the revision the open applied at (a watch "from now" may start after it). */
  sessionOpen: {
    readonly id: string;
    readonly secret: Uint8Array;
    readonly ttlMs: number;
    readonly revision: number;
  };
  sessionKeepalive: { readonly ttlMs: number };
  sessionClose: { readonly id: string; readonly deleted: number; readonly revision: number };
  /** `node`: the node serving the watch (acks and cancel go to it); `revision`: the first
   * revision the watch will deliver. */
  /** `group`: the subject of the shared stream this watch may join (see `WatchAckRequest`). */
  watch: { readonly id: string; readonly node: string; readonly revision: number; readonly group?: string };
  watchCancel: { readonly cancelled: boolean };
  watchAck: Record<string, never>;
  compact: { readonly compactRevision: number; readonly revision: number };
  authGrant: WriteResult & { readonly user: string; readonly prefix: string };
  authRevoke: WriteResult & { readonly user: string; readonly prefix: string; readonly revoked: boolean };
  authList: { readonly grants: readonly Grant[]; readonly revision: number };
}

/** What one user may do with the keys starting with `prefix`. */
export interface Grant {
  readonly user: string;
  readonly prefix: string;
  readonly read: boolean;
  readonly write: boolean;
}

/**
 * How a node serves an op: `write` through the log on the leader; `read` by ReadIndex (or
 * locally when `serializable`); `admin` on the leader, for admins only (membership, leader
 * transfer, compaction, grants); `local` on
 * the node that receives it.
 */
export type OpKind = 'write' | 'read' | 'admin' | 'local';

export const opKinds: { readonly [K in Op]: OpKind } = {
  get: 'read',
  put: 'write',
  delete: 'write',
  list: 'read',
  range: 'read',
  txn: 'write',
  createSequential: 'write',
  status: 'local',
  memberAdd: 'admin',
  memberPromote: 'admin',
  memberRemove: 'admin',
  transferLeader: 'admin',
  sessionOpen: 'write',
  sessionKeepalive: 'local',
  sessionClose: 'write',
  watch: 'local',
  watchCancel: 'local',
  watchAck: 'local',
  compact: 'admin',
  authGrant: 'admin',
  authRevoke: 'admin',
  authList: 'admin',
};

export const ops: readonly Op[] = Object.keys(opKinds) as Op[];

export const isOp = (s: unknown): s is Op => typeof s === 'string' && Object.hasOwn(opKinds, s);
// ---------------------------------------------------------------------------------------------
// Validation

/** A request that passed validation, tagged with its op (switch on `op` to narrow `request`). */
export type ValidRequest = { readonly [K in Op]: { readonly op: K; readonly request: ApiRequests[K] } }[Op];

export type Validated =
  | ({ readonly ok: true } & ValidRequest)
  | { readonly ok: false; readonly error: EnsembleError };

/**
 * Turns the op of a subject and a decoded body into a normalised request (only known fields,
 * no `undefined` values, byte fields as `Uint8Array`), or the typed error to answer with:
 * `UNKNOWN_OP`, `BAD_REQUEST` (wrong shape or types), `TOO_LARGE` (beyond `limits`), `BAD_PATH`.
 * Never throws.
 */
export function validateRequest(op: unknown, body: unknown, limits: Partial<ApiLimits> = {}): Validated {
  try {
    if (!isOp(op)) {
      const name = typeof op === 'string' ? op.slice(0, 64) : String(typeof op);
      return { ok: false, error: new UnknownOpError(name) };
    }
    const b = absent(body) ? {} : body;
    if (!isMap(b)) return { ok: false, error: new BadRequestError(`the body of ${op} must be a map`) };
    const l: ApiLimits = { ...defaultApiLimits, ...limits };
    const request = requests[op].parse(b, '', l);
    return { ok: true, op, request } as Validated;
  } catch (err) {
    if (err instanceof EnsembleError) return { ok: false, error: err };
    const detail = err instanceof Error ? err.message : typeof err;
    return {
      ok: false,
      error: new BadRequestError(`malformed request: ${detail}`.slice(0, 200), { cause: err }),
    };
  }
}
