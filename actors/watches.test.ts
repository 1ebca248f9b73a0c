/**
 * The watch hub on a real nats-server, over the in-memory key tree (MemoryTree, the unit-test
 * double): watcher phases, one read and one encoding per group, the shared stream and its join
 * point, flow control (pause, WATCH_BEHIND), message size bounds.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import test from 'ava';
import { useHarness } from '../integration/harness.ts';
import { waitFor } from '../integration/wait.ts';
import type { WatchGroupMessage, WatchMessage, WatchRequest } from '../protocol/index.ts';
import { decodeEnvelope, subjects } from '../protocol/index.ts';
import { MemoryTree } from '../storage/index.ts';
import { WatchHub, type WatchHubOptions } from './watches.ts';

const harness = useHarness(test, { label: 'ensemble-watchhub' });
const bytes = (s: string) => new TextEncoder().encode(s);
const until = (cond: () => boolean, what: string) => waitFor(cond, { what, intervalMs: 5 });

let rigs = 0;

interface Rig {
  tree: MemoryTree;
  hub: WatchHub;
  nc: NatsConnection;
  listener: NatsConnection;
  index: number;
  put(key: string, value?: string): Promise<void>;
  /** Messages received on `subject`, decoded. */
  listen<T>(subject: string): T[];
  close(): void;
}

async function rig(options: Partial<WatchHubOptions> = {}): Promise<Rig> {
  // The node publishes as the peer user; the test listens as a client would.
  const nc = await harness().connect('peer');
  const listener = await harness().connect('client');
  const tree = new MemoryTree();
  const self = `n${++rigs}`;
  // Each rig is a cluster of its own (its own watch claims), sharing one NATS server.
  const hub = new WatchHub({
    nc,
    subjects: subjects({ cluster: 'hub', prefix: `ensemble.hub${rigs}` }),
    self,
    tree,
    progressMs: 200,
    ...options,
  });
  hub.start();
  const r: Rig = {
    tree,
    hub,
    nc,
    listener,
    index: 0,
    async put(key, value = 'v') {
      await tree.apply(++r.index, { op: 'put', key, value: bytes(value) });
      hub.applied();
    },
    listen<T>(subject: string) {
      const out: T[] = [];
      listener.subscribe(subject, {
        callback: (_e, m) => {
          const d = decodeEnvelope(m.data, { cluster: 'hub' });
          if (d.ok) out.push(d.envelope.body as T);
        },
      });
      return out;
    },
    close() {
      hub.stop();
    },
  };
  await nc.flush();
  await listener.flush();
  return r;
}

let n = 0;
function request(extra: Partial<WatchRequest> = {}): WatchRequest {
  const id = `w${++n}`;
  return {
    id,
    inbox: `_INBOX.client.t.watch.${id}`,
    session: 's1',
    secret: new Uint8Array([1]),
    prefix: '/p/',
    ...extra,
  } as WatchRequest;
}

const revisions = (ms: { events: readonly { revision: number }[] }[]) =>
  ms.flatMap((m) => m.events.map((e) => e.revision));

test('a watch replays history, then goes live; events equal the history, in order', async (t) => {
  const r = await rig();
  for (let i = 0; i < 50; i++) await r.put(`/p/${i}`);
  await r.put('/other', 'x');
  const req = request({ fromRevision: 1 });
  const got = r.listen<WatchMessage>(req.inbox);
  await r.listener.flush();
  const started = r.hub.add(req);
  t.false('error' in started);
  for (let i = 50; i < 80; i++) await r.put(`/p/${i}`);
  await until(() => revisions(got).length === 80, 'all 80 revisions delivered');
  t.deepEqual(
    revisions(got),
    Array.from({ length: 81 }, (_, i) => i + 1).filter((x) => x !== 51),
  );
  t.deepEqual(
    got.map((m) => m.seq),
    got.map((_, i) => i + 1),
    'seq counts every message',
  );
  t.is(r.hub.phase('s1', req.id), 'direct');
  r.close();
});

test('live watchers of one target share one group: one message on its subject per revision', async (t) => {
  const r = await rig();
  const reqs = Array.from({ length: 20 }, () => request());
  const direct = reqs.map((q) => r.listen<WatchMessage>(q.inbox));
  const started = reqs.map((q) => r.hub.add(q) as { group: string });
  const group = started[0]!.group;
  t.true(
    started.every((s) => s.group === group),
    'one subject for one target',
  );
  t.regex(group, /^ensemble\.hub\d+\.watch\.n\d+\.[A-Za-z0-9_-]+$/);
  const shared = r.listen<WatchGroupMessage>(group);
  await r.listener.flush();
  await r.put('/p/warm'); // everyone live
  await until(
    () =>
      reqs.every((q) => r.hub.phase('s1', q.id) === 'direct') &&
      direct.every((d) => revisions(d).includes(1)),
    'every watcher live with revision 1',
  );
  for (const q of reqs) r.hub.ack('s1', q.id, 1, true);
  t.true(reqs.every((q) => r.hub.phase('s1', q.id) === 'shared'));
  await until(() => direct.every((d) => d.some((m) => m.join !== undefined)), 'every watcher has its join');
  const before = r.hub.counters.messages;
  for (let i = 0; i < 100; i++) await r.put(`/p/${i}`);
  await until(() => revisions(shared).length === 100, '100 revisions on the group stream');
  t.deepEqual(
    revisions(shared),
    Array.from({ length: 100 }, (_, i) => i + 2),
  );
  t.deepEqual(
    shared.map((m) => m.seq),
    shared.map((_, i) => i + 1),
  );
  t.is(r.hub.counters.messages, before, 'nothing more per watcher once shared');
  t.is(r.hub.counters.groups, 1);
  // The join point: the group message after it carries the first revision the watcher lacks.
  const join = direct[0]!.find((m) => m.join)!;
  t.is(join.revision, 1);
  t.is(join.join!.seq, 0);
  t.is(shared[0]!.gen, join.join!.gen);
  r.close();
});

test('different targets and options are different groups; cancel empties a group', async (t) => {
  const r = await rig();
  const a = r.hub.add(request({ prefix: '/p/' })) as { group: string };
  const b = r.hub.add(request({ prefix: '/p/', prevValue: true })) as { group: string };
  const c = r.hub.add(request({ prefix: undefined, key: '/p' })) as { group: string };
  t.is(new Set([a.group, b.group, c.group]).size, 3);
  await r.put('/p/x');
  await until(() => r.hub.counters.groups === 3, 'three groups');
  const reqD = request();
  r.hub.add(reqD);
  t.true(r.hub.cancel('s1', reqD.id));
  t.false(r.hub.cancel('s1', reqD.id));
  t.is(r.hub.phase('s1', reqD.id), null);
  r.close();
});

test('a watcher that stops acknowledging pauses, catches up from history on ack, ends WATCH_BEHIND when too far behind', async (t) => {
  const r = await rig({ window: 4, maxBehind: 30, batch: 1 });
  const slow = request();
  const got = r.listen<WatchMessage>(slow.inbox);
  await r.listener.flush();
  r.hub.add(slow);
  for (let i = 0; i < 10; i++) await r.put(`/p/${i}`);
  await until(() => r.hub.phase('s1', slow.id) === 'paused' && got.length >= 4, 'paused after a window');
  // Whatever the hub published has arrived once both connections flushed; the pause is the
  // point: no further message may come while the watcher does not acknowledge.
  await r.nc.flush();
  await r.listener.flush();
  await new Promise((res) => setTimeout(res, 100));
  t.is(got.length, 4, 'a window of messages, no more');
  await until(() => {
    r.hub.ack('s1', slow.id, got.at(-1)!.seq); // the consumer takes all it has
    return revisions(got).length === 10;
  }, 'the missed revisions replayed');
  t.deepEqual(
    revisions(got),
    Array.from({ length: 10 }, (_, i) => i + 1),
    'replayed what it missed',
  );
  // Now never acknowledge again and fall far behind.
  for (let i = 10; i < 60; i++) await r.put(`/p/${i}`);
  await until(() => got.some((m) => m.error !== undefined), 'the watch ends with an error');
  const last = got.at(-1)!;
  t.is(last.error?.code, 'WATCH_BEHIND');
  t.is(r.hub.phase('s1', slow.id), null);
  t.is(r.hub.counters.cancelledBehind, 1);
  r.close();
});

test('a resume from a revision the node has not applied yet waits for it, with heartbeats', async (t) => {
  const r = await rig();
  const req = request({ fromRevision: 5 });
  const got = r.listen<WatchMessage>(req.inbox);
  await r.listener.flush();
  r.hub.add(req);
  t.is(r.hub.phase('s1', req.id), 'waiting');
  await until(() => got.some((m) => m.progress === true), 'a heartbeat while waiting');
  for (let i = 0; i < 6; i++) await r.put(`/p/${i}`);
  await until(() => revisions(got).length === 2, 'revisions 5 and 6');
  t.deepEqual(revisions(got), [5, 6]);
  r.close();
});

test('messages stay under the size bound, whole revisions together', async (t) => {
  const r = await rig({ maxMessageBytes: 4096 });
  const req = request();
  const got = r.listen<WatchMessage>(req.inbox);
  await r.listener.flush();
  r.hub.add(req);
  await r.put('/p/warm');
  const big = 'x'.repeat(1500);
  await r.tree.apply(++r.index, {
    op: 'txn',
    compare: [],
    success: Array.from({ length: 6 }, (_, i) => ({ op: 'put', key: `/p/t${i}`, value: bytes(big) })),
    failure: [],
  });
  for (let i = 0; i < 10; i++)
    await r.tree.apply(++r.index, { op: 'put', key: `/p/${i}`, value: bytes(big) });
  r.hub.applied();
  await until(() => revisions(got).length === 17, 'all 17 revisions');
  const txnRevision = got.flatMap((m) => m.events).find((e) => e.key === '/p/t0')!.revision;
  const holding = got.filter((m) => m.events.some((e) => e.revision === txnRevision));
  t.is(holding.length, 1, 'a revision is never split');
  t.is(holding[0]!.events.filter((e) => e.revision === txnRevision).length, 6);
  const later = got.filter((m) => m.events.some((e) => e.revision > txnRevision));
  t.true(later.length >= 4, 'the rest is split into several messages');
  t.true(later.every((m) => m.events.length <= 3));
  r.close();
});

test("a session's watches live on one node: a peer's claim ends them here with WATCH_MOVED", async (t) => {
  const nc = await harness().connect('peer');
  const listener = await harness().connect('client');
  const cluster = subjects({ cluster: 'hub', prefix: 'ensemble.claims1' });
  const hubs = ['a', 'b'].map((self) => {
    const hub = new WatchHub({
      nc,
      subjects: cluster,
      self,
      tree: new MemoryTree(),
      progressMs: 200,
      maxPerSession: 2,
    });
    hub.start();
    return hub;
  });
  await nc.flush();
  const [a, b] = hubs as [WatchHub, WatchHub];
  const got: WatchMessage[] = [];
  const first = request({ session: 'sm' });
  listener.subscribe(first.inbox, {
    callback: (_e, m) => {
      const d = decodeEnvelope(m.data, { cluster: 'hub' });
      if (d.ok) got.push(d.envelope.body as WatchMessage);
    },
  });
  await listener.flush();
  t.false('error' in a.add(first));
  t.false('error' in a.add(request({ session: 'sm' })));
  t.true('error' in a.add(request({ session: 'sm' })), 'the per-session limit on one node');
  const other = request({ session: 'other' });
  t.false('error' in a.add(other), 'another session is not touched');
  // The session's next watch starts on b: b claims the session, a ends its two watches.
  t.false('error' in b.add(request({ session: 'sm' })));
  await until(() => a.phase('sm', first.id) === null, 'a ended the moved watch');
  await until(() => got.some((m) => m.error?.code === 'WATCH_MOVED'), 'the client is told where');
  t.is(got.find((m) => m.error)?.error?.node, 'b');
  t.is(a.counters.moved, 2);
  t.not(a.phase('other', other.id), null, "the other session's watch stays");
  // A forged claim (bad shape) is counted and ignored.
  nc.publish(cluster.watchClaims(), new Uint8Array([1, 2, 3]));
  await nc.flush();
  await until(() => a.counters.badClaims === 1, 'the bad claim is counted');
  for (const h of hubs) h.stop();
});
