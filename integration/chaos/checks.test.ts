/**
 * The chaos checks have teeth: records of a clean run pass, and each planted mistake (a lost
 * acknowledged write, a write applied twice, a watch gap, a watch that invents an event, a stale
 * read, a live session that expired, an ephemeral key that outlived its session, a sequential
 * name given twice) is reported by the check meant for it.
 */
import test from 'ava';
import {
  checkAcknowledged,
  checkLinearizable,
  checkLock,
  checkSequential,
  checkSessions,
  checkWatches,
  writeGaps,
} from './checks.ts';
import type { FaultRecord } from './faults.ts';
import type { ChaosRecord, WatchedEvent } from './records.ts';

type R = ChaosRecord;

/** Two workers: w1 puts a then b at revisions 11, 12 and reads b; both watch from 10. */
function clean(): Map<string, R[]> {
  const events: WatchedEvent[] = [
    [11, 'put', '/chaos/k0', 'w1-1'],
    [12, 'put', '/chaos/k0', 'w1-2'],
    [13, 'put', '/chaos/seq/0000000001', 'w2-1'],
  ];
  const w1: R[] = [
    { t: 'session', at: 1, id: 's1', state: 'OPEN' },
    { t: 'watchStart', at: 1, from: 10 },
    {
      t: 'op',
      client: 'w1',
      invoke: 10,
      response: 20,
      op: { type: 'put', key: '/chaos/k0', value: 'w1-1' },
      result: { version: 1 },
      revision: 11,
    },
    {
      t: 'op',
      client: 'w1',
      invoke: 30,
      response: 40,
      op: { type: 'put', key: '/chaos/k0', value: 'w1-2' },
      result: { version: 2 },
      revision: 12,
    },
    {
      t: 'op',
      client: 'w1',
      invoke: 50,
      response: 60,
      op: { type: 'get', key: '/chaos/k0' },
      result: { value: 'w1-2', version: 2 },
    },
    { t: 'watch', events, upTo: 13 },
    { t: 'ephemeral', at: 70, session: 's1', acked: 1, missing: [], stale: [] },
    { t: 'watchEnd', at: 80, upTo: 13, target: 13 },
  ];
  const w2: R[] = [
    { t: 'session', at: 1, id: 's2', state: 'OPEN' },
    { t: 'watchStart', at: 1, from: 10 },
    { t: 'seq', invoke: 41, response: 45, value: 'w2-1', key: '/chaos/seq/0000000001', revision: 13 },
    { t: 'watch', events, upTo: 13 },
    { t: 'watchEnd', at: 80, upTo: 13, target: 13 },
  ];
  return new Map([
    ['w1', w1],
    ['w2', w2],
  ]);
}

const all = (r: Map<string, R[]>) => [
  checkLinearizable(r),
  checkWatches(r),
  checkAcknowledged(r),
  checkSequential(r),
  checkSessions(r),
];

const edit = (r: Map<string, R[]>, worker: string, f: (rs: R[]) => R[]) => {
  r.set(worker, f(r.get(worker)!));
  return r;
};

test('a clean run passes every check', (t) => {
  for (const c of all(clean())) t.deepEqual(c.violations, [], c.name);
});

test('a stale read is not linearizable', (t) => {
  const r = edit(clean(), 'w1', (rs) =>
    rs.map((x) =>
      x.t === 'op' && x.op.type === 'get' ? { ...x, result: { value: 'w1-1', version: 1 } } : x,
    ),
  );
  t.is(checkLinearizable(r).violations.length, 1);
});

test('an acknowledged write missing from the watch streams is reported', (t) => {
  const drop = (rs: R[]) =>
    rs.map((x) => (x.t === 'watch' ? { ...x, events: x.events.filter((e) => e[0] !== 12) } : x));
  const r = edit(edit(clean(), 'w1', drop), 'w2', drop);
  t.regex(checkAcknowledged(r).violations.join('\n'), /acknowledged put of w1-2 at revision 12/);
});

test('a value applied twice is reported', (t) => {
  const dup = (rs: R[]) =>
    rs.map((x) =>
      x.t === 'watch'
        ? { ...x, events: [...x.events, [14, 'put', '/chaos/k1', 'w1-1'] as WatchedEvent], upTo: 14 }
        : x,
    );
  const r = edit(edit(clean(), 'w1', dup), 'w2', dup);
  t.regex(checkAcknowledged(r).violations.join('\n'), /w1-1 was applied twice/);
});

test('a gap in one watcher, or an event only one saw, is a disagreement', (t) => {
  const gap = edit(clean(), 'w2', (rs) =>
    rs.map((x) => (x.t === 'watch' ? { ...x, events: x.events.filter((e) => e[0] !== 11) } : x)),
  );
  t.regex(checkWatches(gap).violations.join('\n'), /disagree at revision 11/);
  const invented = edit(clean(), 'w2', (rs) =>
    rs.map((x) =>
      x.t === 'watch'
        ? {
            ...x,
            events: [
              ...x.events.slice(0, 1),
              [11, 'delete', '/chaos/k9', null] as WatchedEvent,
              ...x.events.slice(1),
            ],
          }
        : x,
    ),
  );
  t.regex(checkWatches(invented).violations.join('\n'), /disagree at revision 11/);
  const back = edit(clean(), 'w2', (rs) =>
    rs.map((x) =>
      x.t === 'watch' ? { ...x, events: [...x.events, [12, 'put', '/chaos/k0', 'w1-2'] as WatchedEvent] } : x,
    ),
  );
  t.regex(checkWatches(back).violations.join('\n'), /went back from revision 13 to 12/);
  const twice = edit(clean(), 'w2', (rs) =>
    rs.map((x) => (x.t === 'watch' ? { ...x, events: [...x.events, x.events.at(-1)!] } : x)),
  );
  t.regex(checkWatches(twice).violations.join('\n'), /at revision 13 twice/);
  const short = edit(clean(), 'w2', (rs) => rs.map((x) => (x.t === 'watchEnd' ? { ...x, target: 20 } : x)));
  t.regex(checkWatches(short).violations.join('\n'), /reached revision 13, not 20/);
});

test('a session the cluster expired while its client was connected, or a missing ephemeral key, is reported', (t) => {
  const expired = edit(clean(), 'w2', (rs) => [
    ...rs,
    { t: 'expired', at: 90, session: 's2', state: 'CONNECTED' },
  ]);
  t.regex(
    checkSessions(expired).violations.join('\n'),
    /s2 was expired by the cluster while the client was CONNECTED/,
  );
  const outage = edit(clean(), 'w2', (rs) => [
    ...rs,
    { t: 'session', at: 80, id: 's2', state: 'SUSPENDED' },
    { t: 'expired', at: 90, session: 's2', state: 'SUSPENDED' },
    { t: 'session', at: 95, id: 's2', state: 'LOST' },
    { t: 'session', at: 96, id: 's3', state: 'CONNECTED' },
  ]);
  t.deepEqual(checkSessions(outage).violations, [], 'a session given up after an outage is not a violation');
  const lost = edit(clean(), 'w1', (rs) =>
    rs.map((x) => (x.t === 'ephemeral' ? { ...x, missing: ['/chaos/eph/w1/3'] } : x)),
  );
  t.regex(checkSessions(lost).violations.join('\n'), /gone while their session lived/);
});

test('a sequential name given twice, or out of revision order, is reported', (t) => {
  const twice = edit(clean(), 'w1', (rs) => [
    ...rs,
    { t: 'seq', invoke: 42, response: 46, value: 'w1-9', key: '/chaos/seq/0000000001', revision: 14 },
  ]);
  t.regex(checkSequential(twice).violations.join('\n'), /created twice/);
  const order = edit(clean(), 'w1', (rs) => [
    ...rs,
    { t: 'seq', invoke: 42, response: 46, value: 'w1-9', key: '/chaos/seq/0000000000', revision: 14 },
  ]);
  t.regex(checkSequential(order).violations.join('\n'), /after/);
});

test('write gaps: from a leader kill to each worker’s next acknowledged write', (t) => {
  const fault: FaultRecord = {
    kind: 'kill',
    what: 'kill -9 leader n1',
    at: 25,
    healedAt: 0,
    recoveredAt: null,
    leaderLost: true,
  };
  t.deepEqual(writeGaps(clean(), [fault]), [15, 20]);
  t.deepEqual(writeGaps(clean(), [{ ...fault, leaderLost: false }]), []);
});

test('the fenced counter: a value written twice or skipped, or a token going back, is reported', (t) => {
  const counter = (values: readonly number[], incs: readonly R[]) => {
    const events = values.map((v, i) => [20 + i, 'put', '/chaos/counter', String(v)] as WatchedEvent);
    const w: R[] = [
      { t: 'watchStart', at: 1, from: 20 },
      { t: 'watch', events, upTo: 20 + values.length - 1 },
      ...incs,
    ];
    return new Map([['w1', w]]);
  };
  const inc = (to: number, token: number, revision: number): R => ({
    t: 'inc',
    invoke: 1,
    response: 2,
    to,
    token,
    revision,
  });
  t.deepEqual(checkLock(counter([1, 2, 3], [inc(1, 5, 20), inc(2, 9, 21), inc(3, 12, 22)])).violations, []);
  t.regex(checkLock(counter([1, 2, 2], [])).violations.join('\n'), /from 2 to 2/);
  t.regex(checkLock(counter([1, 3], [])).violations.join('\n'), /from 1 to 3/);
  t.regex(
    checkLock(counter([1, 2], [inc(2, 9, 21), inc(2, 11, 22)])).violations.join('\n'),
    /both acknowledged writing 2/,
  );
  t.regex(
    checkLock(counter([1, 2], [inc(1, 9, 20), inc(2, 7, 21)])).violations.join('\n'),
    /token went back/,
  );
  t.regex(checkLock(counter([1, 2], [inc(1, 9, 21)])).violations.join('\n'), /became 2/);
});

test('events a watcher took after its last check (its client closing mid-revision) are not compared', (t) => {
  const r = edit(clean(), 'w2', (rs) => [
    ...rs,
    { t: 'watch', events: [[14, 'delete', '/chaos/eph/w9/1', null] as WatchedEvent], upTo: 14 },
  ]);
  const r2 = edit(r, 'w1', (rs) => [
    ...rs,
    {
      t: 'watch',
      events: [
        [14, 'delete', '/chaos/eph/w9/1', null] as WatchedEvent,
        [14, 'delete', '/chaos/eph/w9/2', null] as WatchedEvent,
      ],
      upTo: 14,
    },
  ]);
  t.deepEqual(checkWatches(r2).violations, []);
});
