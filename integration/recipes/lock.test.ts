/**
 * The lock across client processes on a real cluster: 10 processes x 50 acquisitions while the
 * cluster's leader node is killed and restarted keep a counter exact, never have two holders
 * at one revision, and serve tickets in arrival order; a holder killed with kill -9 loses the
 * lock within its TTL plus slack; a holder paused with SIGSTOP past its TTL cannot write through
 * its fence after SIGCONT.
 */
import test from 'ava';
import { useCluster } from '../cluster.ts';
import { history, lines, replay, worker } from './processes.ts';

const cluster = useCluster(test, { label: 'ensemble-lock', cluster: 'lk' });

const seq = (key: string) => Number(key.slice(-10));

test.serial(
  '10 processes x 50 acquisitions, leader node killed once: exact count, one holder, FIFO',
  async (t) => {
    const c = await cluster().client();
    const from = (await c.range('/', { limit: 1 })).revision + 1;
    const procs = Array.from({ length: 10 }, (_, i) =>
      worker(cluster(), 3000, 'lock', '/lk/lock', '/lk', `p${i}`, '50'),
    );
    // Kill the cluster's leader once the run is well under way, and bring it back.
    while (lines(procs[0]!, /acquired/).length < 10) await new Promise((r) => setTimeout(r, 50));
    const leader = await cluster().waitForLeader();
    await cluster().kill(leader);
    t.log(`killed leader node ${leader}`);
    await cluster().waitForLeader(30_000, cluster().running());
    await cluster().startNode(leader, cluster().ids);
    for (const p of procs) await p.waitForOutput(/^done$/m, 240_000);
    t.is(await c.getText('/lk/counter'), '500', 'every increment once');

    // The history: at no revision two holders; holders in ticket order; each write by the first in line.
    const events = await history(c, '/lk/', from);
    let most = 0;
    let lastServed = 0;
    let outOfOrder = 0;
    let unfenced = 0;
    replay(events, (live, _rev, changed) => {
      const holders = [...live.keys()].filter((k) => k.startsWith('/lk/in/'));
      most = Math.max(most, holders.length);
      const line = [...live.entries()]
        .filter(([k]) => k.startsWith('/lk/lock/'))
        .sort((a, b) => seq(a[0]) - seq(b[0]));
      for (const e of changed) {
        if (e.type === 'put' && e.key.startsWith('/lk/in/')) {
          const first = line[0];
          if (first === undefined) unfenced++;
          else {
            if (seq(first[0]) < lastServed) outOfOrder++;
            lastServed = seq(first[0]);
          }
        }
      }
    });
    t.is(most, 1, 'never two holders at one revision');
    t.is(outOfOrder, 0, 'tickets served in the order they were given');
    t.is(unfenced, 0);
    const tokens = procs
      .flatMap((p) => lines(p, /acquired (\d+) (\d+)/))
      .sort((a, b) => Number(a[2]) - Number(b[2]));
    t.is(tokens.length, 500);
    t.true(
      tokens.every((m, i) => i === 0 || Number(m[1]) > Number(tokens[i - 1]![1])),
      'the counter rose with the fencing token',
    );
  },
);

test.serial('a holder killed with kill -9 loses the lock within its TTL plus slack', async (t) => {
  const ttl = 1500;
  const holder = worker(cluster(), ttl, 'hold', '/lk/killed', '/lk-killed', 'h');
  await holder.waitForOutput(/holding \d+/, 30_000);
  const waiter = worker(cluster(), ttl, 'lock', '/lk/killed', '/lk-killed', 'w', '1');
  const c = await cluster().client();
  while ((await c.lock('/lk/killed').waiters()).length < 2) await new Promise((r) => setTimeout(r, 20));
  const t0 = performance.now();
  await holder.kill('SIGKILL');
  await waiter.waitForOutput(/acquired \d+ 1/, ttl + 10_000);
  const took = performance.now() - t0;
  t.log(`the next holder got the lock ${took.toFixed(0)} ms after the kill (TTL ${ttl} ms)`);
  t.true(took < ttl + 5000, `within TTL + 5 s of slack (took ${took.toFixed(0)} ms)`);
  await waiter.waitForOutput(/^done$/m, 10_000);
});

test.serial(
  'a holder paused (SIGSTOP) past its TTL cannot write through its fence after SIGCONT',
  async (t) => {
    const ttl = 1500;
    const c = await cluster().client();
    const stale = worker(cluster(), ttl, 'hold', '/lk/paused', '/lk-paused', 'stale');
    const [, token] = (await stale.waitForOutput(/holding (\d+)/, 30_000)) as RegExpMatchArray;
    t.is(await c.getText('/lk-paused/resource'), `stale ${token}`);
    process.kill(stale.pid, 'SIGSTOP');
    try {
      const next = worker(cluster(), ttl, 'hold', '/lk/paused', '/lk-paused', 'next');
      const [, token2] = (await next.waitForOutput(/holding (\d+)/, ttl + 15_000)) as RegExpMatchArray;
      t.true(Number(token2) > Number(token));
      t.is(await c.getText('/lk-paused/resource'), `next ${token2}`);
    } finally {
      process.kill(stale.pid, 'SIGCONT');
    }
    const [verdict] = (await stale.waitForOutput(
      /stale write (refused \w+|ACCEPTED)/,
      15_000,
    )) as RegExpMatchArray;
    t.log(verdict);
    t.regex(verdict!, /refused/);
    t.regex(
      (await c.getText('/lk-paused/resource'))!,
      /^next \d+$/,
      'the resource holds the new holder’s write',
    );
  },
);
