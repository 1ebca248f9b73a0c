import { access } from 'node:fs/promises';
import test from 'ava';
import { processAlive, startHarness } from './harness.ts';

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

test('teardown stops what the harness started, by pid, and removes its temp directories', async (t) => {
  const h = await startHarness({ label: 'ensemble-harness', stopGraceMs: 300 });
  const dir = await h.tempDir('data');
  t.true(await exists(dir));
  const nc = await h.connect('client');
  const stubborn = h.spawn('sh', ['-c', 'trap "" TERM; echo ready; while :; do sleep 0.05; done']);
  const polite = h.spawn('sleep', ['60']);
  await stubborn.waitForOutput(/ready/);
  const natsPid = h.natsServers[0]!.pid!;
  // A process the harness did not start, of the same name, must survive teardown.
  const { spawn } = await import('node:child_process');
  const bystander = spawn('sleep', ['60'], { stdio: 'ignore' });
  try {
    t.true(processAlive(stubborn.pid) && processAlive(polite.pid) && processAlive(natsPid));
    await h.teardown();
    t.false(processAlive(stubborn.pid), 'SIGKILL after the grace period');
    t.false(processAlive(polite.pid));
    t.false(processAlive(natsPid));
    t.true(nc.isClosed());
    t.false(await exists(dir));
    t.true(processAlive(bystander.pid!), 'a bystander of the same name is untouched');
    t.like(await polite.exited, { signal: 'SIGTERM' });
    t.like(await stubborn.exited, { signal: 'SIGKILL' });
    await h.teardown(); // idempotent
  } finally {
    bystander.kill('SIGKILL');
  }
});

test('waitForOutput rejects when the process exits first', async (t) => {
  const h = await startHarness({ label: 'ensemble-harness' });
  try {
    const p = h.spawn('sh', ['-c', 'echo bye']);
    await t.throwsAsync(p.waitForOutput(/never/), { message: /exited before/ });
  } finally {
    await h.teardown();
  }
});
