import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { processAlive } from '../integration/harness.ts';

const fixture = fileURLToPath(new URL('./children.fixture.ts', import.meta.url));

async function gone(pid: number, timeoutMs = 5000): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (processAlive(pid)) {
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** Runs the fixture and resolves with the pids of the children it started. */
function runFixture(args: readonly string[]) {
  const child = spawn(process.execPath, ['--import=tsx', fixture, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const pids = new Promise<number[]>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = out.match(/pids (\d+) (\d+)/);
      if (m) resolve([Number(m[1]), Number(m[2])]);
    });
    void exited.then(() => reject(new Error(`fixture exited early: ${out}`)));
  });
  return { child, exited, pids };
}

test('children die with their parent when it is killed by SIGTERM', async (t) => {
  const run = runFixture([]);
  const pids = await run.pids;
  t.true(pids.every(processAlive));
  run.child.kill('SIGTERM');
  t.like(await run.exited, { signal: 'SIGTERM' }, 'the parent still dies of the signal');
  for (const pid of pids) t.true(await gone(pid), `child ${pid} reaped`);
});

test('children die with their parent when it exits', async (t) => {
  const run = runFixture(['exit']);
  const pids = await run.pids;
  t.like(await run.exited, { code: 3 });
  for (const pid of pids) t.true(await gone(pid), `child ${pid} reaped`);
});
