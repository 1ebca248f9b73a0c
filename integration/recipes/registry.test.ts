/**
 * The service registry on a real cluster: a killed instance leaves discovery and every watch
 * within its session's TTL (with generous slack: the exact bound is the sessions' business),
 * picks by strategy and health, coalesced load reports, typed errors for bad input, and a
 * registration that comes back under a new session after its process was paused past the TTL.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import type { Client, Instance, PickStrategy, ServiceView } from '../../client/index.ts';
import { natsCredentials } from '../../cluster/nats-server.ts';
import { TestCluster } from '../cluster.ts';
import { type Harness, type ManagedProcess, startHarness } from '../harness.ts';

let harness: Harness;
let cluster: TestCluster;
const INSTANCE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'registry-instance.fixture.ts');
const TTL_MS = 1500;
/** How long past the TTL a dead instance may linger here: slack for a loaded 2-core machine. */
const SLACK_MS = 15_000;

test.before(async () => {
  harness = await startHarness({ label: 'ensemble-registry' });
  cluster = await TestCluster.start(harness, { cluster: 'reg' });
});
test.after.always(async () => {
  await cluster?.close();
  await harness?.teardown();
});

async function until(fn: () => boolean | Promise<boolean>, ms: number, what: string): Promise<number> {
  const t0 = performance.now();
  while (!(await fn())) {
    if (performance.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return performance.now() - t0;
}

/** An instance registered by its own process; with `watched`, it prints its view of that service. */
function spawnInstance(service: string, instance: string, watched?: string): ManagedProcess {
  const args = [
    harness.natsUrls.join(','),
    'reg',
    service,
    instance,
    String(TTL_MS),
    ...(watched ? [watched] : []),
  ];
  return harness.spawn(process.execPath, ['--import', 'tsx', INSTANCE, ...args], {
    env: { ...process.env, ENSEMBLE_CLIENT_PASSWORD: natsCredentials('client').pass },
  });
}

const ids = (list: readonly Instance[]): string[] => list.map((i) => i.id).sort();

function tally(view: ServiceView, strategy: PickStrategy, n: number): Record<string, number> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const id = view.pick(strategy)?.id ?? 'none';
    counts[id] = (counts[id] ?? 0) + 1;
  }
  return counts;
}

/** Follows `service` through `c.registry.watch`; `latest` is the newest set of instance ids. */
function follow(c: Client, service: string, signal: AbortSignal) {
  const state = { latest: [] as string[], updates: 0 };
  const done = (async () => {
    for await (const list of c.registry.watch(service, { signal })) {
      state.latest = ids(list);
      state.updates++;
    }
  })().catch(() => {});
  return { state, done };
}

test.serial('a killed instance leaves discover and every watch within its session TTL', async (t) => {
  const a = await cluster.client();
  const b = await cluster.client();
  await a.registry.register('kv', 'alive', { address: 'app.kv.alive' });
  const ctl = new AbortController();
  const watchers = [follow(a, 'kv', ctl.signal), follow(b, 'kv', ctl.signal)];
  try {
    const p = spawnInstance('kv', 'doomed');
    await p.waitForOutput(/ready/, 30_000);
    await until(
      () => watchers.every((w) => w.state.latest.includes('doomed')),
      10_000,
      'both watchers see the instance',
    );
    t.deepEqual(ids(await b.registry.discover('kv')), ['alive', 'doomed']);

    await p.kill('SIGKILL');
    const took = await until(
      async () =>
        !ids(await b.registry.discover('kv', { all: true })).includes('doomed') &&
        watchers.every((w) => !w.state.latest.includes('doomed')),
      TTL_MS + SLACK_MS,
      'the killed instance is gone everywhere',
    );
    t.log(`gone from discover and both watches ${took.toFixed(0)} ms after SIGKILL (TTL ${TTL_MS} ms)`);
    t.deepEqual(
      watchers.map((w) => w.state.latest),
      [['alive'], ['alive']],
      'the live instance stays',
    );
    t.deepEqual(ids(await a.registry.discover('kv')), ['alive']);
  } finally {
    ctl.abort();
    await Promise.all(watchers.map((w) => w.done));
  }
});

test.serial(
  'least-loaded steers traffic off a loaded instance; round-robin spreads evenly; health decides who is picked',
  async (t) => {
    const c = await cluster.client();
    const [a, b, d] = await Promise.all(
      ['a', 'b', 'd'].map((id) => c.registry.register('bal', id, { address: `app.bal.${id}` })),
    );
    await a!.setLoad(100);
    const view = await c.registry.view('bal');
    const seen = (id: string, check: (i: Instance) => boolean) => () => {
      const i = view.instances.find((x) => x.id === id);
      return i !== undefined && check(i);
    };
    await until(
      seen('a', (i) => i.load === 100),
      10_000,
      'the view sees the load',
    );
    t.is(view.instances.length, 3);

    const loaded = tally(view, 'least-loaded', 1000);
    t.log('least-loaded over 1000 picks:', loaded);
    t.true((loaded.a ?? 0) < 100, `the loaded instance got ${loaded.a ?? 0} of 1000 picks`);
    t.true((loaded.b ?? 0) > 300 && (loaded.d ?? 0) > 300, 'the idle ones share the rest');

    t.deepEqual(tally(view, 'round-robin', 999), { a: 333, b: 333, d: 333 });

    // The shared view behind `registry.pick` follows the same changes.
    await until(
      async () => {
        for (let i = 0; i < 3; i++) {
          const p = await c.registry.pick('bal', 'round-robin');
          if (p?.id === 'a') return p.load === 100;
        }
        return false;
      },
      10_000,
      'registry.pick sees the load',
    );
    const viaRegistry = new Set<string>();
    for (let i = 0; i < 300; i++)
      viaRegistry.add((await c.registry.pick('bal', 'least-loaded'))?.id ?? 'none');
    t.true(viaRegistry.has('b') && viaRegistry.has('d'), 'registry.pick uses both idle instances');

    const picked = (n: number) => {
      const all = new Set<string>();
      for (const s of ['round-robin', 'weighted-random', 'least-loaded'] as const)
        for (const id of Object.keys(tally(view, s, n))) all.add(id);
      return [...all].sort();
    };

    await b!.setHealth('critical');
    await until(
      seen('b', (i) => i.health === 'critical'),
      10_000,
      'the view sees b critical',
    );
    t.deepEqual(picked(300), ['a', 'd'], 'a critical instance is never picked');
    t.deepEqual(ids(await c.registry.discover('bal')), ['a', 'd']);
    t.deepEqual(ids(await c.registry.discover('bal', { all: true })), ['a', 'b', 'd']);

    await a!.setHealth('warning');
    await until(
      seen('a', (i) => i.health === 'warning'),
      10_000,
      'the view sees a warning',
    );
    t.deepEqual(picked(300), ['d'], 'warning instances are not picked while one passes');

    await d!.setHealth('warning');
    await until(
      seen('d', (i) => i.health === 'warning'),
      10_000,
      'the view sees d warning',
    );
    t.deepEqual(picked(300), ['a', 'd'], 'warning instances are picked when none passes');
    t.deepEqual(ids(await c.registry.discover('bal')), ['a', 'd']);

    await Promise.all([a!.setHealth('critical'), d!.setHealth('critical')]);
    await until(() => view.instances.every((i) => i.health === 'critical'), 10_000, 'all critical');
    t.deepEqual(picked(30), ['none'], 'nothing is picked when all are critical');
    t.deepEqual(await c.registry.discover('bal'), []);

    await b!.deregister();
    await until(() => view.instances.length === 2, 10_000, 'the view sees b gone');
    view.close();
  },
);

test.serial('load updates are coalesced and the last value wins', async (t) => {
  const c = await cluster.client();
  const reg = await c.registry.register('burst', 'x', { address: 'app.burst.x' });
  const version = async () => (await c.get(reg.key))!.version;
  const load = async () => JSON.parse(new TextDecoder().decode((await c.get(reg.key))!.value)).load;
  const v0 = await version();

  // 500 reports at once: one write (two at most) carrying the last.
  await Promise.all(Array.from({ length: 500 }, (_, i) => reg.setLoad(i + 1)));
  t.is(await load(), 500);
  t.true((await version()) - v0 <= 2, `500 setLoad calls made ${(await version()) - v0} writes`);

  // Reporting what is written already writes nothing.
  const v1 = await version();
  await reg.setLoad(500);
  t.is(await version(), v1);

  // 50 reports 10 ms apart: about one write per 100 ms (minIntervalMs), the newest winning.
  const t0 = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < 50; i++) {
    pending.push(reg.setLoad(i));
    await new Promise((r) => setTimeout(r, 10));
  }
  const spread = performance.now() - t0;
  await Promise.all(pending);
  const writes = (await version()) - v1;
  t.log(`50 reports over ${spread.toFixed(0)} ms: ${writes} writes`);
  t.true(writes <= Math.ceil(spread / 100) + 2, `${writes} writes for 50 reports over ${spread} ms`);
  t.true(writes < 50);
  t.is(await load(), 49);
  t.is(reg.current.load, 49);

  // A report still waiting for its write when the instance deregisters settles too (rejected).
  const late = reg.setLoad(7);
  await reg.deregister();
  const outcome = await Promise.race([
    late.then(
      () => 'written',
      (err: unknown) => err,
    ),
    new Promise((r) => setTimeout(r, 10_000, 'still pending')),
  ]);
  t.true(outcome instanceof TypeError, `the late report ended as ${String(outcome)}`);
  t.is(await c.get(reg.key), null);
});

test.serial('bad input is refused with typed errors and writes nothing', async (t) => {
  const c = await cluster.client();
  const r = c.registry;
  const ok = { address: 'app.typed.ok' };
  for (const bad of ['', 'a/b', 'a.b', 'a b', '*', '>', 'x'.repeat(65), 42, null]) {
    await t.throwsAsync(r.register(bad as string, 'i', ok), { instanceOf: TypeError }, `service ${bad}`);
    await t.throwsAsync(r.register('typed', bad as string, ok), { instanceOf: TypeError }, `id ${bad}`);
  }
  await t.throwsAsync(r.register('typed', 'i', { address: '' }), { instanceOf: TypeError });
  await t.throwsAsync(r.register('typed', 'i', null as never), { instanceOf: TypeError });
  for (const load of [-1, Number.NaN, Number.POSITIVE_INFINITY])
    await t.throwsAsync(
      r.register('typed', 'i', { ...ok, load }),
      { instanceOf: RangeError },
      `load ${load}`,
    );
  for (const weight of [0, -2, Number.NaN])
    await t.throwsAsync(
      r.register('typed', 'i', { ...ok, weight }),
      { instanceOf: RangeError },
      `weight ${weight}`,
    );
  await t.throwsAsync(r.register('typed', 'i', { ...ok, health: 'sick' as never }), {
    instanceOf: TypeError,
  });
  await t.throwsAsync(r.register('typed', 'i', { ...ok, meta: { zone: 1 as never } }), {
    instanceOf: TypeError,
  });
  t.deepEqual(await r.discover('typed', { all: true }), [], 'nothing was registered');

  await t.throwsAsync(r.discover(''), { instanceOf: TypeError });
  await t.throwsAsync(r.pick('a/b'), { instanceOf: TypeError });
  await t.throwsAsync(r.view('a.b'), { instanceOf: TypeError });
  await t.throwsAsync(r.watch('').next(), { instanceOf: TypeError });

  const reg = await r.register('typed', 'i', ok);
  const { version } = (await c.get(reg.key))!;
  // async wrappers: whether the check throws at once or rejects, it must be the right type
  await t.throwsAsync(async () => reg.setLoad(-1), { instanceOf: RangeError });
  await t.throwsAsync(async () => reg.update({ weight: 0 }), { instanceOf: RangeError });
  await t.throwsAsync(async () => reg.setHealth('ok' as never), { instanceOf: TypeError });
  t.deepEqual(reg.current, { address: ok.address, meta: {}, health: 'passing', load: 0, weight: 1 });
  t.is((await c.get(reg.key))!.version, version, 'a refused update writes nothing');

  const view = await r.view('typed');
  t.throws(() => view.pick('fastest' as never), { instanceOf: TypeError });
  view.close();

  await reg.deregister();
  await t.throwsAsync(async () => reg.setLoad(1), { instanceOf: TypeError });
  t.is(await c.get(reg.key), null);
});

test.serial(
  'after its session was lost, a registration comes back under the new one and views keep following',
  async (t) => {
    const c = await cluster.client();
    await c.registry.register('peers', 'q1', { address: 'app.peers.q1' });
    const p = spawnInstance('paused', 'p1', 'peers');
    const ready = await p.waitForOutput(/ready (\S+)/, 30_000);
    await p.waitForOutput(/view q1\n/, 10_000);
    const first = ready[1];
    const key = '/services/paused/p1';
    t.is((await c.get(key))?.session, first);

    // Paused past its TTL (a GC pause, SIGSTOP, a VM migration): the cluster expires its session
    // and the key goes with it.
    p.child.kill('SIGSTOP');
    try {
      await until(async () => (await c.get(key)) === null, TTL_MS + SLACK_MS, 'the paused instance expires');
    } finally {
      p.child.kill('SIGCONT');
    }
    await p.waitForOutput(/session LOST/, SLACK_MS);
    await until(
      async () => {
        const kv = await c.get(key);
        return kv !== null && kv.session !== first;
      },
      SLACK_MS,
      'the registration is written again',
    );
    const back = await c.get(key);
    t.truthy(back!.session);
    t.not(back!.session, first);
    t.deepEqual(ids(await c.registry.discover('paused')), ['p1']);
    t.regex(p.output(), new RegExp(`session (CONNECTED|RECONNECTED) ${back!.session}`));

    // Its view of another service was opened under the lost session, and still follows changes.
    await c.registry.register('peers', 'q2', { address: 'app.peers.q2' });
    const [seen] = await p.waitForOutput(/view q1,q2\n/, SLACK_MS);
    t.is(seen, 'view q1,q2\n');
  },
);
