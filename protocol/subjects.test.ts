import test from 'ava';
import fc from 'fast-check';
import {
  defaultPrefix,
  inboxPrefix,
  isClientInbox,
  isLiteralSubject,
  isPeerInbox,
  natsPermissions,
  natsUsers,
  subjects,
  watchInbox,
} from './subjects.ts';

/** NATS subject matching: `*` one token, `>` one or more trailing tokens. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}
const allowed = (patterns: readonly string[], subject: string) => patterns.some((p) => matches(p, subject));

const s = subjects({ cluster: 'dev' });

test('the default prefix is ensemble.<cluster> and every subject lives under it', (t) => {
  t.is(defaultPrefix('dev'), 'ensemble.dev');
  t.is(s.prefix, 'ensemble.dev');
  t.is(s.peer('n1'), 'ensemble.dev.peer.n1');
  t.is(s.forward('n1'), 'ensemble.dev.peer.n1.forward');
  t.is(s.snapshot('n1'), 'ensemble.dev.peer.n1.snapshot');
  t.is(s.nodeApi('n2', 'put'), 'ensemble.dev.node.n2.api.put');
  t.is(s.nodeApiWildcard('n2'), 'ensemble.dev.node.n2.api.*');
  t.is(s.api('get'), 'ensemble.dev.api.get');
  t.is(s.apiWildcard(), 'ensemble.dev.api.*');
  t.is(s.apiQueue, 'ensemble-api');
  t.is(s.sessionKeepalive(), 'ensemble.dev.session.keepalive');
  t.true(matches(s.nodeApiWildcard('n2'), s.nodeApi('n2', 'createSequential')));
  t.true(matches(s.apiWildcard(), s.api('txn')));
  t.false(matches(s.nodeApiWildcard('n2'), s.nodeApi('n3', 'put')));
  const custom = subjects({ cluster: 'dev', prefix: 'acme.coord' });
  t.is(custom.api('get'), 'acme.coord.api.get');
  t.true(custom.owns('acme.coord.peer.n1'));
  t.false(custom.owns('acme.coordx.peer.n1'));
});

test('parseApi and parsePeer invert the builders and refuse everything else', (t) => {
  t.deepEqual(s.parseApi(s.api('put')), { node: null, op: 'put' });
  t.deepEqual(s.parseApi(s.nodeApi('n1', 'get')), { node: 'n1', op: 'get' });
  t.is(s.parseApi('ensemble.other.api.put'), null);
  t.is(s.parseApi('ensemble.dev.api.a.b'), null);
  t.is(s.parseApi('ensemble.dev.node.n1.x.get'), null);
  t.is(s.parsePeer(s.peer('n7')), 'n7');
  t.is(s.parsePeer(s.forward('n7')), null);
  t.is(s.parsePeer(s.api('get')), null);
});

test('bad names are programmer or configuration mistakes: TypeError', (t) => {
  for (const bad of ['', 'a.b', 'a*', '>', 'a b', 'x'.repeat(65), 'é']) {
    t.throws(() => s.peer(bad), { instanceOf: TypeError }, bad);
    t.throws(() => s.api(bad), { instanceOf: TypeError }, bad);
    t.throws(() => subjects({ cluster: bad }), { instanceOf: TypeError }, bad);
  }
  for (const prefix of ['', 'a..b', 'a.*', 'a.>', '_INBOX.x', '$SYS', 'a b']) {
    t.throws(() => subjects({ cluster: 'c', prefix }), { instanceOf: TypeError }, prefix);
  }
});

test('client inboxes: replies and watch events go below _INBOX, never into the peers inbox', (t) => {
  t.is(inboxPrefix('client'), '_INBOX.client');
  t.true(isClientInbox('_INBOX.client.abc.1'));
  t.true(isClientInbox('_INBOX.abc'));
  t.false(isClientInbox('_INBOX.peer.abc'));
  t.false(isClientInbox('_INBOX.peer'));
  t.false(isClientInbox(s.peer('n1')), 'a forged reply subject cannot aim a node at peer traffic');
  t.false(isClientInbox('_INBOX.client.*'));
  t.false(isClientInbox('_INBOX.client.>'));
  t.false(isClientInbox('_INBOX..x'));
  t.false(isClientInbox(5));
  t.true(isPeerInbox('_INBOX.peer.x'));
  t.is(watchInbox('_INBOX.client.K1', 'w7'), '_INBOX.client.K1.watch.w7');
  t.throws(() => watchInbox('_INBOX.peer.K1', 'w7'), { instanceOf: TypeError });
  t.throws(() => watchInbox('ensemble.dev', 'w7'), { instanceOf: TypeError });
  t.false(isLiteralSubject('a\tb'));
});

const id = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/);
const op = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/);

test('permissions: a client may publish every API and keepalive subject, and no peer subject', (t) => {
  const client = natsPermissions('client');
  fc.assert(
    fc.property(id, id, op, (cluster, node, o) => {
      const x = subjects({ cluster });
      for (const subject of [x.api(o), x.nodeApi(node, o), x.sessionKeepalive()]) {
        if (!allowed(client.publish, subject)) throw new Error(`client cannot publish ${subject}`);
      }
      for (const subject of [x.peer(node), x.forward(node), x.snapshot(node)]) {
        if (allowed(client.publish, subject)) throw new Error(`client can publish ${subject}`);
        if (allowed(client.subscribe, subject)) throw new Error(`client can subscribe ${subject}`);
      }
      if (allowed(client.subscribe, x.api(o))) throw new Error('client can answer API requests');
    }),
  );
  t.pass();
});

test('permissions: each client reads only its own inbox; peers read theirs and all cluster subjects', (t) => {
  const [a, b] = [natsPermissions('client'), natsPermissions('client2')];
  t.true(allowed(a.subscribe, '_INBOX.client.K.1'));
  t.false(allowed(a.subscribe, '_INBOX.client2.K.1'));
  t.false(allowed(b.subscribe, '_INBOX.client.K.1'));
  t.false(allowed(a.subscribe, '_INBOX.peer.K.1'));
  t.false(allowed(a.subscribe, '_INBOX.K.1'), 'the default inbox prefix is closed');
  const peer = natsPermissions('peer');
  fc.assert(
    fc.property(id, id, op, (cluster, node, o) => {
      const x = subjects({ cluster });
      for (const subject of [x.peer(node), x.forward(node), x.snapshot(node), x.api(o), x.nodeApi(node, o)]) {
        if (!allowed(peer.publish, subject) || !allowed(peer.subscribe, subject)) {
          throw new Error(`peer cannot use ${subject}`);
        }
      }
      if (!allowed(peer.subscribe, x.sessionKeepalive())) throw new Error('peer cannot hear keepalives');
    }),
  );
  t.true(allowed(peer.publish, '_INBOX.client.K.1'), 'peers reply into client inboxes');
  t.true(allowed(peer.subscribe, '_INBOX.peer.K.1'));
  t.false(allowed(peer.subscribe, '_INBOX.client.K.1'));
  t.deepEqual([...natsUsers], ['peer', 'admin', 'client', 'client2']);
});
