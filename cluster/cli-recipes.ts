/**
 * The recipe commands of `ensemble` (registered in cli.ts): `lock`, `elect` and `services`, as
 * functions of a connected client that return the process's exit code. The caller connects,
 * closes the client and exits with that code, so nothing these start outlives the command.
 *
 *   ensemble lock <name> [-- <command> [args...]]   hold a lock (etcdctl lock)
 *   ensemble elect <name> <proposal> | --listen      campaign, or follow the leader (etcdctl elect)
 *   ensemble services [service] [--watch]           registered instances, health and load
 *
 * Output for a person goes to stdout; what the command waits for and why it stopped, to stderr.
 * With `--json`, stdout carries JSON only: one document, or one JSON line per event for the
 * commands that run until interrupted.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { Client, Instance, LeaderInfo, LockHold } from '../client/index.ts';

type StopSignal = 'SIGINT' | 'SIGTERM';

/** Exit code of a process ended by `signal`, as shells report it (128 + its number). */
const signalExit = (signal: NodeJS.Signals): number => 128 + (constants.signals[signal] ?? 0);

/**
 * SIGINT and SIGTERM for a command that runs until interrupted. The first one aborts `signal`
 * (reason: the signal's name) so the command can let go of what it holds and exit cleanly; a
 * second one exits at once (what it held then goes with its session's TTL). `divert` hands every
 * later signal to a handler instead, for a command that passes them on to a child.
 */
export class Interrupts {
  private readonly ctl = new AbortController();
  private diverted: ((signal: StopSignal) => void) | null = null;
  readonly signal: AbortSignal = this.ctl.signal;

  constructor() {
    const on = (s: StopSignal) => {
      if (this.diverted !== null) this.diverted(s);
      else if (!this.ctl.signal.aborted) this.ctl.abort(s);
      else process.exit(signalExit(s));
    };
    process.on('SIGINT', () => on('SIGINT'));
    process.on('SIGTERM', () => on('SIGTERM'));
  }

  divert(handler: (signal: StopSignal) => void): void {
    this.diverted = handler;
  }
}

export interface LockCommandOptions {
  readonly json?: boolean;
  /** Give up waiting after this many ms (exit code 1). */
  readonly timeoutMs?: number;
}

export interface ElectCommandOptions {
  readonly json?: boolean;
  /** Give up campaigning after this many ms (exit code 1). */
  readonly timeoutMs?: number;
}

/** A note for the person at the terminal (stderr, kept off stdout so `--json` stays parseable). */
const note = (msg: string) => console.error(msg);
const line = (doc: unknown) => console.log(JSON.stringify(doc));

/** Resolves once any of `signals` has aborted. */
function anyAborted(...signals: AbortSignal[]): Promise<void> {
  return new Promise((resolve) => {
    if (signals.some((s) => s.aborted)) return resolve();
    for (const s of signals) s.addEventListener('abort', () => resolve(), { once: true });
  });
}

/**
 * `ensemble lock <name> [-- command...]`. Waits for the lock (in arrival order, up to
 * `timeoutMs`); then either runs `command` while holding it, with ENSEMBLE_LOCK_KEY and
 * ENSEMBLE_LOCK_TOKEN (the fencing token) in its environment, and returns its exit code; or,
 * without a command, prints the key and token and holds until interrupted (exit 0).
 *
 * While the command runs, SIGTERM is passed on to it and SIGINT is not: a terminal's Ctrl-C
 * already reaches the whole foreground process group, the command included, and a second copy
 * would make many programs skip their graceful shutdown. The lock is released once the command
 * exits. If the session holding the lock is lost meanwhile, the lock is no longer exclusive: the
 * command gets SIGTERM and the exit code is 1 once it has exited.
 */
export async function lockCommand(
  c: Client,
  name: string,
  command: readonly string[],
  o: LockCommandOptions,
  stop: Interrupts,
): Promise<number> {
  const lock = c.lock(name);
  const ahead = await lock.waiters();
  if (ahead.length > 0 && !o.json)
    note(`waiting for lock ${lock.path} (${ahead.length} ahead, held by ${ahead[0]!.owner})`);
  const deadline = o.timeoutMs === undefined ? null : AbortSignal.timeout(o.timeoutMs);
  let hold: LockHold;
  try {
    hold = await lock.acquire({
      signal: deadline === null ? stop.signal : AbortSignal.any([stop.signal, deadline]),
    });
  } catch (err) {
    if (deadline?.aborted) {
      const holder = (await lock.waiters().catch(() => []))[0];
      console.error(
        `ensemble: TIMEOUT: gave up waiting for lock ${lock.path} after ${o.timeoutMs} ms${holder ? ` (held by ${holder.owner}, token ${holder.token})` : ''}`,
      );
      return 1;
    }
    if (stop.signal.aborted) {
      console.error(`ensemble: ${stop.signal.reason}: stopped waiting for lock ${lock.path}`);
      return signalExit(stop.signal.reason as StopSignal);
    }
    throw err;
  }
  if (command.length > 0) return runHolding(hold, command, stop);

  if (o.json) line({ path: lock.path, key: hold.key, token: hold.token, session: c.sessionInfo?.id ?? null });
  else {
    console.log(`locked ${lock.path}: key ${hold.key}, fencing token ${hold.token}`);
    note('holding it until SIGINT (Ctrl-C) or SIGTERM');
  }
  await anyAborted(stop.signal, hold.signal);
  if (!hold.held) {
    console.error(`ensemble: SESSION_LOST: the session holding ${hold.key} was lost: the lock is gone`);
    return 1;
  }
  await hold.release();
  return 0;
}

/** Runs `command` with stdio inherited while `hold` holds; returns the exit code to exit with. */
async function runHolding(hold: LockHold, command: readonly string[], stop: Interrupts): Promise<number> {
  const [file, ...args] = command as [string, ...string[]];
  if (stop.signal.aborted) {
    // Interrupted just as the lock came: the command never started.
    await hold.release().catch(() => {});
    return signalExit(stop.signal.reason as StopSignal);
  }
  const child: ChildProcess = spawn(file, args, {
    stdio: 'inherit',
    env: { ...process.env, ENSEMBLE_LOCK_KEY: hold.key, ENSEMBLE_LOCK_TOKEN: String(hold.token) },
  });
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null } | { error: Error }>(
    (resolve) => {
      child.once('error', (error) => resolve({ error }));
      child.once('exit', (code, signal) => resolve({ code, signal }));
    },
  );
  // A signal that came while acquiring has aborted the acquire already; from here on they are
  // the command's business.
  stop.divert((s) => {
    if (s === 'SIGTERM') child.kill('SIGTERM');
  });
  let lost = false;
  const onLost = () => {
    lost = true;
    console.error(
      `ensemble: SESSION_LOST: the session holding ${hold.key} was lost, the lock is no longer exclusive: sending ${file} SIGTERM`,
    );
    child.kill('SIGTERM');
  };
  if (hold.signal.aborted) onLost();
  else hold.signal.addEventListener('abort', onLost, { once: true });

  const end = await ended;
  hold.signal.removeEventListener('abort', onLost);
  if (lost) return 1;
  // Releasing can only fail when the cluster is unreachable; closing the client then revokes the
  // session, which deletes the ticket as well.
  await hold.release().catch(() => {});
  if ('error' in end) {
    console.error(`ensemble: cannot run ${file}: ${end.error.message}`);
    return 127;
  }
  return end.code ?? signalExit(end.signal ?? 'SIGTERM');
}

const leaderDoc = (l: LeaderInfo | null) =>
  l === null ? { key: null, token: null, value: null } : { key: l.key, token: l.token, value: l.text };

/**
 * `ensemble elect <name> <proposal>`: campaigns with `proposal` as the candidate's value, prints a
 * line once it leads and holds the leadership until interrupted (then resigns, exit 0). Losing
 * the session while leading ends the command with exit code 1. `--json` prints JSON lines:
 * `{"event":"leading"|"resigned"|"lost", path, key, token, value}`.
 */
export async function electCommand(
  c: Client,
  name: string,
  proposal: string,
  o: ElectCommandOptions,
  stop: Interrupts,
): Promise<number> {
  const election = c.election(name);
  const now = await election.leader();
  if (now !== null && !o.json)
    note(`campaigning in ${election.path} as ${proposal}; ${now.text} leads (token ${now.token})`);
  const deadline = o.timeoutMs === undefined ? null : AbortSignal.timeout(o.timeoutMs);
  let leadership: Awaited<ReturnType<typeof election.campaign>>;
  try {
    leadership = await election.campaign(proposal, {
      signal: deadline === null ? stop.signal : AbortSignal.any([stop.signal, deadline]),
    });
  } catch (err) {
    if (deadline?.aborted) {
      console.error(
        `ensemble: TIMEOUT: ${proposal} did not win ${election.path} within ${o.timeoutMs} ms (withdrawn)`,
      );
      return 1;
    }
    if (stop.signal.aborted) {
      console.error(`ensemble: ${stop.signal.reason}: candidacy in ${election.path} withdrawn`);
      return signalExit(stop.signal.reason as StopSignal);
    }
    throw err;
  }
  const doc = (event: string) => ({
    event,
    path: election.path,
    key: leadership.key,
    token: leadership.token,
    value: proposal,
  });
  if (o.json) line(doc('leading'));
  else {
    console.log(
      `${proposal} leads ${election.path}: key ${leadership.key}, fencing token ${leadership.token}`,
    );
    note('holding the leadership until SIGINT (Ctrl-C) or SIGTERM');
  }
  await anyAborted(stop.signal, leadership.signal);
  if (!leadership.held) {
    if (o.json) line(doc('lost'));
    console.error(`ensemble: SESSION_LOST: the session of ${leadership.key} was lost: no longer leading`);
    return 1;
  }
  await leadership.resign();
  if (o.json) line(doc('resigned'));
  else note(`${proposal} resigned from ${election.path}`);
  return 0;
}

/**
 * `ensemble elect <name> --listen`: the leader now and after every change (of leader or of its
 * value) until interrupted, exit 0. `--json` prints JSON lines `{key, token, value}`, all null
 * while nobody stands.
 */
export async function listenCommand(
  c: Client,
  name: string,
  o: { readonly json?: boolean },
  stop: Interrupts,
): Promise<number> {
  const election = c.election(name);
  if (!o.json) note(`following the leader of ${election.path} (Ctrl-C stops)`);
  try {
    for await (const l of election.observe({ signal: stop.signal })) {
      if (o.json) line(leaderDoc(l));
      else console.log(l === null ? 'no leader' : `${l.text} leads: key ${l.key}, fencing token ${l.token}`);
    }
  } catch (err) {
    if (!stop.signal.aborted) throw err;
  }
  return 0;
}

/** Instances as a table for a person: a header and one padded row each. */
export function instanceTable(list: readonly Instance[]): string {
  const withMeta = list.some((i) => Object.keys(i.meta).length > 0);
  const rows = [
    ['SERVICE', 'INSTANCE', 'ADDRESS', 'HEALTH', 'LOAD', 'WEIGHT', ...(withMeta ? ['META'] : [])],
    ...list.map((i) => [
      i.service,
      i.id,
      i.address,
      i.health,
      String(i.load),
      String(i.weight),
      ...(withMeta
        ? [
            Object.entries(i.meta)
              .map(([k, v]) => `${k}=${v}`)
              .join(' '),
          ]
        : []),
    ]),
  ];
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((r) => r[col]!.length)));
  return rows
    .map((r) =>
      r
        .map((cell, col) => cell.padEnd(widths[col]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/**
 * `ensemble services [service]`: every registered instance (or those of one service, whatever
 * their health) as a table; returns the JSON document: `{ service: Instance[] }` for all,
 * `Instance[]` for one service (the shapes of `registry.services()` and `discover`).
 */
export async function servicesCommand(
  c: Client,
  service: string | undefined,
  o: { readonly json?: boolean },
): Promise<Record<string, Instance[]> | Instance[]> {
  const doc =
    service === undefined ? await c.registry.services() : await c.registry.discover(service, { all: true });
  if (!o.json) {
    const list = Array.isArray(doc) ? doc : Object.values(doc).flat();
    console.log(
      list.length > 0
        ? instanceTable(list)
        : service === undefined
          ? 'no services registered'
          : `no instances of ${service}`,
    );
  }
  return doc;
}

/**
 * `ensemble services <service> --watch`: the live set of one service now and after each change
 * (an instance came, went, or reported other health or load) until interrupted, exit 0. `--json`
 * prints one JSON array per line.
 */
export async function watchServicesCommand(
  c: Client,
  service: string,
  o: { readonly json?: boolean },
  stop: Interrupts,
): Promise<number> {
  if (!o.json) note(`watching the instances of ${service} (Ctrl-C stops)`);
  let last = '';
  try {
    for await (const set of c.registry.watch(service, { signal: stop.signal })) {
      const list = set.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      const doc = JSON.stringify(list);
      if (doc === last) continue; // a write that changed nothing a reader sees
      last = doc;
      if (o.json) console.log(doc);
      else
        console.log(
          `${new Date().toISOString()}  ${service}: ${list.length} instance${list.length === 1 ? '' : 's'}\n${list.length > 0 ? `${instanceTable(list)}\n` : ''}`,
        );
    }
  } catch (err) {
    if (!stop.signal.aborted) throw err;
  }
  return 0;
}
