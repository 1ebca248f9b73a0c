/**
 * `npm run chaos -- --duration 60 --seed S [--faults kill,pause,actor,nats,partition,disk]
 * [--netns|--no-netns] [--workers N] [--json] [--keep]`: one chaos run (run.ts) with progress on
 * stderr, then a table (or, with --json, the report) on stdout; exit code 1 on any violation.
 */
import { Command, InvalidArgumentError } from 'commander';
import { FAULT_KINDS, type FaultKind } from './faults.ts';
import { formatReport } from './report.ts';
import { recheck, runChaos } from './run.ts';

const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a whole number`);
  return n;
};

const kinds = (v: string): FaultKind[] => {
  const list = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const k of list)
    if (!(FAULT_KINDS as readonly string[]).includes(k))
      throw new InvalidArgumentError(`unknown fault kind ${k} (kinds: ${FAULT_KINDS.join(', ')})`);
  if (list.length === 0) throw new InvalidArgumentError('name at least one fault kind');
  return list as FaultKind[];
};

const program = new Command('chaos')
  .description('run a cluster under faults with recording clients, then check everything')
  .option('--duration <s>', 'seconds of faults', int('--duration'), 60)
  .option('--seed <n>', 'seed of the fault schedule and the workloads', int('--seed'), Date.now() % 100000)
  .option('--faults <kinds>', `comma-separated: ${FAULT_KINDS.join(',')}`, kinds, [...FAULT_KINDS])
  .option('--netns', 'nodes in network namespaces (fail if not permitted)')
  .option('--no-netns', 'nodes on loopback; partitions by transport filters')
  .option('--workers <n>', 'client processes', int('--workers'), 4)
  .option('--tick-ms <ms>', 'Raft tick of the nodes', int('--tick-ms'))
  .option('--keep', 'keep the run directory even when the run is clean')
  .option('--json', 'print the report as JSON')
  .option('--recheck <dir>', 'only run the record checks again over a kept run directory')
  .action(async (o) => {
    if (o.recheck) {
      const checks = await recheck(o.recheck);
      for (const c of checks)
        process.stdout.write(
          `${c.violations.length === 0 ? 'ok  ' : 'FAIL'} ${c.name}${c.detail ? ` (${c.detail})` : ''}\n${c.violations.map((v) => `       ${v}\n`).join('')}`,
        );
      process.exit(checks.some((c) => c.violations.length > 0) ? 1 : 0);
    }
    const netns: boolean | 'auto' = o.netns === undefined ? 'auto' : o.netns;
    // The first Ctrl-C ends the faults early and still checks; a second one stops at once.
    const interrupted = new AbortController();
    process.once('SIGINT', () => {
      process.stderr.write(
        'interrupted: healing, stopping the workers and checking (Ctrl-C again to quit)\n',
      );
      interrupted.abort();
      process.once('SIGINT', () => process.exit(130));
    });
    const report = await runChaos({
      durationS: o.duration,
      seed: o.seed,
      faults: o.faults,
      netns,
      workers: o.workers,
      flags: o.tickMs ? ['--tick-ms', String(o.tickMs)] : [],
      keep: Boolean(o.keep),
      signal: interrupted.signal,
      log: (line) => process.stderr.write(`${line}\n`),
    });
    process.stdout.write(`${o.json ? JSON.stringify(report, null, 2) : formatReport(report)}\n`);
    process.exit(report.violations === 0 ? 0 : 1);
  });

program.parseAsync().catch((err) => {
  process.stderr.write(`chaos: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
});
