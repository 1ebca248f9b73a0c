/**
 * Field layouts of the tree's records, shared by the RocksDB records and the snapshot frames.
 * Readers check every field and throw `CorruptedError` for anything else.
 *
 *   kv        [value, version, createRevision, modRevision, session | null]
 *   event     [revision, 0 put | 1 delete, key, kv | null, prev | null]
 *   session   [id, secret, ttlMs, lowSeq] or [id, secret, ttlMs, lowSeq, owner]
 *   outcome   [seq, true, revision, result] | [seq, false, revision, { code, message, ... }]
 *   meta      [appliedIndex, revision, compactRevision, raftMeta | null]
 *   raftMeta  [index, term, voters, learners]
 *   perm      [read, write]
 */
import type { SnapshotMeta } from '../../machines/raft/index.ts';
import type { KeyValue } from '../../protocol/index.ts';
import { check, isBytes, isIndex } from '../codec.ts';
import { CorruptedError } from '../errors.ts';
import type { Perm, TreeMeta } from './data.ts';
import type { CommandResult, StoredOutcome, TreeEvent } from './types.ts';

export type KvFields = [Uint8Array, number, number, number, string | null];

export const kvFields = (kv: KeyValue): KvFields => [
  kv.value,
  kv.version,
  kv.createRevision,
  kv.modRevision,
  kv.session,
];

export function readKv(key: string, f: unknown, what: string): KeyValue {
  check(Array.isArray(f) && f.length === 5, what);
  const [value, version, createRevision, modRevision, session] = f as unknown[];
  check(
    isBytes(value) &&
      isIndex(version) &&
      version >= 1 &&
      isIndex(createRevision) &&
      isIndex(modRevision) &&
      createRevision <= modRevision &&
      (session === null || typeof session === 'string'),
    what,
  );
  return { key, value, version, createRevision, modRevision, session };
}

export const eventFields = (e: TreeEvent): unknown[] => [
  e.revision,
  e.type === 'put' ? 0 : 1,
  e.key,
  e.kv === null ? null : kvFields(e.kv),
  e.prev === null ? null : kvFields(e.prev),
];

export function readEvent(f: unknown[], what: string): TreeEvent {
  check(f.length === 5, what);
  const [revision, type, key, kvF, prevF] = f;
  check(isIndex(revision) && revision >= 1 && typeof key === 'string' && (type === 0 || type === 1), what);
  const kv = kvF === null ? null : readKv(key, kvF, what);
  const prev = prevF === null ? null : readKv(key, prevF, what);
  if (type === 0) check(kv !== null && kv.modRevision === revision, what);
  else check(kv === null && prev !== null, what);
  return {
    type: type === 0 ? 'put' : 'delete',
    key,
    revision,
    value: kv?.value ?? null,
    prevValue: prev?.value ?? null,
    kv,
    prev,
  };
}

export interface SessionFields {
  readonly id: string;
  readonly secret: Uint8Array;
  readonly ttlMs: number;
  readonly lowSeq: number;
  /** The NATS user that opened it (sessions per user are counted by it). */
  readonly owner?: string;
}

/** A session opened for a NATS user records it as `owner` (a fifth field; absent for a peer's). */
export const sessionFields = (s: SessionFields): unknown[] =>
  s.owner ? [s.id, s.secret, s.ttlMs, s.lowSeq, s.owner] : [s.id, s.secret, s.ttlMs, s.lowSeq];

export function readSession(f: unknown[], what: string): SessionFields {
  check(f.length === 4 || f.length === 5, what);
  const [id, secret, ttlMs, lowSeq, owner] = f;
  check(typeof id === 'string' && isBytes(secret) && isIndex(ttlMs) && isIndex(lowSeq), what);
  if (f.length === 4) return { id, secret, ttlMs, lowSeq };
  check(typeof owner === 'string' && owner !== '', what);
  return { id, secret, ttlMs, lowSeq, owner };
}

export const outcomeFields = (seq: number, o: StoredOutcome): unknown[] =>
  o.ok ? [seq, true, o.revision, o.result] : [seq, false, o.revision, o.error];

export function readOutcome(f: unknown[], what: string): { seq: number; outcome: StoredOutcome } {
  check(f.length === 4, what);
  const [seq, ok, revision, payload] = f;
  check(isIndex(seq) && typeof ok === 'boolean' && isIndex(revision), what);
  check(typeof payload === 'object' && payload !== null && !Array.isArray(payload), what);
  const p = payload as Record<string, unknown>;
  if (ok) {
    check(typeof p.op === 'string', what);
    return {
      seq,
      outcome: {
        ok,
        revision,
        result: payload as CommandResult,
      },
    };
  }
  check(typeof p.code === 'string' && typeof p.message === 'string', what);
  return {
    seq,
    outcome: { ok, revision, error: { ...p, code: p.code as string, message: p.message as string } },
  };
}

export const raftMetaFields = (m: SnapshotMeta | null): unknown[] | null =>
  m === null ? null : [m.index, m.term, [...m.config.voters], [...m.config.learners]];

export function readRaftMeta(f: unknown, what: string): SnapshotMeta | null {
  if (f === null) return null;
  check(Array.isArray(f) && f.length === 4, what);
  const [index, term, voters, learners] = f as unknown[];
  const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');
  check(isIndex(index) && isIndex(term) && strings(voters) && strings(learners), what);
  return { index, term, config: { voters, learners } };
}

export const metaFields = (m: TreeMeta): unknown[] => [
  m.appliedIndex,
  m.revision,
  m.compactRevision,
  raftMetaFields(m.raftMeta),
];

export function readMeta(f: unknown[], what: string): TreeMeta {
  check(f.length === 4, what);
  const [appliedIndex, revision, compactRevision, raft] = f;
  check(isIndex(appliedIndex) && isIndex(revision) && isIndex(compactRevision), what);
  ensure(compactRevision <= revision, what, 'compaction above the revision');
  return { appliedIndex, revision, compactRevision, raftMeta: readRaftMeta(raft, what) };
}

/** Throws `CorruptedError` with `what` when `cond` fails (ordering and cross-record checks). */
export function ensure(cond: boolean, what: string, detail: string): asserts cond {
  if (!cond) throw new CorruptedError(`${what}: ${detail}`);
}

export const permFields = (p: Perm): unknown[] => [p.read, p.write];

export function readPerm(f: unknown, what: string): Perm {
  check(Array.isArray(f) && f.length === 2 && typeof f[0] === 'boolean' && typeof f[1] === 'boolean', what);
  return { read: f[0] as boolean, write: f[1] as boolean };
}
