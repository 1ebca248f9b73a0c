/**
 * A linearizability checker for concurrent client histories of key-tree operations: the
 * Wing & Gong search with Lowe's optimisations ("Testing for linearizability", 2017), as in
 * Knossos and Porcupine.
 *
 * History. Each operation has a client, an invocation time and, when its answer was seen, a
 * response time and the observed result. Operation A precedes B in real time iff
 * `A.response < B.invoke` (strictly: equal times count as overlapping). An operation without a
 * response (a timeout, a client that died) may have taken effect at any point after its
 * invocation, or never: the checker may place it anywhere after `invoke` or leave it out, and
 * its result is not checked. An operation known to have failed without effect (a definite error)
 * should be left out of the history; a compare-and-set that answered "compare failed" is an
 * ordinary completed operation (`succeeded: false`). Times only need to be comparable numbers
 * on one clock; `client` is carried into explanations and not otherwise used (one client's
 * operations may overlap).
 *
 * Model. A map key → {value, version}, every key absent at first. Versions follow the key tree
 * (storage/tree): an absent key has version 0; a put makes it previous + 1 (1 when the key was
 * absent); a delete makes the key absent, so a key recreated after a delete starts again at 1.
 * Values are strings compared with `===` (give bytes as text, hex or base64).
 *
 * What is checked, for a completed operation (pending ones are never checked):
 * - get: the value (null: absent) always; the version when the result gives one (0: absent).
 * - put: the new version when the result gives one.
 * - delete: whether a key was deleted, when the result says (`deleted`).
 * - cas (a txn `version(key) == expectedVersion ? put(key, value)`): `succeeded` always; the
 *   new version, when given on success.
 * - txn: `succeeded` (every compare held) always; when `results` is given, the result of each
 *   operation of the branch taken, as for get, put and delete above. The operations of a branch
 *   apply in order, all at one point. Compares: `version` (a number; 0 when absent), `value` (a
 *   string; false for an absent key, whatever the relation), `exists` (a boolean, eq/ne only),
 *   with eq, ne, lt, gt (values in JavaScript string order).
 * Revisions are not checked: they are global across keys, so checking them would put every key
 * into one partition (see below). Any other field of a result is ignored.
 *
 * Search. Operations become call and return events in a doubly linked list in time order (a
 * call before a return at equal times). Depth first, the search linearizes any operation whose
 * call comes before the first return still in the list and whose observed result the model
 * allows, removing its events, and backtracks when it meets the return of an operation not
 * yet linearized. Lowe's memo skips a (linearized set, model state) pair already explored.
 * The history is linearizable once every completed operation is linearized (pending ones may
 * stay out). Three prunings, each keeping the search complete (the tests compare it with an
 * exhaustive oracle on many thousands of random histories):
 * - a read-only operation (a completed get, failed CAS, txn whose branch taken only reads)
 *   that fits the state now is linearized now with no alternative tried: in any valid
 *   continuation it could move here, since everything that must precede it is linearized;
 * - a pending operation is never placed where it would change nothing (leaving it out is the
 *   same), and a pending operation that can write nothing is dropped altogether;
 * - at each point completed operations are tried before pending ones, so a pending write goes in
 *   as late as the answers allow (an order of trying, not a restriction).
 *
 * P-compositionality. Linearizability is local (Herlihy & Wing): a history is linearizable iff
 * its subhistory on each object is. Keys touched together by one operation (a txn's compares
 * and both of its branches) form one object: partitions are the connected components of "an
 * operation touches both keys", and each is checked on its own, in key order (a txn that
 * touches no key at all is ignored).
 *
 * Limits. The search is exponential in the worst case (many overlapping operations, above all
 * pending ones, which may each be in or out). `maxStates` bounds the memo of each partition:
 * past it the partition is "unknown" and the next one is checked, so a call costs at most
 * (partitions × maxStates) states and never hangs. A definite violation in any partition wins
 * over an unknown elsewhere. createSequential is not modelled (it would tie every child of a
 * parent to the parent's counter: give those keys to the history as puts, or leave them out).
 *
 * Explanation. For a violation the checker reports the partition (`key`: its first key, `keys`:
 * all of them) and a small set of its operations, found by delta debugging (Zeller's ddmin):
 * the reported operations, exactly as observed and with nothing else, are not linearizable, and
 * removing any one of them makes them linearizable, except where the removal would take away
 * every operation that wrote something another reported operation observed (a value or
 * version read, the version a CAS or an `eq` compare relied on): a read is reported with the
 * writes it read from, not as "a value never written", which it would be on its own. A value
 * no operation wrote is reported alone. Shrinking has its own budget (`maxExplainStates`);
 * `minimal` is false when it ran out or a candidate could not be decided within `maxStates`
 * (the operations are still a violation, only perhaps not the smallest).
 */

export type CompareTarget = 'version' | 'value' | 'exists';
export type CompareResult = 'eq' | 'ne' | 'lt' | 'gt';

/** `key`'s `target` compared with `value` by `result` (see the file comment). */
export interface Compare {
  readonly key: string;
  readonly target: CompareTarget;
  readonly result: CompareResult;
  readonly value: number | string | boolean;
}

/** An operation inside a txn branch. */
export type TxnOp =
  | { readonly type: 'get'; readonly key: string }
  | { readonly type: 'put'; readonly key: string; readonly value: string }
  | { readonly type: 'delete'; readonly key: string };

export type Op =
  | TxnOp
  | { readonly type: 'cas'; readonly key: string; readonly expectedVersion: number; readonly value: string }
  | {
      readonly type: 'txn';
      readonly compare: readonly Compare[];
      readonly success: readonly TxnOp[];
      readonly failure?: readonly TxnOp[];
    };

export interface GetResult {
  readonly value: string | null;
  readonly version?: number;
}
export interface PutResult {
  readonly version?: number;
}
export interface DeleteResult {
  readonly deleted?: boolean;
}
export interface CasResult {
  readonly succeeded: boolean;
  readonly version?: number;
}
export type TxnOpResult = GetResult | PutResult | DeleteResult;
export interface TxnResult {
  readonly succeeded: boolean;
  /** One per operation of the branch taken, in order. */
  readonly results?: readonly TxnOpResult[];
}
export type OpResult = GetResult | PutResult | DeleteResult | CasResult | TxnResult;

/** One operation of a history. */
export interface HistoryOp {
  readonly client: string | number;
  readonly invoke: number;
  /** When the answer arrived; absent or null: none arrived (the operation is pending). */
  readonly response?: number | null;
  readonly op: Op;
  /** What the answer said; required when `response` is given, ignored otherwise. */
  readonly result?: OpResult;
}

export interface CheckOptions {
  /** States (linearized set, model state) each partition may explore (default 100 000). */
  readonly maxStates?: number;
  /** States all the searches of shrinking a violation may explore (default 10 × maxStates). */
  readonly maxExplainStates?: number;
}

export type CheckResult =
  | { readonly ok: true; readonly states: number }
  | {
      readonly ok: false;
      /** The first key of the violating partition. */
      readonly key: string;
      readonly keys: readonly string[];
      /** The operations of the explanation, as given, by invocation time. */
      readonly ops: readonly HistoryOp[];
      /** Whether shrinking finished (else `ops` is a violation, perhaps not a minimal one). */
      readonly minimal: boolean;
      readonly states: number;
    }
  | {
      readonly ok: 'unknown';
      /** The first partition that exceeded the budget. */
      readonly key: string;
      readonly keys: readonly string[];
      readonly states: number;
    };

/**
 * Decides whether `history` is linearizable with respect to the key-tree model. Throws
 * `TypeError` for a malformed history (an unknown operation, a completed operation without its
 * result, a response before its invocation, a result of the wrong shape).
 */
export function checkHistory(history: readonly HistoryOp[], options: CheckOptions = {}): CheckResult {
  const maxStates = options.maxStates ?? 100_000;
  if (!Number.isInteger(maxStates) || maxStates < 1)
    throw new TypeError('maxStates must be a positive integer');
  const maxExplainStates = options.maxExplainStates ?? 10 * maxStates;
  if (!Number.isInteger(maxExplainStates) || maxExplainStates < 0)
    throw new TypeError('maxExplainStates must be a non-negative integer');
  history.forEach(validate);
  return check(history, maxStates, maxExplainStates);
}

// ---------------------------------------------------------------------------------------------
// Validation

const isCount = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;
const isKey = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

function validateTxnOp(o: TxnOp, at: string): void {
  if (o === null || typeof o !== 'object') throw new TypeError(`${at} must be an operation`);
  if (!isKey(o.key)) throw new TypeError(`${at}.key must be a non-empty string`);
  if (o.type === 'put') {
    if (typeof o.value !== 'string') throw new TypeError(`${at}.value must be a string`);
  } else if (o.type !== 'get' && o.type !== 'delete') {
    throw new TypeError(`${at}.type must be get, put or delete`);
  }
}

function validateOpResult(o: TxnOp, r: TxnOpResult | undefined, at: string): void {
  if (r === null || typeof r !== 'object') throw new TypeError(`${at} must be an object`);
  const version = (r as PutResult).version;
  if (version !== undefined && !isCount(version)) throw new TypeError(`${at}.version must be a count`);
  if (o.type === 'get') {
    const value = (r as GetResult).value;
    if (value !== null && typeof value !== 'string')
      throw new TypeError(`${at}.value must be a string or null`);
  } else if (o.type === 'delete') {
    const deleted = (r as DeleteResult).deleted;
    if (deleted !== undefined && typeof deleted !== 'boolean')
      throw new TypeError(`${at}.deleted must be a boolean`);
  }
}

function validate(h: HistoryOp, i: number): void {
  const at = `history[${i}]`;
  if (h === null || typeof h !== 'object') throw new TypeError(`${at} must be an object`);
  if (!Number.isFinite(h.invoke)) throw new TypeError(`${at}.invoke must be a finite number`);
  const pending = h.response === undefined || h.response === null;
  if (!pending && !(Number.isFinite(h.response) && (h.response as number) >= h.invoke))
    throw new TypeError(`${at}.response must be a finite number >= invoke`);
  const op = h.op;
  if (op === null || typeof op !== 'object') throw new TypeError(`${at}.op must be an operation`);
  const r = h.result;
  if (!pending && (r === null || typeof r !== 'object'))
    throw new TypeError(`${at}: a completed operation needs its result`);
  switch (op.type) {
    case 'get':
    case 'put':
    case 'delete':
      validateTxnOp(op, `${at}.op`);
      if (!pending) validateOpResult(op, r as TxnOpResult, `${at}.result`);
      return;
    case 'cas':
      if (!isKey(op.key)) throw new TypeError(`${at}.op.key must be a non-empty string`);
      if (!isCount(op.expectedVersion)) throw new TypeError(`${at}.op.expectedVersion must be a count`);
      if (typeof op.value !== 'string') throw new TypeError(`${at}.op.value must be a string`);
      if (!pending) {
        const c = r as CasResult;
        if (typeof c.succeeded !== 'boolean') throw new TypeError(`${at}.result.succeeded must be a boolean`);
        if (c.version !== undefined && !isCount(c.version))
          throw new TypeError(`${at}.result.version must be a count`);
      }
      return;
    case 'txn': {
      if (!Array.isArray(op.compare) || !Array.isArray(op.success))
        throw new TypeError(`${at}.op needs compare and success arrays`);
      if (op.failure !== undefined && !Array.isArray(op.failure))
        throw new TypeError(`${at}.op.failure must be an array`);
      op.compare.forEach((c, j) => {
        const cat = `${at}.op.compare[${j}]`;
        if (c === null || typeof c !== 'object' || !isKey(c.key))
          throw new TypeError(`${cat}.key must be a non-empty string`);
        if (!['eq', 'ne', 'lt', 'gt'].includes(c.result))
          throw new TypeError(`${cat}.result must be eq, ne, lt or gt`);
        if (c.target === 'version') {
          if (!isCount(c.value)) throw new TypeError(`${cat}.value must be a count`);
        } else if (c.target === 'value') {
          if (typeof c.value !== 'string') throw new TypeError(`${cat}.value must be a string`);
        } else if (c.target === 'exists') {
          if (typeof c.value !== 'boolean' || (c.result !== 'eq' && c.result !== 'ne'))
            throw new TypeError(`${cat}: exists takes a boolean and eq or ne`);
        } else throw new TypeError(`${cat}.target must be version, value or exists`);
      });
      op.success.forEach((o, j) => {
        validateTxnOp(o, `${at}.op.success[${j}]`);
      });
      (op.failure ?? []).forEach((o, j) => {
        validateTxnOp(o, `${at}.op.failure[${j}]`);
      });
      if (!pending) {
        const t = r as TxnResult;
        if (typeof t.succeeded !== 'boolean') throw new TypeError(`${at}.result.succeeded must be a boolean`);
        if (t.results !== undefined) {
          const branch = t.succeeded ? op.success : (op.failure ?? []);
          if (!Array.isArray(t.results) || t.results.length !== branch.length)
            throw new TypeError(
              `${at}.result.results must have one result per operation of the branch taken`,
            );
          branch.forEach((o, j) => {
            validateOpResult(o, t.results![j], `${at}.result.results[${j}]`);
          });
        }
      }
      return;
    }
    default:
      throw new TypeError(`${at}.op.type must be get, put, delete, cas or txn`);
  }
}

// ---------------------------------------------------------------------------------------------
// The model, compiled per partition (keys become indices into the state array)

type Entry = { readonly value: string; readonly version: number } | null;
/** The partition's keys' entries, by the partition's key index. Never mutated. */
type State = readonly Entry[];

interface CompiledCompare {
  readonly k: number;
  readonly target: CompareTarget;
  readonly result: CompareResult;
  readonly value: number | string | boolean;
}
type CompiledTxnOp =
  | { readonly type: 'get'; readonly k: number }
  | { readonly type: 'put'; readonly k: number; readonly value: string }
  | { readonly type: 'delete'; readonly k: number };

/** Every operation as a txn: compares, two branches, and what the answer said (if anything). */
interface Program {
  readonly compare: readonly CompiledCompare[];
  readonly success: readonly CompiledTxnOp[];
  readonly failure: readonly CompiledTxnOp[];
  /** Undefined: not checked (a pending operation). */
  readonly succeeded: boolean | undefined;
  /** Results of the branch `succeeded` names; undefined: not checked. */
  readonly results: readonly TxnOpResult[] | undefined;
}

interface Compiled {
  readonly source: HistoryOp;
  readonly invoke: number;
  /** `Infinity` when pending. */
  readonly response: number;
  readonly pending: boolean;
  /**
   * Completed, and the branch its answer names only reads (a get, a failed CAS, a txn whose
   * branch taken has only gets): it changes nothing wherever it is placed. (A delete whose
   * answer does not say whether it deleted, or a pending operation, may change nothing at one
   * point and something at another: not read-only.)
   */
  readonly readOnly: boolean;
  readonly program: Program;
  /** Observation tokens (value or version of a key the operation saw) and the ones it makes. */
  readonly observes: readonly string[];
  readonly produces: readonly string[];
}

const keysOf = (op: Op): string[] => {
  if (op.type !== 'txn') return [op.key];
  return [
    ...op.compare.map((c) => c.key),
    ...op.success.map((o) => o.key),
    ...(op.failure ?? []).map((o) => o.key),
  ];
};

function holds(c: CompiledCompare, e: Entry): boolean {
  let cmp: number;
  if (c.target === 'exists') cmp = (e !== null) === c.value ? 0 : 1;
  else if (c.target === 'version') cmp = (e?.version ?? 0) - (c.value as number);
  else {
    if (e === null) return false;
    cmp = e.value === c.value ? 0 : e.value < (c.value as string) ? -1 : 1;
  }
  switch (c.result) {
    case 'eq':
      return cmp === 0;
    case 'ne':
      return cmp !== 0;
    case 'lt':
      return cmp < 0;
    case 'gt':
      return cmp > 0;
  }
}

/** The state after `p` at one point, or null when its observed answer cannot come from `state`. */
function run(p: Program, state: State): State | null {
  let ok = true;
  for (const c of p.compare) {
    if (!holds(c, state[c.k]!)) {
      ok = false;
      break;
    }
  }
  if (p.succeeded !== undefined && p.succeeded !== ok) return null;
  const ops = ok ? p.success : p.failure;
  const expect = p.results;
  let next: Entry[] | null = null; // copied on the first write
  for (let i = 0; i < ops.length; i++) {
    const o = ops[i]!;
    const cur = (next ?? state)[o.k]!;
    const e = expect?.[i];
    if (o.type === 'get') {
      if (e !== undefined) {
        if ((e as GetResult).value !== (cur?.value ?? null)) return null;
        const v = (e as GetResult).version;
        if (v !== undefined && v !== (cur?.version ?? 0)) return null;
      }
    } else if (o.type === 'put') {
      const version = (cur?.version ?? 0) + 1;
      const v = (e as PutResult | undefined)?.version;
      if (v !== undefined && v !== version) return null;
      next ??= [...state];
      next[o.k] = { value: o.value, version };
    } else {
      const d = (e as DeleteResult | undefined)?.deleted;
      if (d !== undefined && d !== (cur !== null)) return null;
      if (cur !== null) {
        next ??= [...state];
        next[o.k] = null;
      }
    }
  }
  return next ?? state;
}

const valueToken = (key: string, value: string) => `v ${key} ${JSON.stringify(value)}`;
const versionToken = (key: string, version: number) => `n ${key} ${version}`;

function compile(h: HistoryOp, index: ReadonlyMap<string, number>): Compiled {
  const pending = h.response === undefined || h.response === null;
  const k = (key: string) => index.get(key)!;
  const op = h.op;
  const txnOp = (o: TxnOp): CompiledTxnOp =>
    o.type === 'put' ? { type: 'put', k: k(o.key), value: o.value } : { type: o.type, k: k(o.key) };
  const observes: string[] = [];
  const produces: string[] = [];
  let program: Program;
  // Observations and productions of one branch operation, given its result (if known).
  const trace = (o: TxnOp, r: TxnOpResult | undefined) => {
    if (o.type === 'get' && r !== undefined) {
      const g = r as GetResult;
      if (g.value !== null) observes.push(valueToken(o.key, g.value));
      if (g.version !== undefined && g.version > 0) observes.push(versionToken(o.key, g.version));
    } else if (o.type === 'put') {
      produces.push(valueToken(o.key, o.value));
      const v = (r as PutResult | undefined)?.version;
      if (v !== undefined) {
        produces.push(versionToken(o.key, v));
        if (v > 1) observes.push(versionToken(o.key, v - 1));
      }
    }
  };
  if (op.type === 'cas') {
    const r = pending ? undefined : (h.result as CasResult);
    const put: TxnOp = { type: 'put', key: op.key, value: op.value };
    program = {
      compare: [{ k: k(op.key), target: 'version', result: 'eq', value: op.expectedVersion }],
      success: [txnOp(put)],
      failure: [],
      succeeded: r?.succeeded,
      results: r === undefined ? undefined : r.succeeded ? [{ version: r.version }] : [],
    };
    if (r === undefined || r.succeeded) {
      produces.push(valueToken(op.key, op.value), versionToken(op.key, op.expectedVersion + 1));
      if (r !== undefined && op.expectedVersion > 0) observes.push(versionToken(op.key, op.expectedVersion));
    }
  } else if (op.type === 'txn') {
    const r = pending ? undefined : (h.result as TxnResult);
    const failure = op.failure ?? [];
    program = {
      compare: op.compare.map((c) => ({ k: k(c.key), target: c.target, result: c.result, value: c.value })),
      success: op.success.map(txnOp),
      failure: failure.map(txnOp),
      succeeded: r?.succeeded,
      results: r?.results,
    };
    if (r === undefined) {
      for (const o of [...op.success, ...failure]) trace(o, undefined);
    } else {
      const branch = r.succeeded ? op.success : failure;
      branch.forEach((o, i) => {
        trace(o, r.results?.[i]);
      });
      if (r.succeeded) {
        for (const c of op.compare) {
          if (c.result !== 'eq') continue;
          if (c.target === 'value') observes.push(valueToken(c.key, c.value as string));
          else if (c.target === 'version' && (c.value as number) > 0)
            observes.push(versionToken(c.key, c.value as number));
        }
      }
    }
  } else {
    const r = pending ? undefined : (h.result as TxnOpResult);
    program = {
      compare: [],
      success: [txnOp(op)],
      failure: [],
      succeeded: pending ? undefined : true,
      results: r === undefined ? undefined : [r],
    };
    trace(op, r);
  }
  return {
    source: h,
    invoke: h.invoke,
    response: pending ? Number.POSITIVE_INFINITY : (h.response as number),
    pending,
    readOnly:
      program.succeeded !== undefined &&
      (program.succeeded ? program.success : program.failure).every((x) => x.type === 'get'),
    program,
    observes,
    produces,
  };
}

// ---------------------------------------------------------------------------------------------
// The search

type Verdict = 'ok' | 'fail' | 'unknown';
type Phase = 0 | 1;

const stateKeys = new WeakMap<State, string>();
function stateKey(s: State): string {
  let key = stateKeys.get(s);
  if (key === undefined) {
    key = s.map((e) => (e === null ? '-' : `${e.version}:${JSON.stringify(e.value)}`)).join(',');
    stateKeys.set(s, key);
  }
  return key;
}

/**
 * Wing & Gong with Lowe's memo over `ops` (one partition, or part of one) from the state with
 * `width` absent keys. Explores at most `maxStates` distinct (linearized set, state) pairs.
 */
function search(
  all: readonly Compiled[],
  width: number,
  maxStates: number,
): { verdict: Verdict; states: number } {
  // A pending operation that writes nothing in either branch can change nothing: leave it out.
  const ops = all.filter(
    (o) => !o.pending || [...o.program.success, ...o.program.failure].some((x) => x.type !== 'get'),
  );
  const n = ops.length;
  // Nodes: 0 head, 1..2n events, 2n+1 tail. Each event node knows its operation and, for a call,
  // its return node.
  const HEAD = 0;
  const TAIL = 2 * n + 1;
  const events = ops.flatMap((o, id) => [
    { id, call: true, time: o.invoke },
    { id, call: false, time: o.response },
  ]);
  events.sort((a, b) => a.time - b.time || (a.call === b.call ? a.id - b.id : a.call ? -1 : 1));
  const next = new Int32Array(TAIL + 1);
  const prev = new Int32Array(TAIL + 1);
  const opOf = new Int32Array(TAIL + 1);
  const isCall = new Uint8Array(TAIL + 1);
  const match = new Int32Array(TAIL + 1);
  const callNode = new Int32Array(n);
  events.forEach((e, i) => {
    const node = i + 1;
    opOf[node] = e.id;
    isCall[node] = e.call ? 1 : 0;
    if (e.call) callNode[e.id] = node;
    else match[callNode[e.id]!] = node;
  });
  for (let i = 0; i <= TAIL; i++) {
    next[i] = i + 1;
    prev[i] = i - 1;
  }
  const lift = (c: number) => {
    next[prev[c]!] = next[c]!;
    prev[next[c]!] = prev[c]!;
    const r = match[c]!;
    next[prev[r]!] = next[r]!;
    prev[next[r]!] = prev[r]!;
  };
  const unlift = (c: number) => {
    const r = match[c]!;
    next[prev[r]!] = r;
    prev[next[r]!] = r;
    next[prev[c]!] = c;
    prev[next[c]!] = c;
  };

  const bits = new Uint16Array(Math.max(1, Math.ceil(n / 16)));
  const flip = (id: number) => {
    bits[id >> 4]! ^= 1 << (id & 15);
  };
  const bitsKey = () =>
    bits.length <= 1024 ? String.fromCharCode(...bits) : Buffer.from(bits.buffer).toString('latin1');
  const seen = new Set<string>();
  // Per linearized operation: its call node, the state before it, whether it was free (below),
  // and the phase it was chosen in.
  const stack: number[] = [];
  const states: State[] = [];
  const free: boolean[] = [];
  const phases: Phase[] = [];
  let state: State = Array.from({ length: width }, () => null);
  let remaining = ops.filter((o) => !o.pending).length;
  let node = next[HEAD]!;
  // The candidates at each point are the calls before the first return left, tried completed
  // operations first (phase 0), then pending ones (phase 1): any order is complete, and this one
  // puts a pending write in as late as the answers allow, which is mostly right (many never
  // took effect).
  let phase: Phase = 0;
  /** Undoes linearizations back to the last one that was a choice, and moves past it; false when none is left. */
  const backtrack = (): boolean => {
    for (;;) {
      const c = stack.pop();
      if (c === undefined) return false;
      state = states.pop()!;
      const id = opOf[c]!;
      flip(id);
      if (!ops[id]!.pending) remaining++;
      unlift(c);
      const p = phases.pop()!;
      if (!free.pop()) {
        node = next[c]!;
        phase = p;
        return true;
      }
    }
  };
  for (;;) {
    if (remaining === 0) return { verdict: 'ok', states: seen.size };
    if (node === TAIL) throw new Error('linearizability search: ran off the list'); // cannot happen
    const id = opOf[node]!;
    if (!isCall[node]) {
      if (phase === 0) {
        phase = 1;
        node = next[HEAD]!;
        continue;
      }
      // The first return left in the list: its operation had to be linearized before it.
      if (!backtrack()) return { verdict: 'fail', states: seen.size };
      continue;
    }
    const o = ops[id]!;
    if (o.pending !== (phase === 1)) {
      node = next[node]!;
      continue;
    }
    const after = run(o.program, state);
    // A pending operation that would change nothing here is never worth placing here: leaving
    // it out is the same and keeps it for later.
    if (after === null || (o.pending && after === state)) {
      node = next[node]!;
      continue;
    }
    // A read-only operation whose answer fits the state now is free: it may as well be
    // linearized now, since in any valid continuation it can move here (all that must precede it
    // is linearized: its call comes before the first return left) without changing what anything
    // else sees. So if the search fails past it, it fails here too, and there is nothing to try
    // instead of it.
    const isFree = o.readOnly;
    flip(id);
    const key = `${bitsKey()}|${stateKey(after)}`;
    if (seen.has(key)) {
      flip(id);
      // Seen before means explored and failed (a state on the current path has fewer bits).
      if (isFree) {
        if (!backtrack()) return { verdict: 'fail', states: seen.size };
      } else node = next[node]!;
      continue;
    }
    seen.add(key);
    if (seen.size > maxStates) return { verdict: 'unknown', states: seen.size };
    stack.push(node);
    states.push(state);
    free.push(isFree);
    phases.push(phase);
    state = after;
    if (!o.pending) remaining--;
    lift(node);
    node = next[HEAD]!;
    phase = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Partitions, verdicts, explanations

interface Partition {
  readonly keys: readonly string[];
  readonly ops: readonly Compiled[];
}

function partition(history: readonly HistoryOp[]): Partition[] {
  const parent = new Map<string, string>();
  const find = (k: string): string => {
    let root = k;
    while (parent.get(root) !== root) root = parent.get(root)!;
    for (let x = k; x !== root; ) {
      const up = parent.get(x)!;
      parent.set(x, root);
      x = up;
    }
    return root;
  };
  const keyLists = history.map((h) => [...new Set(keysOf(h.op))]);
  for (const keys of keyLists) {
    for (const k of keys) if (!parent.has(k)) parent.set(k, k);
    for (const k of keys.slice(1)) {
      const a = find(keys[0]!);
      const b = find(k);
      if (a !== b) parent.set(b, a);
    }
  }
  const groups = new Map<string, { keys: string[]; members: HistoryOp[] }>();
  for (const k of parent.keys()) {
    const root = find(k);
    let g = groups.get(root);
    if (g === undefined) groups.set(root, (g = { keys: [], members: [] }));
    g.keys.push(k);
  }
  history.forEach((h, i) => {
    const keys = keyLists[i]!;
    if (keys.length > 0) groups.get(find(keys[0]!))!.members.push(h); // an empty txn touches nothing
  });
  return [...groups.values()]
    .map((g) => {
      const keys = g.keys.sort();
      const index = new Map(keys.map((k, i) => [k, i]));
      return { keys, ops: g.members.map((h) => compile(h, index)) };
    })
    .sort((a, b) => (a.keys[0]! < b.keys[0]! ? -1 : 1));
}

function check(history: readonly HistoryOp[], maxStates: number, maxExplainStates: number): CheckResult {
  let states = 0;
  let unknown: Partition | null = null;
  for (const p of partition(history)) {
    const r = search(p.ops, p.keys.length, maxStates);
    states += r.states;
    if (r.verdict === 'unknown') unknown ??= p;
    if (r.verdict !== 'fail') continue;
    const e = explain(p, maxStates, maxExplainStates);
    return {
      ok: false,
      key: p.keys[0]!,
      keys: p.keys,
      ops: e.ops.map((o) => o.source),
      minimal: e.minimal,
      states: states + e.states,
    };
  }
  if (unknown !== null) return { ok: 'unknown', key: unknown.keys[0]!, keys: unknown.keys, states };
  return { ok: true, states };
}

/**
 * Shrinks a violating partition with ddmin: a candidate subset is kept when it is still a
 * violation (a definite "fail" within `maxStates`) and every observation it holds that some
 * write of the partition produced is still produced by one of its own operations.
 */
function explain(
  p: Partition,
  maxStates: number,
  budget: number,
): { ops: readonly Compiled[]; minimal: boolean; states: number } {
  const producible = new Set(p.ops.flatMap((o) => o.produces));
  let spent = 0;
  /** The shrink budget ran out: stop. */
  let exhausted = false;
  /** A candidate could not be decided within `maxStates`: the result may not be minimal. */
  let undecided = false;
  const supported = (ops: readonly Compiled[]) => {
    const made = new Map<string, number>();
    for (const o of ops) for (const t of o.produces) made.set(t, (made.get(t) ?? 0) + 1);
    return ops.every((o) =>
      o.observes.every((t) => !producible.has(t) || (made.get(t) ?? 0) > (o.produces.includes(t) ? 1 : 0)),
    );
  };
  const violates = (ops: readonly Compiled[]) => {
    if (exhausted || !supported(ops)) return false;
    const allowance = Math.min(maxStates, budget - spent);
    if (allowance <= 0) {
      exhausted = true;
      return false;
    }
    const r = search(ops, p.keys.length, allowance);
    spent += r.states;
    if (r.verdict === 'unknown') {
      if (allowance < maxStates) exhausted = true;
      else undecided = true;
    }
    return r.verdict === 'fail';
  };
  let items = [...p.ops].sort((a, b) => a.invoke - b.invoke);
  let n = 2;
  while (items.length >= 2) {
    const size = Math.ceil(items.length / n);
    let reduced = false;
    for (let i = 0; i < items.length; i += size) {
      const rest = [...items.slice(0, i), ...items.slice(i + size)];
      if (violates(rest)) {
        items = rest;
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (exhausted) break;
    if (!reduced) {
      if (n >= items.length) break;
      n = Math.min(2 * n, items.length);
    }
  }
  return { ops: items, minimal: !exhausted && !undecided, states: spent };
}
