/**
 * `ensemble inspect` and the inspector of `ensemble up --inspect`: an admin NATS connection, the
 * lease keeper and subscriber (inspector.ts) and the local server of the page (server.ts), wired
 * together. Members are learnt from the cluster's status (voters and learners) every round, and
 * from whoever publishes.
 */
import { spawn } from 'node:child_process';
import { platform } from 'node:os';
import { connect as natsConnect } from '@nats-io/transport-node';
import { type Client, connect } from '../../client/index.ts';
import { inboxPrefix, subjects as subjectTable } from '../../protocol/index.ts';
import { inspectControl } from './control.ts';
import { Inspector } from './inspector.ts';
import type { TimelineEntry } from './model.ts';
import { INSPECT_PORT, type InspectServer, startInspectServer } from './server.ts';

export interface InspectionOptions {
  readonly servers: readonly string[];
  readonly cluster: string;
  /** The admin user and its password. */
  readonly user: string;
  readonly pass?: string | undefined;
  readonly tls?: { caFile?: string; certFile?: string; keyFile?: string } | undefined;
  /** The page's port; undefined: `INSPECT_PORT`, or any free port when that one is taken. */
  readonly port?: number | undefined;
  /** A `createInspectorServer` relay to forward every event to. */
  readonly stately?: string | undefined;
  /** Members known from the start (`up` knows them). */
  readonly members?: readonly string[];
  readonly log?: (line: string) => void;
}

export interface Inspection extends AsyncDisposable {
  readonly server: InspectServer;
  readonly inspector: Inspector;
  /** The port asked for was taken and another was used. */
  readonly movedFrom: number | null;
  stop(): Promise<void>;
}

/** Connects, serves the page and keeps every member's inspection on until `stop`. */
export async function startInspection(o: InspectionOptions): Promise<Inspection> {
  if (o.port !== undefined && !(Number.isInteger(o.port) && o.port >= 0 && o.port <= 65535))
    throw new TypeError(`the inspector's port takes 0 to 65535, not ${o.port}`);
  const log = o.log ?? (() => {});
  const nc = await natsConnect({
    servers: [...o.servers],
    user: o.user,
    ...(o.pass ? { pass: o.pass } : {}),
    ...(o.tls ? { tls: { ...o.tls } } : {}),
    inboxPrefix: inboxPrefix(o.user),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    name: `ensemble-inspect-${o.cluster}`,
  });
  let client: Client | null = null;
  let server: InspectServer | null = null;
  try {
    client = await connect({ nats: nc, cluster: o.cluster, user: o.user, session: false, timeoutMs: 2000 });
    let movedFrom: number | null = null;
    try {
      server = await startInspectServer({
        port: o.port ?? INSPECT_PORT,
        cluster: o.cluster,
        log,
        ...(o.stately ? { stately: o.stately } : {}),
      });
    } catch (err) {
      if (o.port !== undefined || (err as { code?: string }).code !== 'EADDRINUSE') throw err;
      movedFrom = INSPECT_PORT;
      server = await startInspectServer({
        port: 0,
        cluster: o.cluster,
        log,
        ...(o.stately ? { stately: o.stately } : {}),
      });
    }
    const s = server;
    const c = client;
    const inspector = new Inspector({
      nc,
      subjects: subjectTable({ cluster: o.cluster }),
      control: inspectControl,
      sink: (b) => s.batch(b),
      members: o.members ?? [],
      discover: async () => {
        const st = await c.status();
        return [...st.members.voters, ...st.members.learners];
      },
      log,
    });
    inspector.start();
    let stopped: Promise<void> | null = null;
    const self: Inspection = {
      server: s,
      inspector,
      movedFrom,
      stop() {
        stopped ??= (async () => {
          await inspector.stop();
          await s.close();
          await c.close().catch(() => {});
          await nc.close().catch(() => {});
        })();
        return stopped;
      },
      [Symbol.asyncDispose]() {
        return self.stop();
      },
    };
    return self;
  } catch (err) {
    await server?.close();
    await client?.close().catch(() => {});
    await nc.close().catch(() => {});
    throw err;
  }
}

export interface InspectCommand extends InspectionOptions {
  /** Open the page in a browser. */
  readonly open?: boolean;
  /** Print `{"url"}` once ready and nothing else on stdout. */
  readonly json?: boolean;
}

/** Timeline entries worth a line in the terminal while `ensemble inspect` runs. */
const SAID: ReadonlySet<TimelineEntry['kind']> = new Set(['leader', 'dark', 'back', 'restart']);

/** `ensemble inspect`: runs until SIGINT or SIGTERM, then exits 0. */
export async function runInspect(o: InspectCommand): Promise<void> {
  const say = (line: string) => {
    if (!o.json) console.log(line);
  };
  const time = () => new Date().toISOString().slice(11, 19);
  const inspection = await startInspection({ ...o, log: (line) => say(`${time()} ${line}`) });
  const { server } = inspection;
  server.model.onEntry = (e) => {
    if (SAID.has(e.kind)) say(`${time()} ${e.text}`);
  };
  if (o.json) console.log(JSON.stringify({ url: server.url }));
  else {
    if (inspection.movedFrom !== null)
      console.log(`port ${inspection.movedFrom} is taken: the inspector listens on ${server.port} instead`);
    console.log(`Ensemble inspector for cluster "${o.cluster}": ${server.url}`);
    console.log(`  Stately tools: createWebSocketInspector({ url: 'ws://127.0.0.1:${server.port}' })`);
    console.log('Ctrl-C stops it.');
  }
  if (o.open) openBrowser(server.url);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await inspection.stop();
  process.exit(0);
}

/** Opens `url` with the desktop's opener; a failure only says so. */
export function openBrowser(url: string): void {
  const cmd = platform() === 'darwin' ? 'open' : platform() === 'win32' ? 'explorer' : 'xdg-open';
  try {
    const child = spawn(cmd, [url], { stdio: 'ignore', detached: true });
    child.on('error', () => console.error(`could not open a browser (${cmd}): open ${url} yourself`));
    child.unref();
  } catch {
    console.error(`could not open a browser: open ${url} yourself`);
  }
}
