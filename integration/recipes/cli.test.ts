/**
 * The recipe commands of the `ensemble` CLI (cluster/cli-recipes.ts) as a user runs them: built
 * `bin/ensemble.mjs` processes against a real cluster. `lock` runs commands one at a time with the
 * fencing token in their environment, passes their exit codes through, gives up on `--timeout`
 * and stops its command when its session is lost; `elect` hands leadership over when the leader's
 * process is killed; `services` shows what a client registered, with health and load.
 *
 * Commands that hold a lock wait for a release file the test writes, so "never overlap" is
 * checked by the order of markers while a second process is provably queued, not by timing.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import type { Client } from '../../client/index.ts';
import { natsCredentials } from '../../cluster/nats-server.ts';
import { TestCluster } from '../cluster.ts';
import { type Harness, type ManagedProcess, startHarness } from '../harness.ts';

const NAME = 'clirec';
const BIN = fileURLToPath(new URL('../../bin/ensemble.mjs', import.meta.url));

let harness: Harness;
let cluster: TestCluster;
let client: Client;

test.before(async () => {
  harness = await startHarness({ label: 'ensemble-cli-recipes' });
  cluster = await TestCluster.start(harness, { cluster: NAME });
  client = await cluster.client();
});
test.after.always(async () => {
  await cluster?.close();
  await harness?.teardown();
});

/** `ensemble <command> <args…>` on the test cluster (connection flags go right after the command). */
function ensemble(args: readonly string[]): ManagedProcess {
  const [command, ...rest] = args;
  return harness.spawn(
    process.execPath,
    [BIN, command!, '--nats', harness.natsUrls.join(','), '--cluster', NAME, ...rest],
    { env: { ...process.env, ENSEMBLE_PASSWORD: natsCredentials('client').pass } },
  );
}

/** The exit code of `p`; fails the test if it has not exited within `ms`. */
async function exitCode(p: ManagedProcess, ms = 30_000): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`process ${p.pid} still running after ${ms} ms:\n${p.output()}`)),
      ms,
    );
  });
  try {
    return (await Promise.race([p.exited, late])).code;
  } finally {
    clearTimeout(timer);
  }
}

async function until<T>(fn: () => T | Promise<T>, what: string, ms = 20_000): Promise<NonNullable<T>> {
  const deadline = performance.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (performance.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const readLines = (file: string): string[] =>
  existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];

/** JSON lines of a process's output (its stdout under `--json`; notes on stderr are not JSON). */
const jsonLines = (p: ManagedProcess): unknown[] =>
  p
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{') || l.startsWith('['))
    .map((l) => JSON.parse(l));

/**
 * A command for `ensemble lock … -- node -e HOLDER <log> <dir>`: appends `start <key> <token>` to
 * the log, waits until the file `<dir>/release-<token>` exists, appends `end <key> <token>`.
 */
const HOLDER = `
const fs = require('node:fs');
const [log, dir] = process.argv.slice(1);
const { ENSEMBLE_LOCK_KEY: key, ENSEMBLE_LOCK_TOKEN: token } = process.env;
fs.appendFileSync(log, 'start ' + key + ' ' + token + '\\n');
const t = setInterval(() => {
  if (!fs.existsSync(dir + '/release-' + token)) return;
  fs.appendFileSync(log, 'end ' + key + ' ' + token + '\\n');
  clearInterval(t);
}, 20);
`;

test.serial(
  'lock: two commands on one lock never overlap, each sees its key and a larger fencing token',
  async (t) => {
    const dir = await harness.tempDir('lock');
    const log = path.join(dir, 'log');
    const a = ensemble(['lock', 'same', '--', process.execPath, '-e', HOLDER, log, dir]);
    const b = ensemble(['lock', 'same', '--', process.execPath, '-e', HOLDER, log, dir]);

    const first = (await until(() => readLines(log)[0], 'a first command starts', 30_000)).split(' ');
    // The other process is queued behind the holder while the holder's command still runs.
    const line = await until(async () => {
      const w = await client.lock('same').waiters();
      return w.length === 2 ? w : null;
    }, 'the second process queues');
    t.is(line[0]!.key, first[1]!);
    t.is(String(line[0]!.token), first[2]!);
    t.deepEqual(readLines(log), [first.join(' ')], 'no second command started while the first holds');

    writeFileSync(path.join(dir, `release-${first[2]}`), '');
    const second = (await until(() => readLines(log)[2], 'the second command starts')).split(' ');
    writeFileSync(path.join(dir, `release-${second[2]}`), '');

    t.is(await exitCode(a), 0, a.output());
    t.is(await exitCode(b), 0, b.output());
    const [k1, t1] = [first[1]!, Number(first[2])];
    const [k2, t2] = [second[1]!, Number(second[2])];
    t.deepEqual(readLines(log), [
      `start ${k1} ${t1}`,
      `end ${k1} ${t1}`,
      `start ${k2} ${t2}`,
      `end ${k2} ${t2}`,
    ]);
    t.regex(k1, /^\/locks\/same\/lock-\d{10}$/);
    t.regex(k2, /^\/locks\/same\/lock-\d{10}$/);
    t.not(k1, k2);
    t.true(t2 > t1, `fencing tokens increase: ${t1} then ${t2}`);
    t.deepEqual(await client.lock('same').waiters(), [], 'both released');
  },
);

test.serial("lock: the command's exit code is passed through and the lock released", async (t) => {
  const p = ensemble(['lock', 'codes', '--', process.execPath, '-e', 'process.exit(7)']);
  t.is(await exitCode(p), 7, p.output());
  const killed = ensemble([
    'lock',
    'codes',
    '--',
    process.execPath,
    '-e',
    "process.kill(process.pid, 'SIGTERM')",
  ]);
  t.is(await exitCode(killed), 128 + 15, 'a command ended by a signal exits 128 + its number');
  t.deepEqual(await client.lock('codes').waiters(), []);
});

test.serial('lock --timeout: exit code 1 and a message when the lock is held elsewhere', async (t) => {
  const held = await client.lock('busy').acquire();
  try {
    const dir = await harness.tempDir('busy');
    const marker = path.join(dir, 'ran');
    const p = ensemble([
      'lock',
      'busy',
      '--timeout',
      '1000',
      '--',
      process.execPath,
      '-e',
      `require('node:fs').writeFileSync(${JSON.stringify(marker)}, '')`,
    ]);
    t.is(await exitCode(p), 1, p.output());
    t.regex(p.output(), /waiting for lock \/locks\/busy \(1 ahead/);
    t.regex(p.output(), /TIMEOUT: gave up waiting for lock \/locks\/busy after 1000 ms/);
    t.false(existsSync(marker), 'the command never ran');
    t.deepEqual(
      (await client.lock('busy').waiters()).map((w) => w.key),
      [held.key],
      'its ticket was withdrawn',
    );
  } finally {
    await held.release();
  }
});

test.serial('lock without a command: prints key and token, holds until SIGINT, then releases', async (t) => {
  const p = ensemble(['lock', 'held', '--json']);
  const [json] = await p.waitForOutput(/^\{.*\}$/m, 30_000);
  const doc = JSON.parse(json) as { path: string; key: string; token: number; session: string };
  t.is(doc.path, '/locks/held');
  const line = await client.lock('held').waiters();
  t.deepEqual(
    line.map((w) => [w.key, w.token]),
    [[doc.key, doc.token]],
  );
  t.is((await client.get(doc.key))?.session, doc.session);
  await p.kill('SIGINT');
  t.is(await exitCode(p), 0, p.output());
  t.deepEqual(await client.lock('held').waiters(), [], 'released');
});

test.serial(
  'lock: when the session is lost while the command runs, the command gets SIGTERM and the exit code is 1',
  async (t) => {
    const dir = await harness.tempDir('lost');
    const log = path.join(dir, 'log');
    const child = `
const fs = require('node:fs');
const log = process.argv[1];
process.on('SIGTERM', () => { fs.appendFileSync(log, 'SIGTERM\\n'); process.exit(0); });
fs.appendFileSync(log, 'start ' + process.env.ENSEMBLE_LOCK_KEY + '\\n');
setInterval(() => {}, 1000);
`;
    const p = ensemble(['lock', 'lost', '--ttl', '1500', '--', process.execPath, '-e', child, log]);
    const key = (await until(() => readLines(log)[0], 'the command starts', 30_000)).split(' ')[1]!;
    // Paused past its TTL (a GC pause, SIGSTOP): the cluster expires the session and the ticket.
    process.kill(p.pid, 'SIGSTOP');
    try {
      await until(async () => (await client.get(key)) === null, 'the ticket expires', 30_000);
    } finally {
      process.kill(p.pid, 'SIGCONT');
    }
    t.is(await exitCode(p), 1, p.output());
    t.regex(p.output(), /SESSION_LOST: the session holding \/locks\/lost\/lock-\d{10} was lost/);
    t.deepEqual(readLines(log), [`start ${key}`, 'SIGTERM']);
  },
);

test.serial(
  'elect: the first candidate leads; when its process is killed the other leads, and --listen shows both',
  async (t) => {
    const listen = ensemble(['elect', 'e1', '--listen', '--json']);
    await listen.waitForOutput(/^\{"key":null,"token":null,"value":null\}$/m, 30_000);
    const alpha = ensemble(['elect', 'e1', 'alpha', '--ttl', '1500']);
    await alpha.waitForOutput(/alpha leads \/elections\/e1: key \S+, fencing token \d+/, 30_000);
    const beta = ensemble(['elect', 'e1', 'beta', '--ttl', '1500']);
    await beta.waitForOutput(/campaigning in \/elections\/e1 as beta; alpha leads/, 30_000);
    await until(
      async () => (await client.range('/elections/e1/')).kvs.length === 2,
      'beta stands behind alpha',
    );
    t.is((await client.election('e1').leader())?.text, 'alpha');
    t.notRegex(beta.output(), /beta leads/);

    await alpha.kill('SIGKILL');
    const t0 = performance.now();
    // Its session expires one TTL after its last keepalive (plus a grace after a leader change).
    await beta.waitForOutput(/beta leads \/elections\/e1: key \S+, fencing token \d+/, 1500 + 20_000);
    t.log(`beta leads ${Math.round(performance.now() - t0)} ms after alpha was killed (TTL 1500 ms)`);

    await until(
      () => jsonLines(listen).some((l) => (l as { value: unknown }).value === 'beta'),
      '--listen reports beta',
    );
    const leaders = jsonLines(listen) as { key: string | null; token: number | null; value: string | null }[];
    const named = leaders.filter((l) => l.value !== null);
    t.deepEqual(
      named.map((l) => l.value),
      ['alpha', 'beta'],
    );
    t.true(named[1]!.token! > named[0]!.token!, 'the new leader has a larger fencing token');
    t.is(leaders[0]!.value, null, 'nobody led when --listen started');

    await beta.kill('SIGTERM');
    t.is(await exitCode(beta), 0, beta.output());
    t.regex(beta.output(), /beta resigned from \/elections\/e1/);
    await until(
      () => jsonLines(listen).filter((l) => (l as { value: unknown }).value === null).length === 2,
      '--listen reports that nobody leads after beta resigned',
    );
    await listen.kill('SIGTERM');
    t.is(await exitCode(listen), 0, listen.output());
  },
);

test.serial(
  'elect --json: JSON lines for leading and resigning; a proposal or --listen is required',
  async (t) => {
    const p = ensemble(['elect', 'e2', 'solo', '--json']);
    await p.waitForOutput(/"event":"leading"/, 30_000);
    await p.kill('SIGINT');
    t.is(await exitCode(p), 0, p.output());
    const events = jsonLines(p) as {
      event: string;
      path: string;
      key: string;
      token: number;
      value: string;
    }[];
    t.deepEqual(
      events.map((e) => [e.event, e.path, e.value]),
      [
        ['leading', '/elections/e2', 'solo'],
        ['resigned', '/elections/e2', 'solo'],
      ],
    );
    t.regex(events[0]!.key, /^\/elections\/e2\/candidate-\d{10}$/);
    t.is(events[0]!.token, events[1]!.token);
    t.is(await client.election('e2').leader(), null, 'resigned');

    const neither = ensemble(['elect', 'e2']);
    t.is(await exitCode(neither), 1);
    t.regex(neither.output(), /give a proposal, or --listen/);
  },
);

test.serial(
  'services: a table and JSON of the instances a client registered, with health and load',
  async (t) => {
    const reg = client.registry;
    const i1 = await reg.register('api', 'i1', {
      address: '10.0.0.1:8080',
      load: 3,
      weight: 2,
      meta: { zone: 'a' },
    });
    const i2 = await reg.register('api', 'i2', { address: '10.0.0.2:8080', health: 'warning', load: 7.5 });
    const p1 = await reg.register('db', 'p1', { address: 'db:5432', health: 'critical' });
    try {
      const table = ensemble(['services']);
      t.is(await exitCode(table), 0, table.output());
      const rows = table
        .output()
        .trim()
        .split('\n')
        .map((l) => l.trim().split(/\s+/));
      t.deepEqual(rows, [
        ['SERVICE', 'INSTANCE', 'ADDRESS', 'HEALTH', 'LOAD', 'WEIGHT', 'META'],
        ['api', 'i1', '10.0.0.1:8080', 'passing', '3', '2', 'zone=a'],
        ['api', 'i2', '10.0.0.2:8080', 'warning', '7.5', '1'],
        ['db', 'p1', 'db:5432', 'critical', '0', '1'],
      ]);

      const all = ensemble(['services', '--json']);
      t.is(await exitCode(all), 0, all.output());
      const doc = JSON.parse(all.output()) as Record<string, { id: string; health: string; load: number }[]>;
      t.deepEqual(Object.keys(doc).sort(), ['api', 'db']);
      t.deepEqual(
        doc.api!.map((i) => [i.id, i.health, i.load]),
        [
          ['i1', 'passing', 3],
          ['i2', 'warning', 7.5],
        ],
      );
      t.deepEqual(
        doc.db!.map((i) => [i.id, i.health, i.load]),
        [['p1', 'critical', 0]],
      );

      const one = ensemble(['services', 'api', '--json']);
      t.is(await exitCode(one), 0, one.output());
      t.deepEqual(
        (JSON.parse(one.output()) as { id: string; address: string }[]).map((i) => [i.id, i.address]),
        [
          ['i1', '10.0.0.1:8080'],
          ['i2', '10.0.0.2:8080'],
        ],
        'every instance of the service, the warning one too',
      );
    } finally {
      await Promise.all([i1.deregister(), i2.deregister(), p1.deregister()]);
    }
  },
);

test.serial('services --watch: the live set of a service after each change, until SIGTERM', async (t) => {
  const i1 = await client.registry.register('web', 'w1', { address: 'http://w1', load: 1 });
  const w = ensemble(['services', 'web', '--watch', '--json']);
  const sets = () => jsonLines(w) as { id: string; health: string; load: number }[][];
  /** Waits for a line whose instances are `want` ([id, health, load] each). */
  const seen = (want: unknown[]) =>
    until(
      () =>
        sets().some((s) => JSON.stringify(s.map((i) => [i.id, i.health, i.load])) === JSON.stringify(want)),
      `--watch prints ${JSON.stringify(want)}`,
    );
  await seen([['w1', 'passing', 1]]);
  const i2 = await client.registry.register('web', 'w2', { address: 'http://w2' });
  await seen([
    ['w1', 'passing', 1],
    ['w2', 'passing', 0],
  ]);
  await i1.update({ health: 'warning', load: 9 });
  await seen([
    ['w1', 'warning', 9],
    ['w2', 'passing', 0],
  ]);
  await i2.deregister();
  await seen([['w1', 'warning', 9]]);
  await i1.deregister();
  await seen([]);
  await w.kill('SIGTERM');
  t.is(await exitCode(w), 0, w.output());
  t.is(sets().length, 5, 'one line per change');
});
