/**
 * The simulator's client: a key-tree workload sent as real requests to each node's real API
 * handlers (actors/api: session checks, proposal and ReadIndex batching, the pending table with
 * its deadlines, answers matched by index and term), applied by the real executor and applier to
 * the node's real key tree, and answered in the real wire format. Recorded as a history for the
 * linearizability checker (linearizability.ts).
 *
 * - It opens a session first (a real `sessionOpen`), then tags every write with it (session,
 *   secret, sequence, lowest unanswered sequence: Raft thesis §6.3). A write not answered in
 *   time, or answered with an error (NOT_LEADER, TIMEOUT, a lost index), is sent again, with the
 *   same tag, to whichever node the client now believes leads: the tree must answer the retry
 *   from its exactly-once table.
 * - Writes are puts of unique values and compare-and-sets (a txn on the key's version) on a few
 *   keys; reads are linearizable gets (ReadIndex).
 * - At the end: the history must be linearizable (per key), no put value may have been applied
 *   twice (in the tree's history), and every node's tree must have been the same at every
 *   applied index where two of them were compared (a digest every DIGEST_EVERY indexes).
 */
import type { Reply } from '../../actors/index.ts';
import { type Entry, nextRandom, seedFrom } from '../../machines/raft/index.ts';
import { type ApiResults, decodeReply, type KeyValue } from '../../protocol/index.ts';
import type { MemoryTree } from '../../storage/index.ts';
import type { SimNode, Simulation } from './cluster.ts';
import { checkHistory, type HistoryOp, type Op, type OpResult } from './linearizability.ts';

const KEYS = ['/lin/a', '/lin/b', '/lin/c', '/lin/d'];
/** A write unanswered this long is sent again (same tag); the wait doubles per attempt. */
const RETRY_MS = 120;
const RETRY_MAX_MS = 1000;
const DIGEST_EVERY = 32;
export const SIM_CLUSTER = 'sim';

/** Where an answer goes: the session's open, a write (by sequence number) or a read. */
export interface SimReply extends Reply {
  readonly open?: true;
  readonly write?: number;
  readonly read?: number;
}

interface Pending {
  readonly seq: number;
  readonly op: Op;
  readonly request: { readonly op: 'put' | 'txn'; readonly body: Record<string, unknown> };
  readonly history: number;
  sentAt: number;
  /** Wait before the next attempt. */
  backoff: number;
}

interface Read {
  readonly history: number;
  /** The highest index any operation returned before it began (the Raft-level read check). */
  readonly floor: number;
}

const text = (v: Uint8Array | undefined): string | null =>
  v === undefined ? null : new TextDecoder().decode(v);

export class Workload {
  readonly history: (HistoryOp & { response?: number | null; result?: OpResult })[] = [];
  private open: 'no' | 'asked' | 'yes' = 'no';
  private openSentAt = Number.NEGATIVE_INFINITY;
  private session: { readonly id: string; readonly secret: Uint8Array } | null = null;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();
  /** The (index, term) each proposed attempt of a write took, by write. */
  private readonly placed = new Map<number, { index: number; term: number }[]>();
  private readonly reads = new Map<number, Read>();
  private nextRead = 0;
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

  private reply(to: { open?: true; write?: number; read?: number }, node: SimNode): SimReply {
    return {
      format: 'cbor',
      base64: false,
      ...to,
      respond: (bytes) => this.answered(to, decodeReply(bytes, { cluster: SIM_CLUSTER }), node),
    };
  }

  // -------------------------------------------------------------------------------------------
  // Requests.

  /**
   * `n` requests through `node`: the session's open until it is answered, writes that waited
   * too long for an answer (again, same tag), then new writes. Always `n`, so the load the
   * cluster sees does not depend on the answers.
   */
  write(node: SimNode, n: number): void {
    let sent = 0;
    if (this.open !== 'yes' && this.sim.now - this.openSentAt >= RETRY_MS) {
      this.open = 'asked';
      this.openSentAt = this.sim.now;
      this.sim.request(
        node,
        'sessionOpen',
        { ttlMs: 7 * 24 * 3600 * 1000 },
        this.reply({ open: true }, node),
      );
      sent++;
    }
    if (this.open === 'yes') {
      for (const p of this.pending.values()) {
        if (sent >= n) break;
        if (this.sim.now - p.sentAt < p.backoff) continue;
        this.stats.retries++;
        p.backoff = Math.min(RETRY_MAX_MS, p.backoff * 2);
        this.send(node, p);
        sent++;
      }
    }
    for (; sent < n; sent++) this.send(node, this.newWrite());
  }

  /** A new write of the history: a put of a unique value, or a compare-and-set on the version. */
  private newWrite(): Pending {
    const key = this.key();
    const seq = ++this.seq;
    const value = `v${seq}`;
    const cas = this.random() < 0.3;
    const known = this.versions.get(key) ?? 0;
    const op: Op = cas ? { type: 'cas', key, expectedVersion: known, value } : { type: 'put', key, value };
    const bytes = new TextEncoder().encode(value);
    const request = cas
      ? ({
          op: 'txn',
          body: {
            compare: [{ key, target: 'version', result: 'eq', value: known }],
            success: [{ op: 'put', key, value: bytes }],
            failure: [],
          },
        } as const)
      : ({ op: 'put', body: { key, value: bytes } } as const);
    this.history.push({ client: 'wl', invoke: this.sim.now, op });
    const p: Pending = { seq, op, request, history: this.history.length - 1, sentAt: 0, backoff: RETRY_MS };
    this.pending.set(seq, p);
    this.stats.writes++;
    return p;
  }

  /**
   * One attempt of a write: tagged with the session once it is open (the lowest unanswered
   * sequence number too), untagged before (such a write is never sent again). Earlier attempts
   * stay known: one may still be proposed (a paused node handles it late) and committed, and
   * its answer is as good as any.
   */
  private send(node: SimNode, p: Pending): void {
    let low = p.seq;
    for (const s of this.pending.keys()) if (s < low) low = s;
    const s = this.open === 'yes' ? this.session : null;
    const body =
      s !== null
        ? { ...p.request.body, client: { session: s.id, secret: s.secret, seq: p.seq, lowSeq: low } }
        : p.request.body;
    if (s === null) p.backoff = Number.POSITIVE_INFINITY;
    p.sentAt = this.sim.now;
    this.sim.request(node, p.request.op, body, this.reply({ write: p.seq }, node));
  }

  /** A linearizable read of one key through `node`; `floor`: the highest index any operation
   * returned before it began. */
  read(node: SimNode, floor: number): void {
    const id = ++this.nextRead;
    const key = this.key();
    this.history.push({ client: 'wl', invoke: this.sim.now, op: { type: 'get', key } });
    this.reads.set(id, { history: this.history.length - 1, floor });
    this.sim.request(node, 'get', { key }, this.reply({ read: id }, node));
  }

  // -------------------------------------------------------------------------------------------
  // Answers.

  /** A node put an attempt of write `seq` in its log at (index, term): it may take effect. */
  proposed(seq: number, index: number, term: number): void {
    const at = this.placed.get(seq);
    if (at === undefined) this.placed.set(seq, [{ index, term }]);
    else at.push({ index, term });
  }

  private answered(
    to: { open?: true; write?: number; read?: number },
    r: ReturnType<typeof decodeReply>,
    node: SimNode,
  ): void {
    if (to.open) {
      if (r.ok && this.open !== 'yes') {
        this.session = r.result as ApiResults['sessionOpen'];
        this.open = 'yes';
      }
      return;
    }
    if (to.read !== undefined) return this.readAnswered(to.read, r, node);
    const p = this.pending.get(to.write!);
    // Already answered, or an error (NOT_LEADER, TIMEOUT, a lost index, SESSION_EXPIRED before
    // the open applied here): no effect known, it stays pending and is sent again.
    if (p === undefined || !r.ok) return;
    const key = p.op.type === 'put' || p.op.type === 'cas' ? p.op.key : '';
    const res = r.result as
      | (ApiResults['put'] & { replayed?: boolean })
      | (ApiResults['txn'] & { replayed?: boolean });
    const isPut = 'kv' in res && res.kv !== undefined;
    const matches = p.op.type === 'put' ? isPut && res.kv.key === key : 'succeeded' in res;
    if (!matches) {
      const got = isPut ? `a put of ${(res as ApiResults['put']).kv.key}` : JSON.stringify(Object.keys(res));
      this.sim.checker.violate('wrong-answer', `${node.id} answered ${p.op.type} ${key} with ${got}`);
      return;
    }
    this.pending.delete(p.seq);
    if (res.replayed) this.stats.replayed++;
    let result: OpResult;
    if ('succeeded' in res) {
      const put = res.results[0];
      result =
        res.succeeded && put?.op === 'put'
          ? { succeeded: true, version: put.kv.version }
          : { succeeded: false };
    } else result = { version: res.kv.version };
    if ('version' in result && result.version !== undefined) this.versions.set(key, result.version);
    this.history[p.history] = { ...this.history[p.history]!, response: this.sim.now, result };
    this.sim.writeAnswered(p.sentAt);
  }

  private readAnswered(id: number, r: ReturnType<typeof decodeReply>, node: SimNode): void {
    const read = this.reads.get(id);
    if (read === undefined) return;
    this.reads.delete(id);
    const h = this.history[read.history]!;
    // A refused read had no effect: it leaves the history (a pending get would be unchecked).
    if (!r.ok) {
      this.history[read.history] = { ...h, response: null };
      return;
    }
    this.sim.readAnswered(node, id, read.floor);
    const kv = (r.result as ApiResults['get']).kv;
    this.history[read.history] = {
      ...h,
      response: this.sim.now,
      result: { value: text(kv?.value), version: kv?.version ?? 0 },
    };
    this.stats.reads++;
  }

  // -------------------------------------------------------------------------------------------
  // Checks.

  /** An entry `node` applied: trees at the same applied index must be identical. */
  applied(node: SimNode, e: Entry): void {
    if (e.index % DIGEST_EVERY !== 0) return;
    const d = treeDigest(node.tree);
    const seen = this.digests.get(e.index);
    if (seen === undefined) {
      this.digests.set(e.index, { node: node.id, digest: d });
      return;
    }
    this.stats.compared++;
    if (seen.digest !== d)
      this.sim.checker.violate(
        'tree-divergence',
        `${node.id}'s key tree at index ${e.index} differs from ${seen.node}'s`,
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
