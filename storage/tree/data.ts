/**
 * The in-memory state of a key tree, and the frozen copy of it that snapshots and the memory
 * tree's crash model read. Keys live in a copy-on-write B+ tree ordered by `comparePaths`.
 */
import type { SnapshotMeta } from '../../machines/raft/index.ts';
import type { KeyValue } from '../../protocol/index.ts';
import { CorruptedError } from '../errors.ts';
import { BTree, bulkLoad } from './btree.ts';
import { comparePaths } from './path.ts';
import type { SessionFields } from './records.ts';
import type { SessionInfo, StoredOutcome, TreeEvent } from './types.ts';

export interface SessionState {
  readonly id: string;
  readonly secret: Uint8Array;
  readonly ttlMs: number;
  lowSeq: number;
  /** The NATS user that opened it, if a client did. */
  readonly owner?: string;
  /** Exactly-once table: answers by sequence number, for sequence numbers `>= lowSeq`. */
  readonly results: Map<number, StoredOutcome>;
  /** Keys this session owns (derived from the keys, not stored). */
  readonly ephemerals: Set<string>;
}

/** What a grant allows. */
export interface Perm {
  readonly read: boolean;
  readonly write: boolean;
}

/** A grant as stored: user, prefix, and what it allows. */
export type GrantRecord = readonly [user: string, prefix: string, perm: Perm];

/** Every grant of `d`, ordered by user, then prefix (the order dumps and lists use). */
export function grantRecords(d: Pick<TreeData, 'grants'>, only?: string): GrantRecord[] {
  const out: GrantRecord[] = [];
  const users = only === undefined ? [...d.grants.keys()].sort() : d.grants.has(only) ? [only] : [];
  for (const user of users) {
    for (const [prefix, perm] of [...d.grants.get(user)!].sort((a, b) =>
      a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0,
    ))
      out.push([user, prefix, perm]);
  }
  return out;
}

/** Sets (`perm`) or drops (`null`) one grant. */
export function setGrant(d: Pick<TreeData, 'grants'>, user: string, prefix: string, perm: Perm | null): void {
  let m = d.grants.get(user);
  if (perm === null) {
    m?.delete(prefix);
    if (m?.size === 0) d.grants.delete(user);
    return;
  }
  if (m === undefined) d.grants.set(user, (m = new Map()));
  m.set(prefix, perm);
}

export interface TreeMeta {
  readonly appliedIndex: number;
  readonly revision: number;
  readonly compactRevision: number;
  readonly raftMeta: SnapshotMeta | null;
}

export interface TreeData {
  keys: BTree<string, KeyValue>;
  /** Events with revision in `(compactRevision, revision]`, in order. */
  history: TreeEvent[];
  sessions: Map<string, SessionState>;
  /** Next sequential number per parent path. */
  counters: Map<string, number>;
  /** Key permissions: by user, by prefix. */
  grants: Map<string, Map<string, Perm>>;
  /** The NATS user that created each live key, for keys a client created. */
  creators: Map<string, string>;
  appliedIndex: number;
  revision: number;
  compactRevision: number;
  raftMeta: SnapshotMeta | null;
}

const NODE_SIZE = 64;

export const newKeys = (): BTree<string, KeyValue> =>
  new BTree<string, KeyValue>(undefined, comparePaths, NODE_SIZE);

/**
 * The key map of `keys` and their values, built in one O(n) pass when the keys come in path
 * order (RocksDB's byte order is path order unless a key holds a character below '/'); else
 * sorted first. Throws `Error` for a key given twice.
 */
export function keysFrom(keys: string[], values: KeyValue[]): BTree<string, KeyValue> {
  let sorted = true;
  for (let i = 1; i < keys.length && sorted; i++) sorted = comparePaths(keys[i - 1]!, keys[i]!) < 0;
  if (!sorted) {
    const order = keys.map((_, i) => i).sort((a, b) => comparePaths(keys[a]!, keys[b]!));
    keys = order.map((i) => keys[i]!);
    values = order.map((i) => values[i]!);
  }
  return bulkLoad(keys, values, NODE_SIZE, comparePaths);
}

export function emptyData(): TreeData {
  return {
    keys: newKeys(),
    history: [],
    sessions: new Map(),
    counters: new Map(),
    grants: new Map(),
    creators: new Map(),
    appliedIndex: 0,
    revision: 0,
    compactRevision: 0,
    raftMeta: null,
  };
}

export const metaOf = (d: TreeData): TreeMeta => ({
  appliedIndex: d.appliedIndex,
  revision: d.revision,
  compactRevision: d.compactRevision,
  raftMeta: d.raftMeta,
});

export function newSession(f: SessionFields): SessionState {
  return {
    id: f.id,
    secret: f.secret,
    ttlMs: f.ttlMs,
    lowSeq: f.lowSeq,
    ...(f.owner ? { owner: f.owner } : {}),
    results: new Map(),
    ephemerals: new Set(),
  };
}

export const sessionInfo = (s: SessionState): SessionInfo => ({
  id: s.id,
  secret: s.secret,
  ttlMs: s.ttlMs,
  lowSeq: s.lowSeq,
  ephemeralKeys: s.ephemerals.size,
  owner: s.owner ?? null,
});

/**
 * Links ephemeral keys to their sessions once every record is loaded. Throws `CorruptedError`
 * for a key owned by a session that does not exist.
 */
export function linkEphemerals(d: TreeData): void {
  for (const [key, kv] of d.keys.entries()) {
    if (kv.session === null) continue;
    const s = d.sessions.get(kv.session);
    if (s === undefined) throw new CorruptedError(`key ${key} belongs to unknown session ${kv.session}`);
    s.ephemerals.add(key);
  }
}

/** A consistent copy of the state that later applies do not change (O(history + sessions)). */
export interface FrozenTree {
  readonly meta: TreeMeta;
  readonly keys: BTree<string, KeyValue>;
  readonly history: readonly TreeEvent[];
  /** By id, each with its exactly-once answers by sequence number. */
  readonly sessions: readonly {
    readonly fields: SessionFields;
    readonly results: readonly [number, StoredOutcome][];
  }[];
  /** By parent path. */
  readonly counters: readonly [string, number][];
  /** By user, then prefix. */
  readonly grants: readonly GrantRecord[];
  /** Key creators, by key in path order. */
  readonly creators: readonly [string, string][];
}

export function freeze(d: TreeData, raftMeta: SnapshotMeta | null): FrozenTree {
  const byPath = <T>(a: [string, T], b: [string, T]) => comparePaths(a[0], b[0]);
  return {
    meta: { ...metaOf(d), raftMeta },
    keys: d.keys.clone(),
    history: d.history.slice(),
    sessions: [...d.sessions.values()]
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((s) => ({
        fields: fieldsOf(s),
        results: [...s.results.entries()].sort((a, b) => a[0] - b[0]),
      })),
    counters: [...d.counters.entries()].sort(byPath),
    grants: grantRecords(d),
    creators: [...d.creators.entries()].sort(byPath),
  };
}

/** A live state rebuilt from a frozen copy (what the memory tree keeps across a crash). */
export function thaw(f: FrozenTree): TreeData {
  const d: TreeData = {
    keys: f.keys.clone(),
    history: f.history.slice(),
    sessions: new Map(),
    counters: new Map(f.counters),
    grants: new Map(),
    creators: new Map(f.creators),
    ...f.meta,
  };
  for (const [user, prefix, perm] of f.grants) setGrant(d, user, prefix, perm);
  for (const s of f.sessions) {
    const state = newSession(s.fields);
    for (const [seq, o] of s.results) state.results.set(seq, o);
    d.sessions.set(state.id, state);
  }
  linkEphemerals(d);
  return d;
}

/** What a session's record holds. */
export const fieldsOf = (s: SessionState): SessionFields => ({
  id: s.id,
  secret: s.secret,
  ttlMs: s.ttlMs,
  lowSeq: s.lowSeq,
  ...(s.owner ? { owner: s.owner } : {}),
});
