/**
 * A restore killed with SIGKILL at a random moment leaves the tree on its old state or on the
 * new one, never in between: the new generation only comes into force by an atomic rename.
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { tempDir } from '../test-util.ts';
import { Driver, dumpOf } from './conformance.ts';
import { RocksTree } from './rocks.ts';

const ROUNDS = 5;
const child = fileURLToPath(new URL('./restore-child.ts', import.meta.url));
const root = fileURLToPath(new URL('../..', import.meta.url));

function runChild(
  dir: string,
  file: string,
  killAfterMs: number | null,
): Promise<{ restoredMs: number | null; exit: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', child, dir, file], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let restoredMs: number | null = null;
    const guard = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (chunk: string) => {
      out += chunk;
      if (killAfterMs !== null && out.startsWith('ready\n') && !out.includes('killing')) {
        out += 'killing';
        setTimeout(() => p.kill('SIGKILL'), killAfterMs);
      }
      const m = /restored (\d+)/.exec(out);
      if (m) restoredMs = Number(m[1]);
    });
    p.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString();
    });
    p.on('error', reject);
    p.on('exit', (code, signal) => {
      clearTimeout(guard);
      if (code !== 0 && signal !== 'SIGKILL') reject(new Error(`child exited ${code}: ${err}`));
      else resolve({ restoredMs, exit: signal ?? String(code) });
    });
  });
}

async function build(dir: string, prefix: string, n: number): Promise<Buffer> {
  const d = new Driver(await RocksTree.open(dir));
  for (let i = 0; i < n; i += 100) {
    const ops = Array.from({ length: 100 }, (_, j) => ({
      op: 'put' as const,
      key: `/${prefix}/${Math.floor((i + j) / 50)}/${i + j}`,
      value: Buffer.alloc(40, i + j),
    }));
    await d.ok({ op: 'txn', compare: [], success: ops, failure: [] });
  }
  const dump = await dumpOf(await d.tree.snapshot());
  await d.tree.close();
  return dump;
}

test('SIGKILL during a restore leaves the old state or the new one', async (t) => {
  const work = await tempDir(t, 'ensemble-restore-');
  const dumps = { a: await build(join(work, 'a'), 'a', 4_000), b: await build(join(work, 'b'), 'b', 25_000) };
  await writeFile(join(work, 'a.dump'), dumps.a);
  await writeFile(join(work, 'b.dump'), dumps.b);
  const dir = join(work, 'a');

  // Calibrate: how long a whole restore of b takes here, then back to a.
  const full = await runChild(dir, join(work, 'b.dump'), null);
  t.not(full.restoredMs, null);
  await runChild(dir, join(work, 'a.dump'), null);
  let current: 'a' | 'b' = 'a';
  const landed = { old: 0, new: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    const next: 'a' | 'b' = current === 'a' ? 'b' : 'a';
    const killAfter = Math.floor(Math.random() * 2 * (full.restoredMs ?? 500));
    const r = await runChild(dir, join(work, `${next}.dump`), killAfter);
    const tree = await RocksTree.open(dir);
    const now = await dumpOf(await tree.snapshot());
    await tree.close();
    const state = now.equals(dumps[current]) ? 'old' : now.equals(dumps[next]) ? 'new' : 'torn';
    t.not(
      state,
      'torn',
      `round ${round}: killed after ${killAfter} ms (${r.exit}): neither old nor new state`,
    );
    if (state === 'new') current = next;
    landed[state === 'new' ? 'new' : 'old']++;
  }
  t.log(
    `full restore ${full.restoredMs} ms; rounds left on old state ${landed.old}, on new state ${landed.new}`,
  );
});
