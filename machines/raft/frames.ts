/**
 * Peer frames: what one node sends another on `P.peer.<node>` (decoded by protocol/codec.ts's
 * `decodePeer`, checked here, next to the messages they carry). A frame batches the Raft
 * messages one node had for another in one turn of its event loop:
 *   body = { from, to, inc, msgs: Message[] }   (`inc`: the sender's incarnation)
 * `validatePeerFrame` checks every field of every message, so the machine only ever sees
 * well-formed messages; anything else is dropped and counted, never answered.
 *
 * Snapshot chunks travel as requests on `P.peer.<node>.snapshot`:
 *   body = { from, term, snapshot: SnapshotMeta, seq, last, data: Uint8Array }
 */
import type { Message } from './messages.ts';
import type { Configuration, Entry, SnapshotMeta } from './types.ts';

/**
 * A node id: one NATS subject token (`[A-Za-z0-9_-]{1,64}`), the rule protocol/subjects.ts gives
 * every token; restated here because machines/ depends on nothing (a test checks they agree).
 */
export const isNodeId = (s: unknown): s is string => typeof s === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(s);

export interface PeerFrame {
  readonly from: string;
  readonly to: string;
  /** The sender's incarnation (chosen when its data directory was created). */
  readonly inc: string;
  readonly msgs: readonly Message[];
}

export interface SnapshotChunk {
  readonly from: string;
  readonly term: number;
  readonly snapshot: SnapshotMeta;
  readonly seq: number;
  readonly last: boolean;
  readonly data: Uint8Array;
}

/** Most messages one frame may carry, most entries one append may carry. */
export const MAX_FRAME_MESSAGES = 4096;
export const MAX_APPEND_ENTRIES = 65536;

/**
 * Highest term a peer may claim: no election count comes near it, and a node that adopts it can
 * still campaign with its term a safe integer (the log stores refuse any other).
 */
export const MAX_TERM = 2 ** 52;

class Invalid extends Error {}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);

function obj(v: unknown, what: string): Record<string, unknown> {
  if (!isObj(v)) throw new Invalid(`${what} must be a map`);
  return v;
}

function nat(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw new Invalid(`${what} must be a whole number`);
  return v;
}

function int(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < -1)
    throw new Invalid(`${what} must be an integer >= -1`);
  return v;
}

function termOf(v: unknown, what: string): number {
  const t = nat(v, what);
  if (t > MAX_TERM) throw new Invalid(`${what} must be at most ${MAX_TERM}`);
  return t;
}

function id(v: unknown, what: string): string {
  if (!isNodeId(v)) throw new Invalid(`${what} must be a node id`);
  return v;
}

function bool(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') throw new Invalid(`${what} must be a boolean`);
  return v;
}

function ids(v: unknown, what: string, max = 4096): string[] {
  if (!Array.isArray(v) || v.length > max) throw new Invalid(`${what} must be a list`);
  return v.map((x, i) => {
    if (typeof x !== 'string' || x.length === 0 || x.length > 256)
      throw new Invalid(`${what}[${i}] must be a string`);
    return x;
  });
}

function config(v: unknown, what: string): Configuration {
  const c = obj(v, what);
  const voters = ids(c.voters, `${what}.voters`, 256).map((x) => id(x, `${what}.voters`));
  const learners = ids(c.learners, `${what}.learners`, 256).map((x) => id(x, `${what}.learners`));
  return { voters, learners };
}

export function validateSnapshotMeta(v: unknown, what = 'snapshot'): SnapshotMeta {
  const s = obj(v, what);
  return {
    index: nat(s.index, `${what}.index`),
    term: nat(s.term, `${what}.term`),
    config: config(s.config, `${what}.config`),
  };
}

function entry(v: unknown, expected: number, what: string): Entry {
  const e = obj(v, what);
  const index = nat(e.index, `${what}.index`);
  if (index !== expected) throw new Invalid(`${what}.index ${index} breaks the run (expected ${expected})`);
  const term = nat(e.term, `${what}.term`);
  switch (e.type) {
    case 'normal':
      if (!(e.data instanceof Uint8Array)) throw new Invalid(`${what}.data must be bytes`);
      return { index, term, type: 'normal', data: e.data };
    case 'noop':
      return { index, term, type: 'noop' };
    case 'config':
      return { index, term, type: 'config', config: config(e.config, `${what}.config`) };
    default:
      throw new Invalid(`${what}.type is not an entry type`);
  }
}

/** Checks one Raft message; throws `Invalid` with the first problem. */
function message(v: unknown, from: string, what: string): Message {
  const m = obj(v, what);
  const term = termOf(m.term, `${what}.term`);
  if (m.from !== from) throw new Invalid(`${what}.from differs from the frame's sender`);
  switch (m.type) {
    case 'raft.appendEntries': {
      const prevIndex = nat(m.prevIndex, `${what}.prevIndex`);
      if (!Array.isArray(m.entries) || m.entries.length > MAX_APPEND_ENTRIES)
        throw new Invalid(`${what}.entries must be a list`);
      const entries = m.entries.map((e, i) => entry(e, prevIndex + 1 + i, `${what}.entries[${i}]`));
      for (let i = 1; i < entries.length; i++) {
        if (entries[i]!.term < entries[i - 1]!.term) throw new Invalid(`${what}.entries terms decrease`);
      }
      return {
        type: m.type,
        term,
        from,
        prevIndex,
        prevTerm: nat(m.prevTerm, `${what}.prevTerm`),
        entries,
        commit: nat(m.commit, `${what}.commit`),
        seq: nat(m.seq, `${what}.seq`),
      };
    }
    case 'raft.appendResult':
      return {
        type: m.type,
        term,
        from,
        success: bool(m.success, `${what}.success`),
        index: nat(m.index, `${what}.index`),
        hintIndex: nat(m.hintIndex, `${what}.hintIndex`),
        hintTerm: nat(m.hintTerm, `${what}.hintTerm`),
        seq: nat(m.seq, `${what}.seq`),
      };
    case 'raft.heartbeat':
      return {
        type: m.type,
        term,
        from,
        commit: nat(m.commit, `${what}.commit`),
        seq: nat(m.seq, `${what}.seq`),
        ...(m.quiet === undefined ? {} : { quiet: bool(m.quiet, `${what}.quiet`) }),
      };
    case 'raft.heartbeatResult':
      return { type: m.type, term, from, seq: nat(m.seq, `${what}.seq`) };
    case 'raft.requestVote':
      return {
        type: m.type,
        term,
        from,
        lastIndex: nat(m.lastIndex, `${what}.lastIndex`),
        lastTerm: nat(m.lastTerm, `${what}.lastTerm`),
        preVote: bool(m.preVote, `${what}.preVote`),
        transfer: bool(m.transfer, `${what}.transfer`),
      };
    case 'raft.voteResult':
      return {
        type: m.type,
        term,
        from,
        granted: bool(m.granted, `${what}.granted`),
        preVote: bool(m.preVote, `${what}.preVote`),
      };
    case 'raft.installSnapshotResult':
      return {
        type: m.type,
        term,
        from,
        index: nat(m.index, `${what}.index`),
        seq: nat(m.seq, `${what}.seq`),
      };
    case 'raft.timeoutNow':
      return { type: m.type, term, from };
    case 'raft.forwardRead':
      return { type: m.type, term, from, ids: ids(m.ids, `${what}.ids`) };
    case 'raft.forwardReadResult':
      return {
        type: m.type,
        term,
        from,
        ids: ids(m.ids, `${what}.ids`),
        index: int(m.index, `${what}.index`),
      };
    default:
      // installSnapshot never travels in a frame: it arrives as chunks (SnapshotChunk).
      throw new Invalid(`${what}.type is not a peer message`);
  }
}

export type ValidatedFrame =
  | { readonly ok: true; readonly frame: PeerFrame }
  | { readonly ok: false; readonly reason: string };

/** Checks a decoded frame body addressed to `self`. Never throws. */
export function validatePeerFrame(body: unknown, self: string): ValidatedFrame {
  try {
    const b = obj(body, 'frame');
    const from = id(b.from, 'frame.from');
    if (b.to !== self) throw new Invalid('frame addressed to another node');
    if (typeof b.inc !== 'string' || b.inc.length === 0 || b.inc.length > 64)
      throw new Invalid('frame.inc must be a string');
    if (!Array.isArray(b.msgs) || b.msgs.length === 0 || b.msgs.length > MAX_FRAME_MESSAGES) {
      throw new Invalid('frame.msgs must be a non-empty list');
    }
    const msgs = b.msgs.map((m, i) => message(m, from, `msgs[${i}]`));
    return { ok: true, frame: { from, to: self, inc: b.inc, msgs } };
  } catch (err) {
    if (err instanceof Invalid) return { ok: false, reason: err.message };
    return { ok: false, reason: `malformed frame: ${(err as Error).message}` };
  }
}

export type ValidatedChunk =
  | { readonly ok: true; readonly chunk: SnapshotChunk }
  | { readonly ok: false; readonly reason: string };

export function validateSnapshotChunk(body: unknown): ValidatedChunk {
  try {
    const b = obj(body, 'chunk');
    if (!(b.data instanceof Uint8Array)) throw new Invalid('chunk.data must be bytes');
    return {
      ok: true,
      chunk: {
        from: id(b.from, 'chunk.from'),
        term: termOf(b.term, 'chunk.term'),
        snapshot: validateSnapshotMeta(b.snapshot),
        seq: nat(b.seq, 'chunk.seq'),
        last: bool(b.last, 'chunk.last'),
        data: b.data,
      },
    };
  } catch (err) {
    if (err instanceof Invalid) return { ok: false, reason: err.message };
    return { ok: false, reason: `malformed chunk: ${(err as Error).message}` };
  }
}
