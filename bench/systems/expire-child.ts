/**
 * The client that dies in the session-expiry workload of `npm run bench`:
 * `tsx bench/systems/expire-child.ts <system> <config JSON> <run> <sessions> <ttl ms>` opens the
 * sessions, one ephemeral key each (`holdEphemerals` of the system's module), prints `ready`, and
 * waits to be killed (SIGKILL: no session is ended, each must expire). Exits by itself after
 * 5 minutes so that it never outlives a benchmark that lost track of it.
 */
import { systems } from './index.ts';
import type { SystemName } from './types.ts';

const [name, config, run, n, ttlMs] = process.argv.slice(2);
const mod = systems[name as SystemName];
if (!mod?.holdEphemerals) {
  console.error(`expire-child: no sessions for ${name}`);
  process.exit(2);
}
setTimeout(() => process.exit(3), 300_000);
try {
  await mod.holdEphemerals(JSON.parse(config!), run!, Number(n), Number(ttlMs));
  process.stdout.write('ready\n');
} catch (err) {
  console.error(`expire-child: ${(err as Error).message}`);
  process.exit(1);
}
