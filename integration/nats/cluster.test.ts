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
  for (const id of ['n0', 'n1', 'n2']) t.is(await ask(client, s.nodeApi(id, 'status')), id);

  // Kill server 1: the client's server, and node n1's.
  const victim = harness.natsServers[1]!;
  const pid = victim.pid!;
  await victim.kill('SIGKILL');
  t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'the server process is gone');

  // The client and node n1 move to surviving servers; every node is reachable again.
  const deadline = performance.now() + 15_000;
  for (const id of ['n0', 'n1', 'n2']) {
    let answered: unknown = null;
    while (answered === null && performance.now() < deadline) {
      answered = await ask(client, s.nodeApi(id, 'status'), 500).catch(() => null);
    }
    t.is(answered, id, `node ${id} answers after the failover`);
  }
  t.not(client.getServer(), u1.replace('nats://', ''));
  t.not(nodes[1]!.getServer(), u1.replace('nats://', ''));
  t.regex(String(await ask(client, s.api('status'))), /^n[012]$/, 'the queue group answers');

  // The survivors keep routing between themselves.
  const sub = nodes[0]!.subscribe(s.peer('n0'), { max: 1 });
  await nodes[0]!.flush();
  nodes[2]!.publish(s.peer('n0'), encodeEnvelope({ from: 'n2' }, { cluster: 'dev' }));
  for await (const m of sub) t.is(m.subject, s.peer('n0'));

  // The killed server comes back on its ports and rejoins the mesh.
  await victim.restart();
  await harness.natsCluster!.waitForRoutes();
  const back = await harness.connect('client', { servers: [u1] });
  t.is(await ask(back, s.nodeApi('n2', 'status')), 'n2');
});
