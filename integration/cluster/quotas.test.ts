/**
 * Quotas on a real cluster started with small ones: ephemeral keys per session, sessions per
 * user, the database size (an alarm in status and metrics; deletes and compaction still work and
 * make room), requests per second per user. Each refusal is typed, and nothing is done.
 */
import test from 'ava';
import { QuotaExceededError, RateLimitedError } from '../../client/index.ts';
import { decodeReply, encodeEnvelope } from '../../protocol/codec.ts';
import { TestCluster } from '../cluster.ts';
import { type Harness, startHarness } from '../harness.ts';

let harness: Harness;
let cluster: TestCluster;
const NAME = 'quota';
const QUOTA = 2_000_000;

test.before(async () => {
  harness = await startHarness({ label: 'ensemble-quotas' });
  cluster = await TestCluster.start(harness, {
    cluster: NAME,
    flags: [
      '--quota-backend-bytes',
      String(QUOTA),
      '--max-sessions-per-user',
      '4',
      '--max-keys-per-session',
      '3',
      '--max-keys-per-user',
      '20',
      '--rate-per-user',
      '100',
    ],
  });
});
test.after.always(async () => {
  await cluster?.close();
  await harness?.teardown();
});

test.serial('a session owns at most its quota of ephemeral keys', async (t) => {
  const c = await cluster.client();
  for (let i = 0; i < 3; i++) await c.put(`/eph/${i}`, 'x', { ephemeral: true });
  const e = await t.throwsAsync(c.put('/eph/3', 'x', { ephemeral: true }));
  t.true(e instanceof QuotaExceededError, `${e?.name}: ${e?.message}`);
  t.is((e as QuotaExceededError).quota, 'keysPerSession');
  t.is(await c.get('/eph/3'), null, 'nothing written');
  await c.put('/eph/plain', 'x');
  await c.delete('/eph/0');
  await c.put('/eph/3', 'x', { ephemeral: true });
  t.pass();
});

test.serial('a user opens at most its quota of sessions; another user is not affected', async (t) => {
  const nc = await harness.connect('client2');
  const open = async () =>
    decodeReply(
      (
        await nc.request(
          `ensemble.${NAME}.api.sessionOpen`,
          encodeEnvelope({ ttlMs: 3000 }, { cluster: NAME }),
          {
            timeout: 5000,
          },
        )
      ).data,
    );
  const codes: string[] = [];
  for (let i = 0; i < 6; i++) {
    const r = await open();
    codes.push(r.ok ? 'ok' : r.error.code);
  }
  t.deepEqual(codes, ['ok', 'ok', 'ok', 'ok', 'QUOTA_EXCEEDED', 'QUOTA_EXCEEDED']);
  const other = await cluster.client();
  await other.put('/other', 'fine');
  t.pass();
});

test.serial(
  'a user creates at most its quota of keys; overwrites and deletes still work, and free room',
  async (t) => {
    const c2 = await cluster.client({ session: false, user: 'client2' });
    for (let i = 0; i < 20; i++) await c2.put(`/mine/${i}`, 'x');
    const e = await t.throwsAsync(c2.put('/mine/20', 'x'));
    t.true(e instanceof QuotaExceededError, String(e));
    t.is((e as QuotaExceededError).quota, 'keysPerUser');
    await t.throwsAsync(c2.createSequential('/mine/seq-', 'x'), { instanceOf: QuotaExceededError });
    await c2.put('/mine/0', 'overwritten');
    await c2.delete('/mine/1');
    await c2.put('/mine/20', 'x');
    // Keys another user created do not count for client2, even when client2 overwrites them.
    const c = await cluster.client({ session: false });
    await c.put('/theirs', 'x');
    await c2.put('/theirs', 'y');
    t.is((await c2.get('/theirs'))?.value.toString(), 'y');
    await t.throwsAsync(c2.put('/mine/21', 'x'), { instanceOf: QuotaExceededError });
  },
);

test.serial(
  'a full database refuses what adds data, raises NOSPACE, and still deletes and compacts',
  async (t) => {
    const c = await cluster.client({ session: false });
    const value = Buffer.alloc(100_000, 7);
    let written = 0;
    let refused: unknown = null;
    for (let i = 0; i < 100 && refused === null; i++) {
      try {
        await c.put(`/big/${i % 5}`, value);
        written++;
      } catch (err) {
        refused = err;
      }
    }
    t.true(refused instanceof QuotaExceededError, String(refused));
    t.is((refused as QuotaExceededError).quota, 'databaseBytes');
    t.true(written >= 10, `${written} puts of 100 kB before the 2 MB quota`);
    const leader = await cluster.waitForLeader();
    const s = await c.status(leader);
    t.deepEqual(s.alarms, ['NOSPACE']);
    t.true(s.dataBytes >= QUOTA);
    t.is(await cluster.metric(leader, 'ensemble_alarm_nospace'), 1);
    await t.throwsAsync(c.createSequential('/big/seq-', 'x'), { instanceOf: QuotaExceededError });
    // Room is made by deletes and by compacting the history they leave.
    for (let i = 0; i < 5; i++) await c.delete(`/big/${i}`);
    const admin = await cluster.admin();
    const now = await c.status();
    await admin.compact(now.revision);
    const after = await c.status(leader);
    t.deepEqual(after.alarms, []);
    t.true(after.dataBytes < QUOTA / 4, `${after.dataBytes} bytes after delete and compaction`);
    await c.put('/big/again', value);
    t.is(await cluster.metric(leader, 'ensemble_alarm_nospace'), 0);
  },
);

test.serial('a user over its request rate gets RATE_LIMITED; another user is still served', async (t) => {
  const nc = await harness.connect('client2');
  const leader = await cluster.waitForLeader();
  const codes = await Promise.all(
    Array.from({ length: 400 }, () =>
      nc
        .request(
          `ensemble.${NAME}.node.${leader}.api.get`,
          encodeEnvelope({ key: '/other', serializable: true }, { cluster: NAME }),
          {
            timeout: 10_000,
          },
        )
        .then((m) => {
          const r = decodeReply(m.data);
          return r.ok ? 'ok' : r.error.code;
        }),
    ),
  );
  const ok = codes.filter((x) => x === 'ok').length;
  const limited = codes.filter((x) => x === 'RATE_LIMITED').length;
  t.is(ok + limited, 400, codes.find((x) => x !== 'ok' && x !== 'RATE_LIMITED') ?? '');
  t.true(ok >= 200 && ok < 300, `${ok} served: the burst of 200 and what the rate refilled`);
  t.true(limited > 100);
  const c = await cluster.client({ session: false });
  t.is((await c.get('/other'))?.value.toString(), 'fine', 'client is not limited by client2');
  const e = await t.throwsAsync(async () => {
    for (let i = 0; i < 400; i++)
      await nc
        .request(
          `ensemble.${NAME}.node.${leader}.api.get`,
          encodeEnvelope({ key: '/x', serializable: true }, { cluster: NAME }),
        )
        .then((m) => {
          const r = decodeReply(m.data);
          if (!r.ok) throw r.error;
        });
  });
  t.true(e instanceof RateLimitedError || (e as { code?: string })?.code === 'RATE_LIMITED', String(e));
});
