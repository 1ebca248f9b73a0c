// A client process for the multi-process recipe tests: one role each, reporting on stdout.
// argv: <role> <servers> <cluster> <ttlMs> ...role arguments
//
//   lock <lock> <base> <id> <n>      n times: acquire, mark <base>/in/<id> (ephemeral, fenced),
//                                    counter <base>/counter += 1 through the fence, unmark,
//                                    release; prints "acquired <token> <count>"
//   hold <lock> <base> <id>          acquire, write <base>/resource through the fence, print
//                                    "holding <token>", then keep holding; when it notices it
//                                    was paused longer than its TTL (SIGSTOP), tries another
//                                    fenced write and prints "stale write refused <name>" or
//                                    "stale write ACCEPTED"
//   candidate <election> <base> <id> campaign; while leading, write <base>/resource =
//                                    "<id> <token> <k>" through the fence every 50 ms; campaign
//                                    again when the leadership is lost
//   consumer <queue> <base> <id>     take, ack together with <base>/done/<item> = <id>; forever
//   permit <sem> <permits> <base> <id> <n>  n times: acquire a permit, mark <base>/in/<id>
//                                    (ephemeral, fenced), hold 20 ms, unmark, release
import { NotHeldError } from '../../client/index.ts';
import { fixtureClient } from '../fixture-client.ts';

const [role, servers, cluster, ttl, ...args] = process.argv.slice(2);
const c = await fixtureClient(servers!, cluster!, Number(ttl), 20_000);
const enc = (s: string) => new TextEncoder().encode(s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (line: string) => console.log(line);

switch (role) {
  case 'lock': {
    const [name, base, id, n] = args as [string, string, string, string];
    const lock = c.lock(name);
    for (let i = 0; i < Number(n); i++) {
      const h = await lock.acquire();
      await h.txn({
        compare: [],
        success: [{ op: 'put', key: `${base}/in/${id}`, value: enc(id), ephemeral: true }],
      });
      const count = Number((await c.getText(`${base}/counter`)) ?? '0') + 1;
      await h.put(`${base}/counter`, String(count));
      await h.txn({ compare: [], success: [{ op: 'delete', key: `${base}/in/${id}` }] });
      say(`acquired ${h.token} ${count}`);
      await h.release();
    }
    say('done');
    await c.close();
    break;
  }
  case 'hold': {
    const [name, base, id] = args as [string, string, string];
    const h = await c.lock(name).acquire();
    await h.put(`${base}/resource`, `${id} ${h.token}`);
    say(`holding ${h.token}`);
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      const paused = now - last > Number(ttl);
      last = now;
      if (!paused) return;
      clearInterval(timer);
      h.put(`${base}/resource`, `${id} ${h.token} stale`).then(
        () => say('stale write ACCEPTED'),
        (err: Error) => say(`stale write refused ${err.name}`),
      );
    }, 20);
    break;
  }
  case 'candidate': {
    const [name, base, id] = args as [string, string, string];
    const election = c.election(name);
    for (;;) {
      const l = await election.campaign(id);
      say(`leading ${l.token}`);
      for (let k = 0; !l.signal.aborted; k++) {
        try {
          await l.put(`${base}/resource`, `${id} ${l.token} ${k}`);
        } catch (err) {
          // NotHeldError: the fence closed; SessionExpiredError: the write's session is gone.
          say(`refused ${(err as Error).name}`);
          break;
        }
        await sleep(50);
      }
      say(`lost ${l.token}`);
    }
  }
  case 'consumer': {
    const [name, base, id] = args as [string, string, string];
    const q = c.queue(name);
    for (;;) {
      const item = await q.take();
      const item_ = item.key.slice(item.key.lastIndexOf('/') + 1);
      await sleep(5);
      try {
        await item.ack([{ op: 'put', key: `${base}/done/${item_}`, value: enc(id) }]);
        say(`acked ${item_}`);
      } catch (err) {
        if (!(err instanceof NotHeldError)) throw err;
        say(`lost ${item_}`);
      }
    }
  }
  case 'permit': {
    const [name, permits, base, id, n] = args as [string, string, string, string, string];
    const sem = c.semaphore(name, Number(permits));
    for (let i = 0; i < Number(n); i++) {
      const p = await sem.acquire();
      await p.txn({
        compare: [],
        success: [{ op: 'put', key: `${base}/in/${id}`, value: enc(id), ephemeral: true }],
      });
      say(`permit ${p.token}`);
      await sleep(20);
      await p.txn({ compare: [], success: [{ op: 'delete', key: `${base}/in/${id}` }] });
      await p.release();
    }
    say('done');
    await c.close();
    break;
  }
  default:
    throw new TypeError(`unknown role ${role}`);
}
