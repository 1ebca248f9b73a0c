/**
 * Process and temp-dir bookkeeping for `npm run bench`: every process the benchmark starts is
 * registered here by pid and stopped by that pid (SIGTERM, then SIGKILL) when its system is done,
 * on failure, on Ctrl-C (SIGINT), SIGTERM and SIGHUP, and, as a last resort, by SIGKILL in the
 * `exit` hook. Temp dirs registered here are removed the same way. Also: Debian packages installed
 * with apt when missing (as root on Debian), per-pid CPU and RSS from /proc, time bounds.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { adopt, stopChildren } from '../../cluster/children.ts';

export const progress = (line: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
};

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Rejects with `what timed out after …` when `promise` takes longer than `ms`. */
export async function bounded<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${Math.round(ms / 1000)} s`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Retries `fn` every `everyMs` until it resolves, or rethrows its last error after `ms`. */
export async function retryUntil<T>(fn: () => Promise<T>, ms: number, everyMs = 200): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (performance.now() > deadline) throw err;
      await sleep(everyMs);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Processes and temp dirs.

/** Pids of processes started through other code (bench/lib.ts) that must not outlive the bench. */
const foreignPids = new Set<number>();
const children = new Set<ChildProcess>();
const dirs = new Set<string>();
/** Async stops (a system's `close`), run first on a signal or an abort. */
const stops = new Set<() => Promise<void>>();

function killAllNow(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  for (const pid of foreignPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}

/** Runs every registered stop (bounded), then kills what is left and removes the temp dirs. */
export async function cleanupAll(): Promise<void> {
  await Promise.all(
    [...stops].map((s) => bounded(s(), 20_000, 'stopping a system').catch((e) => progress(String(e)))),
  );
  stops.clear();
  await stopChildren([...children], 3000);
  killAllNow();
  foreignPids.clear();
  dirs.clear();
}

let installed = false;
let aborting = false;

/** True once a signal (or the time bound) began stopping everything: start nothing new. */
export const isAborting = (): boolean => aborting;

/**
 * Ctrl-C, SIGTERM and SIGHUP stop every registered process, remove the dirs, call `beforeExit`
 * (e.g. to save partial results) and exit; the `exit` hook kills whatever is still registered.
 */
export function installCleanup(beforeExit: () => void = () => {}): void {
  if (installed) return;
  installed = true;
  process.on('exit', killAllNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (aborting) return;
      aborting = true;
      progress(`${signal}: stopping every process the benchmark started`);
      const force = setTimeout(() => {
        killAllNow();
        process.exit(130);
      }, 25_000);
      force.unref();
      void cleanupAll()
        .then(beforeExit)
        .catch((err) => progress(String(err)))
        .finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    });
  }
}

/** Marks the run as stopping (the time bound), as a signal does. */
export function abort(): void {
  aborting = true;
}

/** Registers `stop` to run on a signal or abort; the returned function unregisters it. */
export function onCleanup(stop: () => Promise<void>): () => void {
  stops.add(stop);
  return () => stops.delete(stop);
}

export function registerPid(pid: number): void {
  foreignPids.add(pid);
}

export function unregisterPid(pid: number): void {
  foreignPids.delete(pid);
}

/** A fresh temp dir (on disk, under the OS temp dir), removed by `removeDir` or at exit. */
export async function tempDir(prefix: string): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), prefix));
  dirs.add(d);
  return d;
}

export async function removeDir(d: string): Promise<void> {
  dirs.delete(d);
  await rm(d, { recursive: true, force: true });
}

/** Spawns `command`, output to `logFile`; the child is registered and adopted (killed at exit). */
export function startProcess(
  command: string,
  args: readonly string[],
  logFile: string,
  env: NodeJS.ProcessEnv = process.env,
): ChildProcess {
  const fd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, [...args], { stdio: ['ignore', fd, fd], env });
  } finally {
    closeSync(fd);
  }
  child.on('error', (err) => progress(`${command}: ${err.message}`));
  children.add(child);
  adopt(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Spawns a node script under tsx with piped stdout; registered and adopted like `startProcess`. */
export function startScript(script: string, args: readonly string[]): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  adopt(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Stops `procs` by their pids (SIGTERM, SIGKILL after `graceMs`), resolving once all exited. */
export async function stopProcesses(procs: readonly ChildProcess[], graceMs = 5000): Promise<void> {
  await stopChildren(procs, graceMs);
  for (const p of procs) children.delete(p);
}

/** The last `bytes` of a log file, for error messages. */
export function tail(file: string, bytes = 2000): string {
  try {
    const s = readFileSync(file, 'utf8');
    return s.slice(-bytes);
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------------------------
// Commands and packages.

/** Runs a command (bounded), resolving with its stdout; rejects on failure. */
export function run(
  command: string,
  args: readonly string[],
  timeoutMs = 30_000,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      [...args],
      { timeout: timeoutMs, env, maxBuffer: 16 * 1024 * 1024, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${command} ${args.join(' ')}: ${err.message}\n${stderr}`.trim()));
        else resolve(`${stdout}${stderr}`);
      },
    );
  });
}

/** First line of `command args` (versions), or `unknown`. */
export async function versionOf(command: string, args: readonly string[]): Promise<string> {
  try {
    return (await run(command, args, 15_000)).trim().split('\n')[0] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The installed version of Debian package `pkg`, or null. */
export async function debianVersion(pkg: string): Promise<string | null> {
  try {
    // dpkg-query's own format field, not a template placeholder.
    const v = (await run('dpkg-query', ['-W', `-f=${'$'}{Version}`, pkg], 15_000)).trim();
    return v || null;
  } catch {
    return null;
  }
}

let aptUpdated = false;

/**
 * Makes `check()` true by installing Debian package `pkg` with apt when it is false and this
 * process runs as root on Debian (`apt-get install -y`, after `apt-get update` if that failed).
 * Returns null when done, else the reason it is not available.
 */
export async function ensureDebianPackage(pkg: string, check: () => boolean): Promise<string | null> {
  if (check()) return null;
  if (process.getuid?.() !== 0)
    return `${pkg} is not installed and this is not root (apt-get install ${pkg})`;
  if (!existsSync('/etc/debian_version')) return `${pkg} is not installed and this is not Debian`;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => run('apt-get', ['install', '-y', '--no-install-recommends', pkg], 600_000, env);
  progress(`${pkg} is missing: apt-get install -y ${pkg}`);
  try {
    await install();
  } catch {
    try {
      if (!aptUpdated) {
        progress('apt-get update');
        await run('apt-get', ['update'], 300_000, env);
        aptUpdated = true;
      }
      await install();
    } catch (err) {
      return `apt-get install ${pkg} failed: ${(err as Error).message.split('\n')[0]}`;
    }
  }
  return check() ? null : `apt-get installed ${pkg} but it is still not usable`;
}

// ---------------------------------------------------------------------------------------------
// /proc.

const TICK_MS = 10; // USER_HZ 100 on Linux

/** CPU ms used so far by `pid` (user + system), or null once it is gone. */
export function cpuMs(pid: number): number | null {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return null;
  }
}

/** Resident set size of `pid` in MiB (`VmHWM`: its peak so far), or null once it is gone. */
export function rssMiB(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number | null {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** Direct children of this process whose command line contains every one of `words`. */
export function ownChildrenMatching(words: readonly string[]): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.split(') ')[1]!.split(' ')[1]);
      if (ppid !== process.pid) continue;
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').join(' ');
      if (words.every((w) => cmd.includes(w))) out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}
