/**
 * The simulator's client: a key-tree workload in real commands (protocol/command.ts) that every
 * node applies to its real in-memory key tree, recorded as a history for the linearizability
 * checker (linearizability.ts).
 *
 * - It opens a session first (a real `sessionOpen`), then tags every write with it (session,
 *   sequence, lowest unanswered sequence: Raft thesis §6.3). A write not answered in time, or
 *   whose node crashed or lost its place, is sent again, with the same tag, to whichever node the
 *   client now believes leads: the tree must answer the retry from its exactly-once table.
 * - Writes are puts of unique values and compare-and-sets (a txn on the key's version) on a few
 *   keys; reads are linearizable gets through ReadIndex, served from the node's tree once it has
 *   applied up to the read index.
 * - At the end: the history must be linearizable (per key), no put value may have been applied
 *   twice (in the tree's history), and every node's tree must have been the same at every
 *   applied index where two of them were compared (a digest every DIGEST_EVERY indexes).
 */
import { type Entry, nextRandom, seedFrom } from '../../machines/raft/index.ts';
import { type Command, encodeCommand, type KeyValue } from '../../protocol/index.ts';
import type { ApplyOutcome, MemoryTree } from '../../storage/index.ts';
import type { SimNode, Simulation } from './cluster.ts';
import { checkHistory, type HistoryOp, type Op, type OpResult } from './linearizability.ts';

const KEYS = ['/lin/a', '/lin/b', '/lin/c', '/lin/d'];
const SESSION = 'wl';
const SECRET = new TextEncoder().encode('workload-secret');
/** A write unanswered this long is sent again (same tag); the wait doubles per attempt. */
const RETRY_MS = 120;
const RETRY_MAX_MS = 1000;
const DIGEST_EVERY = 32;

interface Pending {
  readonly seq: number;
  readonly op: Op;
  readonly command: Command;
  readonly history: number;
  /** The proposal id of the latest attempt. */
  attempt: string;
  sentAt: number;
  /** Wait before the next attempt. */
  backoff: number;
}

interface Read {
  readonly key: string;
  readonly history: number;
  readonly floor: number;
}

const text = (v: Uint8Array | undefined): string | null =>
  v === undefined ? null : new TextDecoder().decode(v);

export class Workload {
  readonly history: (HistoryOp & { response?: number | null; result?: OpResult })[] = [];
  private open: 'no' | 'asked' | 'yes' = 'no';
  private openAttempt = '';
  private seq = 0;
  private readonly pending = new Map<number, Pending>();
  /** Proposal id -> the write it carries, and where it went in a log once proposed. */
  private readonly attempts = new Map<string, number>();
  /** The (index, term) each proposed attempt of a write took, by write. */
  private readonly placed = new Map<number, { index: number; term: number }[]>();
  private readonly reads = new Map<string, Read>();
  private nextId = 0;
  private readonly versions = new Map<string, number>();
  /** Applied index -> the digest of the first tree seen there. */
  private readonly digests = new Map<number, { node: string; digest: string }>();
  readonly stats = { writes: 0, retries: 0, reads: 0, replayed: 0, compared: 0, unknown: 0 };

  /** The workload's own random stream: the cluster's draws stay as they were without it. */
  private rng: number;

  constructor(private readonly sim: Simulation) {
    this.rng = seedFrom('workload', sim.opts.seed);
  }

  private random(): number {
    const [v, s] = nextRandom(this.rng);
    this.rng = s;
    return v;
  }

  private key(): string {
    return KEYS[Math.floor(this.random() * KEYS.length)]!;
  }

  private id(prefix: string): string {
    return `${this.sim.isHealed ? 'probe' : prefix}${++this.nextId}`;
  }

  // -------------------------------------------------------------------------------------------
  // Requests.

  /**
   * `n` proposals through `node`, in one batch: the session's open until it is answered, writes
   * that waited too long for an answer (again, same tag), then new writes. Always `n`, so the load
   * the cluster sees does not depend on the answers.
   */
  write(node: SimNode, n: number): void {
    const commands: { id: string; data: Uint8Array }[] = [];
    if (this.open !== 'yes' && this.sim.now - this.openSentAt >= RETRY_MS) {
      this.open = 'asked';
      this.openSentAt = this.sim.now;
      this.openAttempt = this.id('open');
      commands.push({
        id: this.openAttempt,
        data: encodeCommand({ op: 'sessionOpen', id: SESSION, secret: SECRET, ttlMs: 7 * 24 * 3600 * 1000 }),
      });
    }
    if (this.open === 'yes') {
      for (const p of this.pending.values()) {
        if (commands.length >= n) break;
        if (this.sim.now - p.sentAt < p.backoff) continue;
        this.stats.retries++;
        p.backoff = Math.min(RETRY_MAX_MS, p.backoff * 2);
        commands.push(this.attempt(p));
      }
    }
    while (commands.length < n) commands.push(this.attempt(this.newWrite()));
    this.sim.local(node, { type: 'raft.propose', commands });
  }

  /** A new write of the history: a put of a unique value, or a compare-and-set on the version. */
  private newWrite(): Pending {
    {
      const key = this.key();
      const seq = ++this.seq;
      const value = `v${seq}`;
      const cas = this.random() < 0.3;
      const known = this.versions.get(key) ?? 0;
      const op: Op = cas ? { type: 'cas', key, expectedVersion: known, value } : { type: 'put', key, value };
      const bytes = new TextEncoder().encode(value);
      const body = cas
        ? ({
            op: 'txn',
            compare: [{ key, target: 'version', result: 'eq', value: known }],
            success: [{ op: 'put', key, value: bytes }],
            failure: [],
          } as const)
        : ({ op: 'put', key, value: bytes } as const);
      this.history.push({ client: 'wl', invoke: this.sim.now, op });
      const p: Pending = {
        seq,
        op,
        command: body as Command,
        history: this.history.length - 1,
        attempt: '',
        sentAt: 0,
        backoff: RETRY_MS,
      };
      this.pending.set(seq, p);
      this.stats.writes++;
      return p;
    }
  }

  /** A linearizable read of one key through `node`; `floor`: the highest index any operation
   * returned before it began (the Raft-level read check). */
  read(node: SimNode, floor: number): string {
    const id = this.id('r');
    const key = this.key();
    this.history.push({ client: 'wl', invoke: this.sim.now, op: { type: 'get', key } });
    this.reads.set(id, { key, history: this.history.length - 1, floor });
    this.sim.local(node, { type: 'raft.readIndex', ids: [id] });
    return id;
  }

  private openSentAt = Number.NEGATIVE_INFINITY;

  /**
   * One attempt of a write: tagged with the session once it is open (the lowest unanswered
   * sequence number too), untagged before (such a write is never sent again).
   */
  private attempt(p: Pending): { id: string; data: Uint8Array } {
    let low = p.seq;
    for (const s of this.pending.keys()) if (s < low) low = s;
    const command =
      this.open === 'yes'
        ? ({ ...p.command, client: { session: SESSION, seq: p.seq, lowSeq: low } } as Command)
        : p.command;
    if (this.open !== 'yes') p.backoff = Number.POSITIVE_INFINITY;
    // Earlier attempts stay known: one may still be proposed (a paused node handles it late)
    // and committed, and its answer is as good as any.
    p.attempt = this.id('c');
    p.sentAt = this.sim.now;
    this.attempts.set(p.attempt, p.seq);
    return { id: p.attempt, data: encodeCommand(command) };
  }

  // -------------------------------------------------------------------------------------------
  // Answers.

  /** A node put attempt `id` in its log at (index, term): from now on it may take effect. */
  proposed(id: string, index: number, term: number): void {
    const seq = this.attempts.get(id);
    if (seq === undefined) return;
    const at = this.placed.get(seq);
    if (at === undefined) this.placed.set(seq, [{ index, term }]);
    else at.push({ index, term });
  }

  /**
   * An entry `node` applied, with `proposal`: the id of the proposal `node` put at that index in
   * that term, if any (then this entry is that proposal and its outcome is the answer).
   */
  applied(node: SimNode, e: Entry, outcome: ApplyOutcome | null, proposal: string | null): void {
    if (e.index % DIGEST_EVERY === 0) this.compare(node, e.index);
    if (proposal === null || e.type !== 'normal') return;
    const id = proposal;
    if (id === this.openAttempt && outcome?.ok) {
      this.open = 'yes';
      return;
    }
    const seq = this.attempts.get(id);
    if (seq === undefined || outcome === null) return;
    const p = this.pending.get(seq);
    if (p === undefined) return;
    if (!outcome.ok) return; // SESSION_EXPIRED and friends: no effect; it stays pending
    this.pending.delete(seq);
    if (outcome.replayed) this.stats.replayed++;
    const h = this.history[p.history]!;
    let result: OpResult;
    const r = outcome.result;
    const key = p.op.type === 'put' || p.op.type === 'cas' ? p.op.key : '';
    const matches = p.op.type === 'put' ? r.op === 'put' && r.kv.key === key : r.op === 'txn';
    if (!matches) {
      const got = r.op === 'put' ? `a put of ${r.kv.key}` : `a ${r.op}`;
      this.sim.checker.violate(
        'wrong-answer',
        `${node.id} answered ${p.op.type} ${key} with the outcome of ${got}`,
      );
      return;
    }
    if (r.op === 'put') result = { version: r.kv.version };
    else if (r.op === 'txn') {
      const put = r.results[0];
      result =
        r.succeeded && put?.op === 'put'
          ? { succeeded: true, version: put.kv.version }
          : { succeeded: false };
    } else return;
    const version = 'version' in result ? result.version : undefined;
    if (version !== undefined) this.versions.set(key, version);
    this.history[p.history] = { ...h, response: this.sim.now, result };
  }

  /** A read's index was confirmed and the node applied up to it: served from its tree. */
  served(id: string, tree: MemoryTree): boolean {
    const r = this.reads.get(id);
    if (r === undefined) return false;
    this.reads.delete(id);
    const kv = tree.get(r.key);
    this.history[r.history] = {
      ...this.history[r.history]!,
      response: this.sim.now,
      result: { value: text(kv?.value), version: kv?.version ?? 0 },
    };
    this.stats.reads++;
    return true;
  }

  readFailed(id: string): void {
    // A refused read had no effect: it leaves the history (a pending get would be unchecked).
    const r = this.reads.get(id);
    if (r === undefined) return;
    this.reads.delete(id);
    this.history[r.history] = { ...this.history[r.history]!, response: null };
  }

  floorOf(id: string): number | undefined {
    return this.reads.get(id)?.floor;
  }

  // -------------------------------------------------------------------------------------------
  // Checks.

  /** Trees at the same applied index must be identical. */
  private compare(node: SimNode, index: number): void {
    const d = treeDigest(node.tree);
    const seen = this.digests.get(index);
    if (seen === undefined) {
      this.digests.set(index, { node: node.id, digest: d });
      return;
    }
    this.stats.compared++;
    if (seen.digest !== d)
      this.sim.checker.violate(
        'tree-divergence',
        `${node.id}'s key tree at index ${index} differs from ${seen.node}'s`,
      );
  }

  /**
   * After the run: the history is linearizable and no write was applied twice. A write that got
   * no answer took effect iff one of its attempts was committed where it was placed; one that
   * never was (refused, or its entries replaced) had no effect and leaves the history.
   */
  finish(trees: readonly MemoryTree[]): void {
    const dropped = new Set<number>();
    for (const p of this.pending.values()) {
      const at = this.placed.get(p.seq) ?? [];
      if (!at.some((a) => this.sim.checker.committedTerm(a.index) === a.term)) dropped.add(p.history);
    }
    const reads = new Set([...this.reads.values()].map((r) => r.history));
    const history = this.history.filter(
      (h, i) => !dropped.has(i) && !(reads.has(i) && h.response === undefined),
    );
    const checked = checkHistory(history, { maxStates: 50_000 });
    if (checked.ok === false) {
      const ops = checked.ops
        .map(
          (o) =>
            `${JSON.stringify(o.op)} @${o.invoke}-${o.response ?? '?'} -> ${JSON.stringify(o.result ?? null)}`,
        )
        .join('; ');
      this.sim.checker.violate('linearizability', `history on ${checked.key} not linearizable: ${ops}`);
      return;
    }
    if (checked.ok === 'unknown') this.stats.unknown++;
    // Every put value is unique: seen twice in a tree's history means a write applied twice.
    let best: MemoryTree | null = null;
    for (const t of trees) if (best === null || t.appliedIndex > best.appliedIndex) best = t;
    if (best === null) return;
    const seen = new Set<string>();
    for (const e of best.eventsSince(best.compactRevision + 1).events) {
      if (e.type !== 'put' || !e.key.startsWith('/lin/')) continue;
      const v = text(e.value ?? undefined)!;
      if (seen.has(v)) {
        this.sim.checker.violate('applied-twice', `${v} was applied twice to ${e.key}`);
        return;
      }
      seen.add(v);
    }
  }
}

/** The whole state of a tree that replicas must agree on: keys with metadata, revision, sessions. */
export function treeDigest(tree: MemoryTree): string {
  const kvs: KeyValue[] = tree.range('/').kvs;
  let h = 2166136261;
  const mix = (s: string) => {
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  };
  mix(`r${tree.revision}`);
  for (const kv of kvs)
    mix(`${kv.key}=${text(kv.value)}/${kv.version}/${kv.createRevision}/${kv.modRevision}/${kv.session}`);
  for (const s of tree.sessions()) mix(`s${s.id}/${s.lowSeq}`);
  return (h >>> 0).toString(16);
}
