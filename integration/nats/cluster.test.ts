/**
 * A 3-server NATS cluster (one server per node, joined by routes, all started with nats.conf):
 * messages cross routes, and losing one server loses no service: connections given every URL
 * (nodes and clients alike) move to a surviving server, and the survivors keep routing between
 * themselves.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import test from 'ava';
import { decodeReply, encodeEnvelope, encodeReply } from '../../protocol/codec.ts';
import { subjects } from '../../protocol/subjects.ts';
import { useHarness } from '../harness.ts';

const h = useHarness(test, { natsCluster: 3, label: 'ensemble-natscluster' });
const s = subjects({ cluster: 'dev' });

/** Answers `s.api('status')` and `s.nodeApi(id, 'status')` with the node id, as a node would. */
function serve(nc: NatsConnection, id: string): void {
  for (const subject of [s.apiWildcard(), s.nodeApiWildcard(id)]) {
    nc.subscribe(subject, {
      queue: subject === s.apiWildcard() ? s.apiQueue : undefined,
      callback: (_, m) => {
        m.respond(encodeReply({ result: { id } }, { cluster: 'dev' }));
      },
    });
  }
}

async function ask(nc: NatsConnection, subject: string, timeout = 3000): Promise<unknown> {
  const reply = await nc.request(subject, encodeEnvelope({}, { cluster: 'dev' }), { timeout });
  const decoded = decodeReply<{ id: string }>(reply.data, { cluster: 'dev' });
  if (!decoded.ok) throw decoded.error;
  return decoded.result.id;
}

/**
 * `ask`, retried for up to 15 s: interest travels between servers asynchronously (a route carries
 * a new subscription a moment after the subscriber's own server has it), and a connection whose
 * server died needs a moment to reconnect. Resolves `null` if it never got an answer.
 */
async function askEventually(nc: NatsConnection, subject: string): Promise<unknown> {
  const deadline = performance.now() + 15_000;
  while (performance.now() < deadline) {
    const answer = await ask(nc, subject, 500).catch(() => null);
    if (answer !== null) return answer;
    await new Promise((r) => setTimeout(r, 50));
  }
  return null;
}

test('routes carry messages between servers, and the cluster survives killing one server', async (t) => {
  const harness = h();
  const [u0, u1, u2] = harness.natsUrls as [string, string, string];
  const all = (first: string) => ({
    servers: [first, ...harness.natsUrls.filter((u) => u !== first)],
    noRandomize: true,
    reconnectTimeWait: 100,
    maxReconnectAttempts: -1,
  });

  // One "node" per server, each connected to its own server first, knowing all of them.
  const nodes = await Promise.all([u0, u1, u2].map((u) => harness.connect('peer', all(u))));
  for (const [i, nc] of nodes.entries()) serve(nc, `n${i}`);
  await Promise.all(nodes.map((nc) => nc.flush()));
  t.deepEqual(
    nodes.map((nc) => nc.getServer()),
    [u0, u1, u2].map((u) => u.replace('nats://', '')),
  );

  // A client on server 1 reaches every node: through the routes to servers 0 and 2.
  const client = await harness.connect('client', all(u1));
  t.is(client.getServer(), u1.replace('nats://', ''));
  for (const id of ['n0', 'n1', 'n2']) t.is(await askEventually(client, s.nodeApi(id, 'status')), id);

  // Kill server 1: the client's server, and node n1's.
  const victim = harness.natsServers[1]!;
  const pid = victim.pid!;
  await victim.kill('SIGKILL');
  t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'the server process is gone');

  // The client and node n1 move to surviving servers; every node is reachable again.
  for (const id of ['n0', 'n1', 'n2']) {
    t.is(await askEventually(client, s.nodeApi(id, 'status')), id, `node ${id} answers after the failover`);
  }
  t.not(client.getServer(), u1.replace('nats://', ''));
  t.not(nodes[1]!.getServer(), u1.replace('nats://', ''));
  t.regex(String(await askEventually(client, s.api('status'))), /^n[012]$/, 'the queue group answers');

  // The survivors keep routing between themselves: n2 (server 2) reaches n0 (server 0).
  t.is(nodes[0]!.getServer(), u0.replace('nats://', ''));
  t.is(nodes[2]!.getServer(), u2.replace('nats://', ''));
  t.is(await askEventually(nodes[2]!, s.nodeApi('n0', 'status')), 'n0');

  // The killed server comes back on its ports and rejoins the mesh.
  await victim.restart();
  await harness.natsCluster!.waitForRoutes();
  const back = await harness.connect('client', { servers: [u1] });
  t.is(await askEventually(back, s.nodeApi('n2', 'status')), 'n2');
});
