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
  const sessions = {
    opened: 0,
    expired: 0,
    closed: 0,
    boundChecked: 0,
    minBoundSlack: Number.POSITIVE_INFINITY,
  };
  const schedules = new Map<string, number>();
  for (let seed = first; seed < first + count; seed++) {
    const r = simulate({ seed, nodes, steps, ...extra });
    schedules.set(r.schedule, (schedules.get(r.schedule) ?? 0) + 1);
    commits += r.commits;
    if (r.sessions !== null) {
      sessions.opened += r.sessions.opened;
      sessions.expired += r.sessions.expired;
      sessions.closed += r.sessions.closed;
      sessions.boundChecked += r.sessions.boundChecked;
      sessions.minBoundSlack = Math.min(
        sessions.minBoundSlack,
        r.sessions.minBoundSlack ?? Number.POSITIVE_INFINITY,
      );
    }
    if (r.violations.length > 0) {
      const v = r.violations[0]!;
      t.fail(
        `seed ${seed} (schedule ${r.schedule}): ${v.property}: ${v.detail}\nreplay: npm run sim -- --seed ${seed} --nodes ${nodes} --steps ${steps}\n${r.trace.join('\n')}`,
      );
      return;
    }
    t.true(r.commits > 0, `seed ${seed} committed nothing`);
  }
  t.log(
    `${count} seeds of ${nodes} nodes (${[...schedules].map(([k, n]) => `${k} ${n}`).join(', ')}): ${commits} commits; sessions: ${sessions.opened} opened, ${sessions.expired} expired (${sessions.boundChecked} with a leader in office, least slack to the bound ${sessions.minBoundSlack} ms), ${sessions.closed} closed`,
  );
}
