/**
 * On-disk records of the log store. Each value is a CBOR array whose first item is the format
 * version. Keys: `e` + big-endian index for entries (so a range of indexes is an iterator scan),
 * `m` + name for the single records (hard state, snapshot meta, identity).
 *
 *   entry     [v, index, term, 0, data] | [v, index, term, 1, null] | [v, index, term, 2, [voters, learners]]
 *   hard      [v, term, vote | null, commit]
 *   snapshot  [v, index, term, voters, learners]
 *   identity  [v, clusterId, nodeId, incarnation]
 */
import type { Configuration, Entry, HardState, SnapshotMeta } from '../../machines/raft/index.ts';
import { check, decodeRecord, encodeRecord, indexKey, isIndex, stringKey } from '../codec.ts';
import { CorruptedError } from '../errors.ts';
import type { NodeIdentity } from './types.ts';

export const ENTRY_TAG = 0x65; // 'e'
const META_TAG = 0x6d; // 'm'

export const entryKey = (index: number): Buffer => indexKey(ENTRY_TAG, index);
export const HARD_KEY = stringKey(META_TAG, 'hard');
export const SNAPSHOT_KEY = stringKey(META_TAG, 'snapshot');
export const IDENTITY_KEY = stringKey(META_TAG, 'identity');

const TYPE_CODES = { normal: 0, noop: 1, config: 2 } as const;

/** Encodes an entry; throws `TypeError` if its data cannot be carried by CBOR. */
export function encodeEntry(e: Entry): Buffer {
  switch (e.type) {
    case 'normal':
      return encodeRecord(e.index, e.term, TYPE_CODES.normal, e.data);
    case 'noop':
      return encodeRecord(e.index, e.term, TYPE_CODES.noop, null);
    case 'config':
      return encodeRecord(e.index, e.term, TYPE_CODES.config, [[...e.config.voters], [...e.config.learners]]);
  }
}

const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');

function readConfig(v: unknown, what: string): Configuration {
  check(Array.isArray(v) && v.length === 2 && isStrings(v[0]) && isStrings(v[1]), what);
  return { voters: v[0] as string[], learners: v[1] as string[] };
}

/** Decodes the entry stored under `index`; throws `CorruptedError`. */
export function decodeEntry(bytes: Uint8Array, index: number): Entry {
  const what = `log entry ${index}`;
  const [, i, term, type, payload] = decodeRecord(bytes, 5, what);
  check(isIndex(i) && isIndex(term), what);
  if (i !== index) throw new CorruptedError(`${what}: record holds index ${String(i)}`);
  switch (type) {
    case TYPE_CODES.normal:
      return { index, term, type: 'normal', data: payload };
    case TYPE_CODES.noop:
      return { index, term, type: 'noop' };
    case TYPE_CODES.config:
      return { index, term, type: 'config', config: readConfig(payload, what) };
    default:
      throw new CorruptedError(`${what}: unknown entry type ${String(type)}`);
  }
}

export const encodeHardState = (hs: HardState): Buffer => encodeRecord(hs.term, hs.vote, hs.commit);

export function decodeHardState(bytes: Uint8Array): HardState {
  const what = 'hard state';
  const [, term, vote, commit] = decodeRecord(bytes, 4, what);
  check(isIndex(term) && isIndex(commit) && (vote === null || typeof vote === 'string'), what);
  return { term, vote, commit };
}

export const encodeSnapshotMeta = (m: SnapshotMeta): Buffer =>
  encodeRecord(m.index, m.term, [...m.config.voters], [...m.config.learners]);

export function decodeSnapshotMeta(bytes: Uint8Array): SnapshotMeta {
  const what = 'snapshot meta';
  const [, index, term, voters, learners] = decodeRecord(bytes, 5, what);
  check(isIndex(index) && isIndex(term) && isStrings(voters) && isStrings(learners), what);
  return { index, term, config: { voters, learners } };
}

export const encodeIdentity = (id: NodeIdentity): Buffer =>
  encodeRecord(id.clusterId, id.nodeId, id.incarnation);

export function decodeIdentity(bytes: Uint8Array): NodeIdentity {
  const what = 'node identity';
  const [, clusterId, nodeId, incarnation] = decodeRecord(bytes, 4, what);
  check(typeof clusterId === 'string' && typeof nodeId === 'string' && typeof incarnation === 'string', what);
  return { clusterId, nodeId, incarnation };
}
