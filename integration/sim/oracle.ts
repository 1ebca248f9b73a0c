/**
 * The checker's own model of Raft's data, built only from what the simulator observes: the
 * writes each node issues (`persist`, `restore` effects), what its disk holds, the messages it
 * sends and receives. Nothing here calls the implementation's log view, `configAt`,
 * `currentConfig`, `quorum` or `termAt` (machines/raft/state.ts): a bug there must show up as
 * a disagreement with this model, not be copied into it. Only the plain data types are shared.
 */
import type { Configuration, Entry, SnapshotMeta } from '../../machines/raft/index.ts';
import type { SimDisk } from './disk.ts';

/** A majority of `voters` (§5.2): any two intersect, which is all safety needs. */
export function quorumSize(voters: readonly string[]): number {
  return Math.floor(voters.length / 2) + 1;
}

/** Whether the nodes for which `has` holds form a majority of `voters`. */
export function isQuorum(voters: readonly string[], has: (id: string) => boolean): boolean {
  let n = 0;
  for (const v of voters) if (has(v)) n++;
  return n >= quorumSize(voters);
}

/** Voters in one configuration and not the other: single-server changes keep this <= 1
 * (thesis §4.1), which is what makes the majorities of consecutive configurations overlap. */
export function voterChanges(a: Configuration, b: Configuration): number {
  let n = 0;
  for (const v of a.voters) if (!b.voters.includes(v)) n++;
  for (const v of b.voters) if (!a.voters.includes(v)) n++;
  return n;
}

export function describeConfig(c: Configuration): string {
  return `{${c.voters.join(',')}${c.learners.length > 0 ? ` +${c.learners.join(',')}` : ''}}`;
}

const digests = new WeakMap<Entry, number>();

/** A digest of an entry's content (not its index or term). The simulator hands entry objects
 * around by reference, so each is hashed once. */
export function digest(e: Entry): number {
  let h = digests.get(e);
  if (h !== undefined) return h;
  h = 2166136261;
  if (e.type === 'normal' && e.data instanceof Uint8Array) {
    // A real command: hash its bytes (JSON of a byte array would be slow and large).
    for (let i = 0; i < e.data.length; i++) h = Math.imul(h ^ e.data[i]!, 16777619);
  } else {
    const s = JSON.stringify(e.type === 'normal' ? e.data : e.type === 'config' ? e.config : 'noop');
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  }
  h |= 0;
  digests.set(e, h);
  return h;
}

/**
 * Configurations by log index, each in force from its own index on (thesis §4.1: a server
 * uses the latest configuration in its log, committed or not), over the configuration of the
 * snapshot the log starts from.
 */
export class ConfigHistory {
  private readonly index: number[] = [];
  private readonly config: Configuration[] = [];

  constructor(
    private baseIndex: number,
    private base: Configuration,
  ) {}

  reset(baseIndex: number, base: Configuration): void {
    this.baseIndex = baseIndex;
    this.base = base;
    this.index.length = 0;
    this.config.length = 0;
  }

  /** Forgets configurations at `from` and above (a truncated suffix). */
  truncate(from: number): void {
    let n = this.index.length;
    while (n > 0 && this.index[n - 1]! >= from) n--;
    this.index.length = n;
    this.config.length = n;
  }

  add(index: number, config: Configuration): void {
    this.truncate(index);
    this.index.push(index);
    this.config.push(config);
  }

  /** Adds a configuration in index order without dropping later ones. */
  insert(index: number, config: Configuration): void {
    let k = this.index.length;
    while (k > 0 && this.index[k - 1]! > index) k--;
    if (k > 0 && this.index[k - 1] === index) return;
    this.index.splice(k, 0, index);
    this.config.splice(k, 0, config);
  }

  /** The configuration in force at `i`. */
  at(i: number): Configuration {
    for (let k = this.index.length - 1; k >= 0; k--) if (this.index[k]! <= i) return this.config[k]!;
    return this.base;
  }

  /** Index of the configuration in force at `i` (the base's index when none is later). */
  indexAt(i: number): number {
    for (let k = this.index.length - 1; k >= 0; k--) if (this.index[k]! <= i) return this.index[k]!;
    return this.baseIndex;
  }

  latest(): Configuration {
    return this.config.length > 0 ? this.config[this.config.length - 1]! : this.base;
  }

  latestIndex(): number {
    return this.index.length > 0 ? this.index[this.index.length - 1]! : this.baseIndex;
  }
}

/**
 * One node's log as the node itself has written it: every write it issued, in order, whether
 * or not it is durable yet (the machine steps against exactly that view), over the snapshot
 * it last installed or restarted from. Rebuilt from the disk when the node restarts, since a
 * crash loses what was in flight.
 */
export class ShadowLog {
  base: number;
  baseTerm: number;
  private held: Entry[] = [];
  readonly configs: ConfigHistory;

  constructor(snapshot: SnapshotMeta) {
    this.base = snapshot.index;
    this.baseTerm = snapshot.term;
    this.configs = new ConfigHistory(snapshot.index, snapshot.config);
  }

  /** The log a node restarts with: its durable snapshot and durable entries. */
  static fromDisk(disk: SimDisk): ShadowLog {
    const s = new ShadowLog(disk.snapshot);
    const first = disk.log.firstIndex();
    const last = disk.log.lastIndex();
    if (last >= first) s.write(disk.log.entries(first, last + 1));
    return s;
  }

  last(): number {
    return this.base + this.held.length;
  }

  lastTerm(): number {
    return this.term(this.last()) ?? 0;
  }

  /** Term at `i` for `i` in [base, last]; undefined below the snapshot or past the end. */
  term(i: number): number | undefined {
    if (i === this.base) return this.baseTerm;
    if (i < this.base) return undefined;
    return this.held[i - this.base - 1]?.term;
  }

  entry(i: number): Entry | undefined {
    return i > this.base ? this.held[i - this.base - 1] : undefined;
  }

  /** Writes `entries` (contiguous), replacing the suffix from the first one's index. Returns
   * false, writing nothing, if they would leave a gap or start inside the snapshot. */
  write(entries: readonly Entry[]): boolean {
    if (entries.length === 0) return true;
    const k = entries[0]!.index;
    if (k > this.last() + 1 || k <= this.base) return false;
    this.held.length = k - this.base - 1;
    this.configs.truncate(k);
    for (const e of entries) {
      this.held.push(e);
      if (e.type === 'config') this.configs.add(e.index, e.config);
    }
    return true;
  }

  /** An installed snapshot replaces the whole log (§7). */
  reset(snapshot: SnapshotMeta): void {
    this.base = snapshot.index;
    this.baseTerm = snapshot.term;
    this.held = [];
    this.configs.reset(snapshot.index, snapshot.config);
  }
}

/**
 * The committed log as the cluster has claimed it: an index enters when any node's commit
 * index first covers it, with the entry that node held there and the term in which it was
 * committed (the claimer's). Claims that disagree are a state machine safety violation (the
 * caller reports them).
 */
export class CommittedLog {
  private readonly terms: number[] = [];
  private readonly digests: number[] = [];
  private readonly inTerms: number[] = [];
  /** Terms with at least one committed entry. */
  readonly termsCommitted = new Set<number>();
  max = 0;
  readonly configs: ConfigHistory;

  constructor(boot: SnapshotMeta) {
    this.configs = new ConfigHistory(boot.index, boot.config);
  }

  term(i: number): number | undefined {
    return this.terms[i];
  }

  digest(i: number): number | undefined {
    return this.digests[i];
  }

  /** The term in which index `i` was committed. */
  committedIn(i: number): number | undefined {
    return this.inTerms[i];
  }

  has(i: number): boolean {
    return this.terms[i] !== undefined;
  }

  add(e: Entry, inTerm: number): void {
    this.terms[e.index] = e.term;
    this.inTerms[e.index] = inTerm;
    this.digests[e.index] = digest(e);
    this.termsCommitted.add(e.term);
    if (e.type === 'config') this.configs.insert(e.index, e.config);
    if (e.index > this.max) this.max = e.index;
  }
}
