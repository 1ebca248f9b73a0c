/**
 * TLS end to end: three NATS servers with TLS on client connections and routes (a local CA made
 * for the run), three nodes and a client that trust that CA. A client without TLS, or trusting
 * another CA, cannot connect at all.
 */
import { connect } from '@nats-io/transport-node';
import test from 'ava';
import { connect as ensemble } from '../../client/index.ts';
import { natsCredentials } from '../../cluster/nats-server.ts';
import { makeLocalTls } from '../../cluster/tls.ts';
import { TestCluster } from '../cluster.ts';
import { type Harness, startHarness } from '../harness.ts';

let harness: Harness;
let cluster: TestCluster;

test.before(async () => {
  harness = await startHarness({ label: 'ensemble-tls', tls: true, natsCluster: 3 });
  cluster = await TestCluster.start(harness, { cluster: 'tls' });
});
test.after.always(async () => {
  await cluster?.close();
  await harness?.teardown();
});

test.serial('nodes and clients that trust the CA work over TLS, across TLS routes', async (t) => {
  t.truthy(harness.tls);
  // Two clients on different servers: what one writes the other reads, through the routes.
  const a = await ensemble({
    servers: harness.natsUrls[0]!,
    cluster: 'tls',
    user: 'client',
    pass: natsCredentials('client').pass,
    tls: { caFile: harness.tls!.caFile },
  });
  const b = await ensemble({
    servers: harness.natsUrls[2]!,
    cluster: 'tls',
    user: 'client2',
    pass: natsCredentials('client2').pass,
    tls: { caFile: harness.tls!.caFile },
  });
  try {
    await a.put('/tls/a', 'over tls');
    t.is((await b.get('/tls/a'))?.value.toString(), 'over tls');
    const log = await import('node:fs/promises').then((fs) =>
      fs.readFile(harness.natsServers[0]!.logFile, 'utf8'),
    );
    t.regex(log, /TLS required for client connections/i);
    const varz = (await fetch(`${harness.natsServers[0]!.monitorUrl}/varz`).then((r) => r.json())) as {
      cluster: { tls_required?: boolean; tls_verify?: boolean };
    };
    t.true(varz.cluster.tls_required, 'routes require TLS');
    t.true(varz.cluster.tls_verify, 'and verify the peer server');
  } finally {
    await a.close();
    await b.close();
  }
});

test.serial('a client without TLS, or trusting another CA, is refused', async (t) => {
  const { pass } = natsCredentials('client');
  await t.throwsAsync(
    connect({ servers: [...harness.natsUrls], user: 'client', pass, reconnect: false, timeout: 3000 }),
  );
  const other = await makeLocalTls(await harness.tempDir('other-ca'));
  await t.throwsAsync(
    connect({
      servers: [...harness.natsUrls],
      user: 'client',
      pass,
      reconnect: false,
      timeout: 3000,
      tls: { caFile: other.caFile },
    }),
  );
});
