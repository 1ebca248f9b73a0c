/**
 * Watches on a real cluster: ordered, gap-free, duplicate-free event streams that survive the
 * death of the node serving them; slow watchers that stall nobody; bad watch requests.
 */
import test from 'ava';
import { natsCredentials } from '../../cluster/nats-server.ts';
import { decodeReply, encodeEnvelope } from '../../protocol/codec.ts';
import { TestCluster } from '../cluster.ts';
import { type Harness, startHarness } from '../harness.ts';
import { waitFor, within } from '../wait.ts';

let harness: Harness;
let cluster: TestCluster;

test.before(async () => {
  harness = await startHarness({ label: 'ensemble-watch' });
  cluster = await TestCluster.start(harness, { cluster: 'watch' });
});
test.after.always(async () => {
  await cluster?.close();
  await harness?.teardown();
});

const text = (v: Uint8Array | undefined) => (v === undefined ? undefined : new TextDecoder().decode(v));

/** What the tests look at inside a client's watch stream (private fields of `WatchStream`). */
type StreamView = {
  /** The node serving it; '' until a node has taken the watch request. */
  node: string;
  shared: boolean;
  resumes: number;
  resuming: unknown;
  group: string | null;
  joined: { gen: number; seq: number } | null;
};
const view = (w: unknown) => w as StreamView;

/**
 * Resolves once a node has registered the watch: a watch without `fromRevision` starts at the
 * node's revision then, so a write made later is certainly in its stream.
 */
const registered = (w: unknown) => waitFor(() => view(w).node !== '', { what: 'a node takes the watch' });

test.serial('a key watch delivers puts and deletes in order, with previous values', async (t) => {
  const c = await cluster.client();
  const w = c.watch({ key: '/cfg' }, { prevValue: true });
  await registered(w);
  await c.put('/cfg', 'a');
  await c.put('/cfg/child', 'not this key');
  await c.put('/cfg', 'b');
  await c.delete('/cfg');
  const seen: string[] = [];
  for await (const e of w) {
    if (e.type === 'progress') continue;
    seen.push(`${e.type} ${text(e.value) ?? '-'} prev ${text(e.prevValue) ?? '-'}`);
    if (seen.length === 3) break;
  }
  t.deepEqual(seen, ['put a prev -', 'put b prev a', 'delete - prev b']);
});

test.serial(
  'a prefix watch sees exactly the committed history while the serving node is killed twice',
  async (t) => {
    const c = await cluster.client({ timeoutMs: 60_000 });
    const start = (await c.status()).revision + 1;
    const w = c.watch({ prefix: '/w/' }, { fromRevision: start });
    const events: { key: string; revision: number }[] = [];
    const total = 5000;
    const reader = (async () => {
      for await (const e of w) {
        if (e.type === 'progress') continue;
        events.push({ key: e.key, revision: e.revision });
        if (events.length >= total) break;
      }
    })();
    let n = 0;
    let limit = total; // writers issue nothing beyond this while a kill is being handled
    const writers = Array.from({ length: 16 }, async () => {
      while (n < total) {
        if (n >= limit) {
          await waitFor(() => n < limit, { timeoutMs: 60_000, what: 'the writers are let go on' });
          continue;
        }
        const i = n++;
        await c.put(`/w/${String(i).padStart(5, '0')}`, String(i));
      }
    });
    const killed: string[] = [];
    const stream = view(w);
    for (const at of [1500, 3200]) {
      limit = at + 300; // writes go on through the kill, then wait for the stream to move
      await waitFor(() => n >= at, { timeoutMs: 60_000, what: `${at} writes issued` });
      const serving = stream.node;
      const resumed = stream.resumes;
      killed.push(serving);
      await cluster.kill(serving, 'SIGKILL');
      // The node stays down until the writes up to the limit were issued (most of them committed
      // without it), then comes back.
      await waitFor(() => n >= limit, {
        timeoutMs: 30_000,
        what: `writes up to ${limit} issued while ${serving} is down`,
      });
      await cluster.startNode(serving, cluster.ids);
      // The rest of the writes can only reach the stream after it moved: it must resume.
      await waitFor(() => stream.resumes !== resumed && stream.resuming === null, {
        timeoutMs: 20_000,
        what: `the stream resumes after ${serving} was killed`,
      });
      limit = total;
    }
    await Promise.all(writers);
    await within(reader, { timeoutMs: 60_000, what: 'the watch delivers every write (watch stalled?)' });
    const resumes = (w as unknown as { resumes: number }).resumes;
    t.log(`killed ${killed.join(', ')}; ${resumes} resumes`);
    t.true(resumes >= 2, 'the stream moved after each kill');
    const final = await c.rangeAll('/w/');
    const expected = final.kvs
      .map((kv) => ({ key: kv.key, revision: kv.modRevision }))
      .sort((a, b) => a.revision - b.revision);
    t.is(events.length, total);
    t.deepEqual(events, expected, 'the stream equals the committed history of the prefix');
    t.true(
      events.every((e, i) => i === 0 || e.revision > events[i - 1]!.revision),
      'in order, no duplicates',
    );
  },
);

test.serial('a watcher that never acknowledges stalls neither writes nor other watchers', async (t) => {
  const c = await cluster.client();
  const session = c.sessionInfo!;
  // A raw client that starts a watch and then never reads or acknowledges.
  const nc = await harness.connect('client');
  const secret = c.defaultSession!.runner.current!.secret;
  const inbox = `_INBOX.client.slow.watch.s1`;
  const r = decodeReply(
    (
      await nc.request(
        'ensemble.watch.api.watch',
        encodeEnvelope(
          { id: 's1', inbox, session: session.id, secret, prefix: '/slow/' },
          { cluster: 'watch' },
        ),
      )
    ).data,
  );
  t.true(r.ok);
  const good = c.watch({ prefix: '/slow/' });
  const got: number[] = [];
  const reader = (async () => {
    for await (const e of good) {
      if (e.type !== 'progress') got.push(e.revision);
      if (got.length === 2000) break;
    }
  })();
  await registered(good);
  const t0 = performance.now();
  let n = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (n < 2000) await c.put(`/slow/${n++}`, 'x');
    }),
  );
  t.log(`2000 writes in ${(performance.now() - t0).toFixed(0)} ms with a stuck watcher attached`);
  await reader;
  t.is(got.length, 2000);
});

test.serial('bad watch requests get typed errors', async (t) => {
  const c = await cluster.client();
  const nc = await harness.connect('client');
  const s = c.defaultSession!.runner.current!;
  const ask = async (op: string, body: unknown) =>
    decodeReply(
      (await nc.request(`ensemble.watch.node.n1.api.${op}`, encodeEnvelope(body, { cluster: 'watch' }))).data,
    );
  const base = { session: s.id, secret: s.secret, inbox: '_INBOX.client.bad.watch.x' };
  const code = async (op: string, body: unknown) => {
    const r = await ask(op, body);
    return r.ok ? 'ok' : r.error.code;
  };
  t.is(await code('watch', { ...base, id: 'b1', key: 'no/slash' }), 'BAD_PATH');
  t.is(await code('watch', { ...base, id: 'b2', key: '/a', fromRevision: -4 }), 'BAD_REQUEST');
  t.is(await code('watch', { ...base, id: 'b3', key: '/a', prefix: '/b' }), 'BAD_REQUEST');
  t.is(await code('watch', { ...base, id: 'b4', key: '/a', inbox: 'ensemble.watch.peer.n1' }), 'BAD_REQUEST');
  t.is(
    await code('watch', { ...base, id: 'b5', key: '/a', secret: new Uint8Array([1, 2, 3]) }),
    'SESSION_EXPIRED',
  );
  t.is(
    await code('sessionKeepalive', { id: 'no-such-session', secret: new Uint8Array([1]) }),
    'SESSION_EXPIRED',
  );
  // An acknowledgement moves a watch only with the session's secret.
  t.is(await code('watch', { ...base, id: 'acked', key: '/a' }), 'ok');
  t.is(
    await code('watchAck', { id: 'acked', session: s.id, secret: new Uint8Array([7]), seq: 0 }),
    'SESSION_EXPIRED',
  );
  t.is(await code('watchAck', { id: 'acked', session: s.id, secret: s.secret, seq: 0, shared: true }), 'ok');
  t.is(await code('watchAck', { id: 'acked', session: s.id, seq: 0 }), 'BAD_REQUEST');
  const codes: string[] = [];
  for (let i = 0; i < 70; i++) codes.push(await code('watch', { ...base, id: `many${i}`, key: `/k${i}` }));
  t.true(codes.includes('LIMIT_EXCEEDED'), 'too many watches per session');
  t.is(codes.filter((x) => x === 'ok').length <= 64, true);
  t.truthy(natsCredentials('client').pass);
});

test.serial(
  'a watch from a compacted revision ends with COMPACTED carrying the compaction revision',
  async (t) => {
    const c = await cluster.client();
    await c.put('/cmp/a', '1');
    const r = await c.put('/cmp/a', '2');
    const done = await (await cluster.admin()).compact(r.revision - 1);
    t.is(done.compactRevision, r.revision - 1);
    const w = c.watch({ prefix: '/cmp/' }, { fromRevision: 1 });
    const err = await t.throwsAsync(async () => {
      for await (const _ of w) {
        // nothing should arrive
      }
    });
    t.is((err as { code?: string }).code, 'COMPACTED');
    t.is((err as { compactRevision?: number }).compactRevision, r.revision - 1);
    // From the compaction point on, it works.
    const ok = c.watch({ prefix: '/cmp/' }, { fromRevision: r.revision });
    const first = await ok.next();
    t.is((first.value as { revision: number }).revision, r.revision);
    await ok.return?.();
  },
);

test.serial(
  'watchers on one prefix share one stream; a lost or forged group message makes them resume, never skip',
  async (t) => {
    const c = await cluster.client({ timeoutMs: 30_000 });
    const start = (await c.status()).revision + 1;
    const streams = Array.from({ length: 20 }, () => c.watch({ prefix: '/fan/' }, { fromRevision: start }));
    const seen = streams.map(() => [] as { key: string; revision: number }[]);
    const total = 300;
    const readers = streams.map(async (w, i) => {
      for await (const e of w) {
        if (e.type === 'progress') continue;
        seen[i]!.push({ key: e.key, revision: e.revision });
        if (seen[i]!.length >= total) break;
      }
    });
    await c.put('/fan/first', '0'); // everyone live, then on the shared stream
    await waitFor(() => streams.every((w) => view(w).shared), { what: 'all twenty streams shared' });
    t.is(
      (c as unknown as { groups: { size: number } }).groups.size,
      1,
      'one subscription for twenty watches',
    );
    const serving = (streams[0] as unknown as { node: string }).node;
    const sharedOnNode = await cluster.metric(serving, 'ensemble_watchers_shared{');
    t.true(sharedOnNode >= 20, `the node sees them shared (${sharedOnNode})`);
    const { group, joined } = view(streams[0]);
    // A peer connection (clients may not publish there) forges group messages.
    const peer = await harness.connect('peer');
    const forge = (gen: number, seq: number) =>
      peer.publish(
        group!,
        encodeEnvelope(
          {
            group: 'forged',
            gen,
            seq,
            revision: 1e9,
            events: [{ type: 'put', key: '/fan/forged', revision: 1e9, value: new Uint8Array([1]) }],
          },
          { cluster: 'watch' },
        ),
      );
    let n = 1;
    const writers = Array.from({ length: 8 }, async () => {
      while (n < total) {
        const i = n++;
        await c.put(`/fan/${String(i).padStart(4, '0')}`, String(i));
        if (i === 100) forge(joined!.gen + 1, joined!.seq + 1); // another generation: ignored
        if (i === 150) forge(joined!.gen, joined!.seq + 10_000); // a gap: resume from history
      }
    });
    await Promise.all(writers);
    await within(Promise.all(readers), {
      timeoutMs: 30_000,
      what: 'every stream delivers every write (watch stalled?)',
    });
    const expected = (await c.rangeAll('/fan/')).kvs
      .map((kv) => ({ key: kv.key, revision: kv.modRevision }))
      .sort((a, b) => a.revision - b.revision);
    for (const s of seen) t.deepEqual(s, expected, 'each stream equals the committed history');
    t.true(
      streams.every((w) => view(w).resumes >= 1),
      'the gap was seen by every stream',
    );
    t.false(
      seen.some((s) => s.some((e) => e.key === '/fan/forged')),
      'forged events never delivered',
    );
  },
);

test.serial(
  'a consumer that falls behind on the shared stream steps off it and comes back without a gap',
  async (t) => {
    const c = await cluster.client({ timeoutMs: 30_000 });
    const start = (await c.status()).revision + 1;
    const w = c.watch({ prefix: '/lag/' }, { fromRevision: start, highWater: 50 });
    const first = c.put('/lag/first', '0');
    const head = await w.next(); // takes one; then reads nothing while 400 writes land
    await first;
    await waitFor(() => view(w).shared, { what: 'the stream is shared' });
    let n = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (n < 400) await c.put(`/lag/${String(n++).padStart(4, '0')}`, 'x');
      }),
    );
    await waitFor(() => view(w).group === null, { what: 'the stream steps off the live stream' });
    const seen = [head.value as { key: string; revision: number }];
    for await (const e of w) {
      if (e.type === 'progress') continue;
      seen.push(e);
      if (seen.length === 401) break;
    }
    const expected = (await c.rangeAll('/lag/')).kvs.map((kv) => kv.modRevision).sort((a, b) => a - b);
    t.deepEqual(
      seen.map((e) => e.revision),
      expected,
    );
    t.true(view(w).resumes >= 1);
  },
);
