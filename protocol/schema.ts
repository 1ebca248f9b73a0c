/**
 * The rules a request or a log command must follow, written once per field, and the small
 * language that combines them: each rule checks a decoded value (anything a CBOR or JSON decoder
 * can produce) and returns it normalised, or throws the typed error to answer with; the
 * TypeScript type of whatever a rule accepts is inferred from it (`Infer`), so the types and the
 * validator of every op come from one table (api.ts for requests, command.ts for log commands).
 *
 * Conventions every rule follows:
 * - `null` counts as absent; an absent optional field is left out of the result (never
 *   `undefined`), and so are unknown fields.
 * - Counters (versions, revisions, sequence numbers, limits) are non-negative integers below 2^53.
 * - Byte fields accept a CBOR byte string, or a text string taken as its UTF-8 bytes.
 * - Keys are paths (`/a/b`): absolute, no empty, `.` or `..` segments, no trailing slash, no
 *   control characters or lone surrogates, at most `maxKeyBytes` UTF-8 bytes. Parents are implicit.
 * Errors: `BAD_REQUEST` (shape, type), `TOO_LARGE` (beyond a limit), `BAD_PATH` (a malformed path),
 * `UNKNOWN_OP` (an op this build does not know).
 */
import { BadPathError, BadRequestError, TooLargeError, UnknownOpError } from './errors.ts';
import { isClientInbox, isToken } from './subjects.ts';

/** Limits every request and command is checked against (the API on receipt, the tree in apply). */
export interface ApiLimits {
  /** UTF-8 bytes of a key path or prefix. */
  readonly maxKeyBytes: number;
  /** Bytes of one value. */
  readonly maxValueBytes: number;
  /** Bytes of all values of one request together. */
  readonly maxRequestBytes: number;
  /** Compares plus ops of one txn. */
  readonly maxTxnOps: number;
  /** Segments of a key path: bounds the ancestor checks every put makes. */
  readonly maxPathDepth: number;
}

/** Defaults as etcd's: 1.5 MiB values, a little more for a whole request. */
export const defaultApiLimits: ApiLimits = {
  maxKeyBytes: 4096,
  maxValueBytes: 1.5 * 1024 * 1024,
  maxRequestBytes: 1.5 * 1024 * 1024 + 64 * 1024,
  maxTxnOps: 128,
  maxPathDepth: 128,
};

export const MAX_SECRET_BYTES = 256;
export const MAX_TTL_MS = 7 * 24 * 3600 * 1000;
/** Session ids: 1 to 128 printable ASCII characters. */
const SESSION_ID = /^[\x21-\x7e]{1,128}$/;

// ---------------------------------------------------------------------------------------------
// The language

/** Checks a value found at `at` (a field path, for messages); returns it normalised or throws. */
export interface Rule<T, Optional extends boolean = boolean> {
  readonly optional: Optional;
  readonly parse: (value: unknown, at: string, limits: ApiLimits) => T;
}

type Shape = { readonly [field: string]: Rule<unknown> };
type Value<R> = R extends Rule<infer T> ? T : never;
type Flat<T> = { [K in keyof T]: T[K] } & {};

/** The object type a shape accepts: required fields, and optional ones marked `?`. */
export type Infer<S extends Shape> = Flat<
  { readonly [K in keyof S as S[K] extends Rule<unknown, true> ? never : K]: Value<S[K]> } & {
    readonly [K in keyof S as S[K] extends Rule<unknown, true> ? K : never]?: Exclude<Value<S[K]>, undefined>;
  }
>;

/** What a rule accepts. */
export type Accepts<R> = R extends Rule<infer T> ? T : never;

export const absent = (v: unknown): v is null | undefined => v === undefined || v === null;
export const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array;
export const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !isBytes(v);
export const isCount = (n: unknown): n is number =>
  typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

const rule = <T>(parse: Rule<T>['parse']): Rule<T, false> => ({ optional: false, parse });

/** The field may be absent (or null): then it is left out. */
export const opt = <T>(r: Rule<T>): Rule<T | undefined, true> => ({
  optional: true,
  parse: (v, at, l) => (absent(v) ? undefined : r.parse(v, at, l)),
});

/** A map with these fields (others are ignored); `check` sees the result for rules across fields. */
export function obj<S extends Shape>(
  shape: S,
  check?: (o: Infer<S>, limits: ApiLimits) => void,
): Rule<Infer<S>, false> {
  const fields = Object.entries(shape);
  return rule((v, at, l) => {
    if (!isMap(v)) throw new BadRequestError(`${at || 'the body'} must be a map`);
    const out: Record<string, unknown> = {};
    for (const [name, r] of fields) {
      const x = r.parse(v[name], at ? `${at}.${name}` : name, l);
      if (x !== undefined) out[name] = x;
    }
    check?.(out as Infer<S>, l);
    return out as Infer<S>;
  });
}

/** A map whose field `op` names which of `cases` it follows: `{ op, ...fields }`. */
export function oneOf<C extends { readonly [op: string]: Rule<object> }>(
  cases: C,
): Rule<{ [K in keyof C]: Flat<{ readonly op: K } & Accepts<C[K]>> }[keyof C], false> {
  return rule((v, at, l) => {
    if (!isMap(v)) throw new BadRequestError(`${at} must be a map`);
    const op = v.op;
    if (typeof op !== 'string' || !Object.hasOwn(cases, op)) {
      const name = typeof op === 'string' ? op.slice(0, 64) : typeof op;
      throw new UnknownOpError(name, `${at}: unknown op ${JSON.stringify(name)}`);
    }
    return { op, ...(cases[op]!.parse(v, at, l) as object) } as never;
  });
}

/** An array of items (absent: empty), of at most `max(limits)` items, checked before any item is. */
export const list = <T>(item: Rule<T>, max?: (l: ApiLimits) => number): Rule<readonly T[], false> =>
  rule((v, at, l) => {
    if (absent(v)) return [];
    if (!Array.isArray(v)) throw new BadRequestError(`${at} must be an array`);
    const limit = max?.(l);
    if (limit !== undefined && v.length > limit)
      throw new TooLargeError(v.length, limit, `${at} of ${v.length} items exceeds ${limit}`);
    return v.map((x, i) => item.parse(x, `${at}[${i}]`, l));
  });

/** Exactly this value (a command's `op`). */
export const literal = <T extends string>(value: T): Rule<T, false> =>
  rule((v, at) => {
    if (v !== value) throw new BadRequestError(`${at} must be ${JSON.stringify(value)}`);
    return value;
  });

// ---------------------------------------------------------------------------------------------
// Fields

export const bool: Rule<boolean, false> = rule((v, at) => {
  if (typeof v !== 'boolean') throw new BadRequestError(`${at} must be a boolean`);
  return v;
});

/** An optional boolean kept only when true (`ifAbsent`, `ephemeral`, `subtree`, …). */
export const flag: Rule<boolean | undefined, true> = {
  optional: true,
  parse: (v, at, l) => (absent(v) ? undefined : bool.parse(v, at, l) || undefined),
};

/** A counter of at least `min`. */
export const count = (min = 0): Rule<number, false> =>
  rule((v, at) => {
    if (!isCount(v) || v < min) throw new BadRequestError(`${at} must be an integer in [${min}, 2^53)`);
    return v;
  });

/** A string of at most `maxKeyBytes` UTF-8 bytes (a page cursor). */
export const text: Rule<string, false> = rule((v, at, l) => {
  if (typeof v !== 'string') throw new BadRequestError(`${at} must be a string`);
  const n = Buffer.byteLength(v);
  if (n > l.maxKeyBytes)
    throw new TooLargeError(n, l.maxKeyBytes, `${at} of ${n} bytes exceeds ${l.maxKeyBytes}`);
  return v;
});

/** Bytes (or text as its UTF-8) of at most `max(limits)` bytes. */
export const bytes = (max: (l: ApiLimits) => number, min = 0): Rule<Uint8Array, false> =>
  rule((v, at, l) => {
    let b: Uint8Array;
    if (isBytes(v)) b = v;
    else if (typeof v === 'string') b = Buffer.from(v, 'utf8');
    else throw new BadRequestError(`${at} must be bytes`);
    const limit = max(l);
    if (b.length > limit)
      throw new TooLargeError(b.length, limit, `${at} of ${b.length} bytes exceeds ${limit}`);
    if (b.length < min)
      throw new BadRequestError(`${at} must hold at least ${min} byte${min === 1 ? '' : 's'}`);
    return b;
  });

export const value = bytes((l) => l.maxValueBytes);
export const secret = bytes(() => MAX_SECRET_BYTES, 1);

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what paths must not hold
const FORBIDDEN = /[\u0000-\u001f\u007f]|\p{Surrogate}/u;

/**
 * Checks a key path (rules in the module comment). Throws `BadRequestError` for a non-string,
 * `TooLargeError` beyond `maxBytes`, `BadPathError` for a malformed path, one deeper than
 * `maxDepth` segments, or `/` (unless `allowRoot`).
 */
export function checkKey(
  path: unknown,
  maxBytes: number,
  allowRoot = false,
  maxDepth = defaultApiLimits.maxPathDepth,
): string {
  if (typeof path !== 'string') throw new BadRequestError('a path must be a string');
  const n = Buffer.byteLength(path);
  if (n > maxBytes) throw new TooLargeError(n, maxBytes, `path of ${n} bytes exceeds ${maxBytes}`);
  if (path === '/') {
    if (allowRoot) return path;
    throw new BadPathError(path, 'the root is not a key');
  }
  if (path.charCodeAt(0) !== 0x2f)
    throw new BadPathError(path, `path must start with "/": ${JSON.stringify(path)}`);
  if (FORBIDDEN.test(path))
    throw new BadPathError(path, 'path holds a control character or a lone surrogate');
  const segments = path.split('/');
  if (segments.length - 1 > maxDepth)
    throw new BadPathError(path, `path of ${segments.length - 1} segments is deeper than ${maxDepth}`);
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i];
    if (s === '' || s === '.' || s === '..')
      throw new BadPathError(path, `path has an empty, "." or ".." segment: ${JSON.stringify(path)}`);
  }
  return path;
}

/** Checks a raw prefix: a string starting with `/`, no control characters, at most `maxBytes`. */
export function checkPrefix(prefix: unknown, maxBytes: number): string {
  if (typeof prefix !== 'string') throw new BadRequestError('a prefix must be a string');
  const n = Buffer.byteLength(prefix);
  if (n > maxBytes) throw new TooLargeError(n, maxBytes, `prefix of ${n} bytes exceeds ${maxBytes}`);
  if (prefix.charCodeAt(0) !== 0x2f) throw new BadPathError(prefix, 'prefix must start with "/"');
  if (FORBIDDEN.test(prefix))
    throw new BadPathError(prefix, 'prefix holds a control character or a lone surrogate');
  return prefix;
}

/** A key path; with `allowRoot`, `/` too (a subtree delete, a listing). */
export const key = (allowRoot = false): Rule<string, false> =>
  rule((v, _at, l) => checkKey(v, l.maxKeyBytes, allowRoot, l.maxPathDepth));

/** A raw key prefix (`/services/`). */
export const prefix: Rule<string, false> = rule((v, _at, l) => checkPrefix(v, l.maxKeyBytes));

/** The prefix of a sequential key: the key it makes, with its 10 digits, must be a valid path. */
export const sequentialPrefix: Rule<string, false> = rule((v, at, l) => {
  if (typeof v !== 'string') throw new BadRequestError(`${at} must be a string`);
  checkKey(`${v}0000000000`, l.maxKeyBytes, false, l.maxPathDepth);
  return v;
});

export const sessionId: Rule<string, false> = rule((v, at) => {
  if (typeof v !== 'string' || !SESSION_ID.test(v))
    throw new BadRequestError(`${at}: a session id is 1 to 128 printable ASCII characters`);
  return v;
});

export const ttlMs: Rule<number, false> = rule((v, at, l) => {
  const n = count(1).parse(v, at, l);
  if (n > MAX_TTL_MS) throw new BadRequestError(`${at} must be at most ${MAX_TTL_MS}`);
  return n;
});

/** A node id or a watch id: one subject token ([A-Za-z0-9_-]{1,64}). */
export const token = (what: string): Rule<string, false> =>
  rule((v, at) => {
    if (!isToken(v)) throw new BadRequestError(`${at} must be a ${what} ([A-Za-z0-9_-]{1,64})`);
    return v;
  });

/** A NATS user name a grant names: 1 to 128 characters of `[A-Za-z0-9_.@-]` (nkeys included). */
export const userName: Rule<string, false> = rule((v, at) => {
  if (typeof v !== 'string' || !/^[A-Za-z0-9_.@-]{1,128}$/.test(v))
    throw new BadRequestError(`${at} must be a NATS user name ([A-Za-z0-9_.@-]{1,128})`);
  return v;
});

/** A literal subject below a client's inbox: where a node may deliver on a client's behalf. */
export const inbox: Rule<string, false> = rule((v, at) => {
  if (!isClientInbox(v)) throw new BadRequestError(`${at} must be a literal subject below the client inbox`);
  return v;
});

/** An op name of `ops`: `UNKNOWN_OP` otherwise. */
export function opName<O extends string>(ops: readonly O[], v: unknown, what = 'operation'): O {
  if (typeof v === 'string' && (ops as readonly string[]).includes(v)) return v as O;
  const name = typeof v === 'string' ? v.slice(0, 64) : String(typeof v);
  throw new UnknownOpError(name, `unknown ${what} ${JSON.stringify(name)}`);
}
