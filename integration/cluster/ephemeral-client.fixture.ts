// A client process for the session tests: opens a session, writes one ephemeral key, waits.
// argv: servers cluster key ttlMs
import { connect } from '../../client/index.ts';

const [servers, cluster, key, ttl] = process.argv.slice(2);
const c = await connect({
  servers: servers!.split(','),
  cluster: cluster!,
  user: 'client',
  pass: process.env.ENSEMBLE_CLIENT_PASSWORD ?? 'ensemble-client-dev',
  sessionTtlMs: Number(ttl),
});
await c.put(key!, 'mine', { ephemeral: true });
console.log('ready');
setInterval(() => {}, 1 << 30);
