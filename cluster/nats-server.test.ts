import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from '@nats-io/transport-node';
import test from 'ava';
import { processAlive } from '../integration/harness.ts';
import {
  DEV_PASSWORDS,
  ensureNatsServer,
  findNatsServer,
  freePort,
  NATS_SERVER_ENV,
  natsCredentials,
  natsServerEnv,
  startNatsServer,
} from './nats-server.ts';

test('ensureNatsServer finds (or installs) nats-server; findNatsServer honours the override', async (t) => {
  const binary = await ensureNatsServer();
  t.true(path.isAbsolute(binary));
  t.is(await findNatsServer({ [NATS_SERVER_ENV]: binary }), binary);
  t.is(await findNatsServer({ [NATS_SERVER_ENV]: '/nonexistent/nats-server' }), null);
  const found = await findNatsServer({ PATH: '/nonexistent' });
  t.truthy(found, 'the system directories are searched too');
});

test('without nats-server and without leave to install it, the error says how to install it', async (t) => {
  const missing = await t.throwsAsync(
    ensureNatsServer({ install: false, env: { PATH: '/nonexistent' }, systemDirs: [] }),
  );
  t.regex(missing?.message ?? '', /apt-get install -y nats-server/);
  t.regex(missing?.message ?? '', /brew install nats-server/);
  const wrong = await t.throwsAsync(
    ensureNatsServer({ env: { [NATS_SERVER_ENV]: '/nonexistent/nats-server' } }),
  );
  t.regex(wrong?.message ?? '', /not an executable/);
});

test('freePort gives distinct bindable loopback ports', async (t) => {
  const ports = await Promise.all([freePort(), freePort(), freePort()]);
  for (const port of ports) {
    t.true(port > 0 && port < 65536);
    await new Promise<void>((resolve, reject) => {
      const server = net
        .createServer()
        .listen({ host: '127.0.0.1', port }, () => server.close(() => resolve()));
      server.on('error', reject);
    });
  }
});

test('credentials: passwords from the environment, else the development defaults', (t) => {
  t.deepEqual(natsCredentials('client', {}), { user: 'client', pass: DEV_PASSWORDS.client });
  t.deepEqual(natsCredentials('peer', { ENSEMBLE_PEER_PASSWORD: 'p' }), { user: 'peer', pass: 'p' });
  t.deepEqual(natsServerEnv({ ENSEMBLE_CLIENT2_PASSWORD: 'x' }), {
    ENSEMBLE_PEER_PASSWORD: DEV_PASSWORDS.peer,
    ENSEMBLE_ADMIN_PASSWORD: DEV_PASSWORDS.admin,
    ENSEMBLE_CLIENT_PASSWORD: DEV_PASSWORDS.client,
    ENSEMBLE_CLIENT2_PASSWORD: 'x',
  });
});

test('passwords set in the environment are the ones the server accepts', async (t) => {
  const server = await startNatsServer({ env: { ENSEMBLE_CLIENT_PASSWORD: 'from-env' } });
  try {
    const nc = await connect({
      servers: server.url,
      user: 'client',
      pass: 'from-env',
      inboxPrefix: '_INBOX.client',
    });
    await nc.close();
    await t.throwsAsync(
      connect({ servers: server.url, user: 'client', pass: DEV_PASSWORDS.client, reconnect: false }),
    );
  } finally {
    await server.stop();
  }
});

test('stop ends only the process it started; kill and restart keep the port', async (t) => {
  const [a, b] = await Promise.all([startNatsServer(), startNatsServer()]);
  t.not(a.port, b.port);
  const [pa, pb] = [a.pid!, b.pid!];
  t.true(processAlive(pa) && processAlive(pb));
  await a.stop();
  t.false(processAlive(pa), 'stopped server is gone');
  t.true(processAlive(pb), 'the other server is untouched');
  t.is(a.pid, null);
  await a.stop(); // idempotent

  await b.kill();
  t.false(processAlive(pb));
  await b.restart();
  t.not(b.pid, pb);
  const nc = await connect({ servers: b.url, user: 'peer', pass: natsCredentials('peer').pass });
  await nc.close();
  await b.stop();
  t.false(processAlive(b.pid ?? pb));
});

test('a config that nats-server refuses fails the start with its log', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ensemble-natsconf-'));
  try {
    const conf = path.join(dir, 'bad.conf');
    await writeFile(conf, 'this is { not a config\n');
    const err = await t.throwsAsync(startNatsServer({ config: conf }));
    t.regex(err?.message ?? '', /exited at start/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a port already taken by someone else is reported, not retried, when it was asked for', async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen({ host: '127.0.0.1', port: 0 }, () => r()));
  const port = (blocker.address() as net.AddressInfo).port;
  try {
    const err = await t.throwsAsync(startNatsServer({ port, monitorPort: await freePort() }));
    t.regex(err?.message ?? '', /port in use|address already in use/i);
  } finally {
    blocker.close();
  }
});
