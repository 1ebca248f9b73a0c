/**
 * `npm run sim -- --seeds N [--nodes 3|5|mixed] [--steps M] [--seed S] [--json]`
 *
 * Runs seeded simulations, shows progress, and ends with one summary line. A violation prints
 * the seed, the command that replays it, and the last events before it. Exit code 1 when any
 * seed violated a property.
 */
import { Command } from 'commander';
import { type SimResult, simulate } from './cluster.ts';

const program = new Command()
  .name('sim')
  .description('deterministic simulation of an Ensemble Raft cluster under faults')
  .option('--seeds <n>', 'how many seeds to run', '100')
  .option('--seed <s>', 'the first seed (alone: replay just that one)')
  .option('--nodes <n>', '3, 5, or mixed (alternate)', 'mixed')
  .option('--steps <m>', 'events per seed before faults heal', '6000')
  .option('--json', 'one JSON object per seed, then the summary')
  .parse();

const o = program.opts<{ seeds: string; seed?: string; nodes: string; steps: string; json?: boolean }>();
const first = o.seed === undefined ? 1 : Number(o.seed);
const count =
  o.seed !== undefined && !program.getOptionValueSource('seeds')?.startsWith('cli') ? 1 : Number(o.seeds);
const steps = Number(o.steps);
if (![first, count, steps].every(Number.isSafeInteger) || count < 1 || steps < 1) {
  console.error('sim: --seeds, --seed and --steps take whole numbers');
  process.exit(2);
}
const nodesFor = (i: number): number => (o.nodes === 'mixed' ? (i % 2 === 0 ? 3 : 5) : Number(o.nodes));
if (o.nodes !== 'mixed' && ![3, 5].includes(Number(o.nodes))) {
  console.error('sim: --nodes takes 3, 5 or mixed');
  process.exit(2);
}

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
};
const failed: SimResult[] = [];
const started = performance.now();
let lastProgress = 0;

for (let i = 0; i < count; i++) {
  const seed = first + i;
  const r = simulate({ seed, nodes: nodesFor(i), steps });
  totals.seeds++;
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
      `\r  ${i + 1}/${count} seeds  ${totals.commits} commits  ${totals.violations} violations  ${((now - started) / 1000).toFixed(1)} s `,
    );
  } else if (!o.json && !process.stderr.isTTY && (i + 1) % 100 === 0) {
    process.stderr.write(`  ${i + 1}/${count} seeds, ${totals.violations} violations\n`);
  }
}
if (!o.json && process.stderr.isTTY) process.stderr.write('\n');

const seconds = (performance.now() - started) / 1000;
const slack = totals.boundChecked > 0 ? `, least slack to the expiry bound ${totals.minBoundSlack} ms` : '';
const summary = `sim: ${totals.seeds} seeds, ${totals.steps} steps, ${totals.commits} commits, ${totals.elections} elections, ${totals.crashes} crashes, ${totals.snapshots} snapshots installed, ${totals.sessions} sessions (${totals.expired} expired${slack}), ${totals.violations} violations, ${totals.noCommit} seeds without a commit (${seconds.toFixed(1)} s)`;
if (o.json) console.log(JSON.stringify({ summary: totals, seconds }));
else console.log(summary);
process.exit(failed.length > 0 || totals.noCommit > 0 ? 1 : 0);

function report(r: SimResult): void {
  const v = r.violations[0]!;
  console.log(
    `\nVIOLATION seed ${r.seed} (${r.nodes} nodes) at step ${v.step}, t=${v.time} ms: ${v.property}`,
  );
  console.log(`  ${v.detail}`);
  console.log(`  replay: npm run sim -- --seed ${r.seed} --nodes ${r.nodes} --steps ${steps}`);
  console.log('  last events:');
  for (const line of r.trace) console.log(`    ${line}`);
}
