/**
 * `ensemble up` as a user runs it (the built bin/ensemble.mjs): a local cluster that reports where
 * everything is, restarts a node that dies (crash-only nodes come back from their data), warns about
 * development passwords, and stops everything, and only that, on Ctrl-C.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { connect } from '../client/index.ts';
import { processAlive, useHarness } from '../integration/harness.ts';
import { waitFor } from '../integration/wait.ts';
import { freePort, natsCredentials } from './nats-server.ts';

const harness = useHarness(test, { label: 'ensemble-up', natsConfig: null });
const BIN = fileURLToPath(new URL('../bin/ensemble.mjs', import.meta.url));

interface UpInfo {
  readonly nats: string[];
  readonly leader: string;
  readonly nodes: { readonly id: string; readonly pid: number }[];
}

test('ensemble up: a killed node is restarted from its data; Ctrl-C stops everything it started', async (t) => {
  const data = await harness().tempDir('up-data');
  const port = await freePort();
  const up = harness().spawn(
    process.execPath,
    [BIN, 'up', '--json', '--data', data, '--port', String(port), '--cluster', 'updev'],
    { env: { ...process.env } },
  );
  const [line] = (await up.waitForOutput(/^\{"cluster".*\}$/m, 90_000)) as RegExpMatchArray;
  const info = JSON.parse(line!) as UpInfo;
  t.regex(up.output(), /public development passwords/, 'one clear warning about the development passwords');
  t.is(info.nodes.length, 3);
  const victim = info.nodes.find((n) => n.id !== info.leader)!;
  process.kill(victim.pid, 'SIGKILL');
  await up.waitForOutput(new RegExp(`node ${victim.id} exited \\(SIGKILL\\); restarting it`), 15_000);
  const c = await connect({
    servers: info.nats,
    cluster: 'updev',
    user: 'client',
    pass: natsCredentials('client').pass,
    session: false,
    timeoutMs: 5000,
  });
  try {
    await c.put('/up/after-kill', 'yes');
    const back = await waitFor(() => c.status(victim.id).catch(() => null), {
      what: `${victim.id} answers again`,
      timeoutMs: 30_000,
    });
    t.is(back.id, victim.id);
    t.true(up.child.exitCode === null, 'the cluster did not stop when a node died');
  } finally {
    await c.close();
  }
  const pids = info.nodes.map((n) => n.pid).filter((p) => p !== victim.pid);
  up.child.kill('SIGINT');
  const exit = await up.exited;
  t.is(exit.code, 0);
  t.true(
    pids.every((p) => !processAlive(p)),
    'its nodes are gone',
  );
});

test('ensemble up --tls with real passwords: no warning, TLS only, the application users have their grants', async (t) => {
  const data = await harness().tempDir('up-tls');
  const port = await freePort();
  const secrets = {
    ENSEMBLE_PEER_PASSWORD: `peer-${randomUUID()}`,
    ENSEMBLE_ADMIN_PASSWORD: `admin-${randomUUID()}`,
    ENSEMBLE_CLIENT_PASSWORD: `client-${randomUUID()}`,
    ENSEMBLE_CLIENT2_PASSWORD: `client2-${randomUUID()}`,
  };
  const up = harness().spawn(
    process.execPath,
    [BIN, 'up', '--json', '--tls', '--data', data, '--port', String(port), '--cluster', 'uptls'],
    { env: { ...process.env, ...secrets } },
  );
  const [line] = (await up.waitForOutput(/^\{"cluster".*\}$/m, 90_000)) as RegExpMatchArray;
  const info = JSON.parse(line!) as UpInfo & { tlsCa: string };
  t.notRegex(up.output(), /development passwords/, 'no warning with real passwords');
  t.truthy(info.tlsCa);
  const base = { servers: info.nats, cluster: 'uptls', session: false, timeoutMs: 5000 } as const;
  await t.throwsAsync(
    connect({ ...base, user: 'client', pass: secrets.ENSEMBLE_CLIENT_PASSWORD }),
    undefined,
    'no TLS: refused',
  );
  const tls = { caFile: info.tlsCa };
  await t.throwsAsync(
    connect({ ...base, user: 'client', pass: 'ensemble-client-dev', tls }),
    undefined,
    'dev password refused',
  );
  const c = await connect({ ...base, user: 'client', pass: secrets.ENSEMBLE_CLIENT_PASSWORD, tls });
  const c2 = await connect({ ...base, user: 'client2', pass: secrets.ENSEMBLE_CLIENT2_PASSWORD, tls });
  try {
    await c.put('/up/tls', 'yes');
    t.is((await c2.get('/up/tls'))?.value.toString(), 'yes');
  } finally {
    await c.close();
    await c2.close();
  }
  // The CLI needs no --nats, --cluster or --tls-ca: up left them in <data>/connection.json.
  const connection = path.join(data, 'connection.json');
  const cli = harness().spawn(process.execPath, [BIN, 'get', '/up/tls', '--json'], {
    env: { ...process.env, ...secrets, ENSEMBLE_CONNECTION: connection },
  });
  const done = await cli.exited;
  t.is(done.code, 0, cli.output());
  t.is(JSON.parse(cli.output()).value, 'yes');
  up.child.kill('SIGINT');
  t.is((await up.exited).code, 0);
  t.false(existsSync(connection), 'removed when the cluster stops');
});
