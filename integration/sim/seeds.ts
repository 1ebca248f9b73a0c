/** Shared by the seed-sweep tests: run a range of seeds and describe any failure fully. */
import type { ExecutionContext } from 'ava';
import { type SimOptions, simulate } from './cluster.ts';

export function sweep(
  t: ExecutionContext,
  nodes: number,
  first: number,
  count: number,
  steps: number,
  extra: Partial<SimOptions> = {},
) {
  let commits = 0;
  for (let seed = first; seed < first + count; seed++) {
    const r = simulate({ seed, nodes, steps, ...extra });
    commits += r.commits;
    if (r.violations.length > 0) {
      const v = r.violations[0]!;
      t.fail(
        `seed ${seed}: ${v.property}: ${v.detail}\nreplay: npm run sim -- --seed ${seed} --nodes ${nodes} --steps ${steps}\n${r.trace.join('\n')}`,
      );
      return;
    }
    t.true(r.commits > 0, `seed ${seed} committed nothing`);
  }
  t.log(`${count} seeds of ${nodes} nodes: ${commits} commits`);
}
