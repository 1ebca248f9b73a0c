/**
 * The chaos suite in CI: a short run (CHAOS_DURATION seconds, 75 by default) that takes every
 * fault kind in turn — process kills and pauses, actor stops, NATS server kills, partitions
 * (network namespaces where permitted, else the nodes' transport filters) and disk faults (as
 * root) — under four recording client processes, then every check of run.ts. `npm run chaos`
 * runs longer, random mixes.
 */
import test from 'ava';
import { canMount } from './disks.ts';
import { FAULT_KINDS } from './faults.ts';
import { formatReport } from './report.ts';
import { runChaos } from './run.ts';

const durationS = Number(process.env.CHAOS_DURATION ?? 75);
const seed = Number(process.env.CHAOS_SEED ?? 20261201);

test('a cluster under every kind of fault: no violation, every kind injected, clients served', async (t) => {
  const report = await runChaos({
    durationS,
    seed,
    faults: FAULT_KINDS,
    netns: 'auto',
    workers: 4,
    roundRobin: true,
    log: (line) => t.log(line),
  });
  t.log(`\n${formatReport(report)}`);
  t.is(report.violations, 0, formatReport(report));
  const kinds = canMount() ? FAULT_KINDS : FAULT_KINDS.filter((k) => k !== 'disk');
  for (const k of kinds) t.true((report.faultsByKind[k] ?? 0) >= 1, `no ${k} fault was injected`);
  t.true(report.ops.ok > 500, `only ${report.ops.ok} operations succeeded`);
  // Every check ran on real data: histories, watches and the final trees.
  t.true(report.checks.length >= 6);
});
