/**
 * `ensemble up`: a local cluster on this machine. Finds nats-server (installing it with apt when
 * missing and running as root on Debian, saying so; otherwise explaining how), starts it with
 * nats.conf (or 3 servers joined by routes), starts the node processes with data under
 * `./data`, waits for a leader, prints where everything is, and stops all of it on Ctrl-C.
 * With `--inspect`, the nodes publish their inspection streams from the start and this process
 * serves the inspector page (cluster/inspect/run.ts, as `ensemble inspect` does).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { type Client, connect } from '../client/index.ts';
import { natsUsers } from '../protocol/index.ts';
import { wholeArg } from './args.ts';
import { stopChildren } from './children.ts';
import { type Inspection, startInspection } from './inspect/run.ts';
import {
  DEV_PASSWORDS,
  ensureNatsServer,
  freePort,
  type NatsServer,
  natsCredentials,
  passwordEnv,
  startNatsCluster,
  startNatsServer,
} from './nats-server.ts';
import { nodeArgs, nodeEnv } from './node-command.ts';
import { makeLocalTls } from './tls.ts';
import { CONNECTION_FILE, type ConnectionDetails } from './up-file.ts';

export interface UpArgs {
  nodes?: string | number;
  data?: string;
  cluster?: string;
  port?: string | number;
  natsCluster?: boolean;
  json?: boolean;
  /** Start the nodes with --chaos (the admin subject that stops actors). */
  chaos?: boolean;
  /** TLS on NATS (clients and routes), with a local CA and certificate in `<data>/tls`. */
  tls?: boolean;
  /** Start the nodes with --inspect and serve the inspector page in this process. */
  inspect?: boolean;
  /** The inspector page's port (default 4280, else any free one). */
  inspectPort?: string | number;
}

const RESTART_FIRST_MS = 1000;
const RESTART_MAX_MS = 30_000;
const RESTART_RESET_MS = 60_000;

async function portFree(port: number): Promise<boolean> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

export async function runUp(a: UpArgs): Promise<void> {
  const n = Number(a.nodes ?? 3);
  if (!Number.isInteger(n) || n < 1 || n > 9) throw new TypeError('--nodes takes 1 to 9');
  const inspectPort = wholeArg('--inspect-port', a.inspectPort, 0);
  if (inspectPort !== undefined && inspectPort > 65535)
    throw new TypeError('--inspect-port takes 0 to 65535');
  const cluster = a.cluster ?? 'dev';
  const dataRoot = path.resolve(a.data ?? 'data');
  const say = (line: string) => {
    if (!a.json) console.log(line);
  };
  say('ensemble up: looking for nats-server…');
  const binary = await ensureNatsServer({ log: say });
  let wanted = Number(a.port ?? 4222);
  if (!(await portFree(wanted))) {
    const other = await freePort();
    say(`port ${wanted} is taken: NATS listens on ${other} instead`);
    wanted = other;
  }
  const tls = a.tls ? await makeLocalTls(path.join(dataRoot, 'tls')) : null;
  if (tls) say(`TLS: CA ${tls.caFile} (clients connect with --tls-ca ${tls.caFile})`);
  const servers: NatsServer[] = [];
  let urls: string[];
  let stopNats: () => Promise<void>;
  if (a.natsCluster) {
    const c = await startNatsCluster({ binary, size: 3, ...(tls ? { tls } : {}) });
    servers.push(...c.servers);
    urls = [...c.urls];
    stopNats = () => c.stop();
  } else {
    const s = await startNatsServer({ binary, port: wanted, ...(tls ? { tls } : {}) });
    servers.push(s);
    urls = [s.url];
    stopNats = () => s.stop();
  }
  say(`NATS: ${urls.join(', ')}`);

  const devDefaults = natsUsers.filter((u) => natsCredentials(u).pass === DEV_PASSWORDS[u]);
  if (devDefaults.length > 0)
    console.error(
      `warning: NATS users ${devDefaults.join(', ')} use the public development passwords; set ${devDefaults.map(passwordEnv).join(', ')} for anything but a local trial`,
    );

  const ids = Array.from({ length: n }, (_, i) => `n${i + 1}`);
  // The inspector listens before the nodes start, so it sees every actor they spawn.
  let inspection: Inspection | null = null;
  if (a.inspect) {
    try {
      inspection = await startInspection({
        servers: urls,
        cluster,
        user: 'admin',
        pass: natsCredentials('admin').pass,
        ...(tls ? { tls: { caFile: tls.caFile } } : {}),
        port: inspectPort,
        members: ids,
        log: (line) => say(`inspect: ${line}`),
      });
    } catch (err) {
      await stopNats();
      throw err;
    }
    if (inspection.movedFrom !== null)
      say(
        `port ${inspection.movedFrom} is taken: the inspector listens on ${inspection.server.port} instead`,
      );
    say(`inspector: ${inspection.server.url}`);
  }
  const current = new Map<string, ChildProcess>();
  const httpPorts: number[] = [];
  let stopping = false;
  for (const id of ids) {
    const dir = path.join(dataRoot, id);
    mkdirSync(dir, { recursive: true });
    const httpPort = await freePort();
    httpPorts.push(httpPort);
    const args = nodeArgs({
      id,
      data: dir,
      nats: urls,
      cluster,
      initialCluster: ids,
      flags: [
        '--http-port',
        String(httpPort),
        ...(a.chaos ? ['--chaos'] : []),
        ...(a.inspect ? ['--inspect'] : []),
        ...(tls ? ['--tls-ca', tls.caFile] : []),
      ],
    });
    // Crash-only nodes: one that exits is started again from its data directory, after a pause
    // that doubles while it keeps failing (up to 30 s) and starts over once it ran a minute.
    let backoff = RESTART_FIRST_MS;
    const start = (): void => {
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: nodeEnv() });
      const startedAt = performance.now();
      // Node log lines carry their node id already.
      child.stdout?.on('data', (d: Buffer) => {
        if (!a.json) process.stdout.write(d);
      });
      child.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
      current.set(id, child);
      child.once('exit', (code, signal) => {
        if (stopping) return;
        if (performance.now() - startedAt > RESTART_RESET_MS) backoff = RESTART_FIRST_MS;
        console.error(
          `node ${id} exited (${signal ?? `code ${code}`}); restarting it in ${(backoff / 1000).toFixed(1)} s`,
        );
        setTimeout(() => {
          if (!stopping) start();
        }, backoff);
        backoff = Math.min(RESTART_MAX_MS, backoff * 2);
      });
    };
    start();
  }

  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('\nstopping nodes and NATS…');
    rmSync(path.join(dataRoot, CONNECTION_FILE), { force: true });
    await inspection?.stop();
    await stopChildren([...current.values()]);
    await stopNats();
    say('stopped.');
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));

  say('waiting for a leader…');
  const client = await connect({
    servers: urls,
    cluster,
    user: 'admin',
    pass: natsCredentials('admin').pass,
    session: false,
    timeoutMs: 30_000,
    ...(tls ? { tls: { caFile: tls.caFile } } : {}),
  });
  let leader: string | null = null;
  const deadline = performance.now() + 60_000;
  while (leader === null && performance.now() < deadline) {
    try {
      const s = await client.status();
      leader = s.leader;
    } catch {
      // not up yet
    }
    if (leader === null) await new Promise((r) => setTimeout(r, 200));
  }
  // A new cluster grants nothing (as etcd with auth on): the development set-up lets the two
  // application users read and write every key, once, so the quick start works as it is.
  let granted: string[] = [];
  if (leader !== null) {
    try {
      granted = await devGrants(client);
    } catch (err) {
      console.error(`warning: could not set the development grants: ${(err as Error).message}`);
    }
  }
  await client.close();
  if (leader === null) {
    console.error('no leader within 60 s');
    return stopAll(1);
  }
  if (granted.length > 0)
    say(`no grants yet: ${granted.join(' and ')} may read and write every key (ensemble auth list / revoke)`);
  const info = {
    cluster,
    nats: urls,
    ...(tls ? { tlsCa: tls.caFile } : {}),
    leader,
    ...(inspection ? { inspect: inspection.server.url } : {}),
    nodes: ids.map((id, i) => ({
      id,
      pid: current.get(id)?.pid,
      data: path.join(dataRoot, id),
      metrics: `http://127.0.0.1:${httpPorts[i]}/metrics`,
      health: `http://127.0.0.1:${httpPorts[i]}/health`,
    })),
  };
  const details: ConnectionDetails = { nats: urls, cluster, ...(tls ? { tlsCa: tls.caFile } : {}) };
  writeFileSync(path.join(dataRoot, CONNECTION_FILE), `${JSON.stringify(details)}\n`);
  if (a.json) {
    console.log(JSON.stringify(info));
  } else {
    console.log(`\nEnsemble cluster "${cluster}" is up; leader ${leader}.`);
    for (const nd of info.nodes) console.log(`  ${nd.id}  pid ${nd.pid}  data ${nd.data}  ${nd.metrics}`);
    const nats = urls.join(',');
    // The CLI finds the connection details in ./data/connection.json; elsewhere it needs flags.
    const flags =
      dataRoot === path.resolve('data')
        ? ''
        : `${nats === 'nats://127.0.0.1:4222' ? '' : ` --nats ${nats}`}${cluster === 'dev' ? '' : ` --cluster ${cluster}`}${tls ? ` --tls-ca ${path.relative(process.cwd(), tls.caFile)}` : ''}`;
    console.log(`\nTry:  npm run ensemble -- put /hello world${flags}`);
    console.log(`      npm run ensemble -- get /hello${flags}`);
    console.log(`      npm run ensemble -- status${flags}`);
    if (inspection) console.log(`Inspector: ${inspection.server.url}  (every node's machines, live)`);
    console.log('Ctrl-C stops everything.');
  }
}

/** Users the development set-up lets read and write every key when a cluster has no grant yet. */
export const DEV_GRANTS = ['client', 'client2'] as const;

/** Grants `DEV_GRANTS` all of `/` if the cluster has no grant at all; returns whom it granted. */
export async function devGrants(admin: Client): Promise<string[]> {
  const { grants } = await admin.authList();
  if (grants.length > 0) return [];
  for (const user of DEV_GRANTS) await admin.authGrant(user, '/');
  return [...DEV_GRANTS];
}
