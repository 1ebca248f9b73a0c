// A registered service instance in its own process, for the registry tests: connects with a short
// session TTL, registers, prints `ready <session>` and each session state change; given a
// service to watch, keeps a view of it and prints `view <ids>` whenever its set changes.
// argv: servers cluster service instance ttlMs [watchService]
import { fixtureClient } from '../fixture-client.ts';

const [servers, cluster, service, instance, ttl, watched] = process.argv.slice(2);
const c = await fixtureClient(servers!, cluster!, Number(ttl));
c.onSessionState((state, id) => console.log(`session ${state} ${id}`));
await c.registry.register(service!, instance!, { address: `app.${service}.${instance}` });
if (watched) {
  const view = await c.registry.view(watched);
  let last = '';
  setInterval(() => {
    const ids = view.instances.map((i) => i.id).join(',');
    if (ids !== last) console.log(`view ${(last = ids)}`);
  }, 50);
}
console.log(`ready ${c.sessionInfo?.id}`);
setInterval(() => {}, 1 << 30);
