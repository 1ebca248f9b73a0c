/**
 * The client's watch stream against a scripted node (the test answers the watch requests and
 * publishes the messages itself, on a real nats-server): what the client does with each kind
 * of broken sequence. It resumes, from the first revision it lacks, on a gap in `seq` and on a
 * message whose `from` is past what it has; it never delivers a revision twice or skips one.
 */
import test from 'ava';
import { useHarness } from '../integration/harness.ts';
import { waitFor } from '../integration/wait.ts';
import type { ApiRequests, WatchEvent } from '../protocol/index.ts';
import { encodeEnvelope } from '../protocol/index.ts';
import type { Client } from './index.ts';
import { WatchGroups, WatchStream } from './watch.ts';

const harness = useHarness(test, { label: 'ensemble-client-watch' });

interface Scripted {
  stream: WatchStream;
  /** The watch requests the client made, in order. */
  requests: ApiRequests['watch'][];
  /** Publishes a message to the inbox of the latest watch request. */
  send(m: { seq: number; revision: number; from?: number; events: number[] }): void;
}

const event = (revision: number): WatchEvent =>
  ({ type: 'put', key: `/k/${revision}`, revision, value: new Uint8Array([1]) }) as unknown as WatchEvent;

/** A stream whose node is the test: each watch request is answered at once from its start. */
async function scripted(
  seenRevision = -1,
  options: ConstructorParameters<typeof WatchStream>[4] = { fromRevision: 5, silenceMs: 60_000 },
): Promise<Scripted> {
  const nc = await harness().connect('client');
  // The node's side publishes as a node does (clients may not publish to inboxes).
  const node = await harness().connect('peer');
  const requests: ApiRequests['watch'][] = [];
  // Only what WatchStream and WatchGroups use of a Client.
  const client = {
    nc,
    inboxUser: 'client',
    seenRevision,
    async requestAny(op: string, body: unknown) {
      if (op !== 'watch') return { cancelled: true };
      const r = body as ApiRequests['watch'];
      requests.push(r);
      return { id: r.id, node: 'n1', revision: r.fromRevision ?? 1 };
    },
    publish() {},
  } as unknown as Client;
  const stream = new WatchStream(
    client,
    new WatchGroups(client),
    {
      now: async () => ({ id: 's1', secret: new Uint8Array([1]) }),
      expired: () => {},
    },
    { prefix: '/k/' },
    options,
  );
  await waitFor(() => requests.length === 1, { what: 'the first watch request' });
  return {
    stream,
    requests,
    send(m) {
      const r = requests.at(-1)!;
      const body = {
        id: r.id,
        seq: m.seq,
        revision: m.revision,
        ...(m.from !== undefined ? { from: m.from } : {}),
        events: m.events.map(event),
      };
      node.publish(r.inbox, encodeEnvelope(body, { cluster: 'x', format: 'cbor' }));
    },
  };
}

async function take(stream: WatchStream, n: number): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) {
    const r = await stream.next();
    if (r.done) break;
    if (r.value.type !== 'progress') out.push(r.value.revision);
  }
  return out;
}

test('a message whose from is past the next revision makes the stream resume from that revision', async (t) => {
  const s = await scripted();
  s.send({ seq: 1, from: 5, revision: 6, events: [5, 6] });
  t.deepEqual(await take(s.stream, 2), [5, 6]);
  // seq follows, but revisions 7 and 8 are unaccounted for: not delivered, a resume from 7.
  s.send({ seq: 2, from: 9, revision: 9, events: [9] });
  await waitFor(() => s.requests.length === 2, { what: 'a second watch request' });
  t.is(s.requests[1]!.fromRevision, 7);
  t.is(s.stream.revisionGaps, 1);
  t.is(s.stream.resumes, 1);
  // The new watch replays from 7; what the old message held is not delivered twice.
  s.send({ seq: 1, from: 7, revision: 9, events: [7, 8, 9] });
  t.deepEqual(await take(s.stream, 3), [7, 8, 9]);
  await s.stream.return?.();
});

test('from at or below the next revision, or absent (an older node), is taken as it comes', async (t) => {
  const s = await scripted();
  s.send({ seq: 1, from: 5, revision: 6, events: [5, 6] });
  s.send({ seq: 2, from: 6, revision: 8, events: [6, 8] }); // overlaps: 6 is dropped, not repeated
  s.send({ seq: 3, revision: 9, events: [9] });
  t.deepEqual(await take(s.stream, 4), [5, 6, 8, 9]);
  t.is(s.stream.resumes, 0);
  t.is(s.requests.length, 1);
  await s.stream.return?.();
});

test('a gap in seq makes the stream resume from the revision after the last message', async (t) => {
  const s = await scripted();
  s.send({ seq: 1, from: 5, revision: 6, events: [5, 6] });
  t.deepEqual(await take(s.stream, 2), [5, 6]);
  s.send({ seq: 3, from: 7, revision: 7, events: [7] });
  await waitFor(() => s.requests.length === 2, { what: 'a second watch request' });
  t.is(s.requests[1]!.fromRevision, 7);
  t.is(s.stream.revisionGaps, 0);
  await s.stream.return?.();
});

test('a watch from now starts after the last revision the client heard of, 0 included (a new cluster)', async (t) => {
  // A new cluster's session open reports revision 0: the watch starts at 1, so the client's
  // first write is in it even if it reaches the cluster before the watch does.
  const fresh = await scripted(0, { silenceMs: 60_000 });
  t.is(fresh.requests[0]!.fromRevision, 1);
  await fresh.stream.return?.();
  const later = await scripted(41, { silenceMs: 60_000 });
  t.is(later.requests[0]!.fromRevision, 42);
  await later.stream.return?.();
  // Nothing heard yet (no session, no answer): the node's current revision.
  const unknown = await scripted(-1, { silenceMs: 60_000 });
  t.is(unknown.requests[0]!.fromRevision, undefined);
  await unknown.stream.return?.();
});
