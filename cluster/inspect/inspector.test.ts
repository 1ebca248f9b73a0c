/**
 * The lease keeper without NATS: a fake connection whose subscription the test feeds, and a fake
 * `inspect` op that records every request.
 */
import test from 'ava';
import { waitFor } from '../../integration/wait.ts';
import type { InspectBatch, InspectControl, InspectControlReply } from '../../protocol/index.ts';
import { subjects as subjectTable } from '../../protocol/index.ts';
import { Inspector, type InspectorOptions } from './inspector.ts';

const subjects = subjectTable({ cluster: 'dev' });

/** A subscription the test pushes messages into. */
function fakeNc() {
  const queue: { subject: string; data: Uint8Array }[] = [];
  let wake: (() => void) | null = null;
  let done = false;
  const subscribed: string[] = [];
  const nc = {
    subscribe(subject: string) {
      subscribed.push(subject);
      return {
        unsubscribe() {
          done = true;
          wake?.();
        },
        async *[Symbol.asyncIterator]() {
          for (;;) {
            while (queue.length > 0) yield queue.shift()!;
            if (done) return;
            await new Promise<void>((r) => (wake = r));
          }
        },
      };
    },
    request() {
      throw new Error('the test passes its own control');
    },
  };
  return {
    nc: nc as unknown as InspectorOptions['nc'],
    subscribed,
    publish(
      batch: Partial<InspectBatch> & { node: string; seq: number },
      subject = subjects.inspect(batch.node),
    ) {
      const b = {
        v: 1,
        cluster: 'dev',
        at: 0,
        events: [],
        dropped: 0,
        status: { role: 'follower', term: 1 },
        ...batch,
      };
      queue.push({ subject, data: new TextEncoder().encode(JSON.stringify(b)) });
      wake?.();
    },
  };
}

function recorder(fail: Set<string> = new Set()) {
  const calls: { node: string; req: InspectControl }[] = [];
  const control = async (_nc: unknown, _s: unknown, node: string, req: InspectControl) => {
    calls.push({ node, req });
    if (fail.has(node)) throw new Error('no responders');
    return { node, on: true, until: 1, rate: 400, subject: subjects.inspect(node) } as InspectControlReply;
  };
  return { calls, control, of: (node: string) => calls.filter((c) => c.node === node).map((c) => c.req) };
}

test('asks every member for a lease with a resync first, then renews without', async (t) => {
  const f = fakeNc();
  const r = recorder();
  const seen: InspectBatch[] = [];
  const i = new Inspector({
    nc: f.nc,
    subjects,
    control: r.control,
    sink: (b) => seen.push(b),
    members: ['n1', 'n2'],
    discover: async () => ['n1', 'n2', 'n3'],
    renewMs: 30,
    leaseMs: 10_000,
  });
  i.start();
  t.teardown(() => i.stop());
  t.deepEqual(f.subscribed, ['ensemble.dev.inspect.*']);
  await waitFor(() => r.of('n3').length >= 2 && r.of('n1').length >= 2, { what: 'two rounds' });
  for (const n of ['n1', 'n2', 'n3']) {
    const reqs = r.of(n);
    t.deepEqual(reqs[0], { on: true, leaseMs: 10_000, resync: true }, `${n}: first with a resync`);
    t.deepEqual(reqs[1], { on: true, leaseMs: 10_000, resync: false }, `${n}: then without`);
  }
});

test('batches go to the sink; a new node or a restarted one (seq back) is asked to resync at once', async (t) => {
  const f = fakeNc();
  const r = recorder();
  const seen: InspectBatch[] = [];
  const i = new Inspector({
    nc: f.nc,
    subjects,
    control: r.control,
    sink: (b) => seen.push(b),
    renewMs: 60_000,
  });
  i.start();
  t.teardown(() => i.stop());
  f.publish({ node: 'n7', seq: 1 });
  await waitFor(() => r.of('n7').length === 1, { what: 'the newcomer asked' });
  t.true(r.of('n7')[0]!.resync);
  f.publish({ node: 'n7', seq: 2 });
  f.publish({ node: 'n7', seq: 3 });
  await waitFor(() => seen.length === 3, { what: 'three batches' });
  t.is(r.of('n7').length, 1, 'no request for batches in order');
  f.publish({ node: 'n7', seq: 1 }); // a new process
  await waitFor(() => r.of('n7').length === 2, { what: 'the restarted node asked again' });
  t.true(r.of('n7')[1]!.resync);
  // Garbage and batches on another node's subject are not passed on.
  f.publish({ node: 'n8', seq: 1 }, subjects.inspect('n9'));
  f.publish({ node: 'n1', seq: 'x' as unknown as number });
  f.publish({ node: 'n1', seq: 5 });
  await waitFor(() => seen.length === 5, { what: 'the good batch' });
  t.is(i.rejected, 2);
  t.deepEqual(
    seen.map((b) => `${b.node}:${b.seq}`),
    ['n7:1', 'n7:2', 'n7:3', 'n7:1', 'n1:5'],
  );
});

test('a node that did not answer is asked for a resync when it answers again', async (t) => {
  const f = fakeNc();
  const down = new Set(['n2']);
  const r = recorder(down);
  const logs: string[] = [];
  const i = new Inspector({
    nc: f.nc,
    subjects,
    control: r.control,
    sink: () => {},
    members: ['n1', 'n2'],
    renewMs: 20,
    log: (l) => logs.push(l),
  });
  i.start();
  t.teardown(() => i.stop());
  await waitFor(() => r.of('n2').length >= 3, { what: 'n2 asked a few times' });
  t.true(r.of('n2').every((q) => q.resync));
  t.is(logs.filter((l) => l.startsWith('n2: no answer')).length, 1, 'said once, not every round');
  t.is(i.leases.get('n2')?.ok, false);
  down.delete('n2');
  await waitFor(() => i.leases.get('n2')?.ok === true, { what: 'n2 back' });
  const after = r.of('n2');
  await waitFor(() => r.of('n2').length > after.length, { what: 'another round' });
  t.false(r.of('n2').at(-1)!.resync, 'the resync was answered');
  await i.stop();
  const n = r.calls.length;
  await new Promise((res) => setTimeout(res, 60));
  t.is(r.calls.length, n, 'no request after stop');
});
