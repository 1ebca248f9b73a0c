/**
 * `npm run bench -- --quick` as CI runs it: the side-by-side benchmark works end to end for
 * Ensemble and NATS KV (the systems this machine has without installing anything: etcd and
 * ZooKeeper come from apt, hundreds of MB, and are left to `npm run bench`). It checks that the
 * run completes, that every workload of each system produced a result and not an error, and that
 * the tables name every system; it asserts nothing about speed (figures of a smoke run on a
 * machine running the other tests mean nothing).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { adopt } from '../cluster/children.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

test('npm run bench -- --quick: every workload of Ensemble and NATS KV runs and is reported', async (t) => {
  t.timeout(6 * 60_000);
  const dir = await mkdtemp(path.join(tmpdir(), 'ensemble-bench-smoke-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'results.json');
  const child = spawn(
    process.execPath,
    [
      '--import=tsx',
      path.join(ROOT, 'bench', 'bench.ts'),
      '--quick',
      '--systems',
      'ensemble,natskv',
      '--max-minutes',
      '5',
      '--out',
      out,
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  adopt(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.is(code, 0, `bench exited with ${code}:\n${stderr.slice(-3000)}`);
  t.regex(stderr, /\[bench [\d:]+\] ensemble: /, 'progress lines on stderr');

  const results = JSON.parse(await readFile(out, 'utf8')) as {
    complete: boolean;
    params: { quick: boolean };
    systems: Record<string, { status: string; workloads: Record<string, unknown> }>;
  };
  t.true(results.complete);
  t.true(results.params.quick);
  for (const name of ['ensemble', 'natskv']) {
    const s = results.systems[name];
    t.is(s?.status, 'ok', name);
    const failed = Object.entries(s?.workloads ?? {}).filter(
      ([, w]) => typeof w === 'object' && w !== null && 'error' in w,
    );
    t.deepEqual(failed, [], `${name}: no workload failed`);
    t.true(Object.keys(s?.workloads ?? {}).length >= 7, `${name}: every workload reported`);
    t.regex(stdout, new RegExp(`\\| ${name} \\|`), `${name} in the tables`);
  }
  t.regex(stdout, /### Sequential put latency/);
});
