/**
 * The inspection stream of real node processes (actors/inspection.ts, protocol/inspection.ts):
 * - Off by default: no batch until the admin turns it on with the `inspect` op; then every node
 *   publishes batches with its status (one leader, the same term), every live actor with its
 *   machine definition first (the raft machine's states follower/candidate/leader), then events.
 * - Sanitized: a value written while inspecting never appears in any batch.
 * - A lease: batches stop by themselves once it runs out; `{ on: false }` stops them at once.
 * - Only the admin may read the batches or call the op; bad bodies get BAD_REQUEST.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import test from 'ava';
import type { InspectionEvent } from 'xstate';
import { inspectControl } from '../../cluster/inspect/control.ts';
import {
  decodeReply,
  encodeEnvelope,
  INSPECT_BATCH_MS,
  type InspectBatch,
  subjects,
} from '../../protocol/index.ts';

import { useCluster } from '../cluster.ts';
import { waitFor } from '../wait.ts';

const NAME = 'insp';
const cluster = useCluster(test, { label: 'ensemble-inspection', cluster: NAME });
const S = subjects({ cluster: NAME });
/** How long an absence of batches is watched for: four batch intervals. */
const ABSENCE_MS = 4 * INSPECT_BATCH_MS;

/** Collects every batch on `P.inspect.*`, and the raw text of each. */
function collect(nc: NatsConnection): { batches: InspectBatch[]; raw: string[]; sub: Subscription } {
  const batches: InspectBatch[] = [];
  const raw: string[] = [];
  const sub = nc.subscribe(S.inspectWildcard(), {
    callback: (err, msg) => {
      if (err) return;
      raw.push(msg.string());
      batches.push(msg.json<InspectBatch>());
    },
  });
  return { batches, raw, sub };
}

test.serial('off by default; on for a lease: status, machines, events, sanitized; then off', async (t) => {
  const c = await cluster().client({ timeoutMs: 30_000 });
  await cluster().waitForLeader();
  const admin = await cluster().h.connect('admin');
  const seen = collect(admin);
  await admin.flush();
  // An absence: a few batch intervals in which a node that streamed would have sent some.
  await sleep(ABSENCE_MS);
  t.is(seen.batches.length, 0, 'no batch while inspection is off');

  const ids = cluster().ids;
  let leaseEnd = 0;
  for (const id of ids) {
    const r = await inspectControl(admin, S, id, { on: true, leaseMs: 3000, resync: true });
    leaseEnd = Math.max(leaseEnd, r.until ?? 0);
    t.is(r.node, id);
    t.true(r.on);
    t.is(r.subject, S.inspect(id));
    t.true(r.until !== null && r.until > Date.now());
  }
  const SECRET = 'do-not-show-this-value-7f3a';
  for (let i = 0; i < 20; i++) await c.put(`/insp/k${i}`, SECRET);
  await waitFor(
    () =>
      ids.every((id) => seen.batches.some((b) => b.node === id && b.status.commit >= 20)) &&
      seen.batches.some((b) => b.events.some((e) => e.type === '@xstate.snapshot')),
    {
      what: 'every node showing the writes committed, and a snapshot since',
      timeoutMs: 10_000,
    },
  );

  const last = new Map<string, InspectBatch>();
  for (const b of seen.batches) last.set(b.node, b);
  const leaders = [...last.values()].filter((b) => b.status.role === 'leader');
  t.is(leaders.length, 1, 'exactly one node says it leads');
  const term = leaders[0]?.status.term ?? -1;
  for (const b of last.values()) {
    t.is(b.v, 1);
    t.is(b.cluster, NAME);
    t.is(b.status.term, term);
    t.is(b.status.leader, leaders[0]?.node ?? '');
    t.deepEqual([...b.status.voters].sort(), [...ids].sort());
    t.true(b.status.commit >= 20);
  }
  const leaderId = leaders[0]?.node ?? '';
  t.deepEqual(
    Object.keys(leaders[0]?.status.progress ?? {}).sort(),
    ids.filter((id) => id !== leaderId).sort(),
    "the leader shows its followers' progress",
  );

  for (const id of ids) {
    const first = seen.batches.find((b) => b.node === id);
    t.is(first?.seq, 1);
    const actors = first?.events.filter((e) => e.type === '@xstate.actor') ?? [];
    const raft = actors.find((e) => e.name === 'raft');
    t.truthy(raft, `${id} sends its raft actor first`);
    t.true(raft?.sessionId.startsWith(`${id}:`));
    const def = JSON.parse(raft?.definition ?? '{}') as { states?: Record<string, unknown> };
    t.deepEqual(Object.keys(def.states ?? {}).sort(), ['candidate', 'follower', 'leader']);
    t.truthy(
      actors.find((e) => e.name === 'node'),
      'and the supervisor',
    );
  }
  const events = seen.batches.flatMap((b) => b.events);
  t.true(events.some((e) => e.type === '@xstate.event'));
  t.true(events.some((e) => e.type === '@xstate.snapshot'));
  t.false(
    seen.raw.some((r) => r.includes(SECRET)),
    'a written value never appears in a batch',
  );

  // The lease runs out: batches stop without another request.
  await waitFor(() => Date.now() > leaseEnd + INSPECT_BATCH_MS, {
    what: 'the lease ends',
    timeoutMs: 10_000,
  });
  await admin.flush();
  const count = seen.batches.length;
  await sleep(ABSENCE_MS);
  t.is(seen.batches.length, count, 'no batch after the lease ended');

  // On until told otherwise, then off at once.
  const leader = leaders[0]?.node ?? '';
  await inspectControl(admin, S, leader, { on: true, leaseMs: 60_000 });
  await waitFor(() => seen.batches.length > count, { what: 'batches again', timeoutMs: 5000 });
  const off = await inspectControl(admin, S, leader, { on: false });
  t.false(off.on);
  await admin.flush(); // batches published before the answer have arrived
  const after = seen.batches.length;
  await sleep(ABSENCE_MS);
  t.is(seen.batches.length, after, 'no batch after { on: false }');
  seen.sub.unsubscribe();
  await admin.close();
});

test.serial('only the admin: clients can neither read the batches nor call the op; bad bodies', async (t) => {
  const id = await cluster().waitForLeader();
  const client = await cluster().h.connect('client');
  const denied = new Promise<string>((resolve) => {
    void (async () => {
      for await (const s of client.status()) if (s.type === 'error') resolve(String(s.error));
    })();
  });
  client.subscribe(S.inspectWildcard());
  await client.flush();
  t.regex(await Promise.race([denied, sleep(3000).then(() => 'no error')]), /permission/i);
  await t.throwsAsync(inspectControl(client, S, id, { on: true }));
  await client.close().catch(() => {});

  const admin = await cluster().h.connect('admin');
  for (const body of [
    null,
    7,
    { on: 'yes' },
    { on: true, leaseMs: 10 ** 9 },
    { on: true, rate: 0 },
    { on: true, x: 1 },
  ]) {
    const msg = await admin.request(S.nodeAdmin(id, 'inspect'), encodeEnvelope(body, { cluster: NAME }), {
      timeout: 5000,
    });
    const r = decodeReply(msg.data, { cluster: NAME });
    t.false(r.ok, JSON.stringify(body));
    if (!r.ok) t.is(r.error.code, 'BAD_REQUEST');
  }
  await admin.close();
});

test.serial(
  "connect({ inspect }): the client's session machine, sanitized, as Stately's tools read it",
  async (t) => {
    await cluster().waitForLeader();
    const seen: InspectionEvent[] = [];
    const c = await cluster().client({ sessionTtlMs: 3000, inspect: (e) => seen.push(e) });
    const session = c.defaultSession;
    t.truthy(session);
    const actor = seen.find((e) => e.type === '@xstate.actor');
    t.truthy(actor, 'the session actor is announced');
    // What @statelyai/inspect serializes: the actor's snapshot, every snapshot and event.
    const shown = JSON.stringify(
      seen.map((e) =>
        e.type === '@xstate.actor'
          ? { snapshot: e.actorRef.getSnapshot() }
          : e.type === '@xstate.snapshot'
            ? { snapshot: e.snapshot, event: e.event, now: e.actorRef.getSnapshot() }
            : e.type === '@xstate.event'
              ? { event: e.event }
              : {},
      ),
    );
    const values = seen
      .filter((e) => e.type === '@xstate.snapshot')
      .map((e) => (e.snapshot as { value?: unknown }).value);
    t.true(values.includes('active'), `the session went active (${JSON.stringify(values)})`);
    const secret = (c.defaultSession as unknown as { runner: { current: { secret: unknown } | null } }).runner
      .current?.secret;
    t.truthy(secret, 'the session has a secret');
    const hex = typeof secret === 'string' ? secret : Buffer.from(secret as Uint8Array).toString('hex');
    t.false(shown.includes(hex), 'the secret never reaches the observer');
    t.true(shown.includes('[redacted]'));
    await c.close();
  },
);
