/**
 * The recipes on a real cluster, driven by several clients in this process (each its own NATS
 * connection and session): what each promises (mutual exclusion, arrival order, fencing, release
 * on loss, all-or-none barriers, permits, exactly-once queue completion, atomic counters, live
 * config), what happens on timeout, abort and close, and typed errors for bad input. The
 * multi-process tests with kill -9 and SIGSTOP are in the other files of this folder.
 */
import test from 'ava';
import {
  BadPathError,
  type Client,
  ClosedError,
  connect,
  NotHeldError,
  TimeoutError,
} from '../../client/index.ts';
import { useCluster } from '../cluster.ts';

const cluster = useCluster(test, { label: 'ensemble-recipes', cluster: 'rcp' });

const clients = (n: number, ttl = 3000): Promise<Client[]> =>
  Promise.all(Array.from({ length: n }, () => cluster().client({ sessionTtlMs: ttl })));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const text = (v: Uint8Array | undefined) => new TextDecoder().decode(v);

test('lock: mutual exclusion among 6 clients; waiters are served in arrival order; tokens increase', async (t) => {
  const cs = await clients(6);
  let inside = 0;
  let most = 0;
  const order: number[] = [];
  const tokens: number[] = [];
  const first = await cs[0]!.lock('mutex').acquire();
  // The others queue one after another: each starts once the previous one's ticket is in line.
  const runs: Promise<void>[] = [];
  for (let i = 1; i < cs.length; i++) {
    runs.push(
      (async () => {
        const h = await cs[i]!.lock('mutex').acquire();
        inside++;
        most = Math.max(most, inside);
        order.push(i);
        tokens.push(h.token);
        await sleep(20);
        inside--;
        await h.release();
      })(),
    );
    while ((await cs[0]!.lock('mutex').waiters()).length < i + 1) await sleep(10);
  }
  await first.release();
  await Promise.all(runs);
  t.is(most, 1, 'never two holders');
  t.deepEqual(order, [1, 2, 3, 4, 5], 'served in arrival order');
  t.true(
    tokens.every((x, i) => i === 0 || x > tokens[i - 1]!) && tokens[0]! > first.token,
    'tokens increase',
  );
  t.deepEqual(await cs[0]!.lock('mutex').waiters(), []);
});

test('lock: the fence refuses a holder whose ticket is gone; release twice is NotHeldError', async (t) => {
  const [a, b] = await clients(2);
  const h = await a!.lock('fence').acquire();
  await h.put('/fenced/x', 'a1');
  // Somebody (an operator, an expiry) removes the ticket: the fence must close.
  await b!.delete(h.key);
  await t.throwsAsync(h.put('/fenced/x', 'a2'), { instanceOf: NotHeldError });
  t.is(await b!.getText('/fenced/x'), 'a1');
  const h2 = await b!.lock('fence').acquire({ timeout: 5000 });
  t.true(h2.token > h.token);
  await h2.release();
  await t.throwsAsync(h2.release(), { instanceOf: NotHeldError });
  await t.throwsAsync(b!.lock('fence').release(), { instanceOf: NotHeldError });
});

test('lock: timeout and abort withdraw the ticket; tryAcquire does not wait', async (t) => {
  const [a, b] = await clients(2);
  const lock = a!.lock('busy');
  const h = await lock.acquire();
  await t.throwsAsync(b!.lock('busy').acquire({ timeout: 300 }), { instanceOf: TimeoutError });
  const ctl = new AbortController();
  const waiting = b!.lock('busy').acquire({ signal: ctl.signal });
  await sleep(200);
  ctl.abort(new Error('changed my mind'));
  await t.throwsAsync(waiting, { message: 'changed my mind' });
  t.is(await b!.lock('busy').tryAcquire(), null);
  t.is((await lock.waiters()).length, 1, 'only the holder is in line');
  await t.throwsAsync(lock.tryAcquire(), { instanceOf: TypeError }, 'one hold per lock object');
  await h.release();
  const got = await b!.lock('busy').tryAcquire();
  t.truthy(got);
  await got!.release();
});

test('lock: a holder whose client closes frees the lock at once; waiting acquires end with ClosedError', async (t) => {
  const [a, b, c] = await clients(3);
  const h = await a!.lock('closing').acquire();
  const waitB = b!.lock('closing').acquire();
  const waitC = c!.lock('closing').acquire();
  await sleep(200);
  await c!.close();
  await t.throwsAsync(waitC, { instanceOf: ClosedError });
  await a!.close();
  t.false(h.held);
  const hb = await waitB;
  t.true(hb.token > h.token);
  await hb.release();
});

test('readWriteLock: readers share, a writer excludes, a writer waits for earlier readers only', async (t) => {
  const [a, b, c, d] = await clients(4);
  const r1 = await a!.readWriteLock('rw').read.acquire();
  const r2 = await b!.readWriteLock('rw').read.acquire({ timeout: 3000 });
  let wrote = false;
  const w = c!
    .readWriteLock('rw')
    .write.acquire()
    .then((h) => {
      wrote = true;
      return h;
    });
  while ((await a!.lock('/locks/rw').waiters()).length < 3) await sleep(10); // the writer is in line
  await sleep(100);
  t.false(wrote, 'the writer waits for the readers');
  // A reader arriving after the writer waits behind it (no writer starvation).
  let lateRead = false;
  const r3 = d!
    .readWriteLock('rw')
    .read.acquire()
    .then((h) => {
      lateRead = true;
      return h;
    });
  await r1.release();
  await sleep(150);
  t.false(wrote);
  await r2.release();
  const wh = await w;
  t.true(wrote);
  t.false(lateRead);
  await wh.release();
  await (await r3).release();
  t.true(lateRead);
});

test('election: campaign, leader, observe, proclaim, resign; the fence follows the leader', async (t) => {
  const [a, b, o] = await clients(3);
  const seen: (string | null)[] = [];
  const ctl = new AbortController();
  const observing = (async () => {
    try {
      for await (const l of o!.election('e1').observe({ signal: ctl.signal })) seen.push(l?.text ?? null);
    } catch (err) {
      if (!ctl.signal.aborted) throw err;
    }
  })();
  while (seen.length === 0) await sleep(10); // the observer has read the empty election
  const la = await a!.election('e1').campaign('alpha');
  t.is((await o!.election('e1').leader())?.text, 'alpha');
  const eb = b!.election('e1');
  const lb = eb.campaign('beta');
  await sleep(200);
  await la.proclaim('alpha-2');
  await la.put('/e1/resource', 'by alpha');
  await la.resign();
  const won = await lb;
  t.true(won.token > la.token);
  await t.throwsAsync(la.proclaim('stale'), { instanceOf: NotHeldError });
  await t.throwsAsync(la.put('/e1/resource', 'stale alpha'), { instanceOf: NotHeldError });
  await won.put('/e1/resource', 'by beta');
  t.is(await o!.getText('/e1/resource'), 'by beta');
  await eb.resign();
  await t.throwsAsync(eb.resign(), { instanceOf: NotHeldError });
  const deadline = performance.now() + 5000;
  while (seen.at(-1) !== null && performance.now() < deadline) await sleep(50);
  ctl.abort();
  await observing;
  t.deepEqual(seen, [null, 'alpha', 'alpha-2', 'beta', null]);
});

test('barrier: waiters are held while it is set, all released when removed', async (t) => {
  const [a, b, c] = await clients(3);
  await a!.barrier('gate').set();
  await a!.barrier('gate').set(); // setting twice is fine
  t.true(await b!.barrier('gate').isSet());
  let released = 0;
  const waits = [b!, c!].map((x) =>
    x
      .barrier('gate')
      .wait()
      .then(() => released++),
  );
  await sleep(200);
  t.is(released, 0);
  await a!.barrier('gate').remove();
  await Promise.all(waits);
  t.is(released, 2);
  await b!.barrier('gate').wait({ timeout: 1000 }); // not set: returns at once
  await a!.barrier('gate').set();
  await t.throwsAsync(b!.barrier('gate').wait({ timeout: 200 }), { instanceOf: TimeoutError });
  await a!.barrier('gate').remove();
});

test('doubleBarrier: nobody enters before the count; a party that dies before it does not count; all leave together', async (t) => {
  const [a, b, c, d] = await clients(4);
  const [ba, bb, bc, bd] = [a, b, c, d].map((x) => x!.doubleBarrier('round1', 3));
  let entered = 0;
  const enter = (x: ReturnType<Client['doubleBarrier']>) => x.enter().then(() => entered++);
  const pa = enter(ba!);
  const pd = bd!.enter();
  await sleep(200);
  t.is(entered, 0);
  await d!.close(); // leaves with its session: one in, short of three
  await t.throwsAsync(pd, { instanceOf: ClosedError });
  const pb = enter(bb!);
  await sleep(300);
  t.is(entered, 0, 'two parties do not make three');
  const pc = enter(bc!);
  await Promise.all([pa, pb, pc]);
  t.is(entered, 3, 'all three released');
  let left = 0;
  const la = ba!.leave().then(() => left++);
  const lb = bb!.leave().then(() => left++);
  await sleep(300);
  t.is(left, 0, 'nobody is released while a party is still in');
  await t.throwsAsync(bd!.leave(), { instanceOf: TypeError }, 'leave without enter');
  await bc!.leave();
  await Promise.all([la, lb]);
  t.is(left, 2);
  t.deepEqual((await a!.rangeAll('/barriers/round1/')).kvs, [], 'nothing left behind');
});

test('semaphore: never more than the permits; a holder that goes frees its permit', async (t) => {
  const cs = await clients(5);
  let inside = 0;
  let most = 0;
  await Promise.all(
    cs.map(async (c) => {
      const sem = c.semaphore('pool', 2);
      for (let i = 0; i < 3; i++) {
        const p = await sem.acquire();
        inside++;
        most = Math.max(most, inside);
        await sleep(15);
        inside--;
        await p.release();
      }
    }),
  );
  t.true(most >= 1 && most <= 2, `at most the 2 permits held at once (saw ${most})`);
  // Both permits can be held at once, and a third party waits (whether the loop above overlapped
  // depends on the machine's speed).
  const [x, y, z] = cs;
  const two = await Promise.all([x!.semaphore('pool3', 2).acquire(), y!.semaphore('pool3', 2).acquire()]);
  const third = z!.semaphore('pool3', 2).acquire();
  third.catch(() => {});
  while ((await z!.semaphore('pool3', 2).usage()).waiting === 0) await sleep(10);
  t.deepEqual(await z!.semaphore('pool3', 2).usage(), { holders: 2, waiting: 1 });
  await two[0].release();
  await (await third).release();
  await two[1].release();
  const p1 = await x!.semaphore('pool2', 1).acquire();
  const waiting = y!.semaphore('pool2', 1).acquire();
  waiting.catch(() => {});
  while ((await z!.semaphore('pool2', 1).usage()).waiting === 0) await sleep(10);
  t.deepEqual(await z!.semaphore('pool2', 1).usage(), { holders: 1, waiting: 1 });
  await x!.close(); // the holder goes: its permit with it
  const p2 = await waiting;
  t.true(p2.token > p1.token);
  await p2.release();
});

test('queue: FIFO, each item completed exactly once, a closed consumer gives its claims back', async (t) => {
  const [p, c1, c2] = await clients(3);
  const q = p!.queue('jobs');
  for (let i = 0; i < 20; i++) await q.put(`job-${i}`);
  const first = await c1!.queue('jobs').take();
  t.is(first.text, 'job-0');
  const second = await c2!.queue('jobs').take();
  t.is(second.text, 'job-1', 'a claimed item is skipped');
  await c1!.close(); // its claim on job-0 goes with its session
  await t.throwsAsync(first.ack(), { instanceOf: ClosedError });
  const again = await c2!.queue('jobs').take({ timeout: 5000 });
  t.is(again.text, 'job-0', 'back in its place');
  await again.ack([{ op: 'put', key: '/jobs-done/job-0', value: new TextEncoder().encode('c2') }]);
  await t.throwsAsync(again.ack(), { instanceOf: NotHeldError });
  await second.release();
  const done: string[] = [];
  for (let i = 0; i < 19; i++) {
    const item = await c2!.queue('jobs').take({ timeout: 5000 });
    done.push(item.text);
    await item.ack();
  }
  t.deepEqual(
    done,
    Array.from({ length: 19 }, (_, i) => `job-${i + 1}`),
  );
  t.deepEqual(await p!.queue('jobs').size(), { items: 0, claimed: 0 });
  t.is(await p!.getText('/jobs-done/job-0'), 'c2');
  await t.throwsAsync(c2!.queue('jobs').take({ timeout: 200 }), { instanceOf: TimeoutError });
});

test('counter: concurrent adds from 4 clients are exact', async (t) => {
  const cs = await clients(4);
  await Promise.all(
    cs.map(async (c) => {
      const n = c.counter('hits');
      for (let i = 0; i < 25; i++) await n.add();
    }),
  );
  t.is(await cs[0]!.counter('hits').get(), 100);
  t.is(await cs[0]!.counter('hits').add(-10), 90);
  await cs[1]!.counter('hits').set(7);
  t.is(await cs[2]!.counter('hits').get(), 7);
  t.is(await cs[2]!.counter('never-written').get(), 0);
  await t.throwsAsync(cs[0]!.counter('hits').add(1.5), { instanceOf: RangeError });
});

test('config: typed snapshot, one live update per revision, atomic multi-key updates, bad pushes skipped', async (t) => {
  const [a, b] = await clients(2);
  const schema = (raw: Readonly<Record<string, string>>) => {
    const size = Number(raw['pool/size'] ?? '4');
    if (!Number.isInteger(size)) throw new TypeError('pool/size must be an integer');
    return { url: raw['db/url'] ?? 'none', size };
  };
  const invalid: unknown[] = [];
  const cfg = b!.config('/config/app', { schema, onInvalid: (e) => invalid.push(e) });
  await a!.config('/config/app').set({ 'db/url': 'postgres://one', 'pool/size': '8' });
  const now = await cfg.get();
  t.deepEqual(now.values, { url: 'postgres://one', size: 8 });
  const ctl = new AbortController();
  const seen: { url: string; size: number }[] = [];
  const following = (async () => {
    try {
      for await (const s of cfg.watch({ signal: ctl.signal })) {
        seen.push(s.values);
        if (seen.length === 3) ctl.abort();
      }
    } catch (err) {
      if (!ctl.signal.aborted) throw err;
    }
  })();
  while (seen.length === 0) await sleep(10); // the follower has read the current config
  await a!.config('/config/app').set({ 'db/url': 'postgres://two', 'pool/size': '16' }); // one revision
  await a!.config('/config/app').set({ 'pool/size': 'many' }); // refused by the schema
  await a!.config('/config/app').update((c) => ({ 'pool/size': c.raw['pool/size'] === 'many' ? '32' : '0' }));
  await following;
  t.deepEqual(seen, [
    { url: 'postgres://one', size: 8 },
    { url: 'postgres://two', size: 16 },
    { url: 'postgres://two', size: 32 },
  ]);
  t.is(invalid.length, 1);
  // update retries when a key it read changed meanwhile: 10 concurrent increments are exact.
  await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      (i % 2 ? a : b)!.config('/config/n').update((c) => ({ v: String(Number(c.raw.v ?? '0') + 1) })),
    ),
  );
  t.is(await a!.getText('/config/n/v'), '10');
  await a!.config('/config/app').set({ 'db/url': null });
  t.is((await cfg.get()).values.url, 'none');
  t.throws(() => a!.config('relative'), { instanceOf: TypeError });
});

test('sessions beyond the connection: keys and locks tied to a lease go when it is revoked', async (t) => {
  const [a, b] = await clients(2);
  const lease = await a!.session({ ttlMs: 1000 });
  t.truthy(lease.id);
  t.not(lease.id, a!.sessionInfo?.id);
  await a!.put('/lease/k1', 'v', { ephemeral: true, session: lease });
  t.is((await b!.get('/lease/k1'))?.session, lease.id);
  const ttl = lease.timeToLive();
  t.is(ttl.ttlMs, 1000);
  t.true(ttl.remainingMs > 0 && ttl.remainingMs <= 1000);
  t.is((await lease.keepAlive()).ttlMs, 1000);
  // A lock held through the lease, not the connection's session.
  const h = await a!.lock('leased', { session: lease }).acquire();
  const lost = new Promise((resolve) => h.signal.addEventListener('abort', () => resolve(h.signal.reason)));
  await lease.revoke();
  t.true((await lost) instanceof ClosedError);
  t.is(await b!.get('/lease/k1'), null);
  t.deepEqual(await b!.lock('leased').waiters(), []);
  await t.throwsAsync(a!.put('/lease/k2', 'v', { ephemeral: true, session: lease }), {
    instanceOf: ClosedError,
  });
  await t.throwsAsync(a!.session({ ttlMs: 0 }), { instanceOf: RangeError });
});

test('close ends pending requests and open watches with ClosedError, and later calls too', async (t) => {
  const [a, b] = await clients(2);
  const w = a!.watch({ prefix: '/closing/' });
  const firstEvent = w.next();
  const h = await b!.lock('closing-watch').acquire();
  const waiting = a!.lock('closing-watch').acquire();
  await sleep(100);
  // Expected before close: they may reject while close runs.
  const eventFails = t.throwsAsync(firstEvent, { instanceOf: ClosedError });
  const waitFails = t.throwsAsync(waiting, { instanceOf: ClosedError });
  await a!.close();
  await eventFails;
  t.deepEqual(await w.next(), { value: undefined, done: true });
  await waitFails;
  await t.throwsAsync(a!.put('/closing/x', 'y'), { instanceOf: ClosedError });
  t.throws(() => a!.watch({ key: '/closing/x' }), { instanceOf: ClosedError });
  await h.release();
});

test('bad input gets typed errors, and nothing is written', async (t) => {
  const [a] = await clients(1);
  for (const bad of ['', '   ', undefined, 42]) {
    t.throws(() => a!.lock(bad as string), { instanceOf: TypeError }, String(bad));
    t.throws(() => a!.election(bad as string), { instanceOf: TypeError });
  }
  t.throws(() => a!.lock('a//b'), { instanceOf: BadPathError });
  t.throws(() => a!.queue('../up'), { instanceOf: BadPathError });
  t.throws(() => a!.semaphore('s', 0), { instanceOf: RangeError });
  t.throws(() => a!.semaphore('s', -1), { instanceOf: RangeError });
  t.throws(() => a!.semaphore('s', 1.5), { instanceOf: RangeError });
  t.throws(() => a!.doubleBarrier('b', 0), { instanceOf: RangeError });
  await t.throwsAsync(a!.session({ ttlMs: 0 }), { instanceOf: RangeError });
  await t.throwsAsync(a!.session({ ttlMs: -5 }), { instanceOf: RangeError });
  await t.throwsAsync(a!.lock('x').acquire({ timeout: -1 }), { instanceOf: RangeError });
  await t.throwsAsync(a!.lock('never-held').release(), { instanceOf: NotHeldError });
  t.deepEqual((await a!.rangeAll('/locks/x/')).kvs, []);
  const noSession = await cluster().client({ session: false });
  t.throws(() => noSession.lock('x'), { instanceOf: TypeError });
  void text;
});

test('a NATS connection of the application: its inbox prefix must be the user’s, which connect checks', async (t) => {
  const h = cluster().h;
  const wrong = await h.connect('client', { inboxPrefix: '_INBOX.elsewhere' });
  await t.throwsAsync(connect({ nats: wrong, cluster: 'rcp', user: 'client' }), {
    instanceOf: TypeError,
    message: /_INBOX\.client/,
  });
  const right = await h.connect('client');
  const c = await connect({ nats: right, cluster: 'rcp' }); // the user is read from the connection
  await c.put('/own-nats/k', 'v');
  t.is(await c.getText('/own-nats/k'), 'v');
  await c.close();
  t.false(right.isClosed(), 'close leaves a connection it was given open');
});
