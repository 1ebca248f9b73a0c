/**
 * `npm run bench [-- --quick] [--systems ensemble,etcd,natskv,zookeeper] [--json] [--seconds n]
 * [--watchers n] [--out file] [--max-minutes n]`
 *
 * Ensemble against etcd, NATS KV and ZooKeeper, each a 3-member cluster on loopback with its data
 * on disk (in a temp dir), started and stopped here, with the same workloads and 256-byte values:
 * sequential put latency; puts/s with 1, 16, 64 and 256 in flight; linearizable and serializable
 * gets/s; a 90/10 read/write mix; watch delivery with 1k watchers; session churn and expiry;
 * latency at a fixed open-loop rate (50% of the system's peak puts/s); RSS and CPU per member.
 * Progress goes to stderr; a table per workload (each system's figure and its ratio to etcd's) or,
 * with `--json`, the results go to stdout; the results are also saved under bench/results/.
 * etcd and ZooKeeper are installed with apt when missing (as root on Debian); a system that cannot
 * be had is skipped with one line saying why. Every process started is stopped by its pid at the
 * end, on failure and on Ctrl-C; everything is bounded in time. See bench/README.md.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { systems } from './systems/index.ts';
import {
  abort,
  bounded,
  cleanupAll,
  installCleanup,
  isAborting,
  onCleanup,
  progress,
  removeDir,
  run,
  tempDir,
  versionOf,
} from './systems/procs.ts';
import {
  KEY_COUNT,
  SYSTEM_NAMES,
  type SystemName,
  type SystemUnderTest,
  VALUE_BYTES,
} from './systems/types.ts';
import {
  closedLoop,
  expiry,
  type Latency,
  load,
  type MemberUsage,
  mix,
  type OpenLoop,
  openLoop,
  sampleUsage,
  sequential,
  type Throughput,
  watchDelivery,
} from './workloads.ts';

// ---------------------------------------------------------------------------------------------
// Options.

const HELP = `npm run bench [-- options]
  --quick              short runs and 100 watchers: a smoke run (a few minutes in all)
  --systems a,b        of ${SYSTEM_NAMES.join(', ')} (default: all)
  --json               print the results as JSON instead of tables
  --seconds n          length of each throughput run (default 10, quick 1.5)
  --watchers n         watchers in the watch workload (default 1000, quick 100)
  --out file           where to save the JSON (default bench/results/<time>[-quick].json)
  --max-minutes n      stop everything after this long (default 60, quick 20)`;

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  console.log(HELP);
  process.exit(0);
}
function usage(message: string): never {
  process.stderr.write(`${message}\n${HELP}\n`);
  process.exit(2);
}
const FLAGS = ['--quick', '--json', '--help', '-h'];
const OPTIONS = ['--systems', '--seconds', '--watchers', '--out', '--max-minutes'];
for (let i = 0; i < argv.length; i++) {
  if (OPTIONS.includes(argv[i]!)) i++;
  else if (!FLAGS.includes(argv[i]!)) usage(`unknown argument ${argv[i]}`);
}
const flag = (name: string) => argv.includes(name);
function option(name: string): string | undefined {
  const i = argv.indexOf(name);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (v === undefined || v.startsWith('--')) usage(`${name} needs a value`);
  return v;
}
function positive(name: string, fallback: number): number {
  const v = option(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) usage(`${name} takes a positive number`);
  return n;
}

const quick = flag('--quick');
const asJson = flag('--json');
const chosen = (option('--systems') ?? SYSTEM_NAMES.join(','))
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
for (const s of chosen)
  if (!(SYSTEM_NAMES as readonly string[]).includes(s))
    usage(`--systems: unknown system ${s} (known: ${SYSTEM_NAMES.join(', ')})`);

const params = {
  quick,
  valueBytes: VALUE_BYTES,
  /** Each closed-loop throughput run. */
  seconds: positive('--seconds', quick ? 1.5 : 10),
  warmupSeconds: quick ? 0.5 : 2,
  sequentialPuts: quick ? 200 : 2000,
  inFlight: [1, 16, 64, 256],
  getInFlight: 64,
  mixInFlight: 64,
  openLoopShare: 0.5,
  openLoopSeconds: quick ? 3 : 20,
  watchers: Math.round(positive('--watchers', quick ? 100 : 1000)),
  watchWriteRate: 10,
  watchSeconds: quick ? 2 : 10,
  churnInFlight: 16,
  churnSeconds: quick ? 2 : 10,
  churnTtlMs: 10_000,
  expireSessions: quick ? 5 : 20,
  expireTtlMs: 3000,
  maxMinutes: positive('--max-minutes', quick ? 20 : 60),
};
type Params = typeof params;

// ---------------------------------------------------------------------------------------------
// Results.

interface Failed {
  readonly error: string;
}

interface SystemResult {
  status: 'ok' | 'skipped' | 'failed' | 'not run';
  reason?: string;
  version?: string;
  notes?: readonly string[];
  wallSeconds?: number;
  workloads: Record<string, unknown>;
  resources?: { members: MemberUsage[]; infra: MemberUsage[] };
}

const repo = path.resolve(import.meta.dirname, '..');

async function machine() {
  const cpus = os.cpus();
  const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as { version: string };
  return {
    hostname: os.hostname(),
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    distribution: existsSync('/etc/debian_version')
      ? `Debian ${readFileSync('/etc/debian_version', 'utf8').trim()}`
      : os.platform(),
    node: process.version,
    ensemble: pkg.version,
    commit: (await versionOf('git', ['-C', repo, 'rev-parse', 'HEAD'])).slice(0, 40),
    worktreeDirty: await run('git', ['-C', repo, 'status', '--porcelain']).then(
      (s) => s.trim().length > 0,
      () => null,
    ),
    loadAverageAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

const results = {
  startedAt: new Date().toISOString(),
  finishedAt: null as string | null,
  complete: false,
  params,
  machine: null as Awaited<ReturnType<typeof machine>> | null,
  loadAverageAtEnd: null as number[] | null,
  systems: Object.fromEntries(chosen.map((s) => [s, { status: 'not run', workloads: {} }])) as Record<
    string,
    SystemResult
  >,
};

/** Workloads number their operations; keys repeat over the KEY_COUNT keys every system has. */
const key = (i: number) => i % KEY_COUNT;

const isFailed = (x: unknown): x is Failed => typeof x === 'object' && x !== null && 'error' in x;

// ---------------------------------------------------------------------------------------------
// Running one system.

async function runSystem(name: SystemName, p: Params): Promise<void> {
  const r = results.systems[name]!;
  const mod = systems[name];
  let reason: string | null;
  if (name === 'ensemble' && !existsSync(path.join(repo, 'dist', 'cli.js')))
    reason = 'dist/cli.js is missing: run `npm run build` first';
  else
    reason = await bounded(mod.available(progress), 15 * 60_000, `installing ${name}`).catch((e) =>
      String(e),
    );
  if (reason !== null) {
    r.status = 'skipped';
    r.reason = reason;
    progress(`${name}: SKIPPED: ${reason}`);
    return;
  }
  const dir = await tempDir(`ensemble-bench-${name}-`);
  const t0 = performance.now();
  let sut: SystemUnderTest | null = null;
  let unregister = () => {};
  try {
    sut = await bounded(mod.start(dir, { log: progress }), 180_000, `starting ${name}`);
    const s = sut;
    unregister = onCleanup(() => s.close());
    r.version = s.version;
    r.notes = s.notes;
    progress(`${name}: up (${s.version})`);
    const members = s.members();
    const infra = s.infra();
    const usage = sampleUsage([...members, ...infra]);

    const step = async <T>(id: string, what: string, expectSeconds: number, fn: () => Promise<T>) => {
      if (isAborting()) throw new Error('interrupted');
      progress(`${name}: ${what}`);
      try {
        const v = await bounded(fn(), (expectSeconds * 3 + 60) * 1000, `${name}: ${what}`);
        r.workloads[id] = v;
        return v;
      } catch (err) {
        const error = (err as Error).message ?? String(err);
        r.workloads[id] = { error } satisfies Failed;
        progress(`${name}: ${what}: FAILED: ${error}`);
        return null;
      }
    };

    await step('load', 'writing every key once', 30, async () => {
      await load(s);
      await closedLoop((i) => s.put(key(i)), 16, p.warmupSeconds);
      return 'done';
    });
    await step('sequentialPut', `${p.sequentialPuts} sequential puts`, p.sequentialPuts / 20, () =>
      sequential((i) => s.put(i), p.sequentialPuts),
    );
    let peak = 0;
    for (const n of p.inFlight) {
      const t = await step(`puts${n}`, `puts, ${n} in flight, ${p.seconds} s`, p.seconds, () =>
        closedLoop((i) => s.put(key(i)), n, p.seconds),
      );
      if (t !== null && t.rate > peak) peak = t.rate;
    }
    const lin = s.linearizableGet;
    const ser = s.serializableGet;
    if (lin !== null)
      await step('getsLinearizable', `linearizable gets, ${p.getInFlight} in flight`, p.seconds, () =>
        closedLoop((i) => lin(key(i)), p.getInFlight, p.seconds),
      );
    if (ser !== null)
      await step('getsSerializable', `serializable gets, ${p.getInFlight} in flight`, p.seconds, () =>
        closedLoop((i) => ser(key(i)), p.getInFlight, p.seconds),
      );
    const read = lin ?? ser;
    if (read !== null)
      await step('mix', `90/10 read/write mix, ${p.mixInFlight} in flight`, p.seconds, () =>
        mix((i) => s.put(i), read, p.mixInFlight, p.seconds),
      );
    if (peak > 0) {
      const rate = Math.max(1, Math.round(peak * p.openLoopShare));
      await step(
        'openLoop',
        `open-loop puts at ${rate}/s (50% of ${Math.round(peak)}/s)`,
        p.openLoopSeconds,
        () => openLoop((i) => s.put(i), rate, p.openLoopSeconds),
      );
    }
    await step(
      'watch',
      `${p.watchers} watchers, ${p.watchWriteRate} writes/s for ${p.watchSeconds} s`,
      p.watchSeconds + 30,
      () => watchDelivery(s, p.watchers, p.watchWriteRate, p.watchSeconds),
    );
    const sessions = s.sessions;
    if (sessions !== null) {
      await step('churn', `session churn, ${p.churnInFlight} in flight`, p.churnSeconds, () =>
        closedLoop((i) => sessions.churn(i, p.churnTtlMs), p.churnInFlight, p.churnSeconds),
      );
      await step(
        'expiry',
        `session expiry: ${p.expireSessions} sessions (TTL ${p.expireTtlMs} ms) of a killed client`,
        (p.expireTtlMs * 4) / 1000 + 20,
        () => expiry(s, p.expireSessions, p.expireTtlMs),
      );
    }
    const used = usage.stop();
    r.resources = { members: used.slice(0, members.length), infra: used.slice(members.length) };
    r.status = 'ok';
  } catch (err) {
    r.status = 'failed';
    r.reason = (err as Error).message ?? String(err);
    progress(`${name}: FAILED: ${r.reason}`);
  } finally {
    r.wallSeconds = Math.round((performance.now() - t0) / 100) / 10;
    if (sut !== null) {
      progress(`${name}: stopping`);
      await bounded(sut.close(), 60_000, `stopping ${name}`).catch((e) => progress(String(e)));
      unregister();
    }
    await removeDir(dir);
  }
}

// ---------------------------------------------------------------------------------------------
// Tables.

type Unit = 'ms' | '/s' | '%' | 'MiB' | 'n';

interface Column {
  readonly label: string;
  /** Which way is better, for reading the ratio; null: no ratio. */
  readonly better: 'higher' | 'lower' | null;
  readonly unit: Unit;
  value(r: SystemResult): number | null | Failed;
  /** Overrides the printed figure (per-member lists). */
  text?(r: SystemResult): string | null;
}

interface Table {
  readonly title: string;
  readonly columns: readonly Column[];
}

function workload<T>(r: SystemResult, id: string): T | Failed | null {
  const w = r.workloads[id];
  return w === undefined ? null : (w as T | Failed);
}

const pick =
  <T>(id: string, f: (w: T) => number) =>
  (r: SystemResult): number | null | Failed => {
    const w = workload<T>(r, id);
    if (w === null) return null;
    return isFailed(w) ? w : f(w as T);
  };

const latencyColumns = (id: string, get: (w: never) => Latency, which: (keyof Latency)[]): Column[] =>
  which.map((k) => ({
    label: `${k === 'p999' ? 'p99.9' : k} ms`,
    better: 'lower',
    unit: 'ms',
    value: pick(id, (w: never) => get(w)[k]),
  }));

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

function tables(p: Params): Table[] {
  return [
    {
      title: `Sequential put latency (1 in flight, ${p.sequentialPuts} puts)`,
      columns: latencyColumns('sequentialPut', (w: Latency) => w, ['p50', 'p99', 'p999', 'max']),
    },
    {
      title: `Puts/s by requests in flight (${p.seconds} s each)`,
      columns: p.inFlight.map((n) => ({
        label: `${n} in flight`,
        better: 'higher',
        unit: '/s',
        value: pick(`puts${n}`, (w: Throughput) => w.rate),
      })),
    },
    {
      title: `Put latency by requests in flight (p99)`,
      columns: p.inFlight.map((n) => ({
        label: `${n} in flight, p99 ms`,
        better: 'lower',
        unit: 'ms',
        value: pick(`puts${n}`, (w: Throughput) => w.latency.p99),
      })),
    },
    {
      title: `Gets/s, ${p.getInFlight} in flight (${p.seconds} s each)`,
      columns: [
        {
          label: 'linearizable',
          better: 'higher',
          unit: '/s',
          value: pick('getsLinearizable', (w: Throughput) => w.rate),
        },
        {
          label: 'serializable',
          better: 'higher',
          unit: '/s',
          value: pick('getsSerializable', (w: Throughput) => w.rate),
        },
      ],
    },
    {
      title: `90/10 read/write mix, ${p.mixInFlight} in flight (reads linearizable where the system has them)`,
      columns: [
        { label: 'ops/s', better: 'higher', unit: '/s', value: pick('mix', (w: Throughput) => w.rate) },
        ...latencyColumns('mix', (w: Throughput) => w.latency, ['p50', 'p99']),
      ],
    },
    {
      title: `Put latency at a fixed open-loop rate: ${p.openLoopShare * 100}% of the system's peak puts/s, ${p.openLoopSeconds} s, from each put's scheduled start`,
      columns: [
        { label: 'rate/s', better: null, unit: '/s', value: pick('openLoop', (w: OpenLoop) => w.targetRate) },
        ...latencyColumns('openLoop', (w: OpenLoop) => w.latency, ['p50', 'p99', 'p999', 'max']),
      ],
    },
    {
      title: `Watch delivery: ${p.watchers} watchers of one key, ${p.watchWriteRate} writes/s for ${p.watchSeconds} s, from write to watcher`,
      columns: [
        ...latencyColumns('watch', (w: { latency: Latency }) => w.latency, ['p50', 'p99']),
        {
          label: 'delivered %',
          better: 'higher',
          unit: '%',
          value: pick('watch', (w: { delivered: number }) => w.delivered * 100),
        },
      ],
    },
    {
      title: `Session churn: open a session, one ephemeral key, end it; ${p.churnInFlight} in flight, ${p.churnSeconds} s`,
      columns: [
        {
          label: 'sessions/s',
          better: 'higher',
          unit: '/s',
          value: pick('churn', (w: Throughput) => w.rate),
        },
        ...latencyColumns('churn', (w: Throughput) => w.latency, ['p50', 'p99']),
      ],
    },
    {
      title: `Session expiry: ${p.expireSessions} sessions with a TTL of ${p.expireTtlMs} ms, their client killed; from the kill to each ephemeral key's delete at a watcher`,
      columns: [
        ...latencyColumns('expiry', (w: { latency: Latency }) => w.latency, ['p50', 'max']),
        {
          label: 'expired',
          better: null,
          unit: 'n',
          value: pick('expiry', (w: { expired: number }) => w.expired),
        },
      ],
    },
    {
      title:
        'Resources per member over the whole run (peak RSS; CPU in % of one core, averaged over the run); the ratio compares the mean per member',
      columns: [
        {
          label: 'RSS MiB',
          better: 'lower',
          unit: 'MiB',
          value: (r) => (r.resources ? mean(r.resources.members.map((m) => m.rssPeakMiB)) : null),
          text: (r) =>
            r.resources ? r.resources.members.map((m) => m.rssPeakMiB.toFixed(0)).join(' / ') : null,
        },
        {
          label: 'CPU %',
          better: 'lower',
          unit: '%',
          value: (r) => (r.resources ? mean(r.resources.members.map((m) => m.cpuPercent)) : null),
          text: (r) =>
            r.resources ? r.resources.members.map((m) => m.cpuPercent.toFixed(0)).join(' / ') : null,
        },
        {
          label: 'other processes',
          better: null,
          unit: 'n',
          value: () => null,
          text: (r) =>
            r.resources && r.resources.infra.length > 0
              ? r.resources.infra
                  .map((m) => `${m.name}: ${m.rssPeakMiB.toFixed(0)} MiB, ${m.cpuPercent.toFixed(0)}%`)
                  .join('; ')
              : '-',
        },
      ],
    },
  ];
}

function fmt(v: number, unit: Unit): string {
  if (unit === '/s' || unit === 'MiB' || unit === 'n') return Math.round(v).toString();
  if (unit === '%') return v.toFixed(1);
  return v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0);
}

function renderTables(p: Params): string {
  const ran = Object.entries(results.systems).filter(([, r]) => r.status === 'ok' || r.status === 'failed');
  const etcdResult = results.systems.etcd?.status === 'ok' ? results.systems.etcd : null;
  const out: string[] = [];
  const m = results.machine;
  out.push(
    `Ensemble benchmark${p.quick ? ' (--quick: a smoke run, not for comparison)' : ''}: 3 members per system on loopback, data on disk, ${p.valueBytes}-byte values.`,
  );
  if (m)
    out.push(
      `Machine: ${m.cpus} x ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.kernel}, ${m.distribution}, node ${m.node}; load average at start ${m.loadAverageAtStart.join(' ')}.`,
    );
  out.push(
    `Cells: the system's figure, then (in brackets) its ratio to etcd's, system / etcd: for columns marked ↑ higher is better, for ↓ lower is better. "-": the system has no such operation; "error": the workload failed (see the JSON).`,
  );
  for (const [name, r] of Object.entries(results.systems)) {
    if (r.status === 'ok') out.push(`- ${name}: ${r.version}`);
    else out.push(`- ${name}: ${r.status}${r.reason ? `: ${r.reason.split('\n')[0]}` : ''}`);
  }
  for (const t of tables(p)) {
    out.push('', `### ${t.title}`, '');
    const arrow = (c: Column) => (c.better === 'higher' ? ' ↑' : c.better === 'lower' ? ' ↓' : '');
    out.push(`| system | ${t.columns.map((c) => `${c.label}${arrow(c)}`).join(' | ')} |`);
    out.push(`|---|${t.columns.map(() => '---:').join('|')}|`);
    for (const [name, r] of ran) {
      const cells = t.columns.map((c) => {
        const v = c.value(r);
        const text = c.text?.(r);
        if (isFailed(v)) return 'error';
        if (v === null) return text ?? '-';
        const shown = text ?? fmt(v, c.unit);
        const e = etcdResult && name !== 'etcd' && c.better !== null ? c.value(etcdResult) : null;
        if (typeof e === 'number' && e > 0) return `${shown} (${(v / e).toFixed(2)}x)`;
        return shown;
      });
      out.push(`| ${name} | ${cells.join(' | ')} |`);
    }
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Main.

function save(): string {
  const file =
    option('--out') ??
    path.join(
      repo,
      'bench',
      'results',
      `${results.startedAt.replace(/[:.]/g, '-')}${params.quick ? '-quick' : ''}.json`,
    );
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  return file;
}

function finish(): void {
  results.finishedAt = new Date().toISOString();
  results.loadAverageAtEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const file = save();
  if (asJson) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  else process.stdout.write(`\n${renderTables(params)}\n`);
  progress(`results saved in ${path.relative(process.cwd(), file)}`);
}

async function main(): Promise<void> {
  installCleanup(() => finish());
  const bound = setTimeout(() => {
    abort();
    progress(`time bound reached (${params.maxMinutes} min): stopping everything`);
    void cleanupAll().finally(() => {
      finish();
      process.exit(1);
    });
  }, params.maxMinutes * 60_000);
  bound.unref();
  results.machine = await machine();
  progress(
    `systems: ${chosen.join(', ')}${quick ? ' (quick)' : ''}; ${params.seconds} s per throughput run; bound ${params.maxMinutes} min`,
  );
  for (const name of chosen) if (!isAborting()) await runSystem(name as SystemName, params);
  clearTimeout(bound);
  await cleanupAll();
  results.complete = true;
  finish();
  process.exit(0);
}

main().catch(async (err) => {
  progress(`bench failed: ${(err as Error).stack ?? err}`);
  await cleanupAll();
  finish();
  process.exit(1);
});
