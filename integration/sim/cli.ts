/**
 * `npm run sim -- --seeds N [--nodes 3|5|mixed] [--steps M] [--seed S] [--schedule NAME]
 *   [--jobs J] [--json]`
 *
 * Runs seeded simulations (on J worker threads, one per core by default; results are reported
 * in seed order, so the output does not depend on J), shows progress, and ends with one summary
 * line (with seeds per second) and the seeds each fault schedule ran. A violation prints the
 * seed, the command that replays it, and the last events before it. Exit code 1 when any seed
 * violated a property.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { Command } from 'commander';
import { type SimOptions, type SimResult, simulate } from './cluster.ts';
import { type ScheduleName, scheduleNames } from './nemesis.ts';

const program = new Command()
  .name('sim')
  .description('deterministic simulation of an Ensemble Raft cluster under faults')
  .option('--seeds <n>', 'how many seeds to run', '100')
  .option('--seed <s>', 'the first seed (alone: replay just that one)')
  .option('--nodes <n>', '3, 5, or mixed (alternate)', 'mixed')
  .option('--steps <m>', 'events per seed before faults heal', '6000')
  .option(
    '--schedule <name>',
    `fault schedule for every seed (${scheduleNames.join(', ')}); default: chosen by seed`,
  )
  .option('--jobs <j>', 'worker threads (1: run in this thread)', String(Math.min(availableParallelism(), 8)))
  .option('--json', 'one JSON object per seed, then the summary')
  .parse();

const o = program.opts<{
  seeds: string;
  seed?: string;
  nodes: string;
  steps: string;
  schedule?: string;
  jobs: string;
  json?: boolean;
}>();
const first = o.seed === undefined ? 1 : Number(o.seed);
const count =
  o.seed !== undefined && !program.getOptionValueSource('seeds')?.startsWith('cli') ? 1 : Number(o.seeds);
const steps = Number(o.steps);
const jobs = Math.min(Number(o.jobs), count);
if (![first, count, steps, jobs].every(Number.isSafeInteger) || count < 1 || steps < 1 || jobs < 1) {
  console.error('sim: --seeds, --seed, --steps and --jobs take whole numbers');
  process.exit(2);
}
const nodesFor = (i: number): number => (o.nodes === 'mixed' ? (i % 2 === 0 ? 3 : 5) : Number(o.nodes));
if (o.nodes !== 'mixed' && ![3, 5].includes(Number(o.nodes))) {
  console.error('sim: --nodes takes 3, 5 or mixed');
  process.exit(2);
}
if (o.schedule !== undefined && !(scheduleNames as readonly string[]).includes(o.schedule)) {
  console.error(`sim: --schedule takes one of ${scheduleNames.join(', ')}`);
  process.exit(2);
}
const schedule = o.schedule as ScheduleName | undefined;

const totals = {
  seeds: 0,
  steps: 0,
  commits: 0,
  elections: 0,
  crashes: 0,
  snapshots: 0,
  violations: 0,
  noCommit: 0,
  sessions: 0,
  expired: 0,
  boundChecked: 0,
  minBoundSlack: Number.POSITIVE_INFINITY,
  scenarios: 0,
  maxSettleMs: 0,
};
const bySchedule = new Map<ScheduleName, number>();
const failed: SimResult[] = [];
const started = performance.now();
let lastProgress = 0;

const optionsFor = (i: number): SimOptions => ({ seed: first + i, nodes: nodesFor(i), steps, schedule });
if (jobs === 1) {
  for (let i = 0; i < count; i++) record(simulate(optionsFor(i)), i);
} else {
  await runOnWorkers();
}

/** Runs the seeds on `jobs` workers, recording results in seed order as they complete. */
function runOnWorkers(): Promise<void> {
  const entry = new URL('./sim-worker.ts', import.meta.url).href;
  // A worker does not inherit tsx's loader: register it there before loading the entry.
  const boot = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); });`;
  const done = new Map<number, SimResult>();
  let next = 0;
  let reported = 0;
  return new Promise((resolve, reject) => {
    const feed = (w: Worker): void => {
      if (next >= count) {
        void w.terminate();
        return;
      }
      const i = next++;
      w.once('message', (r: SimResult) => {
        done.set(i, r);
        while (done.has(reported)) {
          record(done.get(reported)!, reported);
          done.delete(reported);
          reported++;
        }
        if (reported === count) resolve();
        feed(w);
      });
      w.postMessage(optionsFor(i));
    };
    for (let k = 0; k < jobs; k++) {
      const w = new Worker(boot, { eval: true });
      w.on('error', reject);
      feed(w);
    }
  });
}

function record(r: SimResult, i: number): void {
  totals.seeds++;
  bySchedule.set(r.schedule, (bySchedule.get(r.schedule) ?? 0) + 1);
  totals.scenarios += r.scenarios;
  totals.maxSettleMs = Math.max(totals.maxSettleMs, r.settleMs);
  totals.steps += r.steps;
  totals.commits += r.commits;
  totals.elections += r.elections;
  totals.crashes += r.crashes;
  totals.snapshots += r.snapshotsInstalled;
  totals.violations += r.violations.length;
  if (r.commits === 0) totals.noCommit++;
  if (r.sessions !== null) {
    totals.sessions += r.sessions.opened;
    totals.expired += r.sessions.expired;
    totals.boundChecked += r.sessions.boundChecked;
    if (r.sessions.minBoundSlack !== null)
      totals.minBoundSlack = Math.min(totals.minBoundSlack, r.sessions.minBoundSlack);
  }
  if (o.json) console.log(JSON.stringify({ ...r, trace: r.violations.length > 0 ? r.trace : undefined }));
  if (r.violations.length > 0) {
    failed.push(r);
    if (!o.json) report(r);
  }
  const now = performance.now();
  if (!o.json && process.stderr.isTTY && (now - lastProgress > 200 || i === count - 1)) {
    lastProgress = now;
    process.stderr.write(
      `\r  ${i + 1}/${count} seeds  ${totals.commits} commits  ${totals.violations} violations  ${((now - started) / 1000).toFixed(1)} s  ${rate(i + 1, now)} seeds/s `,
    );
  } else if (!o.json && !process.stderr.isTTY && (i + 1) % 100 === 0) {
    process.stderr.write(
      `  ${i + 1}/${count} seeds, ${totals.violations} violations, ${rate(i + 1, now)} seeds/s\n`,
    );
  }
}

if (!o.json && process.stderr.isTTY) process.stderr.write('\n');

const seconds = (performance.now() - started) / 1000;
const seedsPerSecond = rate(totals.seeds, performance.now());
const slack = totals.boundChecked > 0 ? `, least slack to the expiry bound ${totals.minBoundSlack} ms` : '';
const summary = `sim: ${totals.seeds} seeds, ${totals.steps} steps, ${totals.commits} commits, ${totals.elections} elections, ${totals.crashes} crashes, ${totals.snapshots} snapshots installed, ${totals.scenarios} targeted scenarios, ${totals.sessions} sessions (${totals.expired} expired${slack}), slowest settle after healing ${totals.maxSettleMs} ms, ${totals.violations} violations, ${totals.noCommit} seeds without a commit (${seconds.toFixed(1)} s, ${seedsPerSecond} seeds/s)`;
const schedules = `schedules: ${[...bySchedule].map(([name, n]) => `${name} ${n}`).join(', ')}`;
if (o.json)
  console.log(
    JSON.stringify({ summary: totals, schedules: Object.fromEntries(bySchedule), seconds, seedsPerSecond }),
  );
else console.log(`${summary}\n${schedules}`);
process.exit(failed.length > 0 || totals.noCommit > 0 ? 1 : 0);

function rate(seeds: number, now: number): string {
  return (seeds / Math.max((now - started) / 1000, 1e-3)).toFixed(2);
}

function report(r: SimResult): void {
  const v = r.violations[0]!;
  console.log(
    `\nVIOLATION seed ${r.seed} (${r.nodes} nodes, schedule ${r.schedule}) at step ${v.step}, t=${v.time} ms: ${v.property}`,
  );
  console.log(`  ${v.detail}`);
  console.log(
    `  replay: npm run sim -- --seed ${r.seed} --nodes ${r.nodes} --steps ${steps}${schedule ? ` --schedule ${schedule}` : ''}`,
  );
  console.log('  last events:');
  for (const line of r.trace) console.log(`    ${line}`);
}
