/**
 * `ensemble up --inspect` as a user runs it: the nodes publish from the start, the inspector runs
 * in the same process, its URL is in what `up` prints, and Ctrl-C stops it with the rest.
 */
import { fileURLToPath } from 'node:url';
import test from 'ava';
import type { ModelDump } from '../../cluster/inspect/model.ts';
import { freePort } from '../../cluster/nats-server.ts';
import { useHarness } from '../harness.ts';
import { waitFor } from '../wait.ts';

const harness = useHarness(test, { label: 'inspect-up', natsConfig: null });
const BIN = fileURLToPath(new URL('../../bin/ensemble.mjs', import.meta.url));

test('ensemble up --inspect: the inspector sees every node, its raft and supervisor machines, and a leader', async (t) => {
  const data = await harness().tempDir('up-data');
  const port = await freePort();
  const up = harness().spawn(
    process.execPath,
    [
      BIN,
      'up',
      '--json',
      '--inspect',
      '--inspect-port',
      '0',
      '--data',
      data,
      '--port',
      String(port),
      '--cluster',
      'upinsp',
    ],
    { env: { ...process.env } },
  );
  const [line] = (await up.waitForOutput(/^\{"cluster".*\}$/m, 90_000)) as RegExpMatchArray;
  const info = JSON.parse(line!) as { leader: string; inspect: string; nodes: { id: string; pid: number }[] };
  t.regex(info.inspect, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const state = await waitFor(
    async () => {
      const d = (await (await fetch(`${info.inspect}state`)).json()) as ModelDump;
      const ready =
        d.nodes.length === 3 &&
        d.nodes.every((n) => !n.dark) &&
        ['n1', 'n2', 'n3'].every((id) =>
          ['raft', 'node'].every((name) =>
            d.actors.some((a) => a.origin === id && a.name === name && a.definitionText !== null),
          ),
        );
      return ready ? d : null;
    },
    { what: 'three nodes with their machines', timeoutMs: 20_000, intervalMs: 200 },
  );
  const leaders = state.nodes.filter((n) => n.status?.role === 'leader');
  t.is(leaders.length, 1);
  t.deepEqual(
    state.nodes.map((n) => n.status?.pid).sort(),
    info.nodes.map((n) => n.pid).sort(),
    'the nodes up started',
  );
  const page = await fetch(info.inspect);
  t.regex(await page.text(), /Ensemble inspector/);
  up.child.kill('SIGINT');
  t.is((await up.exited).code, 0);
  await t.throwsAsync(fetch(`${info.inspect}state`), undefined, 'the inspector stopped with up');
});
