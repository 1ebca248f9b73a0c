/**
 * Auto-compaction on real nodes (`--history-retention 200`): after 600 writes the leader has
 * proposed compactions, every node applied them (the same compaction revision on all three),
 * a read or a watch further back than the window is COMPACTED, and one within it works.
 */
import test from 'ava';
import { useCluster } from '../cluster.ts';
import { waitFor } from '../wait.ts';

const cluster = useCluster(test, {
  label: 'ensemble-retention',
  cluster: 'retain',
  flags: ['--history-retention', '200'],
});

test.serial('the leader keeps the newest 200 revisions; older reads and watches are COMPACTED', async (t) => {
  const c = await cluster().client({ timeoutMs: 30_000 });
  await cluster().waitForLeader();
  let last = 0;
  for (let i = 0; i < 600; i++) last = (await c.put(`/r/k${i % 10}`, `${i}`)).revision;
  const compacted = async () => {
    const hashes = await Promise.all(
      cluster().ids.map((id) => cluster().metric(id, 'ensemble_compact_revision')),
    );
    return hashes;
  };
  const revs = await waitFor(
    async () => {
      const r = await compacted();
      return r.every((x) => x >= last - 300 && x === r[0]) ? r : null;
    },
    { what: 'every node compacted at the same revision, within 300 of the newest', timeoutMs: 20_000 },
  );
  const floor = revs[0] ?? 0;
  t.true(floor <= last - 200, `compacted at ${floor}, newest ${last}: 200 kept`);
  const err = await t.throwsAsync(c.get('/r/k1', { revision: floor - 10 }));
  t.is((err as { code?: string }).code, 'COMPACTED');
  t.truthy(await c.get('/r/k1', { revision: last - 50 }), 'a read within the window');
  const old = c.watch({ key: '/r/k1' }, { fromRevision: 2 });
  const failed = await t.throwsAsync(
    (async () => {
      for await (const _ of old) {
        // no event comes before the error
      }
    })(),
  );
  t.is((failed as { code?: string }).code, 'COMPACTED');
  const recent = c.watch({ key: '/r/k1' }, { fromRevision: last - 50 });
  for await (const ev of recent) {
    t.true(ev.revision >= last - 50);
    break;
  }
  await c.close();
});

test.serial(
  "a watch from now starts after the client's last known revision; an idle client's after the oldest kept one",
  async (t) => {
    await cluster().waitForLeader();
    const idle = await cluster().client({ timeoutMs: 30_000 });
    const busy = await cluster().client({ timeoutMs: 30_000 });
    const opened = idle.seenRevision;
    t.true(opened > 0, 'the session open told the client a revision');
    // Writes that reach the cluster before the watch are still seen when they come after the
    // client's last known revision: its own write issued right after watch() always is.
    await busy.put('/seen/before-call', 'b');
    const w = idle.watch({ prefix: '/seen/' });
    await idle.put('/seen/mine', 'm');
    const keys: string[] = [];
    for await (const e of w) {
      if (e.type === 'progress') continue;
      keys.push(e.key);
      if (e.key === '/seen/mine') break;
    }
    t.deepEqual(keys, ['/seen/before-call', '/seen/mine']);

    // The idle client's last revision falls out of the kept history: from the oldest kept instead.
    const sleeper = await cluster().client({ timeoutMs: 30_000 });
    const last = sleeper.seenRevision;
    for (let i = 0; i < 400; i++) await busy.put(`/other/k${i % 10}`, `${i}`);
    await waitFor(
      async () => (await cluster().metric(cluster().ids[0] ?? '', 'ensemble_compact_revision')) > last,
      { what: 'history compacted past the sleeper', timeoutMs: 20_000 },
    );
    const late = sleeper.watch({ prefix: '/late/' });
    await sleeper.put('/late/x', 'x');
    for await (const e of late) {
      if (e.type === 'progress') continue;
      t.is(e.key, '/late/x');
      break;
    }
    for (const c of [idle, busy, sleeper]) await c.close();
  },
);
