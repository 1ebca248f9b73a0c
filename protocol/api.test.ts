import test from 'ava';
import fc from 'fast-check';
import { defaultApiLimits, isOp, opKinds, ops, type Validated, validateRequest } from './api.ts';
import { decodeEnvelope, encodeEnvelope } from './codec.ts';
import { EnsembleError } from './errors.ts';

const text = (s: string) => Buffer.from(s);
const client = { session: 's-1', secret: text('sekrit'), seq: 5, lowSeq: 3 };

const ok = (t: { fail(m: string): void }, v: Validated): unknown => {
  if (!v.ok) {
    t.fail(`${v.error.code}: ${v.error.message}`);
    return undefined;
  }
  return v.request;
};

const code = (v: Validated): string => (v.ok ? 'OK' : v.error.code);

test('every op has a kind, and isOp knows exactly them', (t) => {
  t.is(ops.length, 22);
  for (const op of ops) t.true(isOp(op));
  t.false(isOp('constructor'));
  t.false(isOp('toString'));
  t.is(opKinds.put, 'write');
  t.is(opKinds.get, 'read');
  t.is(opKinds.memberAdd, 'admin');
  t.is(opKinds.sessionKeepalive, 'local');
  t.is(opKinds.watch, 'local');
});

test('valid requests come back normalised: known fields only, no undefined, bytes as bytes', (t) => {
  t.deepEqual(ok(t, validateRequest('get', { key: '/a', serializable: true, junk: 1 })), {
    key: '/a',
    serializable: true,
  });
  t.deepEqual(ok(t, validateRequest('put', { key: '/a/b', value: 'text', ifVersion: 0, ifAbsent: null })), {
    key: '/a/b',
    value: text('text'),
    ifVersion: 0,
  });
  t.deepEqual(ok(t, validateRequest('put', { key: '/e', value: text('v'), ephemeral: true, client })), {
    key: '/e',
    value: text('v'),
    ephemeral: true,
    client,
  });
  t.deepEqual(ok(t, validateRequest('delete', { key: '/', subtree: true })), { key: '/', subtree: true });
  t.deepEqual(ok(t, validateRequest('list', {})), { key: '/' });
  t.deepEqual(ok(t, validateRequest('list', { key: '/a', limit: 10, after: 'b', revision: 4 })), {
    key: '/a',
    limit: 10,
    after: 'b',
    revision: 4,
  });
  t.deepEqual(ok(t, validateRequest('range', { prefix: '/services/', limit: 2 })), {
    prefix: '/services/',
    limit: 2,
  });
  // A well-formed txn passes unchanged.
  const txn = {
    compare: [
      { key: '/a', target: 'version', result: 'eq', value: 0 },
      { key: '/a', target: 'value', result: 'ne', value: text('x') },
      { key: '/a', target: 'exists', result: 'eq', value: false },
    ],
    success: [
      { op: 'put', key: '/a', value: text('1') },
      { op: 'get', key: '/b' },
    ],
    failure: [{ op: 'delete', key: '/c', subtree: true }],
    client,
  };
  t.deepEqual(ok(t, validateRequest('txn', txn)), txn);
  t.deepEqual(ok(t, validateRequest('createSequential', { prefix: '/q/job-', value: text('') })), {
    prefix: '/q/job-',
    value: text(''),
  });
  t.deepEqual(ok(t, validateRequest('status', undefined)), {});
  t.deepEqual(ok(t, validateRequest('memberAdd', { id: 'n4' })), { id: 'n4' });
  t.deepEqual(ok(t, validateRequest('memberPromote', { id: 'n4' })), { id: 'n4' });
  t.deepEqual(ok(t, validateRequest('memberRemove', { id: 'n1' })), { id: 'n1' });
  t.deepEqual(ok(t, validateRequest('transferLeader', {})), {});
  t.deepEqual(ok(t, validateRequest('transferLeader', { to: 'n2' })), { to: 'n2' });
  t.deepEqual(ok(t, validateRequest('sessionOpen', { ttlMs: 10_000 })), { ttlMs: 10_000 });
  t.deepEqual(ok(t, validateRequest('sessionOpen', { ttlMs: 10_000, id: 'abc', secret: text('s') })), {
    ttlMs: 10_000,
    id: 'abc',
    secret: text('s'),
  });
  t.deepEqual(ok(t, validateRequest('sessionKeepalive', { id: 'abc', secret: text('s') })), {
    id: 'abc',
    secret: text('s'),
  });
  t.deepEqual(ok(t, validateRequest('sessionClose', { id: 'abc', secret: 's' })), {
    id: 'abc',
    secret: text('s'),
  });
});

test('the result is tagged with its op, so a switch narrows the request type', (t) => {
  const v = validateRequest('put', { key: '/a', value: text('x') });
  if (v.ok && v.op === 'put') t.is(v.request.key, '/a');
  else t.fail();
});

test('malformed requests get typed errors: UNKNOWN_OP, BAD_REQUEST, BAD_PATH, TOO_LARGE', (t) => {
  const cases: Array<[string, unknown, string]> = [
    ['nope', {}, 'UNKNOWN_OP'],
    ['__proto__', {}, 'UNKNOWN_OP'],
    ['get', [], 'BAD_REQUEST'],
    ['get', 'x', 'BAD_REQUEST'],
    ['get', {}, 'BAD_REQUEST'],
    ['get', { key: 5 }, 'BAD_REQUEST'],
    ['get', { key: 'a' }, 'BAD_PATH'],
    ['get', { key: '/a/' }, 'BAD_PATH'],
    ['get', { key: '/a//b' }, 'BAD_PATH'],
    ['get', { key: '/a/../b' }, 'BAD_PATH'],
    ['get', { key: '/a\u0000' }, 'BAD_PATH'],
    ['get', { key: '/' }, 'BAD_PATH'],
    ['get', { key: '/a', serializable: 'yes' }, 'BAD_REQUEST'],
    ['get', { key: '/a', revision: 0 }, 'BAD_REQUEST'],
    ['get', { key: '/a', revision: 1.5 }, 'BAD_REQUEST'],
    ['get', { key: `/${'k'.repeat(4096)}` }, 'TOO_LARGE'],
    ['put', { key: '/a' }, 'BAD_REQUEST'],
    ['put', { key: '/a', value: 1 }, 'BAD_REQUEST'],
    ['put', { key: '/a', value: new Uint8Array(1.5 * 1024 * 1024 + 1) }, 'TOO_LARGE'],
    ['put', { key: '/a', value: 'x', ifVersion: -1 }, 'BAD_REQUEST'],
    ['put', { key: '/a', value: 'x', ifVersion: 2 ** 53 }, 'BAD_REQUEST'],
    ['put', { key: '/a', value: 'x', ephemeral: true }, 'BAD_REQUEST'],
    ['put', { key: '/a', value: 'x', client: { ...client, lowSeq: 6 } }, 'BAD_REQUEST'],
    ['put', { key: '/a', value: 'x', client: { ...client, secret: undefined } }, 'BAD_REQUEST'],
    ['put', { key: '/a', value: 'x', client: { ...client, session: 'has space' } }, 'BAD_REQUEST'],
    ['put', { key: '/a', value: 'x', client: 'me' }, 'BAD_REQUEST'],
    ['delete', { key: '/' }, 'BAD_PATH'],
    ['list', { key: '/a', limit: 0 }, 'BAD_REQUEST'],
    ['range', { prefix: 'a' }, 'BAD_PATH'],
    ['range', {}, 'BAD_REQUEST'],
    ['txn', { compare: {} }, 'BAD_REQUEST'],
    ['txn', { compare: [{ key: '/a', target: 'size', result: 'eq', value: 1 }] }, 'BAD_REQUEST'],
    ['txn', { compare: [{ key: '/a', target: 'version', result: 'le', value: 1 }] }, 'BAD_REQUEST'],
    ['txn', { compare: [{ key: '/a', target: 'exists', result: 'lt', value: true }] }, 'BAD_REQUEST'],
    ['txn', { compare: [{ key: '/a', target: 'version', result: 'eq', value: 'x' }] }, 'BAD_REQUEST'],
    ['txn', { success: [{ op: 'watch', key: '/a' }] }, 'UNKNOWN_OP'],
    ['txn', { success: [{ op: 'put', key: '/a', value: 'x', ephemeral: true }] }, 'BAD_REQUEST'],
    ['txn', { success: Array.from({ length: 129 }, () => ({ op: 'get', key: '/a' })) }, 'TOO_LARGE'],
    [
      'txn',
      { success: [1, 2].map(() => ({ op: 'put', key: '/a', value: new Uint8Array(1024 * 1024) })) },
      'TOO_LARGE',
    ],
    ['createSequential', { prefix: 'x', value: 'v' }, 'BAD_PATH'],
    ['createSequential', { prefix: '/q/', value: 'v' }, 'OK'],
    ['createSequential', { prefix: '/q//', value: 'v' }, 'BAD_PATH'],
    ['memberAdd', { id: 'n.1' }, 'BAD_REQUEST'],
    ['memberAdd', {}, 'BAD_REQUEST'],
    ['transferLeader', { to: 5 }, 'BAD_REQUEST'],
    ['sessionOpen', {}, 'BAD_REQUEST'],
    ['sessionOpen', { ttlMs: 0 }, 'BAD_REQUEST'],
    ['sessionOpen', { ttlMs: 8 * 24 * 3600 * 1000 }, 'BAD_REQUEST'],
    ['sessionOpen', { ttlMs: 1000, secret: new Uint8Array(0) }, 'BAD_REQUEST'],
    ['sessionOpen', { ttlMs: 1000, secret: new Uint8Array(257) }, 'TOO_LARGE'],
    ['sessionKeepalive', { id: 'abc' }, 'BAD_REQUEST'],
    ['sessionClose', { secret: 'x' }, 'BAD_REQUEST'],
  ];
  for (const [op, body, expected] of cases) {
    t.is(code(validateRequest(op, body)), expected, `${op} ${JSON.stringify(body)?.slice(0, 80)}`);
  }
});

test('limits are configurable', (t) => {
  const limits = { maxKeyBytes: 8, maxValueBytes: 4, maxTxnOps: 1 };
  t.is(code(validateRequest('get', { key: '/1234567' }, limits)), 'OK');
  t.is(code(validateRequest('get', { key: '/12345678' }, limits)), 'TOO_LARGE');
  t.is(code(validateRequest('put', { key: '/a', value: '12345' }, limits)), 'TOO_LARGE');
  t.is(code(validateRequest('txn', { compare: [], success: [{ op: 'get', key: '/a' }] }, limits)), 'OK');
  const two = { success: [{ op: 'get', key: '/a' }], failure: [{ op: 'get', key: '/a' }] };
  const tooMany = validateRequest('txn', two, limits);
  t.is(code(tooMany), 'TOO_LARGE');
  if (!tooMany.ok) t.like(tooMany.error.toWire(), { size: 2, limit: 1 });
});

test('a JSON request decodes and validates into the same request as its CBOR twin', (t) => {
  const json = new TextEncoder().encode(
    JSON.stringify({
      v: 1,
      cluster: 'c',
      body: { key: '/a', value: 'AAE=', encoding: 'base64', client: { ...client, secret: 'c2Vrcml0' } },
    }),
  );
  const cbor = encodeEnvelope({ key: '/a', value: new Uint8Array([0, 1]), client }, { cluster: 'c' });
  const [a, b] = [json, cbor].map((bytes) => {
    const env = decodeEnvelope(bytes, { cluster: 'c' });
    if (!env.ok) throw env.error;
    return validateRequest('put', env.envelope.body);
  });
  t.deepEqual(a, b);
  t.is(code(a!), 'OK');
});

const fieldName = fc.constantFrom(
  'key',
  'value',
  'prefix',
  'op',
  'client',
  'session',
  'secret',
  'seq',
  'lowSeq',
  'compare',
  'success',
  'failure',
  'target',
  'result',
  'ttlMs',
  'id',
  'to',
  'limit',
  'after',
  'revision',
  'subtree',
  'ephemeral',
  'ifVersion',
  'ifAbsent',
  'serializable',
);

const anyValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.constant(undefined),
    fc.boolean(),
    fc.double(),
    fc.integer(),
    fc.constantFrom(0, -1, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY),
    fc.string({ maxLength: 12 }),
    fc.constantFrom('/a', '/', '/a/b', 'a', '/a/', 'put', 'get', 'delete', 'version', 'eq', 'exists'),
    fc.uint8Array({ maxLength: 8 }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fieldName, tie('value'), { maxKeys: 6 }),
  ),
})).value;

const anyBody = fc.oneof(
  { arbitrary: fc.dictionary(fieldName, anyValue, { maxKeys: 8 }), weight: 5 },
  { arbitrary: anyValue, weight: 1 },
);

test('random bodies never throw out of validateRequest: a request or a typed error of the API codes', (t) => {
  const codes = new Set(['BAD_REQUEST', 'UNKNOWN_OP', 'TOO_LARGE', 'BAD_PATH']);
  const seen = new Set<string>();
  fc.assert(
    fc.property(
      fc.oneof(
        { arbitrary: fc.constantFrom(...ops), weight: 8 },
        { arbitrary: fc.string({ maxLength: 10 }), weight: 1 },
        { arbitrary: anyValue, weight: 1 },
      ),
      anyBody,
      (op, body) => {
        const v = validateRequest(op, body, { maxKeyBytes: 6, maxValueBytes: 6, maxTxnOps: 2 });
        if (v.ok) {
          seen.add('OK');
          return;
        }
        seen.add(v.error.code);
        if (!(v.error instanceof EnsembleError) || !codes.has(v.error.code)) {
          throw new Error(`unexpected error ${String(v.error)}`);
        }
      },
    ),
    { numRuns: 5000 },
  );
  for (const c of ['OK', ...codes]) t.true(seen.has(c), `fuzzing reached ${c}`);
});

test('random objects straight from the decoder never throw either', (t) => {
  fc.assert(
    fc.property(fc.constantFrom(...ops), fc.object({ maxDepth: 3, withTypedArray: true }), (op, body) => {
      const v = validateRequest(op, body);
      if (!v.ok && !(v.error instanceof EnsembleError)) throw new Error('untyped');
    }),
    { numRuns: 2000 },
  );
  t.is(defaultApiLimits.maxValueBytes, 1.5 * 1024 * 1024);
});

test('watch requests: exactly one target, a client inbox, a session; bad ones are typed errors', (t) => {
  const base = { id: 'w1', inbox: '_INBOX.client.x.watch.w1', session: 's1', secret: new Uint8Array([1]) };
  const good = validateRequest('watch', { ...base, prefix: '/a/', fromRevision: 5, prevValue: true });
  t.true(good.ok);
  const code = (body: unknown) => {
    const r = validateRequest('watch', body);
    return r.ok ? 'ok' : r.error.code;
  };
  t.is(code({ ...base }), 'BAD_REQUEST');
  t.is(code({ ...base, key: '/a', prefix: '/a' }), 'BAD_REQUEST');
  t.is(code({ ...base, key: 'relative' }), 'BAD_PATH');
  t.is(code({ ...base, key: '/a', fromRevision: 0 }), 'BAD_REQUEST');
  t.is(code({ ...base, key: '/a', inbox: 'ensemble.dev.peer.n1' }), 'BAD_REQUEST');
  t.is(code({ ...base, key: '/a', id: 'has space' }), 'BAD_REQUEST');
});

test('paths deeper than maxPathDepth are refused (the ancestor work of a put stays bounded)', (t) => {
  const deep = (n: number) => `/${Array.from({ length: n }, () => 'a').join('/')}`;
  t.is(code(validateRequest('put', { key: deep(128), value: text('x') })), 'OK');
  t.is(code(validateRequest('put', { key: deep(129), value: text('x') })), 'BAD_PATH');
  t.is(code(validateRequest('put', { key: deep(20), value: text('x') }, { maxPathDepth: 10 })), 'BAD_PATH');
  t.is(
    code(validateRequest('createSequential', { prefix: `${deep(128)}/s-`, value: text('x') })),
    'BAD_PATH',
  );
  t.is(defaultApiLimits.maxPathDepth, 128);
});
