/**
 * `ensemble up` as a user runs it (the built bin/ensemble.mjs): a local cluster that reports where
 * everything is, restarts a node that dies (crash-only nodes come back from their data), warns about
 * development passwords, and stops everything, and only that, on Ctrl-C.
 */
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { connect } from '../client/index.ts';
import { processAlive, useHarness } from '../integration/harness.ts';
import { waitFor } from '../integration/wait.ts';
import { freePort, natsCredentials } from './nats-server.ts';

const harness = useHarness(test, { label: 'ensemble-up', natsConfig: null });
const BIN = fileURLToPath(new URL('../bin/ensemble.mjs', import.meta.url));

interface UpInfo {
  readonly nats: string[];
  readonly leader: string;
  readonly nodes: { readonly id: string; readonly pid: number }[];
}

test('ensemble up: a killed node is restarted from its data; Ctrl-C stops everything it started', async (t) => {
  const data = await harness().tempDir('up-data');
  const port = await freePort();
  const up = harness().spawn(
    process.execPath,
    [BIN, 'up', '--json', '--data', data, '--port', String(port), '--cluster', 'updev'],
    { env: { ...process.env } },
  );
  const [line] = (await up.waitForOutput(/^\{"cluster".*\}$/m, 90_000)) as RegExpMatchArray;
  const info = JSON.parse(line!) as UpInfo;
  t.regex(up.output(), /public development passwords/, 'one clear warning about the development passwords');
  t.is(info.nodes.length, 3);
  const victim = info.nodes.find((n) => n.id !== info.leader)!;
  process.kill(victim.pid, 'SIGKILL');
  await up.waitForOutput(new RegExp(`node ${victim.id} exited \\(SIGKILL\\); restarting it`), 15_000);
  const c = await connect({
    servers: info.nats,
    cluster: 'updev',
    user: 'client',
    pass: natsCredentials('client').pass,
    session: false,
    timeoutMs: 5000,
  });
  try {
    await c.put('/up/after-kill', 'yes');
    const back = await waitFor(() => c.status(victim.id).catch(() => null), {
      what: `${victim.id} answers again`,
      timeoutMs: 30_000,
    });
    t.is(back.id, victim.id);
    t.true(up.child.exitCode === null, 'the cluster did not stop when a node died');
  } finally {
    await c.close();
  }
  const pids = info.nodes.map((n) => n.pid).filter((p) => p !== victim.pid);
  up.child.kill('SIGINT');
  const exit = await up.exited;
  t.is(exit.code, 0);
  t.true(
    pids.every((p) => !processAlive(p)),
    'its nodes are gone',
  );
});
