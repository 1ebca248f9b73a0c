// A client process for the session tests: opens a session, writes one ephemeral key, waits.
// argv: servers cluster key ttlMs
import { fixtureClient } from '../fixture-client.ts';

const [servers, cluster, key, ttl] = process.argv.slice(2);
const c = await fixtureClient(servers!, cluster!, Number(ttl));
await c.put(key!, 'mine', { ephemeral: true });
console.log('ready');
setInterval(() => {}, 1 << 30);
