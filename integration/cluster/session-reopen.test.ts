/**
 * A client whose session the cluster could not hear for a whole TTL (every node down) gives it up
 * (LOST), opens a new one when the cluster is back, and goes on: writes wait for the new session
 * (within their deadline), and a watch opened under the old session resumes under the new one
 * instead of ending with SESSION_EXPIRED (the chaos suite found both).
 */
import test from 'ava';
import { useCluster } from '../cluster.ts';
import { waitFor } from '../wait.ts';

const cluster = useCluster(test, { label: 'ensemble-reopen', cluster: 'reopen' });

test('after every node was down past the TTL: a new session, writes go on, the watch follows', async (t) => {
  const c = await cluster().client({ sessionTtlMs: 3000, timeoutMs: 20_000 });
  const first = c.sessionInfo!.id;
  const states: string[] = [];
  c.onSessionState((s) => states.push(s));
  const seen: string[] = [];
  let watchError: unknown = null;
  const watching = (async () => {
    try {
      for await (const e of c.watch({ prefix: '/re/' })) if (e.type === 'put') seen.push(e.key);
    } catch (err) {
      watchError = err;
    }
  })();
  await c.put('/re/before', 'x');
  await waitFor(() => seen.includes('/re/before'), { what: 'the watch saw the first write' });

  const ids = cluster().ids;
  await Promise.all(ids.map((id) => cluster().kill(id)));
  await waitFor(() => states.includes('LOST'), {
    what: 'the client gives the session up',
    timeoutMs: 15_000,
  });
  for (const id of ids) await cluster().startNode(id, ids);
  const leader = await cluster().waitForLeader();
  // The restarted cluster gives every session a fresh TTL; wait until it expired the old one.
  const admin = await cluster().admin();
  await waitFor(async () => !(await admin.status(leader)).sessions.some((s) => s.id === first), {
    what: 'the cluster expires the session the client gave up',
    timeoutMs: 20_000,
  });

  // A write issued now waits for the new session and applies under it.
  await c.put('/re/after', 'y');
  t.not(c.sessionInfo!.id, first, 'a new session');
  await waitFor(() => seen.includes('/re/after'), {
    what: 'the watch goes on under the new session',
    timeoutMs: 20_000,
  });
  t.is(watchError, null);
  t.true(states.includes('CONNECTED'));
  await c.close();
  await watching;
});
