/**
 * nats.conf against a real nats-server: peers and clients are separated as the config says.
 * A client cannot publish on peer subjects, cannot read another client's inbox, cannot answer
 * API requests, and can do request/reply on the API; peers use peer subjects freely.
 */
import { readFile } from 'node:fs/promises';
import { connect, headers, type NatsConnection, type Status } from '@nats-io/transport-node';
import test from 'ava';
import { DEFAULT_NATS_CONF, natsCredentials, renderAccounts } from '../../cluster/nats-server.ts';
import { decodeEnvelope, decodeReply, encodeEnvelope, encodeReply } from '../../protocol/codec.ts';
import { subjects } from '../../protocol/subjects.ts';
import { useHarness } from '../harness.ts';

const h = useHarness(test, { label: 'ensemble-perm' });
const s = subjects({ cluster: 'dev' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Collects the permission violations the server reports to a connection. */
function violations(nc: NatsConnection): Array<{ operation: string; subject: string }> {
  const seen: Array<{ operation: string; subject: string }> = [];
  void (async () => {
    for await (const status of nc.status() as AsyncIterable<Status>) {
      if (status.type === 'error' && status.error.name === 'PermissionViolationError') {
        const e = status.error as unknown as { operation: string; subject: string };
        seen.push({ operation: e.operation, subject: e.subject });
      }
    }
  })();
  return seen;
}

async function until(cond: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

test('nats.conf holds the accounts block generated from the subject table, and no monitoring endpoint', async (t) => {
  const conf = await readFile(DEFAULT_NATS_CONF, 'utf8');
  t.true(
    conf.includes(renderAccounts()),
    `nats.conf is out of date; its accounts block must read:\n${renderAccounts()}`,
  );
  t.regex(conf, /^max_payload: 8MB$/m);
  t.notRegex(
    conf,
    /^\s*(http|monitor_port|http_port)\s*:/m,
    'no monitoring endpoint (its /connz lists inboxes)',
  );
});

test('the server enforces max_payload of 8 MB and refuses unauthenticated connections', async (t) => {
  const nc = await h().connect('peer');
  t.is(nc.info?.max_payload, 8 * 1024 * 1024);
  await t.throwsAsync(connect({ servers: [...h().natsUrls], reconnect: false }));
  await t.throwsAsync(
    connect({ servers: [...h().natsUrls], user: 'client', pass: 'wrong', reconnect: false }),
  );
});

test('a client cannot publish on a peer subject nor a watch group: the server reports a violation, nobody hears', async (t) => {
  const peer = await h().connect('peer');
  const received: string[] = [];
  peer.subscribe(s.peer('victim'), {
    callback: (_, m) => {
      received.push(m.subject);
    },
  });
  peer.subscribe(s.forward('victim'), {
    callback: (_, m) => {
      received.push(m.subject);
    },
  });
  await peer.flush();

  const client = await h().connect('client');
  const seen = violations(client);
  const group = s.watchGroup('victim', 'g1');
  peer.subscribe(group, {
    callback: (_, m) => {
      received.push(m.subject);
    },
  });
  await peer.flush();
  client.publish(s.peer('victim'), encodeEnvelope({ forged: true }, { cluster: 'dev' }));
  client.publish(s.forward('victim'), encodeEnvelope({ forged: true }, { cluster: 'dev' }));
  client.publish(group, encodeEnvelope({ forged: true }, { cluster: 'dev' }));
  await client.flush();
  t.true(await until(() => seen.length >= 3), 'violations reported');
  t.deepEqual(
    seen.map((v) => v.subject),
    [s.peer('victim'), s.forward('victim'), group],
  );
  t.true(seen.every((v) => v.operation === 'publish'));
  // The peer subscription would have seen them by now (same server, flushed).
  await peer.flush();
  t.deepEqual(received, []);
  t.false(client.isClosed(), 'the client stays connected');
});

test('a client cannot read another client inbox, nor the peers inbox, nor answer API requests', async (t) => {
  const client2 = await h().connect('client2');
  const seen = violations(client2);
  const attempts = ['_INBOX.client.>', '_INBOX.peer.>', '_INBOX.>', s.apiWildcard(), s.peer('n1')];
  const subs = attempts.map((subject) => client2.subscribe(subject));
  await client2.flush();
  t.true(await until(() => seen.length >= attempts.length), JSON.stringify(seen));
  t.deepEqual(new Set(seen.map((v) => v.subject)), new Set(attempts));
  t.true(seen.every((v) => v.operation === 'subscription'));
  for (const sub of subs) {
    const closed = await sub.closed;
    t.is((closed as Error | undefined)?.name, 'PermissionViolationError');
  }
  // And its own inbox works: a message published there by a peer arrives.
  const own = client2.subscribe('_INBOX.client2.mine');
  await client2.flush();
  const peer = await h().connect('peer');
  peer.publish('_INBOX.client2.mine', 'hello');
  await peer.flush();
  for await (const m of own) {
    t.is(m.string(), 'hello');
    break;
  }
});

test('processes of one application answer each other on app.>; another account does not even see them', async (t) => {
  const server = await h().connect('client');
  server.subscribe('app.greeter.one', {
    callback: (_, m) => {
      m.respond(`hello ${m.string()}`);
    },
  });
  await server.flush();
  const caller = await h().connect('client');
  const reply = await caller.request('app.greeter.one', 'ann', { timeout: 3000 });
  t.is(reply.string(), 'hello ann');
  const other = await h().connect('client2');
  const err = await t.throwsAsync(other.request('app.greeter.one', 'eve', { timeout: 3000 }));
  t.regex(String(err?.message), /no responders/i, 'client2 lives in another account');
  // allow_responses opens reply subjects only: a client still cannot answer API requests.
  const seen = violations(server);
  server.subscribe(s.apiWildcard());
  await server.flush();
  t.true(await until(() => seen.length >= 1), JSON.stringify(seen));
});

test("a request with a forged reply subject cannot reach another user: the server maps replies into the asker's own account", async (t) => {
  const node = await h().connect('peer');
  const infos: (string | undefined)[] = [];
  // A cluster of its own: tests of this file run at once, and a queue group is shared.
  const forge = subjects({ cluster: 'forge' });
  node.subscribe(forge.api('get'), {
    queue: forge.apiQueue,
    callback: (_, m) => {
      infos.push(m.headers?.get('Nats-Request-Info'));
      m.respond('answer');
    },
  });
  await node.flush();
  const victim = await h().connect('client2');
  const stolen: string[] = [];
  victim.subscribe('_INBOX.client2.K.>', {
    callback: (_, m) => {
      stolen.push(m.string());
    },
  });
  await victim.flush();
  const attacker = await h().connect('client');
  const forged = headers();
  forged.set('Nats-Request-Info', JSON.stringify({ acc: 'ENSEMBLE', user: 'peer' }));
  attacker.publish(forge.api('get'), encodeEnvelope({ key: '/a' }, { cluster: 'forge' }), {
    reply: '_INBOX.client2.K.1',
    headers: forged,
  });
  await attacker.flush();
  t.true(await until(() => infos.length === 1));
  await node.flush();
  await victim.flush();
  await sleep(200);
  t.deepEqual(stolen, [], 'the answer did not reach client2');
  const info = JSON.parse(infos[0] ?? '{}') as { acc?: string; user?: string };
  t.is(info.user, 'client', 'the server names the real sender, whatever header it sent');
  t.is(info.acc, 'CLIENT');
});

test('a client does request/reply on the API subjects (queue group and per node) with its own inbox', async (t) => {
  const node = await h().connect('peer');
  for (const subject of [s.apiWildcard(), s.nodeApiWildcard('n1')]) {
    node.subscribe(subject, {
      queue: subject === s.apiWildcard() ? s.apiQueue : undefined,
      callback: (_, m) => {
        const req = decodeEnvelope(m.data, { cluster: 'dev', headers: m.headers });
        const parsed = s.parseApi(m.subject);
        const result = req.ok ? { op: parsed?.op, node: parsed?.node, echo: req.envelope.body } : null;
        m.respond(
          encodeReply(req.ok ? { result } : { error: req.error }, { cluster: 'dev', format: req.format }),
        );
      },
    });
  }
  await node.flush();
  const client = await h().connect('client');
  const any = await client.request(s.api('get'), encodeEnvelope({ key: '/a' }, { cluster: 'dev' }), {
    timeout: 5000,
  });
  t.deepEqual(decodeReply(any.data, { cluster: 'dev' }), {
    ok: true,
    result: { op: 'get', node: null, echo: { key: '/a' } },
  });
  const one = await client.request(
    s.nodeApi('n1', 'put'),
    encodeEnvelope({ key: '/b' }, { cluster: 'dev', format: 'json' }),
    { timeout: 5000 },
  );
  t.deepEqual(JSON.parse(one.string()), {
    v: 1,
    cluster: 'dev',
    result: { op: 'put', node: 'n1', echo: { key: '/b' } },
  });
  // Keepalives may be published, and every node hears them.
  const heard = node.subscribe(s.sessionKeepalive(), { max: 1 });
  await node.flush();
  client.publish(s.sessionKeepalive(), encodeEnvelope({ id: 'x', secret: 'y' }, { cluster: 'dev' }));
  for await (const m of heard) t.is(m.subject, s.sessionKeepalive());
});

test('a client connected with the default inbox prefix cannot even receive its replies', async (t) => {
  const { pass } = natsCredentials('client');
  const nc = await connect({ servers: [...h().natsUrls], user: 'client', pass });
  try {
    await t.throwsAsync(nc.request(s.api('status'), new Uint8Array(), { timeout: 1000 }));
  } finally {
    await nc.close();
  }
});

test('the peer credential publishes, subscribes and requests on peer subjects', async (t) => {
  const n1 = await h().connect('peer');
  const n2 = await h().connect('peer');
  const seen = violations(n2);
  n1.subscribe(s.peer('n1'), { callback: () => undefined });
  const frames = n1.subscribe(s.peer('n1'), { max: 1 });
  n1.subscribe(s.snapshot('n1'), {
    callback: (_, m) => {
      m.respond('ack');
    },
  });
  await n1.flush();
  n2.publish(s.peer('n1'), encodeEnvelope({ from: 'n2', msgs: [] }, { cluster: 'dev' }));
  for await (const m of frames) {
    const d = decodeEnvelope(m.data, { cluster: 'dev', format: 'cbor' });
    t.like(d, { ok: true, envelope: { body: { from: 'n2' } } });
  }
  const ack = await n2.request(s.snapshot('n1'), new Uint8Array([1]), { timeout: 5000 });
  t.is(ack.string(), 'ack');
  // Peers reply into client inboxes (replies, watch events).
  n2.publish('_INBOX.client.watch.w1', 'event');
  await n2.flush();
  await sleep(100);
  t.deepEqual(seen, []);
});

test('a client reads the shared watch streams a node publishes', async (t) => {
  const node = await h().connect('peer');
  const client = await h().connect('client2');
  const seen = violations(client);
  const got: string[] = [];
  client.subscribe(s.watchGroup('n1', 'g2'), {
    callback: (_, m) => {
      got.push(m.subject);
    },
  });
  await client.flush();
  node.publish(s.watchGroup('n1', 'g2'), encodeEnvelope({ seq: 1 }, { cluster: 'dev' }));
  await node.flush();
  t.true(await until(() => got.length === 1));
  t.deepEqual(seen, []);
});
