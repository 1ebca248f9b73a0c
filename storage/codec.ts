/**
 * Byte-level helpers shared by the stores: records in the protocol's one CBOR encoding (plain RFC
 * 8949, the wire's), big-endian index keys, and the checks that turn an undecodable record into a
 * `CorruptedError` instead of a crash.
 */
import { decodeCborTrusted, encodeCbor, FORMAT_VERSION } from '../protocol/index.ts';
import { CorruptedError } from './errors.ts';

/** Format version written into every record this build stores (protocol/version.ts). */
export { FORMAT_VERSION };

/**
 * Encodes to CBOR. The result is a `Buffer` (what the RocksDB binding needs for keys and values).
 * Throws `TypeError` for values CBOR cannot carry (functions, symbols).
 */
export function encode(value: unknown): Buffer {
  try {
    return toBuffer(encodeCbor(value));
  } catch (err) {
    throw new TypeError(`cannot encode as CBOR: ${(err as Error).message}`, { cause: err });
  }
}

/** Decodes one CBOR item that must fill `bytes` exactly; throws `CorruptedError` otherwise. */
export function decode(bytes: Uint8Array, what: string): unknown {
  try {
    return decodeCborTrusted(bytes);
  } catch (err) {
    throw new CorruptedError(`${what}: undecodable CBOR (${(err as Error).message})`, { cause: err });
  }
}

export const isIndex = (n: unknown): n is number =>
  typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

export const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array;

/** Encodes a stored record: the CBOR array `[FORMAT_VERSION, ...fields]`. Throws like `encode`. */
export const encodeRecord = (...fields: unknown[]): Buffer => encode([FORMAT_VERSION, ...fields]);

/**
 * Decodes a stored record: one CBOR array `[version, ...fields]` of `length` items (the version
 * included), of a version we can read. Throws `CorruptedError` otherwise.
 */
export function decodeRecord(bytes: Uint8Array, length: number, what: string): unknown[] {
  const value = decode(bytes, what);
  if (!Array.isArray(value) || value.length !== length) {
    throw new CorruptedError(`${what}: malformed record`);
  }
  if (value[0] !== FORMAT_VERSION) {
    throw new CorruptedError(`${what}: unknown format version ${String(value[0])}`);
  }
  return value;
}

/** Throws `CorruptedError` unless `ok`; used to check each field of a decoded record. */
export function check(ok: boolean, what: string): asserts ok {
  if (!ok) throw new CorruptedError(`${what}: malformed record`);
}

/** A key made of a one-byte tag and a big-endian 64-bit index, so indexes sort as numbers. */
export function indexKey(tag: number, index: number): Buffer {
  const key = Buffer.allocUnsafe(9);
  key[0] = tag;
  key.writeUInt32BE(Math.floor(index / 0x1_0000_0000), 1);
  key.writeUInt32BE(index >>> 0, 5);
  return key;
}

/** Reads the index of an `indexKey`; throws `CorruptedError` for a key of another shape. */
export function readIndexKey(key: Uint8Array, tag: number): number {
  if (key.length !== 9 || key[0] !== tag) throw new CorruptedError('malformed index key');
  const view = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  const hi = view.readUInt32BE(1);
  if (hi >= 0x20_0000) throw new CorruptedError('index key beyond 2^53');
  return hi * 0x1_0000_0000 + view.readUInt32BE(5);
}

/** A key made of a one-byte tag and a UTF-8 string. */
export function stringKey(tag: number, s: string): Buffer {
  const len = Buffer.byteLength(s);
  const key = Buffer.allocUnsafe(1 + len);
  key[0] = tag;
  key.write(s, 1, 'utf8');
  return key;
}

/** The string of a `stringKey`; throws `CorruptedError` if it is not valid UTF-8. */
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function readStringKey(key: Uint8Array): string {
  try {
    return utf8.decode(key.subarray(1));
  } catch (err) {
    throw new CorruptedError('key is not valid UTF-8', { cause: err });
  }
}

/** Copies bytes into a `Buffer` without copying when they already are one. */
export const toBuffer = (b: Uint8Array): Buffer =>
  Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** Resolves on the next turn of the event loop, after pending I/O callbacks. */
export const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
