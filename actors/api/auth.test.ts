import test from 'ava';
import { type Caller, type Grant, PEER_CALLER, validateRequest } from '../../protocol/index.ts';
import { authorize } from './auth.ts';

const grants: Record<string, Grant[]> = {
  ann: [
    { user: 'ann', prefix: '/app/', read: true, write: true },
    { user: 'ann', prefix: '/shared', read: true, write: false },
  ],
  root: [{ user: 'root', prefix: '/', read: true, write: true }],
};
const lookup = (u: string) => new Map((grants[u] ?? []).map((g) => [g.prefix, g] as const));
const ann: Caller = { kind: 'client', user: 'ann' };
const nobody: Caller = { kind: 'client', user: 'nobody' };
const admin: Caller = { kind: 'admin', user: 'admin' };
const secret = new Uint8Array(16);

function check(caller: Caller, op: string, body: object): string {
  const v = validateRequest(op, body);
  if (!v.ok) throw new Error(`invalid ${op}: ${v.error.message}`);
  const e = authorize(v, caller, lookup);
  return e === null ? 'ok' : e.code;
}

test('admin ops need an admin or a peer, even for a client granted every key', (t) => {
  for (const [op, body] of [
    ['memberAdd', { id: 'n4' }],
    ['memberRemove', { id: 'n1' }],
    ['transferLeader', {}],
    ['compact', { revision: 3 }],
    ['authGrant', { user: 'ann', prefix: '/' }],
    ['authRevoke', { user: 'ann', prefix: '/' }],
    ['authList', {}],
  ] as const) {
    t.is(check({ kind: 'client', user: 'root' }, op, body), 'PERMISSION_DENIED', op);
    t.is(check(admin, op, body), 'ok', op);
    t.is(check(PEER_CALLER, op, body), 'ok', op);
  }
});

test('a client without grants reads and writes nothing, but may use sessions and status', (t) => {
  t.is(check(nobody, 'get', { key: '/a' }), 'PERMISSION_DENIED');
  t.is(check(nobody, 'put', { key: '/a', value: 'x' }), 'PERMISSION_DENIED');
  t.is(check(nobody, 'range', { prefix: '/' }), 'PERMISSION_DENIED');
  t.is(check(nobody, 'list', {}), 'PERMISSION_DENIED');
  t.is(check(nobody, 'status', {}), 'ok');
  t.is(check(nobody, 'sessionOpen', { ttlMs: 5000 }), 'ok');
  t.is(check(nobody, 'sessionKeepalive', { id: 's1', secret }), 'ok');
});

test('reads need read, writes need write, on a prefix covering every key the request may touch', (t) => {
  t.is(check(ann, 'get', { key: '/app/x' }), 'ok');
  t.is(check(ann, 'put', { key: '/app/x', value: 'v' }), 'ok');
  t.is(check(ann, 'get', { key: '/shared/x' }), 'ok');
  t.is(check(ann, 'put', { key: '/shared/x', value: 'v' }), 'PERMISSION_DENIED', 'read only');
  t.is(check(ann, 'get', { key: '/app' }), 'PERMISSION_DENIED', 'the folder itself is not under /app/');
  t.is(check(ann, 'range', { prefix: '/app/' }), 'ok');
  t.is(check(ann, 'range', { prefix: '/app/x' }), 'ok');
  t.is(check(ann, 'range', { prefix: '/ap' }), 'PERMISSION_DENIED', 'a wider range');
  t.is(check(ann, 'list', { key: '/app' }), 'ok', 'the children of /app are under /app/');
  t.is(check(ann, 'list', { key: '/' }), 'PERMISSION_DENIED');
  t.is(check(ann, 'delete', { key: '/app/x', subtree: true }), 'ok');
  t.is(check(ann, 'delete', { key: '/', subtree: true }), 'PERMISSION_DENIED');
  t.is(check(ann, 'createSequential', { prefix: '/app/q-', value: 'v' }), 'ok');
  t.is(check(ann, 'createSequential', { prefix: '/shared/q-', value: 'v' }), 'PERMISSION_DENIED');
  t.is(check(ann, 'watch', { id: 'w', prefix: '/app/', inbox: '_INBOX.ann.w', session: 's', secret }), 'ok');
  t.is(
    check(ann, 'watch', { id: 'w', subtree: '/app', inbox: '_INBOX.ann.w', session: 's', secret }),
    'PERMISSION_DENIED',
  );
  t.is(
    check(ann, 'watch', { id: 'w', subtree: '/app/a', inbox: '_INBOX.ann.w', session: 's', secret }),
    'ok',
  );
  t.is(check({ kind: 'client', user: 'root' }, 'range', { prefix: '/' }), 'ok');
});

test('a txn needs every compare, and every op of both branches', (t) => {
  const put = (key: string) => ({ op: 'put', key, value: 'v' });
  t.is(
    check(ann, 'txn', {
      compare: [{ key: '/shared/a', target: 'version', result: 'eq', value: 0 }],
      success: [put('/app/a')],
      failure: [],
    }),
    'ok',
  );
  t.is(
    check(ann, 'txn', {
      compare: [{ key: '/other', target: 'version', result: 'eq', value: 0 }],
      success: [put('/app/a')],
      failure: [],
    }),
    'PERMISSION_DENIED',
    'a compare reads',
  );
  t.is(
    check(ann, 'txn', { compare: [], success: [put('/app/a')], failure: [put('/shared/a')] }),
    'PERMISSION_DENIED',
    'the failure branch',
  );
  t.is(
    check(ann, 'txn', { compare: [], success: [{ op: 'get', key: '/nope' }], failure: [] }),
    'PERMISSION_DENIED',
    'a get in a branch',
  );
  t.is(
    check(ann, 'txn', { compare: [], success: [{ op: 'delete', key: '/app', subtree: true }], failure: [] }),
    'PERMISSION_DENIED',
    'a subtree delete of /app covers /app itself',
  );
});
