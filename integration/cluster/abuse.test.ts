/**
 * One abusive client beside a well-behaved one, on a real cluster: the abuser (user `client`)
 * loops through the findings of the security review for a bounded time — unlimited ranges over
 * 10k keys, paths beyond the depth limit, replies and watches aimed at another user's inbox,
 * admin ops, a flood of sessions and watches, and requests pipelined without reading their
 * answers — while the other client (user `client2`) writes and reads in a loop. Every abuse is
 * refused or bounded, the well-behaved client's p99 stays within a generous bound, and every
 * write it was told succeeded is there at the end.
 */
import test from 'ava';
import { decodeReply, encodeEnvelope } from '../../protocol/codec.ts';
import { TestCluster } from '../cluster.ts';
import { type Harness, startHarness } from '../harness.ts';

let harness: Harness;
let cluster: TestCluster;
const NAME = 'abuse';
const ABUSE_MS = 15_000;

test.before(async () => {
  harness = await startHarness({ label: 'ensemble-abuse' });
  cluster = await TestCluster.start(harness, {
    cluster: NAME,
    flags: ['--rate-per-user', '3000', '--max-sessions-per-user', '200'],
  });
});
test.after.always(async () => {
  await cluster?.close();
  await harness?.teardown();
});

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

test.serial(
  'an abusive client is refused or bounded, and a well-behaved one keeps its latency and its writes',
  async (t) => {
    // 10k keys of 100 bytes, written as txns of 100 puts.
    const seed = await cluster.client({ session: false, user: 'client2' });
    const value = Buffer.alloc(100, 1);
    for (let b = 0; b < 100; b++)
      await seed.txn({
        compare: [],
        success: Array.from({ length: 100 }, (_, i) => ({
          op: 'put' as const,
          key: `/bulk/${b}/${i}`,
          value,
        })),
        failure: [],
      });

    const nc = await harness.connect('client');
    const env = (body: object) => encodeEnvelope(body, { cluster: NAME });
    const ask = async (op: string, body: object, node?: string) => {
      const subject = node ? `ensemble.${NAME}.node.${node}.api.${op}` : `ensemble.${NAME}.api.${op}`;
      try {
        const r = decodeReply<Record<string, unknown>>(
          (await nc.request(subject, env(body), { timeout: 10_000 })).data,
        );
        return r.ok ? { ok: true as const, result: r.result } : { ok: false as const, code: r.error.code };
      } catch (err) {
        return { ok: false as const, code: `transport: ${(err as Error).message}` };
      }
    };
    const seen = new Map<string, number>();
    const note = (what: string) => seen.set(what, (seen.get(what) ?? 0) + 1);
    const stolen: string[] = [];
    const victim = await harness.connect('client2');
    victim.subscribe('_INBOX.client2.victim.>', { callback: (_, m) => void stolen.push(m.subject) });
    const deep = `/${Array.from({ length: 129 }, (_, i) => `d${i}`).join('/')}`;
    const open = await ask('sessionOpen', { ttlMs: 5000 });
    const session = open.ok ? (open.result as { id: string; secret: Uint8Array }) : null;
    t.truthy(session, 'the abuser gets one session');

    const deadline = performance.now() + ABUSE_MS;
    const abuse = (async () => {
      let round = 0;
      while (performance.now() < deadline) {
        round++;
        const range = await ask('range', { prefix: '/', limit: 1e9 });
        if (range.ok) {
          const r = range.result as { kvs: unknown[]; more: boolean };
          note(`range: ${r.kvs.length} keys, more=${r.more}`);
        } else note(`range: ${range.code}`);
        note(`deep put: ${(await ask('put', { key: deep, value: 'x' })).ok ? 'ok' : 'refused'}`);
        for (const op of ['memberAdd', 'transferLeader', 'compact', 'authGrant'] as const) {
          const body =
            op === 'memberAdd'
              ? { id: 'evil' }
              : op === 'compact'
                ? { revision: 1 }
                : op === 'authGrant'
                  ? { user: 'client', prefix: '/' }
                  : {};
          const r = await ask(op, body);
          note(`${op}: ${r.ok ? 'ok' : r.code}`);
        }
        nc.publish(`ensemble.${NAME}.api.get`, env({ key: '/bulk/0/0' }), {
          reply: '_INBOX.client2.victim.r',
        });
        if (session) {
          const w = await ask('watch', {
            id: `w${round}`,
            prefix: '/bulk/',
            inbox: '_INBOX.client2.victim.watch',
            session: session.id,
            secret: session.secret,
          });
          note(`watch into client2's inbox: ${w.ok ? 'ok' : w.code}`);
        }
        // A burst of session opens and of requests whose answers nobody reads.
        const opens = await Promise.all(
          Array.from({ length: 20 }, () => ask('sessionOpen', { ttlMs: 600_000 })),
        );
        for (const o of opens) note(`sessionOpen: ${o.ok ? 'ok' : o.code}`);
        for (let i = 0; i < 500; i++)
          nc.publish(`ensemble.${NAME}.api.get`, env({ key: '/bulk/1/1' }), {
            reply: '_INBOX.client.unread.x',
          });
        await nc.flush();
      }
    })();

    // The well-behaved client: sequential put then linearizable get, for as long as the abuse runs.
    const good = await cluster.client({ session: false, user: 'client2' });
    const lat: number[] = [];
    const acked: string[] = [];
    let i = 0;
    while (performance.now() < deadline) {
      const key = `/good/${i++}`;
      const t0 = performance.now();
      await good.put(key, String(i));
      acked.push(key);
      await good.get(key);
      lat.push(performance.now() - t0);
    }
    await abuse;
    t.log(
      `well-behaved: ${lat.length} put+get pairs, p50 ${pct(lat, 0.5).toFixed(1)} ms, p99 ${pct(lat, 0.99).toFixed(1)} ms`,
    );
    t.log([...seen].map(([k, v]) => `${k} ×${v}`).join('\n'));

    t.true(lat.length >= 100, `${lat.length} requests served in ${ABUSE_MS} ms`);
    t.true(pct(lat, 0.99) < 3000, `p99 ${pct(lat, 0.99).toFixed(0)} ms within a generous 3 s`);
    const keys = [...seen.keys()];
    t.true(
      keys.every((k) => !/^(memberAdd|transferLeader|compact|authGrant): ok/.test(k)),
      'no admin op succeeded',
    );
    t.true(keys.some((k) => /^(memberAdd|transferLeader|compact|authGrant): PERMISSION_DENIED/.test(k)));
    t.false(keys.includes('deep put: ok'), 'the deep put was refused');
    t.true(
      keys.every(
        (k) =>
          !k.startsWith('range: ') ||
          k === 'range: RATE_LIMITED' ||
          Number(/^range: (\d+) keys, more=(true|false)$/.exec(k)?.[1] ?? Number.NaN) <= 10_000,
      ),
      keys.join('; '),
    );
    t.true(
      keys.some((k) => /^range: \d+ keys, more=true$/.test(k)),
      'unlimited ranges answer one bounded page',
    );
    t.false(keys.includes("watch into client2's inbox: ok"));
    t.true((seen.get('sessionOpen: ok') ?? 0) <= 200, 'sessions bounded by the quota');
    t.true(keys.some((k) => k === 'sessionOpen: QUOTA_EXCEEDED' || k === 'sessionOpen: RATE_LIMITED'));
    t.deepEqual(stolen, [], 'nothing reached client2');
    // Every acknowledged write is there.
    const check = await cluster.client({ session: false, user: 'admin' });
    const missing: string[] = [];
    for (const key of acked) if ((await check.get(key)) === null) missing.push(key);
    t.deepEqual(missing, []);
    for (const id of cluster.running()) t.is((await check.status(id)).id, id, `${id} still answers`);
  },
);
