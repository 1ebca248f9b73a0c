/**
 * Crash test with real processes: a child appends to a RocksDB log and reports every index it
 * saw acknowledged; the parent kills it with SIGKILL at random moments, reopens the store and
 * checks that every acknowledged entry is there, intact, with no gap and no torn entry.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { tempDir } from '../test-util.ts';
import { payloadOf } from './crash-child.ts';
import { RocksLogStore } from './rocks.ts';

const ROUNDS = 15;
const BUDGET_MS = 40_000;
const child = fileURLToPath(new URL('./crash-child.ts', import.meta.url));
const root = fileURLToPath(new URL('../..', import.meta.url));

interface Round {
  acked: number;
  ackedTerm: number;
  exit: string;
  stderr: string;
}

function runChild(dir: string, killAfterMs: number): Promise<Round> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', child, dir], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const round: Round = { acked: -1, ackedTerm: 0, exit: '', stderr: '' };
    let buffered = '';
    let timer: NodeJS.Timeout | undefined;
    const guard = setTimeout(() => p.kill('SIGKILL'), 20_000);
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const [kind, a, b] = line.split(' ');
        if (kind === 'ready') {
          round.acked = Math.max(round.acked, Number(a));
          timer = setTimeout(() => p.kill('SIGKILL'), killAfterMs);
        } else if (kind === 'ack') {
          round.acked = Math.max(round.acked, Number(a));
          round.ackedTerm = Math.max(round.ackedTerm, Number(b));
        } else if (kind === 'term') {
          round.ackedTerm = Math.max(round.ackedTerm, Number(a));
        }
      }
    });
    p.stderr.setEncoding('utf8');
    p.stderr.on('data', (chunk: string) => {
      round.stderr += chunk;
    });
    p.on('error', reject);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(guard);
      round.exit = signal ?? String(code);
      resolve(round);
    });
  });
}

test('SIGKILL at random moments loses no acknowledged entry and tears none', async (t) => {
  const dir = await tempDir(t, 'ensemble-crash-');
  const started = performance.now();
  let maxAcked = 0;
  let maxTerm = 0;
  let progressed = 0;
  let rounds = 0;
  for (let round = 0; round < ROUNDS && performance.now() - started < BUDGET_MS; round++) {
    const killAfter = 30 + Math.floor(Math.random() * 400);
    const r = await runChild(dir, killAfter);
    rounds++;
    t.is(r.exit, 'SIGKILL', `round ${round}: child exited ${r.exit}: ${r.stderr}`);
    if (r.acked > maxAcked) progressed++;
    maxAcked = Math.max(maxAcked, r.acked);
    maxTerm = Math.max(maxTerm, r.ackedTerm);

    const store = await RocksLogStore.open(dir);
    try {
      t.true(
        store.lastIndex() >= maxAcked,
        `round ${round}: lastIndex ${store.lastIndex()} < acked ${maxAcked}`,
      );
      t.true(
        store.hardState().term >= maxTerm,
        `round ${round}: term ${store.hardState().term} < acked ${maxTerm}`,
      );
      const entries = store.entries(store.firstIndex(), store.lastIndex() + 1);
      let prevTerm = store.term(store.firstIndex() - 1) ?? 0;
      let bad = 0;
      entries.forEach((e, k) => {
        const expected = payloadOf(e.index);
        const ok =
          e.index === store.firstIndex() + k &&
          e.type === 'normal' &&
          e.data instanceof Uint8Array &&
          Buffer.compare(e.data, expected) === 0 &&
          e.term >= prevTerm;
        if (!ok) bad++;
        prevTerm = e.term;
      });
      t.is(bad, 0, `round ${round}: ${bad} torn or misplaced entries`);
    } finally {
      await store.close();
    }
  }
  t.log(`${rounds} rounds, ${maxAcked} entries acknowledged, ${progressed} rounds made progress`);
  t.true(progressed >= Math.ceil(rounds / 2), 'most rounds acknowledged new entries');
});
