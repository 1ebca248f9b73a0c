/**
 * Finding, installing and running `nats-server` processes: the one server `ensemble up` starts,
 * the one server each integration test file starts, and a cluster of servers joined by routes
 * (one per node, so that NATS is no single point of failure).
 *
 * Contracts:
 * - Only processes started here are ever signalled, always by their own pid. Servers still running
 *   when this process exits or dies of a signal get SIGKILL (children.ts), so a crashed or
 *   timed-out test leaves none behind.
 * - Servers listen on loopback unless given another `host` (e.g. the address of a network
 *   namespace the server runs in, through `wrapper`: integration/chaos/netns.ts). Ports not given
 *   are picked free by binding port 0 on that host (on 127.0.0.1 when run through a wrapper, whose
 *   namespace has its own ports); if another process takes a port between the pick and the
 *   server's bind, the start is retried on fresh ports.
 * - A started server accepts client connections when `startNatsServer` resolves; a cluster has
 *   all its routes up when `startNatsCluster` resolves.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type NatsExport,
  type NatsUser,
  natsAccount,
  natsExports,
  natsImports,
  natsPermissions,
  natsUsers,
} from '../protocol/index.ts';
import { adopt } from './children.ts';
import { type TlsFiles, tlsConfig } from './tls.ts';

/** `nats.conf` at the root of the repository: the config `ensemble up` and the tests start. */
export const DEFAULT_NATS_CONF = fileURLToPath(new URL('../nats.conf', import.meta.url));

/** Environment variable naming the `nats-server` binary to use instead of searching for it. */
export const NATS_SERVER_ENV = 'ENSEMBLE_NATS_SERVER';

const SEARCH_DIRS = ['/usr/sbin', '/usr/bin', '/usr/local/bin', '/usr/local/sbin'];

const INSTALL_HELP = [
  'nats-server was not found on PATH (nor in /usr/sbin, /usr/bin, /usr/local/bin).',
  'Install it, then run again:',
  '  Debian/Ubuntu:  sudo apt-get update && sudo apt-get install -y nats-server',
  '  macOS:          brew install nats-server',
  '  any system:     https://github.com/nats-io/nats-server/releases',
  '                  (or: go install github.com/nats-io/nats-server/v2@latest)',
  `or point ${NATS_SERVER_ENV} at a nats-server binary.`,
].join('\n');

async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, fsConstants.X_OK);
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

/**
 * The path of a `nats-server` binary: `$ENSEMBLE_NATS_SERVER` if set (it must be executable),
 * else the first on `PATH`, else in the usual system directories; `null` if there is none.
 */
export async function findNatsServer(
  env: NodeJS.ProcessEnv = process.env,
  systemDirs: readonly string[] = SEARCH_DIRS,
): Promise<string | null> {
  const explicit = env[NATS_SERVER_ENV];
  if (explicit) return (await isExecutable(explicit)) ? explicit : null;
  const dirs = [...(env.PATH ?? '').split(path.delimiter).filter(Boolean), ...systemDirs];
  for (const dir of dirs) {
    const file = path.join(dir, 'nats-server');
    if (await isExecutable(file)) return file;
  }
  return null;
}

export interface EnsureNatsServerOptions {
  /** Install with apt when missing, if running as root on Debian (default true). */
  readonly install?: boolean;
  /** Where progress lines go (default: stderr). */
  readonly log?: (line: string) => void;
  /** Environment to search (`PATH`, `ENSEMBLE_NATS_SERVER`; default `process.env`). */
  readonly env?: NodeJS.ProcessEnv;
  /** Directories searched after `PATH` (default /usr/sbin, /usr/bin, /usr/local/bin, /usr/local/sbin). */
  readonly systemDirs?: readonly string[];
}

const isDebian = async (): Promise<boolean> => {
  try {
    await access('/etc/debian_version');
    return true;
  } catch {
    return false;
  }
};

function run(command: string, args: readonly string[], log: (line: string) => void): Promise<void> {
  log(`$ ${command} ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      code === 0
        ? resolve()
        : reject(new Error(`${command} ${args.join(' ')} failed (${signal ?? `exit ${code}`})`)),
    );
  });
}

const LOCK_DIR = path.join(tmpdir(), 'ensemble-nats-server-install.lock');
const STALE_LOCK_MS = 15 * 60 * 1000;

/** Runs `fn` while holding a machine-wide lock, so parallel test workers install only once. */
async function withInstallLock<T>(fn: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      await mkdir(LOCK_DIR);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = await stat(LOCK_DIR).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age > STALE_LOCK_MS) await rm(LOCK_DIR, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(LOCK_DIR, { recursive: true, force: true });
  }
}

/**
 * Returns the path of `nats-server`, installing it first if it is missing and this process runs
 * as root on Debian (`apt-get update && apt-get install -y nats-server`, printed as it runs).
 * Rejects with an `Error` explaining how to install it otherwise, or if the install failed.
 * Safe to call from parallel processes: one installs, the others wait for it.
 */
export async function ensureNatsServer(options: EnsureNatsServerOptions = {}): Promise<string> {
  const env = options.env ?? process.env;
  const find = () => findNatsServer(env, options.systemDirs);
  const found = await find();
  if (found) return found;
  if (env[NATS_SERVER_ENV]) {
    throw new Error(`${NATS_SERVER_ENV}=${env[NATS_SERVER_ENV]} is not an executable file`);
  }
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const root = process.getuid?.() === 0;
  if (options.install === false || !root || !(await isDebian())) throw new Error(INSTALL_HELP);
  return withInstallLock(async () => {
    const again = await find();
    if (again) return again;
    log('ensemble: nats-server is missing; installing it with apt (running as root on Debian):');
    try {
      await run('apt-get', ['update'], log);
      await run('apt-get', ['install', '-y', '--no-install-recommends', 'nats-server'], log);
    } catch (err) {
      throw new Error(`installing nats-server with apt failed: ${(err as Error).message}\n${INSTALL_HELP}`, {
        cause: err,
      });
    }
    const installed = await find();
    if (!installed) throw new Error(`apt installed nats-server but it is not on PATH\n${INSTALL_HELP}`);
    log(`ensemble: installed ${installed}`);
    return installed;
  });
}

/** A port that was free on `host` a moment ago (bound with port 0, then released). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address !== null
          ? resolve(address.port)
          : reject(new Error('no port assigned')),
      );
    });
  });
}

/** Development passwords, used when the environment sets none. Never use them in production. */
export const DEV_PASSWORDS: Readonly<Record<NatsUser, string>> = {
  peer: 'ensemble-peer-dev',
  admin: 'ensemble-admin-dev',
  client: 'ensemble-client-dev',
  client2: 'ensemble-client2-dev',
};

/** The environment variable nats.conf reads a user's password from. */
export const passwordEnv = (user: NatsUser): string => `ENSEMBLE_${user.toUpperCase()}_PASSWORD`;

export interface NatsCredentials {
  readonly user: NatsUser;
  readonly pass: string;
}

/** The credentials of a nats.conf user: its password from the environment, or the dev default. */
export function natsCredentials(user: NatsUser, env: NodeJS.ProcessEnv = process.env): NatsCredentials {
  return { user, pass: env[passwordEnv(user)] || DEV_PASSWORDS[user] };
}

/**
 * The password of any user name: `ENSEMBLE_<USER>_PASSWORD`, else the development default of a
 * nats.conf user; undefined for another user without that variable.
 */
export function userPassword(user: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const known = (natsUsers as readonly string[]).includes(user);
  return known
    ? natsCredentials(user as NatsUser, env).pass
    : /^[A-Za-z0-9_]+$/.test(user)
      ? env[`ENSEMBLE_${user.toUpperCase()}_PASSWORD`] || undefined
      : undefined;
}

/** The environment nats.conf needs: every user's password, from `env` or the dev default. */
export function natsServerEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const user of natsUsers) out[passwordEnv(user)] = natsCredentials(user, env).pass;
  return out;
}

const quoteList = (xs: readonly string[]): string => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;

const exportLine = (e: NatsExport, account?: string): string => {
  const subject = JSON.stringify(e.subject);
  if (account !== undefined)
    return e.kind === 'service'
      ? `      { service: { account: ENSEMBLE, subject: ${subject} }, share: true }`
      : `      { stream: { account: ENSEMBLE, subject: ${subject} } }`;
  const extra = [
    ...(e.accounts ? [`accounts: ${quoteList(e.accounts).replaceAll('"', '')}`] : []),
    ...(e.responseType ? [`response_type: ${e.responseType}`] : []),
  ];
  return `      { ${e.kind}: ${subject}${extra.map((x) => `, ${x}`).join('')} }`;
};

/**
 * The `accounts` block of nats.conf, generated from the subject table (`natsExports`,
 * `natsImports`, `natsPermissions`): one account per `natsUsers` entry (the nodes in `ENSEMBLE`),
 * passwords from `$ENSEMBLE_<USER>_PASSWORD`. nats.conf holds this text verbatim; a test keeps the
 * two equal.
 */
export function renderAccounts(): string {
  const blocks = natsUsers.map((user) => {
    const p = natsPermissions(user);
    const account = natsAccount(user);
    const ports =
      user === 'peer'
        ? ['    exports: [', ...natsExports().map((e) => exportLine(e)), '    ]']
        : ['    imports: [', ...natsImports(user).map((e) => exportLine(e, account)), '    ]'];
    return [
      `  ${account}: {`,
      '    users: [',
      '      {',
      `        user: ${user}`,
      `        password: $${passwordEnv(user)}`,
      '        permissions: {',
      `          publish: { allow: ${quoteList(p.publish)} }`,
      `          subscribe: { allow: ${quoteList(p.subscribe)} }`,
      ...(p.allowResponses ? ['          allow_responses: true'] : []),
      '        }',
      '      }',
      '    ]',
      ...ports,
      '  }',
    ].join('\n');
  });
  return ['accounts {', ...blocks, '}'].join('\n');
}

export interface NatsRouteOptions {
  /** Cluster name; every server of one cluster must use the same (default `ensemble`). */
  readonly name?: string;
  /** Port for routes from other servers (default: a free port). */
  readonly port?: number;
  /** Route URLs of the other servers (`nats://<host>:port`). */
  readonly routes?: readonly string[];
}

export interface NatsServerOptions {
  /**
   * The address the server listens on for clients, routes and monitoring (default 127.0.0.1). The
   * readiness check and the URLs returned connect to it (to 127.0.0.1 when it is 0.0.0.0).
   */
  readonly host?: string;
  /**
   * A command prefix the server is spawned through, e.g. `['ip', 'netns', 'exec', ns]` to run it in
   * a network namespace (the wrapper must exec the server, so that its pid is the server's). Kept
   * by `restart`.
   */
  readonly wrapper?: readonly string[];
  /** Client port on `host` (default: a free port). */
  readonly port?: number;
  /**
   * HTTP monitoring port on `host`. Default: none for a single server (its /connz would list
   * every connection's subscriptions to any local user), a free port for a server of a cluster
   * (route readiness is read from /routez).
   */
  readonly monitorPort?: number;
  /** Config file (default: nats.conf of this repository); `null` runs without one (no auth). */
  readonly config?: string | null;
  /** Join a NATS cluster through routes. */
  readonly cluster?: NatsRouteOptions;
  /** Directory for the server's log file (default: a fresh temp directory, removed on stop). */
  readonly dir?: string;
  /** Extra environment for the server; user passwords default as in `natsServerEnv`. */
  readonly env?: Readonly<Record<string, string>>;
  /** Milliseconds to wait until the server accepts connections (default 15000). */
  readonly startTimeoutMs?: number;
  /** Binary to run (default: `ensureNatsServer()`). */
  readonly binary?: string;
  /** TLS on client connections (and routes, in a cluster): every client then needs the CA. */
  readonly tls?: TlsFiles;
}

export interface NatsServer extends AsyncDisposable {
  /** `nats://<host>:<port>` (host 127.0.0.1 by default). */
  readonly url: string;
  /** Every client URL of this server (one). For a cluster, see `NatsCluster.urls`. */
  readonly urls: readonly string[];
  readonly port: number;
  /** `http://<host>:<port>`, or `null` without monitoring. */
  readonly monitorUrl: string | null;
  /** Route URL other servers join through, when started with `cluster`. */
  readonly routeUrl: string | null;
  /** Pid of the current process (changes on `restart`); `null` once stopped. */
  readonly pid: number | null;
  /** The log file (kept until `stop` removes its temp directory). */
  readonly logFile: string;
  /**
   * Stops the server with SIGTERM, then SIGKILL after `graceMs` (default 5000); resolves once
   * it exited. Removes the temp directory it created. Idempotent.
   */
  stop(graceMs?: number): Promise<void>;
  /** Kills the process abruptly (default SIGKILL) and resolves once it exited; `restart` revives it. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts a new process with the same ports and config (after `kill`, or stopping it first). */
  restart(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves once a TCP connection to `port` receives the server's `INFO` greeting. */
function greets(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let data = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
      if (data.length >= 5) done(data.startsWith('INFO '));
    });
  });
}

async function readTail(file: string, bytes = 4000): Promise<string> {
  try {
    const handle = await open(file, 'r');
    try {
      const { size } = await handle.stat();
      const start = Math.max(0, size - bytes);
      const buf = Buffer.alloc(size - start);
      await handle.read(buf, 0, buf.length, start);
      return buf.toString('utf8');
    } finally {
      await handle.close();
    }
  } catch {
    return '';
  }
}

class PortTakenError extends Error {}

interface Launch {
  readonly binary: string;
  readonly wrapper: readonly string[];
  /** Where the readiness check connects. */
  readonly host: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly logFile: string;
  readonly port: number;
  readonly timeoutMs: number;
}

/** Spawns one server process and waits until it greets; kills it again if it does not. */
async function launch(l: Launch): Promise<{ child: ChildProcess; exited: Promise<void> }> {
  const log = await open(l.logFile, 'a');
  let child: ChildProcess;
  try {
    const [command, ...prefix] = [...l.wrapper, l.binary];
    child = spawn(command as string, [...prefix, ...l.args], {
      stdio: ['ignore', log.fd, log.fd],
      env: l.env,
    });
  } finally {
    await log.close();
  }
  const pid = child.pid;
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  let spawnError: Error | null = null;
  child.once('error', (err) => {
    spawnError = err;
  });
  if (pid === undefined) {
    await exited;
    throw new Error(`cannot start ${l.binary}: ${spawnError ?? 'no pid'}`);
  }
  adopt(child);
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const deadline = performance.now() + l.timeoutMs;
  while (!gone) {
    if (await greets(l.host, l.port)) return { child, exited };
    if (performance.now() > deadline) break;
    await sleep(gone ? 0 : 50);
  }
  const tail = await readTail(l.logFile);
  if (!gone) {
    child.kill('SIGKILL');
    await exited;
    throw new Error(
      `nats-server did not accept connections on ${l.host}:${l.port} within ${l.timeoutMs} ms\n${tail}`,
    );
  }
  if (/address already in use/i.test(tail)) throw new PortTakenError(tail);
  throw new Error(`nats-server exited at start (${child.exitCode ?? child.signalCode}):\n${tail}`);
}

/** `host` as it goes in a URL: IPv6 literals in brackets. */
const urlHost = (host: string): string => (host.includes(':') ? `[${host}]` : host);

/** Where to connect to reach a server listening on `host` (loopback for a wildcard address). */
const reachableHost = (host: string): string =>
  host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;

/**
 * Starts `nats-server` on loopback, or on `host` (with `nats.conf` unless `config` says otherwise)
 * and resolves once it accepts connections. The command-line flags for host, ports and routes
 * override the config file, so one config serves a single server and every server of a cluster.
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const binary = options.binary ?? (await ensureNatsServer());
  const config = options.config === undefined ? DEFAULT_NATS_CONF : options.config;
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(path.join(tmpdir(), 'ensemble-nats-')));
  const env = { ...process.env, ...natsServerEnv(), ...options.env };
  const timeoutMs = options.startTimeoutMs ?? 15_000;
  const host = (options.host ?? '127.0.0.1').replace(/^\[(.*)\]$/, '$1');
  const wrapper = options.wrapper ?? [];
  const reach = reachableHost(host);
  // Ports through a wrapper are in the wrapper's (network namespace's) space: pick them on loopback.
  const pick = () => freePort(wrapper.length > 0 ? '127.0.0.1' : reach);
  const logFile = path.join(dir, `nats-server-${process.pid}-${Math.floor(performance.now())}.log`);
  let configFile = config;
  if (options.tls) {
    configFile = path.join(dir, `nats-tls-${process.pid}-${Math.floor(performance.now())}.conf`);
    const base = config === null ? null : await readFile(config, 'utf8');
    await writeFile(configFile, tlsConfig(base, options.tls, options.cluster !== undefined));
  }

  for (let attempt = 0; ; attempt++) {
    const port = options.port ?? (await pick());
    const monitorPort = options.monitorPort ?? (options.cluster ? await pick() : null);
    const routePort = options.cluster ? (options.cluster.port ?? (await pick())) : null;
    const args = ['-a', host, '-p', String(port)];
    if (monitorPort !== null) args.push('-m', String(monitorPort));
    if (configFile !== null) args.unshift('-c', configFile);
    if (options.cluster) {
      args.push('--cluster_name', options.cluster.name ?? 'ensemble');
      args.push('--cluster', `nats://${urlHost(host)}:${routePort}`);
      const routes = options.cluster.routes ?? [];
      if (routes.length > 0) args.push('--routes', routes.join(','));
    }
    const l: Launch = { binary, wrapper, host: reach, args, env, logFile, port, timeoutMs };
    let current: { child: ChildProcess; exited: Promise<void> } | null;
    try {
      current = await launch(l);
    } catch (err) {
      // Retry on fresh ports only if the port taken was one picked here, not one asked for.
      const asked = [options.port, options.monitorPort, options.cluster?.port].filter((p) => p !== undefined);
      const askedTaken = err instanceof PortTakenError && asked.some((p) => err.message.includes(`:${p}`));
      if (err instanceof PortTakenError && !askedTaken && attempt < 4) continue;
      if (ownDir) await rm(dir, { recursive: true, force: true });
      throw err instanceof PortTakenError ? new Error(`nats-server: port in use:\n${err.message}`) : err;
    }
    let stopped = false;
    const url = `nats://${urlHost(reach)}:${port}`;
    const terminate = async (signal: NodeJS.Signals, graceMs: number) => {
      const c = current;
      if (c === null) return;
      if (c.child.exitCode === null && c.child.signalCode === null) {
        c.child.kill(signal);
        const timer = setTimeout(() => c.child.kill('SIGKILL'), graceMs);
        await c.exited;
        clearTimeout(timer);
      }
      current = null;
    };
    const server: NatsServer = {
      url,
      urls: [url],
      port,
      monitorUrl: monitorPort === null ? null : `http://${urlHost(reach)}:${monitorPort}`,
      routeUrl: routePort === null ? null : `nats://${urlHost(reach)}:${routePort}`,
      logFile,
      get pid() {
        return current?.child.pid ?? null;
      },
      async stop(graceMs = 5000) {
        if (stopped) return;
        stopped = true;
        await terminate('SIGTERM', graceMs);
        if (ownDir) await rm(dir, { recursive: true, force: true });
      },
      async kill(signal = 'SIGKILL') {
        await terminate(signal, 2000);
      },
      async restart() {
        if (stopped) throw new TypeError('restart after stop');
        await terminate('SIGTERM', 5000);
        current = await launch(l);
      },
      [Symbol.asyncDispose]() {
        return server.stop();
      },
    };
    return server;
  }
}

export interface NatsClusterOptions
  extends Omit<NatsServerOptions, 'port' | 'monitorPort' | 'cluster' | 'dir'> {
  /** Number of servers (default 3, or the length of `servers`). */
  readonly size?: number;
  /**
   * Where each server runs, by index: its listen `host` and spawn `wrapper` (e.g. one network
   * namespace each). Servers without an entry take `host` and `wrapper` of these options.
   */
  readonly servers?: readonly Pick<NatsServerOptions, 'host' | 'wrapper'>[];
  /** Cluster name (default `ensemble`). */
  readonly name?: string;
}

export interface NatsCluster extends AsyncDisposable {
  readonly servers: readonly NatsServer[];
  /** Every server's client URL: give all of them to nodes and clients. */
  readonly urls: readonly string[];
  /** Resolves once every running server has a route to every other running server. */
  waitForRoutes(timeoutMs?: number): Promise<void>;
  /** Stops every server. Idempotent. */
  stop(): Promise<void>;
}

async function routeCount(monitorUrl: string | null): Promise<number> {
  if (monitorUrl === null) return -1;
  try {
    const res = await fetch(`${monitorUrl}/routez`, { signal: AbortSignal.timeout(1000) });
    const body = (await res.json()) as { num_routes?: number };
    return body.num_routes ?? 0;
  } catch {
    return -1;
  }
}

/**
 * Starts `size` servers on loopback (or where `servers` says), each with a client port and a route
 * port, each given the route URLs of all the others; resolves once the full mesh of routes is up.
 */
export async function startNatsCluster(options: NatsClusterOptions = {}): Promise<NatsCluster> {
  const size = options.size ?? options.servers?.length ?? 3;
  if (!Number.isInteger(size) || size < 1) throw new TypeError('size must be a positive integer');
  const binary = options.binary ?? (await ensureNatsServer());
  const placement = Array.from({ length: size }, (_, i) => ({
    host: (options.servers?.[i]?.host ?? options.host ?? '127.0.0.1').replace(/^\[(.*)\]$/, '$1'),
    wrapper: options.servers?.[i]?.wrapper ?? options.wrapper ?? [],
  }));
  const routePorts: number[] = [];
  for (const { host, wrapper } of placement) {
    routePorts.push(await freePort(wrapper.length > 0 ? '127.0.0.1' : reachableHost(host)));
  }
  const routeUrls = routePorts.map((p, i) => `nats://${urlHost(reachableHost(placement[i]!.host))}:${p}`);
  const servers: NatsServer[] = [];
  try {
    for (let i = 0; i < size; i++) {
      servers.push(
        await startNatsServer({
          ...options,
          ...placement[i],
          binary,
          cluster: {
            name: options.name ?? 'ensemble',
            port: routePorts[i],
            routes: routeUrls.filter((_, j) => j !== i),
          },
        }),
      );
    }
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()));
    throw err;
  }
  const cluster: NatsCluster = {
    servers,
    urls: servers.map((s) => s.url),
    async waitForRoutes(timeoutMs = 15_000) {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const live = servers.filter((s) => s.pid !== null);
        const counts = await Promise.all(live.map((s) => routeCount(s.monitorUrl)));
        if (counts.every((n) => n >= live.length - 1)) return;
        if (performance.now() > deadline) {
          throw new Error(
            `NATS routes not up within ${timeoutMs} ms (routes per server: ${counts.join(', ')})`,
          );
        }
        await sleep(50);
      }
    },
    async stop() {
      await Promise.all(servers.map((s) => s.stop()));
    },
    [Symbol.asyncDispose]() {
      return cluster.stop();
    },
  };
  try {
    await cluster.waitForRoutes(options.startTimeoutMs);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
