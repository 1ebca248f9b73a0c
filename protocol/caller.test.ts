import test from 'ava';
import { callerOf, isReplySubject, mayDeliverTo, PEER_CALLER } from './caller.ts';

const info = (o: object) => JSON.stringify({ acc: 'X', rtt: 1, ...o });

test('the caller comes from the Nats-Request-Info header: no header is a peer, admins by name', (t) => {
  t.is(callerOf(undefined), PEER_CALLER);
  t.is(callerOf(null), PEER_CALLER);
  t.is(callerOf(''), PEER_CALLER);
  t.deepEqual(callerOf(info({ user: 'client' })), { kind: 'client', user: 'client' });
  t.deepEqual(callerOf(info({ user: 'admin' })), { kind: 'admin', user: 'admin' });
  t.deepEqual(callerOf(info({ user: 'ops' }), ['ops']), { kind: 'admin', user: 'ops' });
  t.deepEqual(callerOf(info({ user: 'admin' }), ['ops']), { kind: 'client', user: 'admin' });
  // A header the server wrote always names a user; anything else is refused, never trusted.
  t.is(callerOf(info({})), null);
  t.is(callerOf('{not json'), null);
  t.is(callerOf(info({ user: 7 })), null);
  t.is(callerOf(info({ user: 'x'.repeat(300) })), null);
});

test('watch events go only below the inbox of the user who asked (a peer: any client inbox)', (t) => {
  const client = { kind: 'client', user: 'client' } as const;
  t.true(mayDeliverTo(client, '_INBOX.client.K1.watch.w1'));
  t.false(mayDeliverTo(client, '_INBOX.client2.K1.watch.w1'), "another user's inbox");
  t.false(mayDeliverTo(client, '_INBOX.clientX.watch.w1'), 'a longer user name is not the prefix');
  t.false(mayDeliverTo(client, '_INBOX.client'), 'the bare prefix');
  t.false(mayDeliverTo(client, '_INBOX.peer.x'), 'never the peers');
  t.false(mayDeliverTo({ kind: 'client', user: 'a.b' }, '_INBOX.a.b.x'), 'a user that is no inbox token');
  t.true(mayDeliverTo(PEER_CALLER, '_INBOX.client2.K1'));
  t.false(mayDeliverTo(PEER_CALLER, '_INBOX.peer.K1'));
  t.false(mayDeliverTo(PEER_CALLER, 'ensemble.dev.peer.n1'));
});

test('a node answers on client inboxes and on reply subjects the server mapped, nowhere else', (t) => {
  t.true(isReplySubject('_INBOX.client.K.1'));
  t.true(isReplySubject('_R_.abc.def'));
  t.false(isReplySubject('_INBOX.peer.K.1'));
  t.false(isReplySubject('ensemble.dev.peer.n1'));
  t.false(isReplySubject('_R_.*'));
  t.false(isReplySubject(42));
});
