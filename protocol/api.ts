/**
 * The request API: every operation's request body and result, and `validateRequest`, which turns
 * any decoded body into a well-typed request or a typed error.
 *
 * An operation is named by the last token of its subject (`P.api.<op>` or
 * `P.node.<id>.api.<op>`); its body travels in the envelope's `body` (see codec.ts). Conventions:
 * - Keys are paths (`/a/b`): absolute, no empty, `.` or `..` segments, no trailing slash, no
 *   control characters, at most `maxKeyBytes` UTF-8 bytes. Parents are implicit.
 * - Values and secrets are bytes (CBOR byte strings; a CBOR text string is taken as its UTF-8
 *   bytes; JSON forms in codec.ts).
 * - Counters (versions, revisions, sequence numbers, limits) are non-negative integers below 2^53.
 * - Writes may carry `client`: the session, its secret, the write's sequence number and the lowest
 *   sequence number whose answer the client has not yet seen (exactly-once, Raft thesis §6.3). A
 *   retried sequence number is answered from the session's table instead of being applied again.
 *   Writes without `client` are applied once per request that reaches the leader (no dedup).
 * - Reads are linearizable (ReadIndex) unless `serializable: true` asks for a local read.
 * - Unknown fields are ignored; `null` counts as absent for optional fields.
 */
import { BadPathError, BadRequestError, EnsembleError, TooLargeError, UnknownOpError } from './errors.ts';
import { isClientInbox, isToken } from './subjects.ts';

// ---------------------------------------------------------------------------------------------
// Shapes on the wire

/** Exactly-once tag of a write (Raft thesis §6.3). `lowSeq <= seq`. */
export interface ClientTag {
  /** The session id (from `sessionOpen`). */
  readonly session: string;
  /** The session's secret: a write in a session proves it knows the secret. */
  readonly secret: Uint8Array;
  /** This write's sequence number in the session. */
  readonly seq: number;
  /** The lowest sequence number whose answer the client has not yet received. */
  readonly lowSeq: number;
}

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

export interface PutRequest {
  readonly key: string;
  readonly value: Uint8Array;
  /** Fail with `EXISTS` if the key exists. */
  readonly ifAbsent?: boolean;
  /** Fail with `VERSION_MISMATCH` unless the key's version is this (0: absent). */
  readonly ifVersion?: number;
  /** Owned by the session of `client` (required then); deleted when the session ends. */
  readonly ephemeral?: boolean;
  readonly client?: ClientTag;
}

export interface DeleteRequest {
  /** With `subtree`, `/` deletes every key. */
  readonly key: string;
  /** Also delete every key below `key`. */
  readonly subtree?: boolean;
  readonly ifVersion?: number;
  readonly client?: ClientTag;
}

export interface ReadRequest {
  /** A local read on the node that answers, possibly stale (default: linearizable). */
  readonly serializable?: boolean;
  /** Read at this past revision (>= the compaction revision, else `COMPACTED`). */
  readonly revision?: number;
}

export interface GetRequest extends ReadRequest {
  readonly key: string;
}

/** Immediate children (keys and implied folders) of `key` (`/` for the top). */
export interface ListRequest extends ReadRequest {
  readonly key: string;
  /** At most this many names (the node may return fewer, with `more`). */
  readonly limit?: number;
  /** Continue after this name (the last name of the previous page). */
  readonly after?: string;
}

/** Keys starting with the raw string `prefix` (e.g. `/services/` or `/a/b`), in path order. */
export interface RangeRequest extends ReadRequest {
  readonly prefix: string;
  /** At most this many keys (the node may return fewer, with `more`). */
  readonly limit?: number;
  /** Continue after this key (the last key of the previous page). */
  readonly after?: string;
}

export type TxnOp =
  | ({ readonly op: 'put' } & Omit<PutRequest, 'client'>)
  | ({ readonly op: 'delete' } & Omit<DeleteRequest, 'client'>)
  | { readonly op: 'get'; readonly key: string };

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

/** If every compare holds, apply `success`, else `failure`; atomically, in one revision. */
export interface TxnRequest {
  readonly compare: readonly Compare[];
  readonly success: readonly TxnOp[];
  readonly failure: readonly TxnOp[];
  readonly client?: ClientTag;
}

/** Creates `prefix` + a 10-digit number from the parent's counter (never reused). */
export interface CreateSequentialRequest {
  readonly prefix: string;
  readonly value: Uint8Array;
  readonly ephemeral?: boolean;
  readonly client?: ClientTag;
}

export type StatusRequest = Record<string, never>;

/** Adds node `id` as a learner (it receives the log, does not vote); promote it afterwards. */
export interface MemberAddRequest {
  readonly id: string;
}

/** Turns learner `id` into a voter. */
export interface MemberPromoteRequest {
  readonly id: string;
}

export interface MemberRemoveRequest {
  readonly id: string;
}

/** Hands leadership to `to` (default: the most up-to-date voter) (thesis §3.10). */
export interface TransferLeaderRequest {
  readonly to?: string;
}

/**
 * Opens a session of `ttlMs`. `id` and `secret` are chosen by the client or, when absent, by the
 * node that proposes the session (never inside apply).
 */
export interface SessionOpenRequest {
  readonly ttlMs: number;
  readonly id?: string;
  readonly secret?: Uint8Array;
}

/** Proves the session alive (also published, without reply, on the keepalive subject). */
export interface SessionKeepaliveRequest {
  readonly id: string;
  readonly secret: Uint8Array;
}

/** Ends the session; its ephemeral keys are deleted in the same revision. */
export interface SessionCloseRequest {
  readonly id: string;
  readonly secret: Uint8Array;
}

/**
 * Starts a watch: events of one `key`, of keys starting with `prefix`, or of a `subtree` (the
 * path and below), from `fromRevision` on (default: the node's next revision), delivered to
 * `inbox` (the client's own inbox) as `WatchMessage`s. A watch belongs to a session (`session`,
 * `secret`) and ends with it. `prevValue` adds each key's previous value; `progressNotify`
 * marks the periodic progress heartbeats for the application too.
 */
export interface WatchRequest {
  readonly id: string;
  readonly key?: string;
  readonly prefix?: string;
  readonly subtree?: string;
  readonly fromRevision?: number;
  readonly prevValue?: boolean;
  readonly progressNotify?: boolean;
  readonly inbox: string;
  readonly session: string;
  readonly secret: Uint8Array;
}

export interface WatchCancelRequest {
  readonly id: string;
  readonly session: string;
  readonly secret: Uint8Array;
}

/**
 * Published (no reply) to the serving node's `watchAck` subject: the client consumed the watch's
 * messages up to `seq` (with the session's secret: nobody else moves a session's watches). `shared: true` says the client has subscribed to the watch's `group`
 * subject (from the watch result), so the node may move the watch onto that shared stream.
 */
export interface WatchAckRequest {
  readonly id: string;
  readonly session: string;
  readonly secret: Uint8Array;
  readonly seq: number;
  readonly shared?: boolean;
}

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
  readonly progress?: boolean;
  readonly events: readonly WatchEvent[];
}

/** Drops history at and below `revision` (watches and past reads below it get COMPACTED). */
export interface CompactRequest {
  readonly revision: number;
}

/** Every operation's request body. */
export interface ApiRequests {
  get: GetRequest;
  put: PutRequest;
  delete: DeleteRequest;
  list: ListRequest;
  range: RangeRequest;
  txn: TxnRequest;
  createSequential: CreateSequentialRequest;
  status: StatusRequest;
  memberAdd: MemberAddRequest;
  memberPromote: MemberPromoteRequest;
  memberRemove: MemberRemoveRequest;
  transferLeader: TransferLeaderRequest;
  sessionOpen: SessionOpenRequest;
  sessionKeepalive: SessionKeepaliveRequest;
  sessionClose: SessionCloseRequest;
  watch: WatchRequest;
  watchCancel: WatchCancelRequest;
  watchAck: WatchAckRequest;
  compact: CompactRequest;
}

export type Op = keyof ApiRequests;

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
  /** Protocol versions this node speaks. */
  readonly protocol: readonly number[];
  /** Open sessions (the first 1000), with their TTL and how many ephemeral keys they own. */
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
  sessionOpen: { readonly id: string; readonly secret: Uint8Array; readonly ttlMs: number };
  sessionKeepalive: { readonly ttlMs: number };
  sessionClose: { readonly deleted: number };
  /** `node`: the node serving the watch (acks and cancel go to it); `revision`: the first
   * revision the watch will deliver. */
  /** `group`: the subject of the shared stream this watch may join (see `WatchAckRequest`). */
  watch: { readonly id: string; readonly node: string; readonly revision: number; readonly group?: string };
  watchCancel: { readonly cancelled: boolean };
  watchAck: Record<string, never>;
  compact: { readonly compactRevision: number; readonly revision: number };
}

/**
 * How a node serves an op: `write` through the log on the leader; `read` by ReadIndex (or
 * locally when `serializable`); `admin` on the leader (membership, leader transfer); `local` on
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
  compact: 'write',
};

export const ops: readonly Op[] = Object.keys(opKinds) as Op[];

export const isOp = (s: unknown): s is Op => typeof s === 'string' && Object.hasOwn(opKinds, s);

// ---------------------------------------------------------------------------------------------
// Limits

/** Limits `validateRequest` enforces. The tree enforces the same in apply (storage/tree). */
export interface ApiLimits {
  /** UTF-8 bytes of a key path or prefix. */
  readonly maxKeyBytes: number;
  /** Bytes of one value. */
  readonly maxValueBytes: number;
  /** Bytes of all values of one request together. */
  readonly maxRequestBytes: number;
  /** Compares plus ops of one txn. */
  readonly maxTxnOps: number;
}

/** Defaults as etcd's: 1.5 MiB values, a little more for a whole request. */
export const defaultApiLimits: ApiLimits = {
  maxKeyBytes: 4096,
  maxValueBytes: 1.5 * 1024 * 1024,
  maxRequestBytes: 1.5 * 1024 * 1024 + 64 * 1024,
  maxTxnOps: 128,
};

/** Session ids: 1 to 128 printable ASCII characters. */
const SESSION_ID = /^[\x21-\x7e]{1,128}$/;
export const MAX_SECRET_BYTES = 256;
export const MAX_TTL_MS = 7 * 24 * 3600 * 1000;

// ---------------------------------------------------------------------------------------------
// Validation

type Obj = Record<string, unknown>;

const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array;
const isObj = (v: unknown): v is Obj =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !isBytes(v);
const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what paths must not hold
const FORBIDDEN = /[\u0000-\u001f\u007f]|\p{Surrogate}/u;

/**
 * Checks a key path (rules in the module comment). Throws `BadRequestError` for a non-string,
 * `TooLargeError` beyond `maxBytes`, `BadPathError` for a malformed path or `/` (unless
 * `allowRoot`). Same rules as storage/tree/path.ts's `checkPath`.
 */
export function checkKey(path: unknown, maxBytes: number, allowRoot = false): string {
  if (typeof path !== 'string') throw new BadRequestError('a path must be a string');
  const bytes = Buffer.byteLength(path);
  if (bytes > maxBytes)
    throw new TooLargeError(bytes, maxBytes, `path of ${bytes} bytes exceeds ${maxBytes}`);
  if (path === '/') {
    if (allowRoot) return path;
    throw new BadPathError(path, 'the root is not a key');
  }
  if (path.charCodeAt(0) !== 0x2f)
    throw new BadPathError(path, `path must start with "/": ${JSON.stringify(path)}`);
  if (FORBIDDEN.test(path))
    throw new BadPathError(path, 'path holds a control character or a lone surrogate');
  const segments = path.split('/');
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i];
    if (s === '' || s === '.' || s === '..') {
      throw new BadPathError(path, `path has an empty, "." or ".." segment: ${JSON.stringify(path)}`);
    }
  }
  return path;
}

/** Checks a raw prefix: a string starting with `/`, no control characters, at most `maxBytes`. */
export function checkPrefix(prefix: unknown, maxBytes: number): string {
  if (typeof prefix !== 'string') throw new BadRequestError('a prefix must be a string');
  const bytes = Buffer.byteLength(prefix);
  if (bytes > maxBytes)
    throw new TooLargeError(bytes, maxBytes, `prefix of ${bytes} bytes exceeds ${maxBytes}`);
  if (prefix.charCodeAt(0) !== 0x2f) throw new BadPathError(prefix, 'prefix must start with "/"');
  if (FORBIDDEN.test(prefix))
    throw new BadPathError(prefix, 'prefix holds a control character or a lone surrogate');
  return prefix;
}

const absent = (v: unknown) => v === undefined || v === null;

function optBool(o: Obj, field: string): boolean | undefined {
  const v = o[field];
  if (absent(v)) return undefined;
  if (typeof v !== 'boolean') throw new BadRequestError(`${field} must be a boolean`);
  return v;
}

function optCount(o: Obj, field: string, min = 0): number | undefined {
  const v = o[field];
  if (absent(v)) return undefined;
  if (!isCount(v) || v < min) throw new BadRequestError(`${field} must be an integer in [${min}, 2^53)`);
  return v;
}

function count(o: Obj, field: string, min = 0): number {
  const v = optCount(o, field, min);
  if (v === undefined) throw new BadRequestError(`${field} is required`);
  return v;
}

function optString(o: Obj, field: string, maxBytes: number): string | undefined {
  const v = o[field];
  if (absent(v)) return undefined;
  if (typeof v !== 'string') throw new BadRequestError(`${field} must be a string`);
  const bytes = Buffer.byteLength(v);
  if (bytes > maxBytes)
    throw new TooLargeError(bytes, maxBytes, `${field} of ${bytes} bytes exceeds ${maxBytes}`);
  return v;
}

/** Bytes from a byte string, or the UTF-8 of a text string. */
function optBytes(o: Obj, field: string, maxBytes: number): Uint8Array | undefined {
  const v = o[field];
  if (absent(v)) return undefined;
  let bytes: Uint8Array;
  if (isBytes(v)) bytes = v;
  else if (typeof v === 'string') bytes = Buffer.from(v, 'utf8');
  else throw new BadRequestError(`${field} must be bytes`);
  if (bytes.length > maxBytes) {
    throw new TooLargeError(bytes.length, maxBytes, `${field} of ${bytes.length} bytes exceeds ${maxBytes}`);
  }
  return bytes;
}

function bytes(o: Obj, field: string, maxBytes: number): Uint8Array {
  const v = optBytes(o, field, maxBytes);
  if (v === undefined) throw new BadRequestError(`${field} is required`);
  return v;
}

function sessionId(v: unknown, field: string): string {
  if (typeof v !== 'string' || !SESSION_ID.test(v)) {
    throw new BadRequestError(`${field}: a session id is 1 to 128 printable ASCII characters`);
  }
  return v;
}

function secret(o: Obj, required: true): Uint8Array;
function secret(o: Obj, required: false): Uint8Array | undefined;
function secret(o: Obj, required: boolean): Uint8Array | undefined {
  const s = optBytes(o, 'secret', MAX_SECRET_BYTES);
  if (s === undefined) {
    if (required) throw new BadRequestError('secret is required');
    return undefined;
  }
  if (s.length === 0) throw new BadRequestError('secret must not be empty');
  return s;
}

function nodeId(v: unknown, field: string): string {
  if (!isToken(v)) throw new BadRequestError(`${field} must be a node id ([A-Za-z0-9_-]{1,64})`);
  return v;
}

function clientTag(o: Obj): ClientTag | undefined {
  const c = o.client;
  if (absent(c)) return undefined;
  if (!isObj(c)) throw new BadRequestError('client must be a map');
  const session = sessionId(c.session, 'client.session');
  const sec = secret(c, true);
  const seq = count(c, 'seq');
  const lowSeq = count(c, 'lowSeq');
  if (lowSeq > seq) throw new BadRequestError(`client.lowSeq ${lowSeq} is above client.seq ${seq}`);
  return { session, secret: sec, seq, lowSeq };
}

/** Sets only the defined fields, so requests carry no `undefined` keys. */
function pick<T extends object>(base: T, extra: Record<string, unknown>): T {
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) out[k] = v;
  return out as T;
}

function readFields(o: Obj): ReadRequest {
  return pick<ReadRequest>(
    {},
    { serializable: optBool(o, 'serializable'), revision: optCount(o, 'revision', 1) },
  );
}

function putFields(o: Obj, limits: ApiLimits): Omit<PutRequest, 'client'> {
  const key = checkKey(o.key, limits.maxKeyBytes);
  const value = bytes(o, 'value', limits.maxValueBytes);
  const ifAbsent = optBool(o, 'ifAbsent');
  const ifVersion = optCount(o, 'ifVersion');
  const ephemeral = optBool(o, 'ephemeral');
  return pick(
    { key, value },
    { ifAbsent: ifAbsent || undefined, ifVersion, ephemeral: ephemeral || undefined },
  );
}

function deleteFields(o: Obj, limits: ApiLimits): Omit<DeleteRequest, 'client'> {
  const subtree = optBool(o, 'subtree') ?? false;
  const key = checkKey(o.key, limits.maxKeyBytes, subtree);
  return pick({ key }, { subtree: subtree || undefined, ifVersion: optCount(o, 'ifVersion') });
}

const TARGETS: ReadonlySet<string> = new Set(['version', 'modRevision', 'createRevision', 'value', 'exists']);
const RESULTS: ReadonlySet<string> = new Set(['eq', 'ne', 'lt', 'gt']);

function compare(c: unknown, limits: ApiLimits): Compare {
  if (!isObj(c)) throw new BadRequestError('a compare must be a map');
  const key = checkKey(c.key, limits.maxKeyBytes);
  const { target, result } = c;
  if (typeof target !== 'string' || !TARGETS.has(target)) {
    throw new BadRequestError('compare target must be version, modRevision, createRevision, value or exists');
  }
  if (typeof result !== 'string' || !RESULTS.has(result)) {
    throw new BadRequestError('compare result must be eq, ne, lt or gt');
  }
  let value: Compare['value'];
  if (target === 'value') value = bytes(c, 'value', limits.maxValueBytes);
  else if (target === 'exists') {
    if (typeof c.value !== 'boolean') throw new BadRequestError('an exists compare needs a boolean value');
    if (result !== 'eq' && result !== 'ne') throw new BadRequestError('an exists compare takes eq or ne');
    value = c.value;
  } else {
    if (!isCount(c.value))
      throw new BadRequestError(`a ${target} compare needs a non-negative integer value`);
    value = c.value;
  }
  return { key, target: target as CompareTarget, result: result as CompareResult, value };
}

function txnOp(x: unknown, limits: ApiLimits): TxnOp {
  if (!isObj(x)) throw new BadRequestError('a txn op must be a map');
  switch (x.op) {
    case 'put':
      return { op: 'put', ...putFields(x, limits) };
    case 'delete':
      return { op: 'delete', ...deleteFields(x, limits) };
    case 'get':
      return { op: 'get', key: checkKey(x.key, limits.maxKeyBytes) };
    default: {
      const name = typeof x.op === 'string' ? x.op.slice(0, 64) : typeof x.op;
      throw new UnknownOpError(name, `unknown txn op ${JSON.stringify(name)}`);
    }
  }
}

function list(o: Obj, field: string): unknown[] {
  const v = o[field];
  if (absent(v)) return [];
  if (!Array.isArray(v)) throw new BadRequestError(`${field} must be an array`);
  return v;
}

function needsSession(ephemeral: boolean | undefined, client: ClientTag | undefined): void {
  if (ephemeral && client === undefined)
    throw new BadRequestError('an ephemeral key needs a session (client)');
}

type Validators = { readonly [K in Op]: (o: Obj, limits: ApiLimits) => ApiRequests[K] };

const validators: Validators = {
  get: (o, l) => ({ key: checkKey(o.key, l.maxKeyBytes), ...readFields(o) }),
  put(o, l) {
    const client = clientTag(o);
    const put = putFields(o, l);
    needsSession(put.ephemeral, client);
    return pick<PutRequest>(put, { client });
  },
  delete: (o, l) => pick<DeleteRequest>(deleteFields(o, l), { client: clientTag(o) }),
  list: (o, l) =>
    pick<ListRequest>(
      { key: checkKey(o.key ?? '/', l.maxKeyBytes, true), ...readFields(o) },
      { limit: optCount(o, 'limit', 1), after: optString(o, 'after', l.maxKeyBytes) },
    ),
  range: (o, l) =>
    pick<RangeRequest>(
      { prefix: checkPrefix(o.prefix, l.maxKeyBytes), ...readFields(o) },
      { limit: optCount(o, 'limit', 1), after: optString(o, 'after', l.maxKeyBytes) },
    ),
  txn(o, l) {
    const client = clientTag(o);
    const compares = list(o, 'compare');
    const success = list(o, 'success');
    const failure = list(o, 'failure');
    const n = compares.length + success.length + failure.length;
    if (n > l.maxTxnOps)
      throw new TooLargeError(n, l.maxTxnOps, `txn of ${n} compares and ops exceeds ${l.maxTxnOps}`);
    const txn: TxnRequest = {
      compare: compares.map((c) => compare(c, l)),
      success: success.map((x) => txnOp(x, l)),
      failure: failure.map((x) => txnOp(x, l)),
    };
    let total = 0;
    for (const x of [...txn.success, ...txn.failure]) {
      if (x.op === 'put') {
        total += x.value.length;
        needsSession(x.ephemeral, client);
      }
    }
    if (total > l.maxRequestBytes) {
      throw new TooLargeError(
        total,
        l.maxRequestBytes,
        `txn values of ${total} bytes exceed ${l.maxRequestBytes}`,
      );
    }
    return pick<TxnRequest>(txn, { client });
  },
  createSequential(o, l) {
    const prefix = o.prefix;
    if (typeof prefix !== 'string') throw new BadRequestError('prefix must be a string');
    checkKey(`${prefix}0000000000`, l.maxKeyBytes);
    const client = clientTag(o);
    const ephemeral = optBool(o, 'ephemeral') || undefined;
    needsSession(ephemeral, client);
    return pick<CreateSequentialRequest>(
      { prefix, value: bytes(o, 'value', l.maxValueBytes) },
      { ephemeral, client },
    );
  },
  status: () => ({}),
  memberAdd: (o) => ({ id: nodeId(o.id, 'id') }),
  memberPromote: (o) => ({ id: nodeId(o.id, 'id') }),
  memberRemove: (o) => ({ id: nodeId(o.id, 'id') }),
  transferLeader: (o) =>
    pick<TransferLeaderRequest>({}, { to: absent(o.to) ? undefined : nodeId(o.to, 'to') }),
  sessionOpen(o) {
    const ttlMs = count(o, 'ttlMs', 1);
    if (ttlMs > MAX_TTL_MS) throw new BadRequestError(`ttlMs must be at most ${MAX_TTL_MS}`);
    return pick<SessionOpenRequest>(
      { ttlMs },
      { id: absent(o.id) ? undefined : sessionId(o.id, 'id'), secret: secret(o, false) },
    );
  },
  sessionKeepalive: (o) => ({ id: sessionId(o.id, 'id'), secret: secret(o, true) }),
  sessionClose: (o) => ({ id: sessionId(o.id, 'id'), secret: secret(o, true) }),
  watch(o, l) {
    const targets = ['key', 'prefix', 'subtree'].filter((f) => !absent(o[f]));
    if (targets.length !== 1) throw new BadRequestError('a watch takes exactly one of key, prefix, subtree');
    const inbox = o.inbox;
    if (!isClientInbox(inbox))
      throw new BadRequestError('inbox must be a literal subject below the client inbox');
    return pick<WatchRequest>(
      { id: watchId(o.id), inbox, session: sessionId(o.session, 'session'), secret: secret(o, true) },
      {
        key: absent(o.key) ? undefined : checkKey(o.key, l.maxKeyBytes),
        prefix: absent(o.prefix) ? undefined : checkPrefix(o.prefix, l.maxKeyBytes),
        subtree: absent(o.subtree) ? undefined : checkKey(o.subtree, l.maxKeyBytes, true),
        fromRevision: optCount(o, 'fromRevision', 1),
        prevValue: optBool(o, 'prevValue'),
        progressNotify: optBool(o, 'progressNotify'),
      },
    );
  },
  watchCancel: (o) => ({
    id: watchId(o.id),
    session: sessionId(o.session, 'session'),
    secret: secret(o, true),
  }),
  watchAck: (o) =>
    pick<WatchAckRequest>(
      {
        id: watchId(o.id),
        session: sessionId(o.session, 'session'),
        secret: secret(o, true),
        seq: count(o, 'seq'),
      },
      { shared: optBool(o, 'shared') },
    ),
  compact: (o) => ({ revision: count(o, 'revision', 1) }),
};

function watchId(v: unknown): string {
  if (!isToken(v)) throw new BadRequestError('a watch id is one subject token ([A-Za-z0-9_-]{1,64})');
  return v;
}

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
    if (!isObj(b)) return { ok: false, error: new BadRequestError(`the body of ${op} must be a map`) };
    const l: ApiLimits = { ...defaultApiLimits, ...limits };
    const request = validators[op](b, l);
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
