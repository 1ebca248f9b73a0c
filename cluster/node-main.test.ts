import test from 'ava';
import { DEV_PASSWORDS } from './nats-server.ts';
import { isLoopback, runNode } from './node-main.ts';

test('loopback NATS URLs are told apart from the rest', (t) => {
  for (const u of [
    'nats://127.0.0.1:4222',
    'nats://localhost:4222',
    'tls://127.8.9.1',
    '127.0.0.1:4222',
    'nats://[::1]:4222',
  ])
    t.true(isLoopback(u), u);
  for (const u of [
    'nats://10.0.0.5:4222',
    'nats://nats.example.com',
    'nats://0.0.0.0:4222',
    'nats://128.0.0.1',
    '::not a url',
  ])
    t.false(isLoopback(u), u);
});

test('a node refuses the public development password for a NATS server off loopback, before connecting', async (t) => {
  const e = await t.throwsAsync(
    runNode({
      id: 'n1',
      data: '/nonexistent/never-created',
      initialCluster: 'n1',
      nats: 'nats://127.0.0.1:4222,nats://10.9.8.7:4222',
      password: DEV_PASSWORDS.peer,
    }),
  );
  t.regex(String(e?.message), /development password.*10\.9\.8\.7/);
});
