/**
 * The network-namespace layer of the chaos suite, with real processes: NATS servers in
 * namespaces joined by routes over the bridge, clients on the host, and each fault (partition,
 * bridge node, isolation, one-way cut, latency) seen from both sides. Where network namespaces
 * are not permitted, each test logs why and passes (the chaos run then uses transport filters).
 */
import { execFileSync, spawn } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import net from 'node:net';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import test, { type ExecutionContext } from 'ava';
import { adopt } from '../../cluster/children.ts';
import { type NatsCluster, natsCredentials, startNatsCluster } from '../../cluster/nats-server.ts';
import { inboxPrefix } from '../../protocol/subjects.ts';
import { createNetwork, HOST, type Network, netnsUnavailableReason, sweepStale } from './netns.ts';

const IDS = ['n1', 'n2', 'n3'] as const;

/** False (after logging why) when namespaces are not permitted here: the test then just passes. */
async function permitted(t: ExecutionContext): Promise<boolean> {
  const reason = await netnsUnavailableReason();
  if (reason === null) return true;
  t.log(`netns not permitted here: ${reason}`);
  t.pass();
  return false;
}

const sh = (cmd: string, args: readonly string[]): string =>
  execFileSync(cmd, [...args], { encoding: 'utf8' });

/** A network of three namespaces with a NATS server in each, joined by routes; torn down after. */
async function setup(t: ExecutionContext): Promise<{ network: Network; nats: NatsCluster; ask: Ask }> {
  const network = await createNetwork(IDS, { prefix: 'enst' });
  t.teardown(() => network.destroy());
  const nats = await startNatsCluster({
    servers: IDS.map((id) => ({ host: network.ip(id), wrapper: network.exec(id) })),
  });
  t.teardown(() => nats.stop());
  t.log(`subnet ${network.subnet}, netem by ${network.shaper}`);
  return { network, nats, ask: await agents(t, network) };
}

/** A client on the host, connected to one server only (it does not learn the others). */
async function client(t: ExecutionContext, url: string): Promise<NatsConnection> {
  const nc = await connect({
    servers: [url],
    ...natsCredentials('client'),
    inboxPrefix: inboxPrefix('client'),
    ignoreClusterUpdates: true,
    name: 'netns-test',
  });
  t.teardown(() => nc.close().catch(() => {}));
  return nc;
}

/** Resolves true once a request on `subject` through `nc` is answered within `timeoutMs`. */
async function answered(nc: NatsConnection, subject: string, timeoutMs = 1000): Promise<boolean> {
  try {
    await nc.request(subject, 'ping', { timeout: timeoutMs });
    return true;
  } catch {
    return false;
  }
}

async function eventually(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) if (await check()) return true;
  return false;
}

async function routeCount(monitorUrl: string | null): Promise<number> {
  const res = await fetch(`${monitorUrl}/routez`, { signal: AbortSignal.timeout(2000) });
  return ((await res.json()) as { num_routes: number }).num_routes;
}

/**
 * A probe process inside a namespace, answering one JSON line per request: `tcp` (which of
 * `targets` accept a connection within `ms`) or `udp` (listen on `me`, send datagrams to `peer`
 * for `ms`, count what arrives). Long-lived, so a probe costs no process start.
 */
const AGENT = `
const net = require('node:net');
const dgram = require('node:dgram');
const tcp = ({ targets, ms }) => Promise.all(targets.map(([host, port]) => new Promise((resolve) => {
  const s = net.connect({ host, port });
  const timer = setTimeout(() => { s.destroy(); resolve(false); }, ms);
  s.on('connect', () => { clearTimeout(timer); s.destroy(); resolve(true); });
  s.on('error', () => { clearTimeout(timer); resolve(false); });
})));
const udp = ({ me, peer, port, ms }) => new Promise((resolve) => {
  const s = dgram.createSocket('udp4');
  let received = 0;
  s.on('message', () => received++);
  s.on('error', () => {});
  s.bind(port, me, () => {
    const timer = setInterval(() => s.send('x', port, peer), 25);
    setTimeout(() => { clearInterval(timer); s.close(); resolve(received); }, ms);
  });
});
require('node:readline').createInterface({ input: process.stdin }).on('line', async (line) => {
  const cmd = JSON.parse(line);
  const result = cmd.op === 'tcp' ? await tcp(cmd) : await udp(cmd);
  process.stdout.write(JSON.stringify({ seq: cmd.seq, result }) + '\\n');
});
process.stdout.write(JSON.stringify({ seq: 0 }) + '\\n');
`;

type Ask = (id: string, request: Record<string, unknown>) => Promise<unknown>;

/** Starts a probe agent in every namespace; they are killed at teardown (and by `destroy`). */
async function agents(t: ExecutionContext, network: Network): Promise<Ask> {
  let seq = 0;
  const waiting = new Map<number, (result: unknown) => void>();
  const inputs = new Map<string, NodeJS.WritableStream>();
  await Promise.all(
    network.ids.map(async (id) => {
      const [cmd, ...prefix] = network.exec(id);
      const child = spawn(cmd as string, [...prefix, process.execPath, '-e', AGENT], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      adopt(child);
      t.teardown(() => {
        child.kill('SIGKILL');
      });
      inputs.set(id, child.stdin);
      let ready: () => void = () => {};
      const started = new Promise<void>((resolve, reject) => {
        ready = resolve;
        child.once('exit', (code, signal) =>
          reject(new Error(`probe agent in ${id} exited (${signal ?? code})`)),
        );
      });
      let buffer = '';
      child.stdout.on('data', (c: Buffer) => {
        buffer += c.toString();
        for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
          const reply = JSON.parse(buffer.slice(0, i)) as { seq: number; result: unknown };
          buffer = buffer.slice(i + 1);
          if (reply.seq === 0) ready();
          else waiting.get(reply.seq)?.(reply.result);
        }
      });
      await started;
    }),
  );
  return (id, request) =>
    new Promise((resolve) => {
      seq += 1;
      waiting.set(seq, resolve);
      inputs.get(id)?.write(`${JSON.stringify({ ...request, seq })}\n`);
    });
}

async function reaches(ask: Ask, network: Network, nats: NatsCluster, from: string, to: readonly string[]) {
  const targets = to.map((id) => [network.ip(id), nats.servers[IDS.indexOf(id as never)]?.port]);
  return (await ask(from, { op: 'tcp', targets, ms: 1000 })) as boolean[];
}

/** n1 and n2 send each other datagrams for a while: how many each received. */
async function udpExchange(ask: Ask, network: Network, port: number): Promise<[number, number]> {
  const [a, b] = ['n1', 'n2'];
  return (await Promise.all([
    ask(a, { op: 'udp', me: network.ip(a), peer: network.ip(b), port, ms: 1000 }),
    ask(b, { op: 'udp', me: network.ip(b), peer: network.ip(a), port, ms: 1000 }),
  ])) as [number, number];
}

/** Whether the host can open a TCP connection to `host:port` within `ms`. */
function hostReaches(host: string, port: number, ms = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, ms);
    s.on('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve(true);
    });
    s.on('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

test.serial(
  'NATS servers in namespaces route over the bridge; a partition cuts routes, not the host; heal restores',
  async (t) => {
    if (!(await permitted(t))) return;
    const { network, nats, ask } = await setup(t);
    const [s1, s2, s3] = nats.servers as [
      NatsCluster['servers'][0],
      NatsCluster['servers'][0],
      NatsCluster['servers'][0],
    ];
    t.is(s1.url, `nats://${network.ip('n1')}:${s1.port}`);
    for (const s of nats.servers) t.is(await routeCount(s.monitorUrl), 2);

    const nc1 = await client(t, s1.url);
    const nc2 = await client(t, s2.url);
    const nc3 = await client(t, s3.url);
    nc3.subscribe('app.netns.echo', {
      callback: (_err, msg) => {
        msg.respond(`from n3`);
      },
    });
    await nc3.flush();
    t.true(await eventually(() => answered(nc1, 'app.netns.echo'), 10_000), 'n1 → route → n3 answers');

    await network.partition([['n1'], ['n2', 'n3']]);
    t.is(network.describe(), 'partition n1 | n2 n3');
    t.false(await answered(nc1, 'app.netns.echo', 1500), 'the minority server cannot reach the responder');
    t.true(await answered(nc2, 'app.netns.echo', 3000), 'the majority side still routes');
    await nc1.flush(); // the host still reaches server 1
    t.true((await routeCount(s1.monitorUrl)) >= 0, 'its monitoring answers the host');
    t.log(
      `server 1 /routez during the partition: ${await routeCount(s1.monitorUrl)} routes (a silent cut is seen only by route pings)`,
    );
    t.deepEqual(
      await Promise.all([
        reaches(ask, network, nats, 'n1', ['n2', 'n3']),
        reaches(ask, network, nats, 'n2', ['n3']),
      ]),
      [[false, false], [true]],
    );

    await network.heal();
    await network.heal(); // idempotent
    t.is(network.describe(), 'no faults');
    t.true(
      await eventually(() => answered(nc1, 'app.netns.echo'), 20_000),
      'requests cross again after heal',
    );
    await nats.waitForRoutes(20_000);
    for (const s of nats.servers) t.is(await routeCount(s.monitorUrl), 2);

    // A restart keeps the wrapper: the new process is in n3's namespace again (not in ours).
    const before = s3.pid;
    await s3.restart();
    t.not(s3.pid, before);
    t.not(readlinkSync(`/proc/${s3.pid}/ns/net`), readlinkSync('/proc/self/ns/net'));
    await nats.waitForRoutes(20_000);
  },
);

test.serial('latency through a node, a one-way cut, a bridge node, isolation from the host', async (t) => {
  if (!(await permitted(t))) return;
  const { network, nats, ask } = await setup(t);
  const [s1, s2] = nats.servers as [NatsCluster['servers'][0], NatsCluster['servers'][0]];
  const nc1 = await client(t, s1.url);
  const nc2 = await client(t, s2.url);
  nc2.subscribe('app.netns.echo', {
    callback: (_err, msg) => {
      msg.respond('from n2');
    },
  });
  await nc2.flush();
  t.true(await eventually(() => answered(nc1, 'app.netns.echo'), 10_000));

  /** The fastest of a few round trips host → n1 → route → n2 → back. */
  const roundTrip = async () => {
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 6; i++) {
      const t0 = performance.now();
      if (await answered(nc1, 'app.netns.echo', 5000)) best = Math.min(best, performance.now() - t0);
    }
    return best;
  };
  const before = await roundTrip();
  await network.netem('n2', { delayMs: 100 });
  t.regex(network.describe(), /^netem n2 delay 100ms egress/);
  const slowed = await roundTrip();
  t.log(
    `round trip through n2: ${before.toFixed(1)} ms, with netem ${slowed.toFixed(1)} ms (${network.shaper})`,
  );
  t.true(slowed - before >= 90, `${slowed} - ${before} >= 90`);
  await network.heal();
  const healed = await roundTrip();
  t.true(healed < before + 50, `after heal ${healed} ms`);

  // One way: n1's datagrams to n2 are dropped, n2's to n1 arrive.
  await network.cut('n1', 'n2');
  t.is(network.describe(), 'cut n1->n2');
  const [atN1, atN2] = await udpExchange(ask, network, 47000);
  t.true(atN1 > 0, `n1 received ${atN1} from n2`);
  t.is(atN2, 0, 'n2 received nothing from n1');
  await network.heal();

  // One-way loss: everything n2 sends is lost, what it receives arrives.
  await network.netem('n2', { lossPct: 100 });
  const [lossAtN1, lossAtN2] = await udpExchange(ask, network, 47001);
  t.is(lossAtN1, 0, 'n1 received nothing from n2');
  t.true(lossAtN2 > 0, `n2 received ${lossAtN2} from n1`);
  await network.heal();

  // A bridge node: n2 reaches both, n1 and n3 do not reach each other.
  await network.bridge('n2');
  t.deepEqual(
    await Promise.all([
      reaches(ask, network, nats, 'n1', ['n2', 'n3']),
      reaches(ask, network, nats, 'n3', ['n2', 'n1']),
    ]),
    [
      [true, false],
      [true, false],
    ],
  );
  await network.heal();

  // Isolation: from the other nodes only, then from the host too.
  await network.isolate('n3');
  t.deepEqual(await reaches(ask, network, nats, 'n1', ['n3']), [false]);
  t.true(await hostReaches(network.ip('n3'), nats.servers[2]?.port ?? 0), 'the host still reaches n3');
  await network.isolate('n3', { fromHost: true });
  t.false(await hostReaches(network.ip('n3'), nats.servers[2]?.port ?? 0), 'cut from the host');
  t.true(await hostReaches(network.ip('n1'), s1.port), 'but not the others');
  await network.cut(HOST, 'n1');
  t.false(await hostReaches(network.ip('n1'), s1.port), 'host → n1 cut');
  await network.heal();
  t.true(await hostReaches(network.ip('n3'), nats.servers[2]?.port ?? 0));
  t.true(await hostReaches(network.ip('n1'), s1.port));
});

test.serial(
  'destroy leaves no namespace, link or process; sweepStale removes what a dead run left',
  async (t) => {
    if (!(await permitted(t))) return;
    const network = await createNetwork(['a', 'b'], { prefix: 'enst' });
    t.teardown(() => network.destroy());
    const run = network.bridgeDevice.slice(4);
    const [cmd, ...prefix] = network.exec('a');
    const sleeper = spawn(cmd as string, [...prefix, 'sleep', '60'], { stdio: 'ignore' });
    adopt(sleeper);
    const exited = new Promise((r) => sleeper.once('exit', r));
    await network.netem('b', { delayMs: 5, direction: 'both' }); // leaves the relay (or qdiscs) behind
    t.true(sh('ip', ['netns', 'list']).includes(network.ns('a')));
    t.true(sh('ip', ['-br', 'link']).includes(network.bridgeDevice));
    await network.destroy();
    await network.destroy(); // idempotent
    await exited;
    t.false(sh('ip', ['netns', 'list']).includes(`-${run}-`), 'no namespace of the run');
    t.false(sh('ip', ['-br', 'link']).includes(run), 'no bridge or veth of the run');

    // A run whose process is dead: its namespace and bridge go; a live run's stay.
    const dead = spawn('true');
    await new Promise((r) => dead.once('exit', r));
    const deadNs = `enst-${dead.pid}-beef-x`;
    const liveNs = `enst-${process.pid}-cafe-y`;
    const deadBridge = `ensbt${process.pid % 100000}`;
    sh('ip', ['netns', 'add', deadNs]);
    sh('ip', ['netns', 'add', liveNs]);
    t.teardown(() => {
      for (const ns of [deadNs, liveNs]) spawn('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      spawn('ip', ['link', 'del', deadBridge], { stdio: 'ignore' });
    });
    sh('ip', ['link', 'add', deadBridge, 'type', 'bridge']);
    sh('ip', ['link', 'set', deadBridge, 'alias', `ensemble-netns prefix=enst pid=${dead.pid} run=beef`]);
    const swept = await sweepStale('enst');
    t.deepEqual(swept, { namespaces: [deadNs], links: [deadBridge] });
    t.false(sh('ip', ['netns', 'list']).includes(deadNs));
    t.true(sh('ip', ['netns', 'list']).includes(liveNs));
    t.false(sh('ip', ['-br', 'link']).includes(deadBridge));
  },
);
