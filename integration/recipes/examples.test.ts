/**
 * The examples (examples/*.mjs) run as a user runs them, `node examples/<name>.mjs`, importing
 * the built package (`npm run build` first), against a test cluster named by flags and
 * environment variables: the services register, find each other and answer each other's
 * calls; the workers write only through their fence, and a successor's writes carry a larger
 * token, also when the old leader wakes from a pause and tries to write.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import type { Instance } from '../../client/index.ts';
import { natsCredentials } from '../../cluster/nats-server.ts';
import { TestCluster } from '../cluster.ts';
import { type Harness, type ManagedProcess, startHarness } from '../harness.ts';

let harness: Harness;
let cluster: TestCluster;
const EXAMPLES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples');
const WAIT_MS = 30_000;

test.before(async () => {
  harness = await startHarness({ label: 'ensemble-examples' });
  cluster = await TestCluster.start(harness, { cluster: 'ex' });
});
test.after.always(async () => {
  await cluster?.close();
  await harness?.teardown();
});

/**
 * Runs `examples/<name>`; the cluster is named by flags, or with `viaEnv` by environment
 * variables (the password always comes from the environment).
 */
function example(name: string, args: readonly string[], viaEnv = false): ManagedProcess {
  const where = { servers: harness.natsUrls.join(','), cluster: 'ex' };
  return harness.spawn(
    process.execPath,
    [
      path.join(EXAMPLES, name),
      ...(viaEnv ? [] : ['--nats', where.servers, '--cluster', where.cluster]),
      ...args,
    ],
    {
      env: {
        ...process.env,
        ENSEMBLE_PASSWORD: natsCredentials('client').pass,
        ...(viaEnv ? { ENSEMBLE_NATS: where.servers, ENSEMBLE_CLUSTER: where.cluster } : {}),
      },
    },
  );
}

/** The exit of `p`, or a failure after `ms`. */
async function exitOf(p: ManagedProcess, ms = WAIT_MS) {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`process ${p.pid} still runs after ${ms} ms:\n${p.output()}`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function until(fn: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const t0 = performance.now();
  while (!(await fn())) {
    if (performance.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const ids = (list: readonly Instance[]): string[] => list.map((i) => i.id).sort();

test.serial('greeters and frontends register, find each other and answer each other’s calls', async (t) => {
  const c = await cluster.client();
  const g1 = example('greeter.mjs', ['--id', 'g1', '--report', '200']);
  const g2 = example('greeter.mjs', ['--id', 'g2', '--report', '200', '--delay', '40']);
  await g1.waitForOutput(/greeter g1: registered/, WAIT_MS);
  await g2.waitForOutput(/greeter g2: registered/, WAIT_MS);
  t.deepEqual(ids(await c.registry.discover('greeter')), ['g1', 'g2']);

  // The greeters' load reports, as the registry sees them.
  let busiest = 0;
  const ctl = new AbortController();
  const watching = (async () => {
    for await (const list of c.registry.watch('greeter', { signal: ctl.signal }))
      for (const i of list) busiest = Math.max(busiest, i.load);
  })().catch(() => {});

  // A frontend that runs until stopped (pointed at the cluster by environment variables): each
  // greeter picks it and asks for its stats.
  const live = example('frontend.mjs', ['--id', 'live', '--interval', '50'], true);
  await live.waitForOutput(/frontend live: registered/, WAIT_MS);
  await g1.waitForOutput(/greeter g1: frontend live has \d+ replies/, WAIT_MS);
  await g2.waitForOutput(/greeter g2: frontend live has \d+ replies/, WAIT_MS);

  // A frontend with a count exits by itself once every request was answered by a greeter.
  const counted = example('frontend.mjs', ['--id', 'f1', '--count', '200', '--concurrency', '6']);
  t.deepEqual(await exitOf(counted), { code: 0, signal: null }, counted.output());
  const done = counted.output().match(/frontend f1: done, (\d+) replies \((.*)\)/);
  t.truthy(done, counted.output());
  t.is(done![1], '200');
  const split = Object.fromEntries(done![2]!.split(', ').map((s) => s.split(': ')));
  t.deepEqual(Object.keys(split).sort(), ['g1', 'g2'], 'both greeters answered');
  t.is(Number(split.g1) + Number(split.g2), 200);
  t.deepEqual(ids(await c.registry.discover('frontend')), ['live'], 'f1 deregistered on its way out');
  ctl.abort();
  await watching;
  t.true(busiest > 0, 'the greeters reported requests in flight');

  // SIGTERM: each deregisters, answers what it has, closes and exits 0.
  await live.stop();
  t.deepEqual(await live.exited, { code: 0, signal: null }, live.output());
  t.regex(live.output(), /frontend live: done, \d+ replies/);
  await Promise.all([g1.stop(), g2.stop()]);
  for (const g of [g1, g2]) {
    t.deepEqual(await g.exited, { code: 0, signal: null }, g.output());
    const greeted = g.output().match(/stopped after (\d+) greetings/);
    t.true(Number(greeted?.[1]) > 0, g.output());
  }
  t.deepEqual(await c.registry.services(), {}, 'nothing is left registered');
});

interface Report {
  readonly worker: string;
  readonly token: number;
  readonly round: number;
  readonly revision: number;
}

test.serial(
  'workers: the leader writes through its fence; a successor’s writes carry a larger token',
  async (t) => {
    const key = '/it/report';
    const c = await cluster.client();
    // Every write of the report, in revision order.
    const writes: Report[] = [];
    const stream = c.watch({ key });
    const watching = (async () => {
      for await (const e of stream)
        if (e.type === 'put')
          writes.push({ ...JSON.parse(new TextDecoder().decode(e.value)), revision: e.revision });
    })().catch(() => {});

    const flags = ['--every', '100', '--session-ttl', '1500', '--election', 'it-workers', '--key', key];
    const workers = new Map(
      ['w1', 'w2', 'w3'].map((id) => [id, example('worker.mjs', ['--id', id, ...flags])]),
    );
    const leading = async (not: readonly string[]): Promise<Report> => {
      let last: Report | undefined;
      await until(
        () => (last = writes.at(-1)) !== undefined && !not.includes(last.worker),
        WAIT_MS,
        `a leader other than ${not.join(', ')} writes`,
      );
      const out = workers.get(last!.worker)!;
      await out.waitForOutput(new RegExp(`worker ${last!.worker}: leading \\(token ${last!.token}\\)`), 1000);
      return last!;
    };

    const first = await leading([]);
    await until(() => writes.filter((w) => w.worker === first.worker).length >= 3, WAIT_MS, 'three rounds');

    // kill -9: the next in line takes over once the dead leader's session expires.
    await workers.get(first.worker)!.kill('SIGKILL');
    const second = await leading([first.worker]);
    t.true(second.token > first.token, `token ${second.token} after ${first.token}`);

    // Paused past its TTL: the third takes over, and what the second writes when it wakes is refused.
    const paused = workers.get(second.worker)!;
    paused.child.kill('SIGSTOP');
    let third: Report;
    try {
      third = await leading([first.worker, second.worker]);
    } finally {
      paused.child.kill('SIGCONT');
    }
    t.true(third.token > second.token, `token ${third.token} after ${second.token}`);
    await paused.waitForOutput(
      new RegExp(`worker ${second.worker}: lost the leadership[^]*campaigning`),
      WAIT_MS,
    );
    const after = writes.length;
    await until(() => writes.length >= after + 3, WAIT_MS, 'the third leader keeps writing');

    for (const p of workers.values()) await p.stop();
    for (const [id, p] of workers)
      if (id !== first.worker) t.deepEqual(await p.exited, { code: 0, signal: null }, p.output());
    await stream.return();
    await watching;

    // Tokens never go back: no write of an old leader lands after its successor's first one.
    for (let i = 1; i < writes.length; i++)
      t.true(
        writes[i]!.token >= writes[i - 1]!.token,
        `write ${i}: ${JSON.stringify(writes.slice(i - 1, i + 1))}`,
      );
    t.deepEqual([...new Set(writes.map((w) => w.worker))], [first.worker, second.worker, third.worker]);
    // Each write carries the token its writer announced when it won.
    for (const w of writes)
      t.regex(workers.get(w.worker)!.output(), new RegExp(`leading \\(token ${w.token}\\)`));
  },
);

test.serial('a worker with --rounds exits by itself after that many reports', async (t) => {
  const c = await cluster.client();
  await c.registry.register('counted', 'one', { address: 'app.counted.one' });
  const w = example('worker.mjs', [
    '--id',
    'solo',
    '--every',
    '50',
    '--rounds',
    '3',
    '--election',
    'solo',
    '--key',
    '/it/solo',
  ]);
  t.deepEqual(await exitOf(w), { code: 0, signal: null }, w.output());
  t.is(w.output().match(/round \d+ written/g)?.length, 3);
  const report = JSON.parse((await c.getText('/it/solo')) ?? 'null');
  t.like(report, { worker: 'solo', round: 3, services: { counted: 1 } });
  t.deepEqual(await c.election('solo').leader(), null, 'it resigned');
});
