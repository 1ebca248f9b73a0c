/**
 * The one wire codec: envelopes in plain RFC 8949 CBOR, or JSON when a request asks for it.
 *
 * Envelopes (every message, client and peer):
 * - request, keepalive, peer frame: `{ v, cluster, body }`
 * - reply: `{ v, cluster, result }` or `{ v, cluster, error: { code, message, ...extra } }`
 * `v` is the protocol version (`PROTOCOL_VERSION`), `cluster` the cluster id.
 *
 * CBOR: string-keyed maps, byte strings for bytes, integers for counters; no tags at all (no cbor-x
 * records, structures or typed-array tags), so any language's CBOR library reads it. Incoming CBOR
 * is checked to be exactly that before it is decoded (`checkPlainCbor`): well-formed, one item,
 * no tags (except the self-describe tag 55799), text-string map keys (never `__proto__`), valid
 * UTF-8, nesting at most `MAX_DEPTH` deep.
 *
 * JSON: chosen by the NATS header `Content-Type: application/json`, or, without a Content-Type
 * header, by a body whose first non-blank byte is `{` (a CBOR map never starts with it). Byte
 * fields (`BYTE_FIELDS`: `value`, `prevValue`, `secret`) are strings in JSON: UTF-8 text, or base64
 * (RFC 4648, standard alphabet, padded) when the object holding them, or an object around it,
 * says `"encoding": "base64"` (the nearest `encoding` wins; `"utf8"` switches back):
 *   `{"key": "/a", "value": "hello"}`   `{"key": "/a", "value": "AAEC", "encoding": "base64"}`
 * Replies mirror the request: JSON for JSON, and if the request used base64 anywhere, every byte
 * field of the reply is base64; otherwise text where the bytes are valid UTF-8, and base64 (with
 * the object's `encoding` set) where they are not.
 *
 * Nothing here throws on bad input: decoders return a result with a typed `EnsembleError`
 * (`BAD_REQUEST`, `TOO_LARGE`, `UNSUPPORTED_VERSION`, `WRONG_CLUSTER`). Encoders throw `TypeError`
 * only for values that cannot be encoded (a programmer mistake).
 */
import { Encoder, type Options } from 'cbor-x';
import {
  BadRequestError,
  type EnsembleError,
  fromWire,
  TooLargeError,
  UnsupportedVersionError,
  type WireError,
  WrongClusterError,
} from './errors.ts';
import { isSupportedProtocolVersion, PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from './version.ts';

export type WireFormat = 'cbor' | 'json';

export const CBOR_CONTENT_TYPE = 'application/cbor';
export const JSON_CONTENT_TYPE = 'application/json';
export const CONTENT_TYPE_HEADER = 'Content-Type';
/** Set on answers a follower relayed from the leader: the leader's id, so a client goes there next. */
export const LEADER_HEADER = 'Ensemble-Leader';

/** The content type of a format, for the reply's `Content-Type` header. */
export const contentType = (format: WireFormat): string =>
  format === 'json' ? JSON_CONTENT_TYPE : CBOR_CONTENT_TYPE;

/** Deepest nesting of maps and arrays accepted in a decoded message. */
export const MAX_DEPTH = 64;

/** Default cap on an encoded client request, in bytes (values of 1.5 MiB as base64 JSON fit). */
export const DEFAULT_MAX_REQUEST_FRAME = 4 * 1024 * 1024;

/** Default cap on an encoded peer frame, in bytes (below nats.conf's `max_payload`). */
export const DEFAULT_MAX_PEER_FRAME = 8 * 1024 * 1024;

/** Property names whose values are bytes; strings in JSON (see the module comment). */
export const BYTE_FIELDS: ReadonlySet<string> = new Set(['value', 'prevValue', 'secret']);

/** What a codec needs of NATS message headers (`MsgHdrs` fits; `get` returns '' when absent). */
export interface HeaderReader {
  get(key: string): string;
}

// `int64AsNumber` is a decoder option that cbor-x's typings leave out.
const cborOptions: Options & { readonly int64AsNumber: boolean } = {
  useRecords: false,
  mapsAsObjects: true,
  tagUint8Array: false,
  variableMapSize: true,
  // No packed strings, no structured clone, no bundled strings: all of them would need tags.
  pack: false,
  structuredClone: false,
  bundleStrings: false,
  // Integers of 8 bytes decode as numbers (cbor-x would make them bigints); beyond 2^53 they lose
  // precision, which validation refuses (`Number.isSafeInteger`).
  int64AsNumber: true,
};
const cbor = new Encoder(cborOptions);

const TWO_32 = 0x1_0000_0000;

// ---------------------------------------------------------------------------------------------
// CBOR

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);

/**
 * `value` as it goes on the wire: without `undefined` object properties (CBOR has no "absent"),
 * and with integers of 2^32 and beyond as bigints, which cbor-x writes as CBOR integers (it would
 * write such numbers as floats). Copies only what it changes.
 */
function wireValue(value: unknown, depth = 0): unknown {
  if (depth > 256) throw new TypeError('cannot encode: nesting too deep (a cycle?)');
  if (typeof value === 'number') {
    return (value >= TWO_32 || value < -TWO_32) && Number.isSafeInteger(value) ? BigInt(value) : value;
  }
  if (Array.isArray(value)) {
    let out: unknown[] | null = null;
    for (let i = 0; i < value.length; i++) {
      const x = wireValue(value[i], depth + 1);
      if (x !== value[i]) (out ??= value.slice())[i] = x;
    }
    return out ?? value;
  }
  if (!isPlainObject(value) || value instanceof Date || ArrayBuffer.isView(value)) return value;
  let out: Record<string, unknown> | null = null;
  for (const key of Object.keys(value)) {
    const v = value[key];
    if (v === undefined) {
      out ??= { ...value };
      delete out[key];
      continue;
    }
    const x = wireValue(v, depth + 1);
    if (x !== v) defineField((out ??= { ...value }), key, x);
  }
  return out ?? value;
}

/**
 * Encodes a value as plain CBOR: maps with the object's string keys, `Uint8Array`/`Buffer` as
 * byte strings (untagged), integers as CBOR integers, `undefined` properties left out. Throws `TypeError` for what CBOR
 * cannot carry here (functions, symbols, bigints beyond 64 bits, cycles).
 */
export function encodeCbor(value: unknown): Uint8Array {
  try {
    return cbor.encode(wireValue(value));
  } catch (err) {
    if (err instanceof TypeError) throw err;
    throw new TypeError(`cannot encode as CBOR: ${(err as Error).message}`, { cause: err });
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const ENC = new TextEncoder();

function validUtf8(bytes: Uint8Array): boolean {
  try {
    utf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** An open array or map while scanning. */
interface Frame {
  /** Items still expected; `Infinity` for an indefinite length (ends with a break). */
  left: number;
  readonly map: boolean;
  /** Items read so far (in a map, even positions are keys). */
  n: number;
}

const INDEFINITE = Number.POSITIVE_INFINITY;

/**
 * Checks that `bytes` hold exactly one well-formed item of plain CBOR as this protocol allows it
 * (see the module comment). Returns `null` if so, else what is wrong. Never throws; linear time,
 * stack bounded by `maxDepth`.
 */
export function checkPlainCbor(bytes: Uint8Array, maxDepth = MAX_DEPTH): string | null {
  if (!(bytes instanceof Uint8Array)) return 'not bytes';
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = bytes.length;
  const stack: Frame[] = [];
  let pos = 0;
  let tagged = false;

  /** An item ended: count it in its container, closing every container it completes. */
  const complete = (): void => {
    for (;;) {
      const t = stack[stack.length - 1];
      if (t === undefined) return;
      t.n++;
      t.left--;
      if (t.left !== 0) return;
      stack.pop();
    }
  };

  for (;;) {
    if (pos >= end) return 'truncated';
    const top = stack[stack.length - 1];
    const initial = bytes[pos++]!;
    if (initial === 0xff) {
      if (tagged || top === undefined || top.left !== INDEFINITE) return 'unexpected break';
      if (top.map && top.n % 2 !== 0) return 'map key without a value';
      stack.pop();
      complete();
    } else {
      const major = initial >> 5;
      const info = initial & 0x1f;
      if (top?.map === true && top.n % 2 === 0 && major !== 3) return 'map key is not a text string';
      const head = readLength(view, pos, info);
      if (head === null)
        return info === 31 ? 'indefinite length not allowed here' : 'truncated or reserved head';
      const arg = head.len;
      pos = head.pos;
      const indefinite = info === 31;
      tagged = false;
      switch (major) {
        case 0:
        case 1:
          if (indefinite) return 'indefinite integer';
          complete();
          break;
        case 2:
        case 3: {
          if (!indefinite) {
            if (arg > end - pos) return 'truncated';
            if (major === 3 && !validUtf8(bytes.subarray(pos, pos + arg))) return 'invalid UTF-8';
            if (arg === 9 && top?.map === true && top.n % 2 === 0 && isProtoKey(bytes, pos))
              return 'map key __proto__';
            pos += arg;
          } else {
            // An indefinite string: definite chunks of the same major type, then a break.
            for (;;) {
              if (pos >= end) return 'truncated';
              const b = bytes[pos++]!;
              if (b === 0xff) break;
              if (b >> 5 !== major) return 'bad chunk in an indefinite string';
              const chunk = readLength(view, pos, b & 0x1f);
              if (chunk === null || (b & 0x1f) === 31) return 'bad chunk in an indefinite string';
              pos = chunk.pos;
              if (chunk.len > end - pos) return 'truncated';
              if (major === 3 && !validUtf8(bytes.subarray(pos, pos + chunk.len))) return 'invalid UTF-8';
              pos += chunk.len;
            }
          }
          complete();
          break;
        }
        case 4:
        case 5: {
          if (stack.length >= maxDepth) return `nested deeper than ${maxDepth}`;
          const count = indefinite ? INDEFINITE : major === 5 ? arg * 2 : arg;
          // Every item takes at least one byte: a count beyond the rest is a lie, not a big array.
          if (count !== INDEFINITE && count > end - pos) return 'truncated';
          if (count === 0) complete();
          else stack.push({ left: count, map: major === 5, n: 0 });
          break;
        }
        case 6:
          if (indefinite || arg !== 55799)
            return `tag ${indefinite ? '?' : arg} (tags are not part of this protocol)`;
          // The self-describe tag only marks the item that follows.
          tagged = true;
          continue;
        default:
          // Major 7: false, true, null, undefined and floats; no other simple values.
          if (indefinite) return 'unexpected break';
          if (info < 20 || info === 24) return 'unassigned simple value';
          complete();
      }
    }
    if (stack.length === 0) return pos === end ? null : 'bytes after the item';
  }
}

const PROTO = [0x5f, 0x5f, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x5f, 0x5f]; // "__proto__"

/** True if the 9 bytes at `pos` spell `__proto__` (a key cbor-x would rename; refused instead). */
const isProtoKey = (bytes: Uint8Array, pos: number): boolean => PROTO.every((b, i) => bytes[pos + i] === b);

/**
 * Reads the argument of an item head whose additional information is `info`, starting at `pos`
 * (after the initial byte). `len` is 0 for an indefinite length (`info` 31). `null` if the head is
 * truncated or uses a reserved value (28 to 30).
 */
function readLength(view: DataView, pos: number, info: number): { len: number; pos: number } | null {
  if (info < 24) return { len: info, pos };
  if (info === 31) return { len: 0, pos };
  const size = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0;
  if (size === 0 || pos + size > view.byteLength) return null;
  let len = 0;
  for (let i = 0; i < size; i++) len = len * 256 + view.getUint8(pos + i);
  return { len, pos: pos + size };
}

/**
 * Decodes CBOR this process wrote, or that a peer NATS lets through only from nodes: no plain-CBOR
 * scan first (the stores' records, peer frames). Throws on malformed bytes.
 */
export const decodeCborTrusted = (bytes: Uint8Array): unknown => cbor.decode(bytes);

/** `decodeCborTrusted` that never throws: malformed bytes are a BAD_REQUEST. */
function decodeTrusted(bytes: Uint8Array): Decoded<unknown> {
  try {
    return { ok: true, value: cbor.decode(bytes) };
  } catch (err) {
    return {
      ok: false,
      error: new BadRequestError(`malformed CBOR: ${(err as Error).message}`, { cause: err }),
    };
  }
}

export type Decoded<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: EnsembleError };

/**
 * Decodes one item of plain CBOR (checked by `checkPlainCbor` first). Byte strings come back as
 * `Uint8Array` (a `Buffer` on Node), maps as plain objects. Never throws.
 */
export function decodeCbor(bytes: Uint8Array): Decoded<unknown> {
  const problem = checkPlainCbor(bytes);
  if (problem !== null) return { ok: false, error: new BadRequestError(`malformed CBOR: ${problem}`) };
  return decodeTrusted(bytes);
}

// ---------------------------------------------------------------------------------------------
// JSON

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Sets an own property, even one named `__proto__` (plain assignment would set the prototype). */
const defineField = (o: Record<string, unknown>, key: string, value: unknown): void => {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
};

/** What a JSON request said about bytes: whether any object asked for base64. */
interface JsonInfo {
  base64: boolean;
}

/**
 * Turns parsed JSON into the values the rest of the code sees: byte fields become `Uint8Array`
 * (UTF-8 text, or base64 where the nearest `encoding` says so; `inherited` is the enclosing
 * objects' choice); the `encoding` property is consumed. Throws `BadRequestError`.
 */
function fromJsonValue(value: unknown, info: JsonInfo, depth: number, inherited: boolean): unknown {
  if (depth > MAX_DEPTH) throw new BadRequestError(`JSON nested deeper than ${MAX_DEPTH}`);
  if (Array.isArray(value)) return value.map((x) => fromJsonValue(x, info, depth + 1, inherited));
  if (typeof value !== 'object' || value === null) return value;
  const obj = value as Record<string, unknown>;
  const encoding = obj.encoding;
  let base64 = inherited;
  if (encoding !== undefined) {
    if (encoding === 'base64') base64 = info.base64 = true;
    else if (encoding === 'utf8' || encoding === 'utf-8') base64 = false;
    else throw new BadRequestError('encoding must be "base64" or "utf8"');
  }
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(obj)) {
    if (key === 'encoding' && encoding !== undefined) continue;
    if (key === '__proto__') throw new BadRequestError('map key __proto__');
    const v = obj[key];
    let x: unknown;
    if (BYTE_FIELDS.has(key) && typeof v === 'string') {
      if (base64) {
        if (!BASE64.test(v)) throw new BadRequestError(`${key} is not valid base64`);
        x = Buffer.from(v, 'base64');
      } else x = Buffer.from(v, 'utf8');
    } else x = fromJsonValue(v, info, depth + 1, base64);
    defineField(out, key, x);
  }
  return out;
}

/**
 * Renders a value as JSON-ready data: byte fields as strings (see the module comment), other
 * `Uint8Array`s (in arrays) as `{ value, encoding: 'base64' }`.
 */
function toJsonValue(value: unknown, base64: boolean, depth: number): unknown {
  if (depth > 256) throw new TypeError('cannot encode: nesting too deep (a cycle?)');
  if (value instanceof Uint8Array)
    return { value: Buffer.from(value).toString('base64'), encoding: 'base64' };
  if (Array.isArray(value)) return value.map((x) => toJsonValue(x, base64, depth + 1));
  if (typeof value === 'bigint') {
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new TypeError('cannot encode as JSON: integer beyond 2^53');
    }
    return Number(value);
  }
  if (typeof value !== 'object' || value === null) return value;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  let asBase64 = base64;
  if (!asBase64) {
    for (const k of keys) {
      const v = obj[k];
      if (v instanceof Uint8Array && !validUtf8(v)) asBase64 = true;
    }
  }
  const out: Record<string, unknown> = {};
  let hasBytes = false;
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) continue;
    let x: unknown;
    if (v instanceof Uint8Array) {
      hasBytes = true;
      x = asBase64 ? Buffer.from(v).toString('base64') : utf8.decode(v);
    } else x = toJsonValue(v, asBase64, depth + 1); // nested objects inherit this object's encoding
    defineField(out, k, x);
  }
  if (hasBytes && asBase64) out.encoding = 'base64';
  return out;
}

export interface JsonEncodeOptions {
  /** Every byte field as base64 (default: text where valid UTF-8). */
  readonly base64?: boolean;
}

/** Encodes a value as UTF-8 JSON with byte fields as strings. Throws `TypeError`. */
export function encodeJson(value: unknown, options: JsonEncodeOptions = {}): Uint8Array {
  return ENC.encode(JSON.stringify(toJsonValue(value, options.base64 ?? false, 0)));
}

/** Decodes UTF-8 JSON, turning byte fields into `Uint8Array`. Never throws. */
export function decodeJson(bytes: Uint8Array): Decoded<unknown> & { readonly base64?: boolean } {
  let parsed: unknown;
  if (!(bytes instanceof Uint8Array))
    return { ok: false, error: new BadRequestError('JSON message is not bytes') };
  try {
    parsed = JSON.parse(utf8.decode(bytes));
  } catch (err) {
    return {
      ok: false,
      error: new BadRequestError(`malformed JSON: ${(err as Error).message}`, { cause: err }),
    };
  }
  const info: JsonInfo = { base64: false };
  try {
    return { ok: true, value: fromJsonValue(parsed, info, 0, false), base64: info.base64 };
  } catch (err) {
    if (err instanceof BadRequestError) return { ok: false, error: err };
    return {
      ok: false,
      error: new BadRequestError(`malformed JSON: ${(err as Error).message}`, { cause: err }),
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Envelopes

/** A request, keepalive or peer frame as it travels. */
export interface Envelope<B = unknown> {
  readonly v: number;
  readonly cluster: string;
  readonly body: B;
}

/** A reply as it travels: a result or a wire error. */
export type ReplyEnvelope<R = unknown> =
  | { readonly v: number; readonly cluster: string; readonly result: R }
  | { readonly v: number; readonly cluster: string; readonly error: WireError };

/**
 * The format of an incoming message: the `Content-Type` header if it names JSON or CBOR, else JSON
 * when the first non-blank byte is `{`, else CBOR.
 */
export function detectFormat(bytes: Uint8Array, headers?: HeaderReader | null): WireFormat {
  if (!(bytes instanceof Uint8Array)) return 'cbor';
  let type = '';
  try {
    type = headers?.get(CONTENT_TYPE_HEADER) ?? '';
  } catch {
    type = '';
  }
  const base = type.split(';')[0]!.trim().toLowerCase();
  if (base === JSON_CONTENT_TYPE) return 'json';
  if (base === CBOR_CONTENT_TYPE) return 'cbor';
  for (let i = 0; i < bytes.length && i < 64; i++) {
    const b = bytes[i];
    if (b === 0x7b) return 'json';
    if (b !== 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) break;
  }
  return 'cbor';
}

export interface EncodeOptions {
  readonly cluster: string;
  /** Default `cbor`. */
  readonly format?: WireFormat;
  /** JSON only: every byte field as base64. */
  readonly base64?: boolean;
}

function encodeAs(value: unknown, options: { format?: WireFormat; base64?: boolean }): Uint8Array {
  return options.format === 'json'
    ? encodeJson(value, { base64: options.base64 ?? false })
    : encodeCbor(value);
}

/** Encodes `{ v: PROTOCOL_VERSION, cluster, body }`. Throws `TypeError` for unencodable bodies. */
export function encodeEnvelope(body: unknown, options: EncodeOptions): Uint8Array {
  return encodeAs({ v: PROTOCOL_VERSION, cluster: options.cluster, body }, options);
}

/**
 * Encodes like `encodeEnvelope(body)` with one field added last to the body: `lastKey`, whose
 * value `lastValue` is already plain CBOR (`encodeCbor`). So one encoding of a large field (the
 * events of a revision) serves many messages that differ in a few small fields (a watch's id and
 * sequence number). CBOR only. The bytes equal `encodeEnvelope({ ...body, [lastKey]: value })`.
 */
export function encodeEnvelopeSpliced(
  body: Readonly<Record<string, unknown>>,
  lastKey: string,
  lastValue: Uint8Array,
  options: { readonly cluster: string },
): Uint8Array {
  if (Object.hasOwn(body, lastKey)) throw new TypeError(`body already has ${lastKey}`);
  // The envelope's last field is the body and the body's last field is `lastKey`, so the
  // encoding ends with the placeholder's one byte (null, 0xf6): the value takes its place.
  const head = encodeEnvelope({ ...body, [lastKey]: null }, { cluster: options.cluster });
  const out = new Uint8Array(head.length - 1 + lastValue.length);
  out.set(head.subarray(0, head.length - 1), 0);
  out.set(lastValue, head.length - 1);
  return out;
}

export interface DecodeOptions {
  /** This node's (or client's) cluster id: envelopes for another cluster are refused. */
  readonly cluster: string;
  readonly headers?: HeaderReader | null;
  /** Largest accepted message in bytes (default `DEFAULT_MAX_REQUEST_FRAME`). */
  readonly maxBytes?: number;
  /** Force a format instead of detecting it (peers: always CBOR). */
  readonly format?: WireFormat;
}

/** Why an envelope was refused: peers count drops by these. */
export type DropReason = 'tooLarge' | 'malformed' | 'version' | 'cluster';

export type DecodedEnvelope<B = unknown> =
  | {
      readonly ok: true;
      readonly format: WireFormat;
      /** JSON only: the request used base64 somewhere; mirror it in the reply. */
      readonly base64: boolean;
      readonly envelope: Envelope<B>;
    }
  | {
      readonly ok: false;
      readonly format: WireFormat;
      readonly base64: boolean;
      readonly reason: DropReason;
      /** The typed error to answer a client with. */
      readonly error: EnsembleError;
    };

/**
 * Decodes and checks an envelope: size, syntax, a map with `v` (a version this build speaks,
 * else `UNSUPPORTED_VERSION`), `cluster` (this cluster, else `WRONG_CLUSTER`) and `body` (any
 * value but absent). The body itself is not validated here (see `validateRequest`). Never throws.
 */
export function decodeEnvelope(bytes: Uint8Array, options: DecodeOptions): DecodedEnvelope {
  const format = options.format ?? detectFormat(bytes, options.headers);
  const max = options.maxBytes ?? DEFAULT_MAX_REQUEST_FRAME;
  const fail = (reason: DropReason, error: EnsembleError, base64 = false): DecodedEnvelope => ({
    ok: false,
    format,
    base64,
    reason,
    error,
  });
  if (!(bytes instanceof Uint8Array)) return fail('malformed', new BadRequestError('message is not bytes'));
  if (bytes.length > max) {
    return fail(
      'tooLarge',
      new TooLargeError(bytes.length, max, `message of ${bytes.length} bytes exceeds ${max}`),
    );
  }
  const decoded = format === 'json' ? decodeJson(bytes) : decodeCbor(bytes);
  const base64 = 'base64' in decoded && decoded.base64 === true;
  if (!decoded.ok) return fail('malformed', decoded.error, base64);
  const env = decoded.value;
  if (!isPlainObject(env)) return fail('malformed', new BadRequestError('an envelope must be a map'), base64);
  const { v, cluster } = env;
  if (v === undefined)
    return fail('malformed', new BadRequestError('envelope without a version (v)'), base64);
  if (!isSupportedProtocolVersion(v)) {
    const version = typeof v === 'number' && Number.isFinite(v) ? v : null;
    return fail('version', new UnsupportedVersionError(version, SUPPORTED_PROTOCOL_VERSIONS), base64);
  }
  if (typeof cluster !== 'string')
    return fail('malformed', new BadRequestError('envelope without a cluster id'), base64);
  if (cluster !== options.cluster)
    return fail('cluster', new WrongClusterError(options.cluster, cluster), base64);
  if (!('body' in env)) return fail('malformed', new BadRequestError('envelope without a body'), base64);
  return { ok: true, format, base64, envelope: { v, cluster, body: env.body } };
}

// ---------------------------------------------------------------------------------------------
// Replies

/** What a handler answers: a result, or an error (an `EnsembleError` or its wire form). */
export type Outcome<R = unknown> = { readonly result: R } | { readonly error: EnsembleError | WireError };

const wireOf = (e: EnsembleError | WireError): WireError =>
  typeof (e as EnsembleError).toWire === 'function' ? (e as EnsembleError).toWire() : (e as WireError);

/** Encodes a reply envelope in `format` (mirror the request's `format` and `base64`). */
export function encodeReply(outcome: Outcome, options: EncodeOptions): Uint8Array {
  const head = { v: PROTOCOL_VERSION, cluster: options.cluster };
  const env =
    'error' in outcome ? { ...head, error: wireOf(outcome.error) } : { ...head, result: outcome.result };
  return encodeAs(env, options);
}

/**
 * Encodes the reply to a message that failed `decodeEnvelope`, in the format it came in, so a
 * client of any version reads it.
 */
export function encodeDecodeError(failed: DecodedEnvelope & { ok: false }, cluster: string): Uint8Array {
  return encodeReply({ error: failed.error }, { cluster, format: failed.format, base64: failed.base64 });
}

export interface ReplyDecodeOptions {
  /** Refuse replies from another cluster (default: accept any). */
  readonly cluster?: string;
  readonly headers?: HeaderReader | null;
  readonly maxBytes?: number;
}

export type DecodedReply<R = unknown> =
  | { readonly ok: true; readonly result: R }
  | { readonly ok: false; readonly error: EnsembleError };

/**
 * Decodes a reply: its `result`, or its `error` rebuilt as the same `EnsembleError` class (see
 * `fromWire`). A reply that is itself malformed becomes a `BadRequestError`, one of another
 * version `UNSUPPORTED_VERSION`. Never throws. The result's shape is not checked.
 */
export function decodeReply<R = unknown>(
  bytes: Uint8Array,
  options: ReplyDecodeOptions = {},
): DecodedReply<R> {
  const format = detectFormat(bytes, options.headers);
  const max = options.maxBytes ?? DEFAULT_MAX_PEER_FRAME;
  if (!(bytes instanceof Uint8Array)) return { ok: false, error: new BadRequestError('reply is not bytes') };
  if (bytes.length > max) return { ok: false, error: new TooLargeError(bytes.length, max) };
  const decoded = format === 'json' ? decodeJson(bytes) : decodeCbor(bytes);
  if (!decoded.ok) return decoded;
  const env = decoded.value;
  if (!isPlainObject(env)) return { ok: false, error: new BadRequestError('a reply must be a map') };
  if (!isSupportedProtocolVersion(env.v)) {
    // An error about versions is readable in any version: pass it on as it is.
    if (isPlainObject(env.error) && env.error.code === 'UNSUPPORTED_VERSION')
      return { ok: false, error: fromWire(env.error) };
    const version = typeof env.v === 'number' && Number.isFinite(env.v) ? env.v : null;
    return { ok: false, error: new UnsupportedVersionError(version, SUPPORTED_PROTOCOL_VERSIONS) };
  }
  if (options.cluster !== undefined && env.cluster !== options.cluster) {
    return { ok: false, error: new WrongClusterError(options.cluster, String(env.cluster)) };
  }
  if ('error' in env) return { ok: false, error: fromWire(env.error) };
  if (!('result' in env))
    return { ok: false, error: new BadRequestError('a reply needs a result or an error') };
  return { ok: true, result: env.result as R };
}

// ---------------------------------------------------------------------------------------------
// Peers

/** Counts of peer frames dropped, by reason. Mutable: the transport owns one per node. */
export type DropCounts = Record<DropReason, number>;

export const newDropCounts = (): DropCounts => ({ tooLarge: 0, malformed: 0, version: 0, cluster: 0 });

/** Encodes a peer frame (always CBOR). Throws `TypeError` for unencodable bodies. */
export const encodePeer = (body: unknown, cluster: string): Uint8Array => encodeEnvelope(body, { cluster });

export type DecodedPeer<B = unknown> =
  | { readonly ok: true; readonly body: B }
  | { readonly ok: false; readonly reason: DropReason; readonly error: EnsembleError };

/**
 * Decodes a peer frame (CBOR only): its body, or why it was dropped, after counting the drop in
 * `drops`. Peers never answer bad frames. Never throws. The body is not validated here.
 */
export function decodePeer(
  bytes: Uint8Array,
  options: { readonly cluster: string; readonly drops?: DropCounts; readonly maxBytes?: number },
): DecodedPeer {
  const decoded = decodeEnvelope(bytes, {
    cluster: options.cluster,
    format: 'cbor',
    maxBytes: options.maxBytes ?? DEFAULT_MAX_PEER_FRAME,
  });
  if (decoded.ok) return { ok: true, body: decoded.envelope.body };
  if (options.drops) options.drops[decoded.reason]++;
  return { ok: false, reason: decoded.reason, error: decoded.error };
}
