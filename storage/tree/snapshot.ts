/**
 * The canonical logical dump of a key tree, as a byte stream cut into capped chunks.
 *
 * The stream is a sequence of frames, each a 4-byte big-endian length and one CBOR array:
 *
 *   [0, "ensemble-tree", dumpVersion, appliedIndex, revision, compactRevision, raftMeta | null]
 *   [1, key, kvFields]                       every key, in path order
 *   [2, eventFields]                         retained history, in order
 *   [3, sessionFields] [4, seq-outcome]*     every session by id, each followed by its answers
 *   [5, parent, next]                        sequential counters, in path order
 *   [7, user, prefix, read, write]           grants, by user then prefix (dump version 2)
 *   [8, key, user]                           who created each key a client created, in path order (3)
 *   [6, frameCount, crc32]                   frames before this one, CRC-32 of their bytes
 *
 * The same state always gives the same bytes. Chunk boundaries do not align with frames.
 */
import { crc32 } from 'node:zlib';
import { check, decode, encode, isIndex, yieldToEventLoop } from '../codec.ts';
import { CorruptedError } from '../errors.ts';
import {
  emptyData,
  type FrozenTree,
  linkEphemerals,
  newSession,
  type SessionState,
  setGrant,
  type TreeData,
} from './data.ts';
import { checkPath, comparePaths } from './path.ts';
import {
  ensure,
  eventFields,
  kvFields,
  metaFields,
  outcomeFields,
  readEvent,
  readKv,
  readMeta,
  readOutcome,
  readSession,
  sessionFields,
} from './records.ts';

const MAGIC = 'ensemble-tree';
/** Version 2 added grants, 3 key creators; older dumps (without them) are still read. */
export const DUMP_VERSION = 3;
const HEADER = 0;
const KEY = 1;
const EVENT = 2;
const SESSION = 3;
const RESULT = 4;
const COUNTER = 5;
const END = 6;
const GRANT = 7;
const CREATOR = 8;
/** Frames between yields to the event loop, when dumping and restoring. */
const SLICE = 1024;
const MAX_FRAME = 64 * 1024 * 1024;
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;

/** Cuts a byte stream into chunks of exactly `cap` bytes (the last one may be shorter). */
class Chunker {
  private buf: Buffer;
  private pos = 0;
  readonly ready: Buffer[] = [];

  constructor(private readonly cap: number) {
    this.buf = Buffer.allocUnsafe(cap);
  }

  push(bytes: Uint8Array): void {
    let off = 0;
    while (off < bytes.length) {
      const n = Math.min(bytes.length - off, this.cap - this.pos);
      this.buf.set(bytes.subarray(off, off + n), this.pos);
      this.pos += n;
      off += n;
      if (this.pos === this.cap) {
        this.ready.push(this.buf);
        this.buf = Buffer.allocUnsafe(this.cap);
        this.pos = 0;
      }
    }
  }

  take(final: boolean): Buffer[] {
    const out = this.ready.splice(0);
    if (final && this.pos > 0) out.push(Buffer.from(this.buf.subarray(0, this.pos)));
    return out;
  }
}

/** Yields the dump of `f` in chunks of at most `chunkBytes`, yielding to the event loop in slices. */
export async function* dumpChunks(
  f: FrozenTree,
  chunkBytes = DEFAULT_CHUNK_BYTES,
): AsyncGenerator<Uint8Array> {
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 16)
    throw new TypeError('chunkBytes must be an integer >= 16');
  const out = new Chunker(chunkBytes);
  const len = Buffer.allocUnsafe(4);
  let crc = 0;
  let frames = 0;
  const frame = (item: unknown[]) => {
    const body = encode(item);
    len.writeUInt32BE(body.length, 0);
    crc = crc32(len, crc);
    crc = crc32(body, crc);
    out.push(len);
    out.push(body);
    frames++;
  };
  frame([HEADER, MAGIC, DUMP_VERSION, ...metaFields(f.meta)]);
  let n = 0;
  async function* slice() {
    if (++n % SLICE === 0) {
      yield* out.take(false);
      await yieldToEventLoop();
    }
  }
  for (const [key, kv] of f.keys.entries()) {
    frame([KEY, key, kvFields(kv)]);
    yield* slice();
  }
  for (const e of f.history) {
    frame([EVENT, eventFields(e)]);
    yield* slice();
  }
  for (const s of f.sessions) {
    frame([SESSION, sessionFields(s.fields)]);
    for (const [seq, o] of s.results) frame([RESULT, outcomeFields(seq, o)]);
    yield* slice();
  }
  for (const [parent, next] of f.counters) {
    frame([COUNTER, parent, next]);
    yield* slice();
  }
  for (const [user, prefix, perm] of f.grants) frame([GRANT, user, prefix, perm.read, perm.write]);
  for (const [key, user] of f.creators) {
    frame([CREATOR, key, user]);
    yield* slice();
  }
  const end = encode([END, frames, crc]);
  len.writeUInt32BE(end.length, 0);
  out.push(len);
  out.push(end);
  yield* out.take(true);
}

/** Reassembles frames from chunks cut anywhere. */
class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Uint8Array): void {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.buf = this.buf.length === 0 ? b : Buffer.concat([this.buf, b]);
  }

  /** The next whole frame (length prefix and body), or `null` until more bytes arrive. */
  next(): { head: Buffer; body: Buffer } | null {
    if (this.buf.length < 4) return null;
    const n = this.buf.readUInt32BE(0);
    if (n > MAX_FRAME) throw new CorruptedError(`snapshot frame of ${n} bytes`);
    if (this.buf.length < 4 + n) return null;
    const head = this.buf.subarray(0, 4);
    const body = this.buf.subarray(4, 4 + n);
    this.buf = this.buf.subarray(4 + n);
    return { head, body };
  }

  get leftover(): number {
    return this.buf.length;
  }
}

const WHAT = 'snapshot';

function isValidPath(key: string): boolean {
  try {
    checkPath(key, MAX_FRAME);
    return true;
  } catch {
    return false;
  }
}

/**
 * Parses a dump into a fresh state. Throws `CorruptedError` for anything but a complete,
 * well-formed dump of this format: bad frames, wrong order, CRC mismatch, truncation, trailing
 * bytes. Yields to the event loop in slices.
 */
export async function parseDump(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<TreeData> {
  const reader = new FrameReader();
  const d = emptyData();
  let section = -1;
  let crc = 0;
  let frames = 0;
  let ended = false;
  let lastKey: string | null = null;
  let lastRevision = 0;
  let session: SessionState | null = null;
  let lastSessionId: string | null = null;
  let lastSeq = -1;
  let lastParent: string | null = null;
  let lastGrant: string | null = null;
  let lastCreator: string | null = null;
  let n = 0;

  const handle = (head: Buffer, body: Buffer) => {
    ensure(!ended, WHAT, 'bytes after the end frame');
    const item = decode(body, WHAT);
    check(Array.isArray(item) && item.length >= 1 && isIndex(item[0]), WHAT);
    const tag = item[0] as number;
    if (tag === END) {
      check(item.length === 3, WHAT);
      ensure(item[1] === frames, WHAT, `end frame counts ${String(item[1])} frames, read ${frames}`);
      ensure(item[2] === crc, WHAT, 'CRC mismatch');
      ended = true;
      return;
    }
    crc = crc32(head, crc);
    crc = crc32(body, crc);
    frames++;
    ensure(
      tag >= section &&
        (tag <= COUNTER || tag === GRANT || tag === CREATOR) &&
        (tag !== HEADER || section === -1),
      WHAT,
      `frame ${tag} out of order`,
    );
    ensure(section !== -1 || tag === HEADER, WHAT, 'no header');
    if (tag !== RESULT && tag !== SESSION) session = null;
    section = tag === RESULT ? SESSION : tag;
    switch (tag) {
      case HEADER: {
        check(item.length === 7, WHAT);
        const [, magic, version, ...meta] = item;
        ensure(magic === MAGIC, WHAT, 'not an ensemble tree dump');
        ensure(
          version === DUMP_VERSION || version === 1 || version === 2,
          WHAT,
          `unknown dump version ${String(version)}`,
        );
        Object.assign(d, readMeta(meta, WHAT));
        lastRevision = d.compactRevision;
        return;
      }
      case KEY: {
        check(item.length === 3 && typeof item[1] === 'string', WHAT);
        const key = item[1] as string;
        ensure(isValidPath(key), WHAT, `invalid key ${JSON.stringify(key)}`);
        ensure(lastKey === null || comparePaths(lastKey, key) < 0, WHAT, `key ${key} out of order`);
        const kv = readKv(key, item[2], WHAT);
        ensure(kv.modRevision <= d.revision, WHAT, `key ${key} modified after the revision`);
        d.keys.set(key, kv);
        lastKey = key;
        return;
      }
      case EVENT: {
        check(item.length === 2 && Array.isArray(item[1]), WHAT);
        const e = readEvent(item[1] as unknown[], WHAT);
        ensure(e.revision >= lastRevision && e.revision > d.compactRevision, WHAT, 'event out of order');
        ensure(e.revision <= d.revision, WHAT, 'event after the revision');
        d.history.push(e);
        lastRevision = e.revision;
        return;
      }
      case SESSION: {
        check(item.length === 2 && Array.isArray(item[1]), WHAT);
        const f = readSession(item[1] as unknown[], WHAT);
        ensure(lastSessionId === null || lastSessionId < f.id, WHAT, 'sessions out of order');
        session = newSession(f);
        lastSessionId = f.id;
        d.sessions.set(f.id, session);
        lastSeq = -1;
        return;
      }
      case RESULT: {
        ensure(session !== null, WHAT, 'an answer outside a session');
        check(item.length === 2 && Array.isArray(item[1]), WHAT);
        const { seq, outcome } = readOutcome(item[1] as unknown[], WHAT);
        ensure(seq > lastSeq && seq >= session.lowSeq, WHAT, 'answers out of order');
        session.results.set(seq, outcome);
        lastSeq = seq;
        return;
      }
      case COUNTER: {
        check(item.length === 3 && typeof item[1] === 'string' && isIndex(item[2]), WHAT);
        const parent = item[1] as string;
        ensure(lastParent === null || comparePaths(lastParent, parent) < 0, WHAT, 'counters out of order');
        d.counters.set(parent, item[2] as number);
        lastParent = parent;
        return;
      }
      case GRANT: {
        check(
          item.length === 5 &&
            typeof item[1] === 'string' &&
            typeof item[2] === 'string' &&
            typeof item[3] === 'boolean' &&
            typeof item[4] === 'boolean',
          WHAT,
        );
        const [user, prefix] = [item[1] as string, item[2] as string];
        const at = `${user}\u0000${prefix}`;
        ensure(lastGrant === null || lastGrant < at, WHAT, 'grants out of order');
        setGrant(d, user, prefix, { read: item[3] as boolean, write: item[4] as boolean });
        lastGrant = at;
        return;
      }
      case CREATOR: {
        check(
          item.length === 3 && typeof item[1] === 'string' && typeof item[2] === 'string' && item[2] !== '',
          WHAT,
        );
        const key = item[1] as string;
        ensure(lastCreator === null || comparePaths(lastCreator, key) < 0, WHAT, 'creators out of order');
        ensure(d.keys.has(key), WHAT, `creator of missing key ${key}`);
        d.creators.set(key, item[2] as string);
        lastCreator = key;
        return;
      }
    }
  };

  for await (const chunk of chunks) {
    if (!(chunk instanceof Uint8Array)) throw new CorruptedError('snapshot chunk is not bytes');
    reader.push(chunk);
    for (let f = reader.next(); f !== null; f = reader.next()) {
      handle(f.head, f.body);
      if (++n % SLICE === 0) await yieldToEventLoop();
    }
  }
  ensure(ended, WHAT, 'truncated (no end frame)');
  ensure(reader.leftover === 0, WHAT, 'bytes after the end frame');
  linkEphemerals(d);
  return d;
}
