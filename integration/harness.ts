/**
 * The harness of the integration tests: one NATS server (or a cluster of them) per test file,
 * started with nats.conf on free loopback ports, temp directories, NATS connections and child
 * processes that are all cleaned up at teardown.
 *
 * Contracts:
 * - Teardown closes the connections it opened, stops the processes it spawned (SIGTERM, then
 *   SIGKILL after a grace period) and the NATS servers it started, always by their own pid, then
 *   removes its temp directories (kept when `ENSEMBLE_KEEP_TMP=1`, for debugging). It is
 *   idempotent and never throws.
 * - Should the test process exit or be killed by a signal without teardown (a timed-out ava
 *   worker gets SIGTERM), every child and server it started gets SIGKILL (cluster/children.ts).
 * - `nats-server` is installed if missing (as root on Debian), see `ensureNatsServer`.
 *
 * Use it in an ava file:
 *   const h = useHarness(test);                        // or useHarness(test, { natsCluster: 3 })
 *   test('…', async (t) => { const nc = await h().connect('client'); … });
 */
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ConnectionOptions, connect, type NatsConnection } from '@nats-io/transport-node';
import type { TestFn } from 'ava';
import { adopt } from '../cluster/children.ts';
import {
  ensureNatsServer,
  type NatsCluster,
  type NatsServer,
  natsCredentials,
  startNatsCluster,
  startNatsServer,
} from '../cluster/nats-server.ts';
import { makeLocalTls, type TlsFiles } from '../cluster/tls.ts';
import { inboxPrefix, type NatsUser } from '../protocol/subjects.ts';

export interface HarnessOptions {
  /** Start this many NATS servers joined by routes instead of one (e.g. 3). */
  readonly natsCluster?: number;
  /** NATS config (default nats.conf of the repository; `null`: none, no auth). */
  readonly natsConfig?: string | null;
  /** Prefix of temp directory names (default `ensemble-test`). */
  readonly label?: string;
  /** At teardown, SIGKILL a spawned process this long after its SIGTERM (default 5000 ms). */
  readonly stopGraceMs?: number;
  /** TLS on every NATS server (clients and routes), with a local CA made for the run. */
  readonly tls?: boolean;
}

/** A child process the harness owns; stopped at teardown. */
export interface ManagedProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves when the process exited, with its code or signal. */
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>;
  /** The last 256 KiB of its stdout and stderr, interleaved. */
  output(): string;
  /** Resolves once `pattern` appears in its output; rejects on timeout or exit. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends `signal` (default SIGKILL) and resolves once it exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs` (default 5000); resolves once it exited. */
  stop(graceMs?: number): Promise<void>;
}

export interface Harness extends AsyncDisposable {
  /** Client URLs of every NATS server: give all of them to nodes and clients. */
  readonly natsUrls: readonly string[];
  /** The NATS servers (one, or the cluster's). */
  readonly natsServers: readonly NatsServer[];
  /** The NATS cluster, when started with `natsCluster`. */
  readonly natsCluster: NatsCluster | null;
  /** The CA and server certificate, when started with `tls`. */
  readonly tls: TlsFiles | null;
  /** A fresh temp directory, removed at teardown. */
  tempDir(name?: string): Promise<string>;
  /** Connection options for a nats.conf user: its credentials and its inbox prefix. */
  connectOptions(user: NatsUser, extra?: Partial<ConnectionOptions>): ConnectionOptions;
  /** Connects as a nats.conf user (default `client`); closed at teardown. */
  connect(user?: NatsUser, extra?: Partial<ConnectionOptions>): Promise<NatsConnection>;
  /** Spawns a process, stopped at teardown; stdout and stderr are captured (`output`). */
  spawn(command: string, args: readonly string[], options?: SpawnOptions): ManagedProcess;
  /** Stops and removes everything the harness started or made. Idempotent; never throws. */
  teardown(): Promise<void>;
}

const OUTPUT_CAP = 256 * 1024;

function manage(child: ChildProcess): ManagedProcess {
  if (child.pid === undefined) throw new Error('process did not start');
  const pid = child.pid;
  adopt(child);
  let out = '';
  const waiters = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    out += chunk.toString('utf8');
    if (out.length > OUTPUT_CAP) out = out.slice(out.length - OUTPUT_CAP);
    for (const w of waiters) w();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
      for (const w of waiters) w();
    });
  });
  const running = () => child.exitCode === null && child.signalCode === null;
  const proc: ManagedProcess = {
    child,
    pid,
    exited,
    output: () => out,
    waitForOutput(pattern, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(pattern);
          if (m) done(() => resolve(m));
          else if (!running())
            done(() => reject(new Error(`process ${pid} exited before ${pattern}:\n${out}`)));
        };
        const timer = setTimeout(
          () =>
            done(() => reject(new Error(`no ${pattern} from process ${pid} in ${timeoutMs} ms:\n${out}`))),
          timeoutMs,
        );
        const done = (f: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          f();
        };
        waiters.add(check);
        check();
      });
    },
    async kill(signal = 'SIGKILL') {
      if (running()) child.kill(signal);
      await exited;
    },
    async stop(graceMs = 5000) {
      if (!running()) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  return proc;
}

/** Starts NATS as asked and returns a harness; call `teardown` (or use `useHarness`). */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const binary = await ensureNatsServer();
  const label = options.label ?? 'ensemble-test';
  const dirs: string[] = [];
  const connections: NatsConnection[] = [];
  const processes: ManagedProcess[] = [];
  const config = options.natsConfig;
  let tls: TlsFiles | null = null;
  if (options.tls) {
    const dir = await mkdtemp(path.join(tmpdir(), `${label}-tls-`));
    dirs.push(dir);
    tls = await makeLocalTls(dir);
  }
  const base = { binary, ...(config === undefined ? {} : { config }), ...(tls ? { tls } : {}) };

  let natsCluster: NatsCluster | null = null;
  let servers: NatsServer[];
  if (options.natsCluster !== undefined && options.natsCluster > 1) {
    natsCluster = await startNatsCluster({ ...base, size: options.natsCluster });
    servers = [...natsCluster.servers];
  } else {
    servers = [await startNatsServer(base)];
  }
  const natsUrls = servers.map((s) => s.url);
  let tornDown = false;

  const connectOptions = (user: NatsUser, extra: Partial<ConnectionOptions> = {}): ConnectionOptions => {
    const { pass } = natsCredentials(user);
    return {
      servers: [...natsUrls],
      user,
      pass,
      inboxPrefix: inboxPrefix(user),
      name: `${label}-${user}`,
      ...(tls ? { tls: { caFile: tls.caFile } } : {}),
      ...extra,
    };
  };

  const harness: Harness = {
    natsUrls,
    natsServers: servers,
    natsCluster,
    tls,
    async tempDir(name = 'tmp') {
      const dir = await mkdtemp(path.join(tmpdir(), `${label}-${name}-`));
      dirs.push(dir);
      return dir;
    },
    connectOptions,
    async connect(user = 'client', extra = {}) {
      const nc = await connect(connectOptions(user, extra));
      connections.push(nc);
      return nc;
    },
    spawn(command, args, spawnOptions = {}) {
      const child = spawn(command, [...args], { stdio: ['ignore', 'pipe', 'pipe'], ...spawnOptions });
      const proc = manage(child);
      processes.push(proc);
      return proc;
    },
    async teardown() {
      if (tornDown) return;
      tornDown = true;
      const quietly = (p: Promise<unknown>) => p.catch(() => undefined);
      await Promise.all(connections.map((nc) => quietly(nc.close())));
      await Promise.all(processes.map((p) => quietly(p.stop(options.stopGraceMs ?? 5000))));
      await Promise.all(servers.map((s) => quietly(s.stop())));
      if (process.env.ENSEMBLE_KEEP_TMP !== '1') {
        await Promise.all(dirs.map((d) => quietly(rm(d, { recursive: true, force: true }))));
      }
    },
    [Symbol.asyncDispose]() {
      return harness.teardown();
    },
  };
  return harness;
}

/** Whether a process with this pid exists that we may signal (signal 0 probes without sending anything). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Registers `test.before` (start) and `test.after.always` (teardown) hooks on an ava test
 * function and returns a getter for the harness, valid inside tests.
 */
export function useHarness<Context = unknown>(
  test: TestFn<Context>,
  options: HarnessOptions = {},
): () => Harness {
  let current: Harness | null = null;
  test.before(async () => {
    current = await startHarness(options);
  });
  test.after.always(async () => {
    await current?.teardown();
  });
  return () => {
    if (current === null) throw new TypeError('the harness is used before test.before ran');
    return current;
  };
}
