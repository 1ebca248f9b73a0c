/**
 * The linearizability checker: known-good and known-bad histories, explanations, per-key
 * partitioning on a large generated history, the budget, and agreement with a brute-force
 * oracle (every order of every subset) on thousands of small random histories.
 */
import test from 'ava';
import {
  type CheckResult,
  type Compare,
  checkHistory,
  type HistoryOp,
  type Op,
  type OpResult,
} from './linearizability.ts';

// ---------------------------------------------------------------------------------------------
// Builders: `at(client, invoke, response)` then the operation; response null: pending.

type Span = readonly [client: string | number, invoke: number, response: number | null];
const done = (s: Span, op: Op, result: OpResult | undefined): HistoryOp =>
  s[2] === null
    ? { client: s[0], invoke: s[1], response: null, op }
    : { client: s[0], invoke: s[1], response: s[2], op, result: result! };
const get = (s: Span, key: string, value: string | null, version?: number) =>
  done(s, { type: 'get', key }, version === undefined ? { value } : { value, version });
const put = (s: Span, key: string, value: string, version?: number) =>
  done(s, { type: 'put', key, value }, version === undefined ? {} : { version });
const del = (s: Span, key: string, deleted?: boolean) =>
  done(s, { type: 'delete', key }, deleted === undefined ? {} : { deleted });
const cas = (s: Span, key: string, expectedVersion: number, value: string, succeeded?: boolean) =>
  done(s, { type: 'cas', key, expectedVersion, value }, { succeeded: succeeded ?? false });

const failure = (r: CheckResult) => {
  if (r.ok !== false) throw new Error(`expected a violation, got ${JSON.stringify(r)}`);
  return r;
};

// ---------------------------------------------------------------------------------------------
// Known good

test('a sequential history is linearizable', (t) => {
  const h = [
    get([1, 0, 1], '/a', null, 0),
    put([1, 2, 3], '/a', 'x', 1),
    get([2, 4, 5], '/a', 'x', 1),
    put([2, 6, 7], '/a', 'y', 2),
    cas([1, 8, 9], '/a', 2, 'z', true),
    cas([2, 10, 11], '/a', 2, 'w', false),
    get([1, 12, 13], '/a', 'z', 3),
    del([2, 14, 15], '/a', true),
    del([2, 16, 17], '/a', false),
    get([1, 18, 19], '/a', null, 0),
    put([1, 20, 21], '/a', 'again', 1), // recreated: the version starts over
  ];
  t.deepEqual(checkHistory(h).ok, true);
  t.deepEqual(checkHistory([]).ok, true);
});

test('overlapping operations are linearizable when some order explains every answer', (t) => {
  // a and b overlap; a reader saw b first (version 1), a later reader saw a (version 2): so b, a.
  const h = [
    put(['w1', 0, 10], '/k', 'a'),
    put(['w2', 1, 11], '/k', 'b'),
    get(['r1', 2, 3], '/k', 'b', 1),
    get(['r2', 12, 13], '/k', 'a', 2),
  ];
  t.is(checkHistory(h).ok, true);
  // Equal times overlap: a read answered at the very instant a write was invoked may see it.
  t.is(checkHistory([put([1, 5, 6], '/k', 'v'), get([2, 0, 5], '/k', 'v')]).ok, true);
  // Two CAS from the same version overlap: exactly one wins, either one.
  const race = [
    put([0, 0, 1], '/c', 'init', 1),
    cas([1, 2, 6], '/c', 1, 'one', false),
    cas([2, 3, 5], '/c', 1, 'two', true),
    get([3, 7, 8], '/c', 'two', 2),
  ];
  t.is(checkHistory(race).ok, true);
});

test('a pending operation may have taken effect, late or never', (t) => {
  const tookEffect = [put([1, 0, null], '/p', 'maybe'), get([2, 5, 6], '/p', 'maybe', 1)];
  t.is(checkHistory(tookEffect).ok, true);
  const never = [put([1, 0, null], '/p', 'maybe'), get([2, 5, 6], '/p', null), get([2, 7, 8], '/p', null)];
  t.is(checkHistory(never).ok, true);
  // Long after: a pending write may land after later completed operations.
  const late = [
    put([1, 0, null], '/p', 'late'),
    put([2, 1, 2], '/p', 'x', 1),
    get([2, 3, 4], '/p', 'x', 1),
    get([2, 100, 101], '/p', 'late', 2),
  ];
  t.is(checkHistory(late).ok, true);
  // A pending CAS applies only where its compare holds.
  const pendingCas = [
    put([1, 0, 1], '/q', 'a', 1),
    cas([2, 2, null], '/q', 1, 'b'),
    get([3, 10, 11], '/q', 'b', 2),
  ];
  t.is(checkHistory(pendingCas).ok, true);
  const impossibleCas = [cas([2, 2, null], '/q', 7, 'b'), get([3, 10, 11], '/q', 'b')];
  t.is(checkHistory(impossibleCas).ok, false);
  // Only pending operations: nothing to explain.
  t.is(checkHistory([put([1, 0, null], '/z', 'v'), get([2, 0, null], '/z', 'nonsense')]).ok, true);
});

test('a multi-key txn is atomic and its keys share one partition', (t) => {
  const transfer: Op = {
    type: 'txn',
    compare: [{ key: '/acct/a', target: 'value', result: 'eq', value: '10' }],
    success: [
      { type: 'put', key: '/acct/a', value: '5' },
      { type: 'put', key: '/acct/b', value: '5' },
    ],
    failure: [{ type: 'get', key: '/acct/a' }],
  };
  const readBoth: Op = {
    type: 'txn',
    compare: [],
    success: [
      { type: 'get', key: '/acct/a' },
      { type: 'get', key: '/acct/b' },
    ],
  };
  const h: HistoryOp[] = [
    put([0, 0, 1], '/acct/a', '10', 1),
    {
      client: 1,
      invoke: 2,
      response: 6,
      op: transfer,
      result: { succeeded: true, results: [{ version: 2 }, {}] },
    },
    // Overlapping the transfer: before or after it, never half of it.
    {
      client: 2,
      invoke: 3,
      response: 4,
      op: readBoth,
      result: { succeeded: true, results: [{ value: '10' }, { value: null }] },
    },
    {
      client: 1,
      invoke: 7,
      response: 8,
      op: transfer,
      result: { succeeded: false, results: [{ value: '5', version: 2 }] },
    },
  ];
  t.is(checkHistory(h).ok, true);
  const torn: HistoryOp = {
    client: 3,
    invoke: 9,
    response: 10,
    op: readBoth,
    result: { succeeded: true, results: [{ value: '5' }, { value: null }] },
  };
  const r = failure(checkHistory([...h, torn]));
  t.is(r.key, '/acct/a');
  t.deepEqual(r.keys, ['/acct/a', '/acct/b']);
  t.true(r.ops.includes(torn));
});

// ---------------------------------------------------------------------------------------------
// Known bad, each with its explanation

test('a stale read after a completed write is caught and explained by the two writes and the read', (t) => {
  const p1 = put([1, 0, 1], '/s', 'old', 1);
  const p2 = put([1, 2, 3], '/s', 'new', 2);
  const stale = get([2, 4, 5], '/s', 'old', 1);
  const noise = [get([3, 0, 3], '/s', 'old'), get([3, 6, 7], '/s', 'new'), put([4, 8, 9], '/s', 'newer', 3)];
  const r = failure(checkHistory([p1, p2, ...noise, stale]));
  t.is(r.key, '/s');
  t.true(r.minimal);
  t.deepEqual(r.ops, [p1, p2, stale]);
});

test('a lost update (two CAS from one version both succeed) is caught', (t) => {
  const p = put([0, 0, 1], '/n', '1', 1);
  const a = cas([1, 2, 5], '/n', 1, '2', true);
  const b = cas([2, 3, 6], '/n', 1, '2', true);
  const r = failure(checkHistory([p, a, b, get([3, 7, 8], '/n', '2')]));
  t.is(r.key, '/n');
  t.deepEqual(r.ops, [p, a, b], 'the write both CAS read from, and the two CAS');
});

test('a read of a value never written is caught on its own', (t) => {
  const ghost = get([2, 4, 5], '/g', 'ghost');
  const r = failure(checkHistory([put([1, 0, 1], '/g', 'real'), get([3, 2, 3], '/g', 'real'), ghost]));
  t.deepEqual(r.ops, [ghost]);
});

test('two readers seeing two writes in opposite orders are caught', (t) => {
  const a = put(['w1', 0, 20], '/o', 'a');
  const b = put(['w2', 0, 20], '/o', 'b');
  const reads = [
    get(['r1', 1, 2], '/o', 'a'),
    get(['r1', 3, 4], '/o', 'b'),
    get(['r2', 1, 2], '/o', 'b'),
    get(['r2', 3, 4], '/o', 'a'),
  ];
  const r = failure(checkHistory([a, b, ...reads]));
  t.is(r.key, '/o');
  t.is(r.ops.length, 6, 'both writes and all four reads');
  // Either reader alone is fine.
  t.is(checkHistory([a, b, reads[0]!, reads[1]!]).ok, true);
  t.is(checkHistory([a, b, reads[2]!, reads[3]!]).ok, true);
});

test('a write that un-happens (seen, then not seen) is caught, pending or not', (t) => {
  const before = put([1, 0, 1], '/u', 'before');
  for (const response of [null, 50]) {
    const w = put([2, 2, response], '/u', 'after');
    const seen = get([3, 3, 4], '/u', 'after');
    const unseen = get([3, 5, 6], '/u', 'before');
    const r = failure(checkHistory([before, w, seen, unseen]));
    t.deepEqual(r.ops, [before, w, seen, unseen]);
  }
  // A deleted key that comes back without a write.
  const gone = [put([1, 0, 1], '/d', 'x'), del([1, 2, 3], '/d', true), get([2, 4, 5], '/d', 'x')];
  t.is(checkHistory(gone).ok, false);
});

test('versions are checked: a read with the right value and a wrong version is caught', (t) => {
  const h = [put([1, 0, 1], '/v', 'x', 1), put([1, 2, 3], '/v', 'x', 2), get([2, 4, 5], '/v', 'x', 1)];
  t.is(checkHistory(h).ok, false);
  t.is(checkHistory(h.slice(0, 2).concat(get([2, 4, 5], '/v', 'x'))).ok, true, 'no version: not checked');
  t.is(checkHistory([put([1, 0, 1], '/v', 'x', 2)]).ok, false, 'the first put makes version 1');
  t.is(checkHistory([del([1, 0, 1], '/v', true)]).ok, false, 'nothing to delete');
});

// ---------------------------------------------------------------------------------------------
// Scale and budget

/** mulberry32: a small seeded generator for reproducible histories. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

interface Planned {
  client: number;
  invoke: number;
  response: number | null;
  /** When it takes effect; null: never (a pending operation that was lost). */
  point: number | null;
  op: Op;
  result?: OpResult;
}

type Entry = { value: string; version: number };

/** Applies `op` to `m` and returns what a correct store answers (the reference model of the tests). */
function apply(m: Map<string, Entry>, op: Op): OpResult {
  const one = (o: { type: 'get' | 'put' | 'delete'; key: string; value?: string }) => {
    const cur = m.get(o.key);
    if (o.type === 'get') return { value: cur?.value ?? null, version: cur?.version ?? 0 };
    if (o.type === 'put') {
      const version = (cur?.version ?? 0) + 1;
      m.set(o.key, { value: o.value!, version });
      return { version };
    }
    m.delete(o.key);
    return { deleted: cur !== undefined };
  };
  switch (op.type) {
    case 'get':
    case 'put':
    case 'delete':
      return one(op);
    case 'cas': {
      const succeeded = (m.get(op.key)?.version ?? 0) === op.expectedVersion;
      if (!succeeded) return { succeeded };
      return {
        succeeded,
        version: (one({ type: 'put', key: op.key, value: op.value }) as { version: number }).version,
      };
    }
    case 'txn': {
      const holds = op.compare.every((c) => {
        const cur = m.get(c.key);
        let cmp: number;
        if (c.target === 'exists') cmp = (cur !== undefined) === c.value ? 0 : 1;
        else if (c.target === 'version') cmp = (cur?.version ?? 0) - (c.value as number);
        else if (cur === undefined) return false;
        else cmp = cur.value === c.value ? 0 : cur.value < (c.value as string) ? -1 : 1;
        return c.result === 'eq'
          ? cmp === 0
          : c.result === 'ne'
            ? cmp !== 0
            : c.result === 'lt'
              ? cmp < 0
              : cmp > 0;
      });
      const results = (holds ? op.success : (op.failure ?? [])).map(one);
      return { succeeded: holds, results };
    }
  }
}

/**
 * A history a correct store could produce: `clients` clients, each issuing operations one after
 * another, each taking effect at a random point within its call (or, if pending, possibly never).
 */
function generate(
  seed: number,
  o: {
    clients: number;
    opsPerClient: number;
    keys: string[];
    pending: number;
    maxDuration: number;
    op: (r: () => number, key: string) => Op;
  },
): HistoryOp[] {
  const r = rng(seed);
  const planned: Planned[] = [];
  for (let c = 0; c < o.clients; c++) {
    let clock = Math.floor(r() * 5);
    for (let i = 0; i < o.opsPerClient; i++) {
      const invoke = clock + Math.floor(r() * 3);
      const duration = 1 + Math.floor(r() * o.maxDuration);
      const pending = r() < o.pending;
      const point = pending && r() < 0.5 ? null : invoke + r() * duration;
      const key = o.keys[Math.floor(r() * o.keys.length)]!;
      planned.push({
        client: c,
        invoke,
        response: pending ? null : invoke + duration,
        point,
        op: o.op(r, key),
      });
      clock = invoke + duration + 1;
    }
  }
  const m = new Map<string, Entry>();
  for (const p of planned.filter((p) => p.point !== null).sort((a, b) => a.point! - b.point!))
    p.result = apply(m, p.op);
  return planned.map((p) =>
    p.response === null
      ? { client: p.client, invoke: p.invoke, response: null, op: p.op }
      : { client: p.client, invoke: p.invoke, response: p.response, op: p.op, result: p.result! },
  );
}

const singleKeyOp = (r: () => number, key: string): Op => {
  const x = r();
  const value = `v${Math.floor(r() * 1000)}`;
  if (x < 0.5) return { type: 'get', key };
  if (x < 0.8) return { type: 'put', key, value };
  if (x < 0.95) return { type: 'cas', key, expectedVersion: Math.floor(r() * 4), value };
  return { type: 'delete', key };
};

test('a few thousand operations over 50 keys are checked key by key', (t) => {
  const keys = Array.from({ length: 50 }, (_, i) => `/load/${String(i).padStart(2, '0')}`);
  const seed = 20_260_501;
  const h = generate(seed, {
    clients: 20,
    opsPerClient: 150,
    keys,
    pending: 0.02,
    maxDuration: 12,
    op: singleKeyOp,
  });
  t.is(h.length, 3000);
  const r = checkHistory(h, { maxStates: 20_000 });
  t.log(`seed ${seed}: ${h.length} operations, ${r.states} states explored`);
  t.is(r.ok, true, `seed ${seed}`);
  // Fifty small searches: the states explored stay on the order of the history's length.
  t.true(r.states < 20 * h.length, `${r.states} states`);

  // Break one completed read on one key: that key, and only what explains it, is reported.
  const target = keys[37]!;
  const i = h.findIndex((o) => o.op.type === 'get' && o.response !== null && o.op.key === target);
  const broken = h.map((o, j) => (j === i ? { ...o, result: { value: 'never written' } } : o));
  const bad = failure(checkHistory(broken, { maxStates: 20_000 }));
  t.is(bad.key, target);
  t.deepEqual(bad.ops, [broken[i]]);
});

test('the budget turns a pathological search into "unknown" instead of a hang', (t) => {
  // Twenty pending writes all overlap; a read then claims version 1 after a completed write:
  // impossible, but proving it means trying every subset and order of the pending writes.
  const h: HistoryOp[] = [
    ...Array.from({ length: 20 }, (_, i) => put([`p${i}`, i, null], '/hard', `v${i}`)),
    put(['w', 100, 101], '/hard', 'x'),
    get(['r', 102, 103], '/hard', 'v0', 1),
  ];
  const r = checkHistory(h, { maxStates: 5_000 });
  t.is(r.ok, 'unknown');
  if (r.ok === 'unknown') t.is(r.key, '/hard');
  t.true(r.states <= 5_001);
  // Other partitions are still decided: a violation elsewhere wins over "unknown".
  const other = [put([1, 0, 1], '/later', 'a'), get([2, 2, 3], '/later', 'b')];
  t.is(failure(checkHistory([...h, ...other], { maxStates: 5_000 })).key, '/later');
  // The same shape with few pending writes is decided.
  t.is(checkHistory([...h.slice(0, 4), ...h.slice(20)], { maxStates: 5_000 }).ok, false);
});

// ---------------------------------------------------------------------------------------------
// Against a brute-force oracle

/** Linearizable by exhaustion: every real-time-respecting order of every subset of pending ops. */
function bruteForce(h: readonly HistoryOp[]): boolean {
  const n = h.length;
  const pending = h.map((o) => o.response === undefined || o.response === null);
  const placed = new Array<boolean>(n).fill(false);
  const matches = (want: OpResult | undefined, got: OpResult): boolean => {
    if (want === undefined) return true;
    const w = want as Record<string, unknown>;
    const g = got as Record<string, unknown>;
    for (const k of Object.keys(w)) {
      if (w[k] === undefined) continue;
      if (k === 'results') {
        const ws = w[k] as OpResult[];
        const gs = g[k] as OpResult[];
        if (ws.length !== gs.length || !ws.every((x, i) => matches(x, gs[i]!))) return false;
      } else if (w[k] !== g[k]) return false;
    }
    return true;
  };
  const go = (m: Map<string, Entry>, left: number): boolean => {
    if (left === 0) return true;
    for (let i = 0; i < n; i++) {
      if (placed[i]) continue;
      // Every operation that precedes i in real time must be placed first.
      if (h.some((p, j) => !placed[j] && !pending[j] && (p.response as number) < h[i]!.invoke)) continue;
      const next = new Map(m);
      const got = apply(next, h[i]!.op);
      if (!pending[i] && !matches(h[i]!.result, got)) continue;
      placed[i] = true;
      if (go(next, left - (pending[i] ? 0 : 1))) return true;
      placed[i] = false;
    }
    return false;
  };
  return go(new Map(), pending.filter((p) => !p).length);
}

const smallOp = (r: () => number, key: string): Op => {
  const other = key === '/x' ? '/y' : '/x';
  const value = ['a', 'b', 'c'][Math.floor(r() * 3)]!;
  const x = r();
  if (x < 0.35) return { type: 'get', key };
  if (x < 0.6) return { type: 'put', key, value };
  if (x < 0.75) return { type: 'cas', key, expectedVersion: Math.floor(r() * 3), value };
  if (x < 0.82) return { type: 'delete', key };
  const y = r();
  const compare: Compare =
    y < 0.4
      ? { key, target: 'value', result: r() < 0.7 ? 'eq' : 'ne', value }
      : y < 0.7
        ? { key, target: 'exists', result: 'eq', value: r() < 0.5 }
        : { key, target: 'version', result: (['eq', 'lt', 'gt'] as const)[Math.floor(r() * 3)]!, value: 1 };
  return {
    type: 'txn',
    compare: [compare],
    success: [
      { type: 'put', key: other, value },
      { type: 'get', key },
    ],
    failure: [{ type: 'get', key: other }],
  };
};

/** Leaves out, now and then, what an answer may leave out (versions, `deleted`, txn results). */
function thin(h: HistoryOp[], r: () => number): HistoryOp[] {
  return h.map((o) => {
    if (o.result === undefined || r() > 0.25) return o;
    const { version: _v, deleted: _d, results: _r, ...rest } = o.result as Record<string, unknown>;
    return { ...o, result: ('value' in rest || 'succeeded' in rest ? rest : {}) as OpResult };
  });
}

/** Changes one completed answer, most of the time into one a correct store could not give. */
function mutate(h: HistoryOp[], r: () => number): HistoryOp[] {
  const done = h
    .map((o, i) => [o, i] as const)
    .filter(([o]) => o.response !== null && o.response !== undefined);
  if (done.length === 0) return h;
  const [o, i] = done[Math.floor(r() * done.length)]!;
  const res = o.result as Record<string, unknown>;
  const bump = (v: unknown) => Math.max(0, Number(v ?? 0) + (r() < 0.5 ? 1 : -1));
  let changed: Record<string, unknown>;
  switch (o.op.type) {
    case 'cas':
    case 'txn':
      changed = { succeeded: !res.succeeded };
      break;
    case 'get':
      changed =
        r() < 0.5
          ? { ...res, value: ['a', 'b', 'c', null][Math.floor(r() * 4)] }
          : { ...res, version: bump(res.version) };
      break;
    case 'delete':
      changed = { deleted: !res.deleted };
      break;
    case 'put':
      changed = { version: bump(res.version) };
      break;
  }
  const copy = [...h];
  copy[i] = { ...o, result: changed as OpResult };
  return copy;
}

test('agrees with a brute-force oracle on 20 000 small random histories, good and mutated', (t) => {
  let good = 0;
  let bad = 0;
  for (let seed = 1; seed <= 20_000; seed++) {
    const r = rng(seed * 7919);
    const clients = 2 + Math.floor(r() * 2);
    const base = generate(seed, {
      clients,
      opsPerClient: clients === 2 ? 3 : 2,
      keys: ['/x', '/y'],
      pending: 0.15,
      maxDuration: 6,
      op: smallOp,
    });
    const thinned = seed % 3 === 0 ? thin(base, r) : base;
    const h = seed % 2 === 0 ? mutate(thinned, r) : thinned;
    const want = bruteForce(h);
    const got = checkHistory(h);
    if (got.ok === 'unknown' || got.ok !== want) {
      t.fail(`seed ${seed}: checker ${got.ok}, oracle ${want}\n${JSON.stringify(h, null, 1)}`);
      return;
    }
    if (got.ok === false) {
      // The explanation is itself a violation, by the oracle too.
      if (bruteForce(got.ops)) {
        t.fail(`seed ${seed}: the explanation is linearizable\n${JSON.stringify(got.ops, null, 1)}`);
        return;
      }
      bad++;
    } else good++;
  }
  t.log(`${good} linearizable, ${bad} not`);
  t.true(good > 5000 && bad > 5000, 'both kinds are well represented');
});

test('malformed histories are programmer errors (TypeError)', (t) => {
  const bad: unknown[] = [
    [{ client: 1, invoke: 0, response: 1, op: { type: 'get', key: '/a' } }], // no result
    [{ client: 1, invoke: 2, response: 1, op: { type: 'get', key: '/a' }, result: { value: null } }],
    [{ client: 1, invoke: 0, response: 1, op: { type: 'frob', key: '/a' }, result: {} }],
    [
      {
        client: 1,
        invoke: 0,
        response: 1,
        op: { type: 'cas', key: '/a', expectedVersion: -1, value: 'x' },
        result: { succeeded: true },
      },
    ],
    [
      {
        client: 1,
        invoke: 0,
        response: 1,
        op: { type: 'txn', compare: [], success: [{ type: 'get', key: '/a' }] },
        result: { succeeded: true, results: [] },
      },
    ],
  ];
  for (const h of bad) t.throws(() => checkHistory(h as HistoryOp[]), { instanceOf: TypeError });
  t.throws(() => checkHistory([], { maxStates: 0 }), { instanceOf: TypeError });
});
