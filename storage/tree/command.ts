/**
 * Validation of commands. A command reaches apply from the log, so it may be anything: this
 * turns it into a well-typed `Command` or throws the error that becomes its outcome
 * (`BAD_REQUEST`, `UNKNOWN_OP`, `TOO_LARGE`, `BAD_PATH`). Unknown extra fields are ignored.
 */
import { BadRequestError, TooLargeError, UnknownOpError } from '../../protocol/errors.ts';
import { encode, isBytes, isIndex, tryDecode } from '../codec.ts';
import { checkPath } from './path.ts';
import type { ClientTag, Command, Compare, DeleteOp, GetOp, PutOp, TreeLimits, TxnOp } from './types.ts';

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !isBytes(v);

const SESSION_ID = /^[\x21-\x7e]{1,128}$/;
const MAX_TTL_MS = 7 * 24 * 3600 * 1000;

function bool(o: Obj, field: string): boolean | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new BadRequestError(`${field} must be a boolean`);
  return v;
}

function count(o: Obj, field: string): number | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  if (!isIndex(v)) throw new BadRequestError(`${field} must be a non-negative integer`);
  return v;
}

function value(o: Obj, limits: TreeLimits): Uint8Array {
  const v = o.value;
  if (!isBytes(v)) throw new BadRequestError('value must be a byte string');
  if (v.length > limits.maxValueBytes) {
    throw new TooLargeError(
      v.length,
      limits.maxValueBytes,
      `value of ${v.length} bytes exceeds ${limits.maxValueBytes}`,
    );
  }
  return v;
}

export function checkSessionId(id: unknown): string {
  if (typeof id !== 'string' || !SESSION_ID.test(id)) {
    throw new BadRequestError('a session id is 1 to 128 printable ASCII characters');
  }
  return id;
}

function client(o: Obj): ClientTag | undefined {
  const c = o.client;
  if (c === undefined || c === null) return undefined;
  if (!isObj(c)) throw new BadRequestError('client must be a map');
  const session = checkSessionId(c.session);
  const seq = count(c, 'seq');
  const lowSeq = count(c, 'lowSeq');
  if (seq === undefined || lowSeq === undefined) throw new BadRequestError('client needs seq and lowSeq');
  if (lowSeq > seq) throw new BadRequestError(`client lowSeq ${lowSeq} above seq ${seq}`);
  return { session, seq, lowSeq };
}

function putOp(o: Obj, limits: TreeLimits): PutOp {
  const key = checkPath(o.key, limits.maxKeyBytes);
  const v = value(o, limits);
  const op: { -readonly [K in keyof PutOp]: PutOp[K] } = { op: 'put', key, value: v };
  const ifAbsent = bool(o, 'ifAbsent');
  const ifVersion = count(o, 'ifVersion');
  const ephemeral = bool(o, 'ephemeral');
  if (ifAbsent) op.ifAbsent = true;
  if (ifVersion !== undefined) op.ifVersion = ifVersion;
  if (ephemeral) op.ephemeral = true;
  return op;
}

function deleteOp(o: Obj, limits: TreeLimits): DeleteOp {
  const subtree = bool(o, 'subtree') ?? false;
  const key = checkPath(o.key, limits.maxKeyBytes, subtree);
  const op: { -readonly [K in keyof DeleteOp]: DeleteOp[K] } = { op: 'delete', key };
  const ifVersion = count(o, 'ifVersion');
  if (subtree) op.subtree = true;
  if (ifVersion !== undefined) op.ifVersion = ifVersion;
  return op;
}

function getOp(o: Obj, limits: TreeLimits): GetOp {
  return { op: 'get', key: checkPath(o.key, limits.maxKeyBytes) };
}

const TARGETS = new Set(['version', 'modRevision', 'createRevision', 'value', 'exists']);
const RESULTS = new Set(['eq', 'ne', 'lt', 'gt']);

function compare(c: unknown, limits: TreeLimits): Compare {
  if (!isObj(c)) throw new BadRequestError('a compare must be a map');
  const key = checkPath(c.key, limits.maxKeyBytes);
  const { target, result } = c;
  if (typeof target !== 'string' || !TARGETS.has(target)) throw new BadRequestError('bad compare target');
  if (typeof result !== 'string' || !RESULTS.has(result)) throw new BadRequestError('bad compare result');
  const v = c.value;
  if (target === 'value') {
    if (!isBytes(v)) throw new BadRequestError('a value compare needs a byte string');
  } else if (target === 'exists') {
    if (typeof v !== 'boolean') throw new BadRequestError('an exists compare needs a boolean');
    if (result !== 'eq' && result !== 'ne') throw new BadRequestError('an exists compare takes eq or ne');
  } else if (!isIndex(v)) {
    throw new BadRequestError(`a ${target} compare needs a non-negative integer`);
  }
  return { key, target, result, value: v } as Compare;
}

function txnOp(o: unknown, limits: TreeLimits): TxnOp {
  if (!isObj(o)) throw new BadRequestError('a txn op must be a map');
  switch (o.op) {
    case 'put':
      return putOp(o, limits);
    case 'delete':
      return deleteOp(o, limits);
    case 'get':
      return getOp(o, limits);
    default:
      throw new UnknownOpError(String(o.op), `unknown txn op ${JSON.stringify(String(o.op))}`);
  }
}

function list(o: Obj, field: string): unknown[] {
  const v = o[field];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new BadRequestError(`${field} must be an array`);
  return v;
}

/**
 * Turns what a log entry carries (a command object or its CBOR bytes) into a `Command`.
 * Throws `BadRequestError`, `UnknownOpError`, `TooLargeError` or `BadPathError`.
 */
export function decodeCommand(input: unknown, limits: TreeLimits): Command {
  let raw = input;
  if (isBytes(input)) {
    if (input.length > limits.maxRequestBytes) {
      throw new TooLargeError(
        input.length,
        limits.maxRequestBytes,
        `command of ${input.length} bytes exceeds ${limits.maxRequestBytes}`,
      );
    }
    const decoded = tryDecode(input);
    if (!decoded.ok) throw new BadRequestError(`undecodable command: ${decoded.error}`);
    raw = decoded.value;
  }
  if (!isObj(raw)) throw new BadRequestError('a command must be a map');
  const o = raw;
  const tag = client(o);
  const withClient = <T extends object>(c: T): T => (tag === undefined ? c : { ...c, client: tag });
  switch (o.op) {
    case 'put':
      return withClient(putOp(o, limits));
    case 'delete':
      return withClient(deleteOp(o, limits));
    case 'createSequential': {
      const prefix = o.prefix;
      if (typeof prefix !== 'string') throw new BadRequestError('prefix must be a string');
      checkPath(`${prefix}0000000000`, limits.maxKeyBytes);
      const v = value(o, limits);
      const ephemeral = bool(o, 'ephemeral');
      return withClient({ op: 'createSequential', prefix, value: v, ...(ephemeral ? { ephemeral } : {}) });
    }
    case 'txn': {
      const compares = list(o, 'compare');
      const success = list(o, 'success');
      const failure = list(o, 'failure');
      const ops = compares.length + success.length + failure.length;
      if (ops > limits.maxTxnOps) {
        throw new TooLargeError(
          ops,
          limits.maxTxnOps,
          `txn of ${ops} compares and ops exceeds ${limits.maxTxnOps}`,
        );
      }
      const cmd = {
        op: 'txn' as const,
        compare: compares.map((c) => compare(c, limits)),
        success: success.map((x) => txnOp(x, limits)),
        failure: failure.map((x) => txnOp(x, limits)),
      };
      let bytes = 0;
      for (const x of [...cmd.success, ...cmd.failure]) if (x.op === 'put') bytes += x.value.length;
      if (bytes > limits.maxRequestBytes) {
        throw new TooLargeError(
          bytes,
          limits.maxRequestBytes,
          `txn values of ${bytes} bytes exceed ${limits.maxRequestBytes}`,
        );
      }
      return withClient(cmd);
    }
    case 'sessionOpen': {
      const id = checkSessionId(o.id);
      const secret = o.secret;
      if (!isBytes(secret) || secret.length === 0 || secret.length > 256) {
        throw new BadRequestError('secret must be 1 to 256 bytes');
      }
      const ttlMs = o.ttlMs;
      if (!isIndex(ttlMs) || ttlMs < 1 || ttlMs > MAX_TTL_MS) {
        throw new BadRequestError(`ttlMs must be an integer in [1, ${MAX_TTL_MS}]`);
      }
      return { op: 'sessionOpen', id, secret, ttlMs };
    }
    case 'sessionClose':
    case 'sessionExpire':
      return { op: o.op, id: checkSessionId(o.id) };
    case 'compact': {
      const revision = count(o, 'revision');
      if (revision === undefined) throw new BadRequestError('compact needs a revision');
      return { op: 'compact', revision };
    }
    default:
      throw new UnknownOpError(
        typeof o.op === 'string' ? o.op : String(o.op),
        `unknown operation ${JSON.stringify(String(o.op))}`,
      );
  }
}

/** Encodes a command as the CBOR bytes a log entry can carry. Throws `TypeError`. */
export const encodeCommand = (c: Command): Uint8Array => encode(c);
