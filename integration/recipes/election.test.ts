/**
 * Election across 5 candidate processes on a real cluster: the leader's process is killed with
 * kill -9 again and again, once paused with SIGSTOP past its TTL and resumed (it still believes
 * it leads), and the cluster's leader node is killed once; a new leader takes over each time, and
 * the fenced resource never accepts a write from anyone but the first candidate in line at that
 * revision, with its own token: a stale leader's write never lands.
 */
import test from 'ava';
import { useCluster } from '../cluster.ts';
import type { ManagedProcess } from '../harness.ts';
import { history, replay, worker } from './processes.ts';

const cluster = useCluster(test, { label: 'ensemble-election', cluster: 'el' });

const seq = (key: string) => Number(key.slice(-10));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('5 candidates, the leader killed 4 times and paused once: the fence refuses every stale write', async (t) => {
  const ttl = 1500;
  const c = await cluster().client();
  const from = (await c.range('/', { limit: 1 })).revision + 1;
  const procs = new Map<string, ManagedProcess>();
  let next = 0;
  const start = () => {
    const id = `c${next++}`;
    procs.set(id, worker(cluster(), ttl, 'candidate', '/el/election', '/el', id));
  };
  for (let i = 0; i < 5; i++) start();
  const election = c.election('/el/election');
  const leaders: string[] = [];
  for (let kill = 0; kill < 5; kill++) {
    // Wait for a leader that has written through its fence, then kill its process.
    let leader: string | undefined;
    for (;;) {
      const l = await election.leader();
      const v = await c.getText('/el/resource');
      if (l !== null && v?.startsWith(`${l.text} ${l.token} `) && l.text !== leaders.at(-1)) {
        leader = l.text;
        break;
      }
      await sleep(50);
    }
    leaders.push(leader);
    await sleep(300); // let it write a few times
    const p = procs.get(leader)!;
    if (kill === 2) {
      // Paused past its TTL: a successor leads meanwhile; resumed, it still thinks it leads.
      process.kill(p.pid, 'SIGSTOP');
      let successor: string | undefined;
      while (successor === undefined) {
        const l = await election.leader();
        if (l !== null && l.text !== leader && (await c.getText('/el/resource'))?.startsWith(`${l.text} `))
          successor = l.text;
        else await sleep(50);
      }
      process.kill(p.pid, 'SIGCONT');
      await p.waitForOutput(/lost \d+/, 15_000);
      t.log(`paused leader ${leader} resumed: ${p.output().match(/refused \w+|lost \d+/)?.[0]}`);
      continue;
    }
    await p.kill('SIGKILL');
    procs.delete(leader);
    start();
    if (kill === 1) {
      const node = await cluster().waitForLeader();
      await cluster().kill(node);
      t.log(`killed cluster leader node ${node}`);
      await cluster().waitForLeader(30_000, cluster().running());
      await cluster().startNode(node, cluster().ids);
    }
  }
  // One more leader must take over and write after the last kill.
  const deadline = performance.now() + 30_000;
  let last: string | undefined;
  while (performance.now() < deadline) {
    const l = await election.leader();
    const v = await c.getText('/el/resource');
    if (l !== null && l.text !== leaders.at(-1) && v?.startsWith(`${l.text} ${l.token} `)) {
      last = l.text;
      break;
    }
    await sleep(50);
  }
  t.truthy(last, 'a leader took over after the last kill');
  t.log(`leaders in turn: ${[...leaders, last].join(' → ')}`);
  for (const p of procs.values()) await p.kill('SIGKILL');

  let writes = 0;
  let stale = 0;
  let twoLeaders = 0;
  replay(await history(c, '/el/', from), (live, _rev, changed) => {
    const line = [...live.entries()]
      .filter(([k]) => k.startsWith('/el/election/'))
      .sort((a, b) => seq(a[0]) - seq(b[0]));
    for (const e of changed) {
      if (e.type !== 'put' || e.key !== '/el/resource') continue;
      writes++;
      const [id, token] = new TextDecoder().decode(e.value).split(' ');
      const first = line[0];
      if (first === undefined || first[1].value !== id || first[1].createRevision !== Number(token)) stale++;
    }
    const writers = changed.filter((e) => e.key === '/el/resource').length;
    if (writers > 1) twoLeaders++;
  });
  t.true(writes > 20, `${writes} fenced writes`);
  t.is(stale, 0, 'every write came from the first candidate in line, with its token');
  t.is(twoLeaders, 0);
});
