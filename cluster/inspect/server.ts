/**
 * The local HTTP server of `ensemble inspect` (and `ensemble up --inspect`): on 127.0.0.1, it
 * serves the inspector page (built into `dist/inspect/`, no network needed), keeps the cluster's
 * model (model.ts) from the batches it is fed, and streams them to every open page.
 *
 * Routes:
 * - `GET /`, `/app.js`, `/style.css`: the page.
 * - `GET /events`: Server-Sent Events for the page. First `{ t: 'hello', now, cluster, dump }`
 *   (the model as it is), then `{ t: 'batch', now, batch }` per node batch, `{ t: 'event', now,
 *   origin, event }` per Stately event of an application, `{ t: 'tick', now }` twice a second.
 *   `now` is the server's clock: the page judges darkness by it.
 * - `GET /state`: the model as JSON (`ModelDump`), for scripts and tests.
 * - WebSocket on any path: Stately's protocol, as `createInspectorServer` of
 *   `@statelyai/inspect/server` speaks it. Every JSON message a client sends is relayed to every
 *   other client (text that is not JSON is dropped: Stately's receivers would throw on it); those
 *   that are Stately inspection events (`createWebSocketInspector({ url:
 *   'ws://127.0.0.1:4280' })` of an application) also go into the model as actors of origin
 *   `clients`. Every node event is sent to every client too, so Stately's receivers can attach.
 *   A client that connects is first sent every known actor (`@xstate.actor`, current snapshot).
 *
 * With `stately: 'ws://host:port'`, every event (nodes' and applications') is also forwarded to a
 * running `createInspectorServer` relay (reconnecting every 2 s; on each connect the known actors
 * are sent first; events while it is away are dropped and counted).
 *
 * Only loopback may use it: requests whose Host is not a loopback name, and WebSocket upgrades
 * whose Origin is not a loopback page, are refused (a web page elsewhere cannot read the
 * cluster's internals through a browser on this machine, nor feed it events).
 */
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';
import type { InspectBatch, InspectEvent } from '../../protocol/index.ts';
import { CLIENTS, ClusterModel, isInspectEvent, type ModelDump } from './model.ts';

/** The default port of `ensemble inspect`. */
export const INSPECT_PORT = 4280;

/** How often pages get the server's time (and the model its tick). */
const TICK_MS = 250;
/** A page or WebSocket client this far behind is dropped (a page reconnects and starts over). */
const MAX_BUFFERED = 8 * 1024 * 1024;
const RELAY_RETRY_MS = 2000;

/** What the page receives on `/events`. */
export type PageMessage =
  | { readonly t: 'hello'; readonly now: number; readonly cluster: string | null; readonly dump: ModelDump }
  | { readonly t: 'batch'; readonly now: number; readonly batch: InspectBatch }
  | { readonly t: 'event'; readonly now: number; readonly origin: string; readonly event: InspectEvent }
  | { readonly t: 'tick'; readonly now: number };

export interface InspectServerOptions {
  /** Default `INSPECT_PORT`; 0: any free port. */
  readonly port?: number;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Where index.html and app.js are (default: `dist/inspect/` of this package). */
  readonly pageDir?: string;
  /** A `createInspectorServer` relay to forward every event to (`ws://host:port`). */
  readonly stately?: string;
  /** The cluster's name, shown on the page. */
  readonly cluster?: string;
  readonly log?: (line: string) => void;
  /** The clock (ms since the epoch); default `Date.now`. */
  readonly now?: () => number;
}

export interface InspectServer extends AsyncDisposable {
  /** `http://127.0.0.1:<port>/`. */
  readonly url: string;
  readonly port: number;
  readonly model: ClusterModel;
  /** Feeds one node batch (from `P.inspect.<node>`) to the model, the pages and the relays. */
  batch(batch: InspectBatch): void;
  /** Open pages (`/events`) and WebSocket clients. */
  connections(): { readonly pages: number; readonly sockets: number };
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};
const ASSETS = new Set(['index.html', 'app.js', 'style.css']);

/** The built page: `dist/inspect` beside the bundled CLI, or of the repository when run from source. */
export function defaultPageDir(): string | null {
  for (const rel of ['./inspect/', '../../dist/inspect/']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(path.join(dir, 'index.html'))) return dir;
  }
  return null;
}

const LOOPBACK_HOST = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/i;
const LOOPBACK_ORIGIN = /^https?:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/i;

export async function startInspectServer(o: InspectServerOptions = {}): Promise<InspectServer> {
  const now = o.now ?? Date.now;
  const log = o.log ?? (() => {});
  const model = new ClusterModel();
  const pageDir = o.pageDir ?? defaultPageDir();
  const pages = new Set<http.ServerResponse>();
  const cache = new Map<string, Buffer>();

  const asset = (name: string): Buffer | null => {
    if (pageDir === null || !ASSETS.has(name)) return null;
    let b = cache.get(name);
    if (b === undefined) {
      const file = path.join(pageDir, name);
      if (!existsSync(file)) return null;
      b = readFileSync(file);
      cache.set(name, b);
    }
    return b;
  };

  const toPages = (m: PageMessage): void => {
    const line = `data: ${JSON.stringify(m)}\n\n`;
    for (const res of pages) {
      if (res.writableLength > MAX_BUFFERED) res.destroy();
      else res.write(line);
    }
  };

  const server = http.createServer((req, res) => {
    if (!LOOPBACK_HOST.test(req.headers.host ?? '')) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('loopback only\n');
      return;
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    if (url.pathname === '/events') {
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
      });
      res.write('retry: 1000\n\n');
      const hello: PageMessage = { t: 'hello', now: now(), cluster: o.cluster ?? null, dump: model.dump() };
      res.write(`data: ${JSON.stringify(hello)}\n\n`);
      pages.add(res);
      const gone = () => pages.delete(res);
      req.once('close', gone);
      res.once('close', gone);
      return;
    }
    if (url.pathname === '/state') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache' });
      res.end(JSON.stringify(model.dump()));
      return;
    }
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    const name = url.pathname === '/' ? 'index.html' : url.pathname.slice(1);
    const body = asset(name);
    if (body === null) {
      if (pageDir === null && url.pathname === '/')
        res
          .writeHead(500, { 'content-type': 'text/plain' })
          .end('the inspector page is not built: run npm run build\n');
      else res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, {
      'content-type': TYPES[path.extname(name)] ?? 'application/octet-stream',
      'cache-control': 'no-cache',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });

  /** Every known actor as `@xstate.actor` with its current snapshot (what a new receiver needs). */
  const actorEvents = (): string[] =>
    model.actors().map((a) =>
      JSON.stringify({
        type: '@xstate.actor',
        name: a.name,
        sessionId: a.sessionId,
        parentId: a.parentId ?? undefined,
        rootId: a.rootId ?? undefined,
        definition: a.definitionText ?? undefined,
        snapshot: { status: a.status, value: a.value, context: a.context },
        createdAt: String(a.updatedAt),
        id: null,
        _version: '1.0.0',
      }),
    );

  let relay: StatelyRelay | null = null;
  const wss = new WebSocketServer({
    server,
    maxPayload: 4 * 1024 * 1024,
    verifyClient: ({ req, origin }: { req: http.IncomingMessage; origin: string | undefined }) =>
      LOOPBACK_HOST.test(req.headers.host ?? '') && (!origin || LOOPBACK_ORIGIN.test(origin)),
  });
  const send = (ws: WebSocket, text: string) => {
    if (ws.readyState === WebSocket.OPEN && ws.bufferedAmount < MAX_BUFFERED) ws.send(text);
  };
  wss.on('connection', (ws) => {
    for (const e of actorEvents()) send(ws, e);
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const text = data.toString();
      let e: unknown;
      try {
        e = JSON.parse(text);
      } catch {
        return; // Stately's receivers parse whatever comes: not relayed
      }
      for (const other of wss.clients) if (other !== ws) send(other, text);
      if (!isInspectEvent(e)) return;
      const t = now();
      model.applyEvent(e, CLIENTS, t);
      toPages({ t: 'event', now: t, origin: CLIENTS, event: e });
      relay?.send(text);
    });
    ws.on('error', () => {});
  });

  const port = o.port ?? INSPECT_PORT;
  const host = o.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  if (o.stately) relay = new StatelyRelay(o.stately, actorEvents, log);
  const tick = setInterval(() => {
    const t = now();
    model.tick(t);
    toPages({ t: 'tick', now: t });
  }, TICK_MS);
  tick.unref();
  const bound = (server.address() as AddressInfo).port;
  let closed = false;

  const self: InspectServer = {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}/`,
    port: bound,
    model,
    batch(batch) {
      const t = now();
      model.applyBatch(batch, t);
      toPages({ t: 'batch', now: t, batch });
      if (batch.events.length === 0) return;
      const texts = batch.events.map((e) => JSON.stringify(e));
      for (const ws of wss.clients) for (const text of texts) send(ws, text);
      if (relay) for (const text of texts) relay.send(text);
    },
    connections: () => ({ pages: pages.size, sockets: wss.clients.size }),
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(tick);
      relay?.close();
      for (const res of pages) res.end();
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    [Symbol.asyncDispose]() {
      return self.close();
    },
  };
  return self;
}

/** A WebSocket client of a `createInspectorServer` relay that stays connected. */
class StatelyRelay {
  private ws: WebSocket | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private dropped = 0;
  private wasOpen = false;
  private warned = false;

  constructor(
    private readonly url: string,
    private readonly actors: () => string[],
    private readonly log: (line: string) => void,
  ) {
    this.connect();
  }

  send(text: string): void {
    if (this.ws?.readyState === WebSocket.OPEN && this.ws.bufferedAmount < MAX_BUFFERED) this.ws.send(text);
    else this.dropped++;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.ws?.terminate();
  }

  private connect(): void {
    if (this.closed) return;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.on('open', () => {
      this.log(
        `stately relay ${this.url}: connected${this.dropped > 0 ? ` (${this.dropped} events dropped while away)` : ''}`,
      );
      this.wasOpen = true;
      this.dropped = 0;
      for (const e of this.actors()) ws.send(e);
    });
    ws.on('message', () => {});
    ws.on('error', () => {});
    ws.on('close', () => {
      if (this.closed) return;
      if (this.wasOpen)
        this.log(`stately relay ${this.url}: disconnected; retrying every ${RELAY_RETRY_MS} ms`);
      else if (!this.warned)
        this.log(`stately relay ${this.url}: not reachable; retrying every ${RELAY_RETRY_MS} ms`);
      this.warned = true;
      this.wasOpen = false;
      this.timer = setTimeout(() => this.connect(), RELAY_RETRY_MS);
      this.timer.unref();
    });
  }
}
