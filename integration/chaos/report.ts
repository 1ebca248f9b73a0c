/** The table a chaos run prints (cli.ts), readable by a person; `--json` prints the report itself. */
import type { ChaosReport } from './run.ts';

const ms = (v: number | null) => (v === null ? '-' : `${Math.round(v)} ms`);

export function formatReport(r: ChaosReport): string {
  const lines: string[] = [];
  lines.push(
    `Chaos run, seed ${r.seed}, ${r.durationS} s; nodes ${r.placement === 'netns' ? 'in network namespaces' : 'on loopback'}, partitions by ${r.partitions}`,
  );
  lines.push('');
  lines.push(
    '| ops ok | failed (nothing applied) | indeterminate | faults | crash-only stops | gap p50 | gap p99 | gap max | violations |',
  );
  lines.push('|---|---|---|---|---|---|---|---|---|');
  lines.push(
    `| ${r.ops.ok} | ${r.ops.failed} | ${r.ops.indeterminate} | ${r.faults.length} | ${r.crashOnlyStops} | ${ms(r.gaps.p50)} | ${ms(r.gaps.p99)} | ${ms(r.gaps.max)} | ${r.violations} |`,
  );
  lines.push('');
  lines.push(
    `faults by kind: ${
      Object.entries(r.faultsByKind)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ') || 'none'
    }`,
  );
  lines.push(`client-seen write gaps after leader kills: ${r.gaps.count} measured`);
  lines.push('');
  for (const c of r.checks) {
    lines.push(`${c.violations.length === 0 ? 'ok  ' : 'FAIL'} ${c.name}${c.detail ? ` (${c.detail})` : ''}`);
    for (const v of c.violations.slice(0, 10)) lines.push(`       ${v}`);
  }
  if (r.dir) lines.push('', `records, node logs and report.json kept in ${r.dir}`);
  return lines.join('\n');
}
