/**
 * The inspect server without NATS: synthetic batches in, the page's stream, Stately's WebSocket
 * protocol (an application's inspector in, receivers out, a `createInspectorServer` relay) and
 * the loopback-only checks.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createWebSocketReceiver } from '@statelyai/inspect';
import { createInspectorServer } from '@statelyai/inspect/server';
import test from 'ava';
import { WebSocket } from 'ws';
import { waitFor } from '../../integration/wait.ts';
import type { InspectBatch, InspectEvent } from '../../protocol/index.ts';
import { freePort } from '../nats-server.ts';
import { CLIENTS } from './model.ts';
import { type InspectServer, type PageMessage, startInspectServer } from './server.ts';

const base = { createdAt: '0', id: null, _version: '1.0.0' } as const;
let seq = 0;
function batch(node: string, events: InspectEvent[] = []): InspectBatch {
  return {
    v: 1,
    cluster: 'dev',
    node,
    seq: ++seq,
    at: Date.now(),
    dropped: 0,
    events,
    status: {
      role: 'leader',
      term: 3,
      leader: node,
      vote: node,
      commit: 5,
      applied: 5,
      lastIndex: 5,
      voters: [node],
      learners: [],
      progress: {},
      sessions: 0,
      pid: 42,
      startedAt: 0,
    },
  };
}
const raftActor: InspectEvent = {
  type: '@xstate.actor',
  name: 'raft',
  sessionId: 'n1:x:1',
  definition: JSON.stringify({ id: 'raft', initial: 'follower', states: { follower: {}, leader: {} } }),
  snapshot: { status: 'active', value: 'leader', context: {} },
  ...base,
};

async function withServer(
  t: import('ava').ExecutionContext,
  o: Parameters<typeof startInspectServer>[0] = {},
): Promise<InspectServer> {
  const dir = await mkdtemp(path.join(tmpdir(), 'inspect-page-'));
  await writeFile(path.join(dir, 'index.html'), '<!doctype html><title>page</title>');
  await writeFile(path.join(dir, 'app.js'), 'console.log(1)');
  const s = await startInspectServer({ port: 0, pageDir: dir, cluster: 'dev', ...o });
  t.teardown(async () => {
    await s.close();
    await rm(dir, { recursive: true, force: true });
  });
  return s;
}

/** An SSE client: the messages of `/events`, parsed, as they come. */
function events(url: string): { readonly messages: PageMessage[]; close(): void } {
  const messages: PageMessage[] = [];
  let buf = '';
  const req = http.get(`${url}events`, (res) => {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buf += chunk;
      let i = buf.indexOf('\n\n');
      for (; i >= 0; i = buf.indexOf('\n\n')) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = block
          .split('\n')
          .filter((l) => l.startsWith('data: '))
          .map((l) => l.slice(6))
          .join('\n');
        if (data !== '') messages.push(JSON.parse(data) as PageMessage);
      }
    });
  });
  req.on('error', () => {});
  return { messages, close: () => req.destroy() };
}

function socket(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ ws: WebSocket; got: unknown[] }> {
  const ws = new WebSocket(url, { headers });
  const got: unknown[] = [];
  ws.on('message', (d) => {
    try {
      got.push(JSON.parse(d.toString()));
    } catch {
      got.push(d.toString());
    }
  });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, got }));
    ws.once('error', reject);
  });
}

test('serves the page, the model as JSON, and 404 for anything else', async (t) => {
  const s = await withServer(t);
  t.regex(s.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const page = await fetch(s.url);
  t.is(page.status, 200);
  t.regex(page.headers.get('content-type') ?? '', /text\/html/);
  t.regex(await page.text(), /<title>page<\/title>/);
  t.regex((await fetch(`${s.url}app.js`)).headers.get('content-type') ?? '', /javascript/);
  t.is((await fetch(`${s.url}../../etc/passwd`)).status, 404);
  t.is((await fetch(`${s.url}server.ts`)).status, 404);
  s.batch(batch('n1', [raftActor]));
  const state = (await (await fetch(`${s.url}state`)).json()) as { nodes: { id: string }[] };
  t.deepEqual(
    state.nodes.map((n) => n.id),
    ['n1'],
  );
});

test('a request naming another host is refused (DNS rebinding)', async (t) => {
  const s = await withServer(t);
  const status = await new Promise<number>((resolve, reject) => {
    http
      .get(
        { host: '127.0.0.1', port: s.port, path: '/state', headers: { host: 'evil.example:80' } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      )
      .on('error', reject);
  });
  t.is(status, 403);
});

test('a page gets the model first, then every batch and tick with the server’s time', async (t) => {
  let clock = 1_000_000;
  const s = await withServer(t, { now: () => clock });
  s.batch(batch('n1', [raftActor]));
  const page = events(s.url);
  t.teardown(() => page.close());
  await waitFor(() => page.messages.length >= 1, { what: 'hello' });
  const hello = page.messages[0]!;
  t.is(hello.t, 'hello');
  if (hello.t === 'hello') {
    t.is(hello.cluster, 'dev');
    t.deepEqual(
      hello.dump.actors.map((a) => a.name),
      ['raft'],
    );
  }
  clock += 10;
  s.batch(batch('n2'));
  const b = await waitFor(() => page.messages.find((m) => m.t === 'batch'), { what: 'a batch' });
  t.is(b.now, 1_000_010);
  if (b.t === 'batch') t.is(b.batch.node, 'n2');
  await waitFor(() => page.messages.some((m) => m.t === 'tick'), { what: 'a tick' });
  t.is(s.connections().pages, 1);
});

test('Stately protocol: an app’s inspector feeds the model and every other client; nodes’ events reach receivers', async (t) => {
  const s = await withServer(t);
  s.batch(batch('n1', [raftActor]));
  const ws = `ws://127.0.0.1:${s.port}`;
  // A receiver attached first is sent the known actors.
  const receiver = await socket(ws);
  t.teardown(() => receiver.ws.close());
  await waitFor(() => receiver.got.length >= 1, { what: 'the known actors' });
  t.like(receiver.got[0], { type: '@xstate.actor', sessionId: 'n1:x:1', name: 'raft' });
  // Stately's own receiver gets node events as they come.
  const stately: unknown[] = [];
  createWebSocketReceiver({ server: ws }).subscribe((e) => stately.push(e));
  await waitFor(() => s.connections().sockets === 2, { what: 'the Stately receiver connected' });
  const snap: InspectEvent = {
    type: '@xstate.snapshot',
    sessionId: 'n1:x:1',
    snapshot: { status: 'active', value: 'follower', context: {} },
    event: { type: 'raft.heartbeat' },
    ...base,
  };
  s.batch(batch('n1', [snap]));
  await waitFor(() => stately.some((e) => (e as InspectEvent).type === '@xstate.snapshot'), {
    what: 'the node snapshot relayed',
  });
  // An application's events (what createWebSocketInspector sends): into the model, to the
  // others, not back to the sender.
  const app = await socket(ws);
  t.teardown(() => app.ws.close());
  const appActor = {
    type: '@xstate.actor',
    name: 'session',
    sessionId: 'x:0',
    definition: JSON.stringify({ id: 'session', initial: 'connecting', states: { connecting: {} } }),
    snapshot: { status: 'active', value: 'connecting', context: {} },
    ...base,
  };
  app.ws.send(JSON.stringify(appActor));
  app.ws.send('not json'); // dropped: Stately's receivers throw on it
  await waitFor(() => s.model.actors(CLIENTS).length === 1, { what: 'the app actor in the model' });
  await waitFor(() => receiver.got.some((e) => (e as InspectEvent).sessionId === 'x:0'), {
    what: 'relayed to the receiver',
  });
  t.false(
    app.got.some((e) => (e as InspectEvent).sessionId === 'x:0'),
    'not echoed to its sender',
  );
  t.is(s.model.actor('x:0')?.value, 'connecting');
});

test('WebSocket clients from a page of another origin are refused; loopback pages are welcome', async (t) => {
  const s = await withServer(t);
  const ws = `ws://127.0.0.1:${s.port}`;
  await t.throwsAsync(socket(ws, { origin: 'https://evil.example' }));
  const ok = await socket(ws, { origin: 'http://localhost:5173' });
  ok.ws.close();
  t.pass();
});

test('--stately: every event is forwarded to a createInspectorServer relay, known actors first', async (t) => {
  const port = await freePort();
  const relay = createInspectorServer({ port, autoOpen: false });
  t.teardown(() => relay.stop());
  // A receiver of the relay (what Stately's bridge page does).
  const receiver = await waitFor(() => socket(`ws://127.0.0.1:${port}`).catch(() => null), {
    what: 'the relay listening',
  });
  receiver.ws.on('message', () => {});
  t.teardown(() => receiver.ws.close());
  const logs: string[] = [];
  const s = await withServer(t, { stately: `ws://127.0.0.1:${port}`, log: (l) => logs.push(l) });
  s.batch(batch('n1', [raftActor]));
  await waitFor(() => logs.some((l) => /connected/.test(l)), { what: 'connected to the relay' });
  s.batch(
    batch('n1', [
      {
        type: '@xstate.event',
        sessionId: 'n1:x:1',
        event: { type: 'raft.tick' },
        ...base,
      },
    ]),
  );
  await waitFor(() => receiver.got.some((e) => (e as InspectEvent).type === '@xstate.event'), {
    what: 'the node event at the relay’s receiver',
    timeoutMs: 10_000,
  });
  const first = receiver.got.findIndex((e) => (e as InspectEvent).type === '@xstate.actor');
  const event = receiver.got.findIndex((e) => (e as InspectEvent).type === '@xstate.event');
  t.true(first >= 0 && first < event, 'the actor (with its definition) before its events');
});
