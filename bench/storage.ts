/**
 * `npm run bench:storage [-- --keys N --seconds S]`: how fast storage/ is on this machine.
 * - synced appends/s through `RocksLogStore` with group-commit batches of about 1, 16 and 256
 *   single-entry writes (whatever piles up while a batch syncs goes out as the next one),
 *   against raw RocksDB synced batches of the same sizes (the baseline, same run);
 * - applied commands/s for `MemoryTree` (baseline) and `RocksTree`, plain and exactly-once;
 * - snapshot and restore time for N keys (default 1M), with the longest event-loop stall.
 * Everything lives in temporary directories that are removed at the end.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Presets, SingleBar } from 'cli-progress';
import type { Entry } from '../machines/raft/types.ts';
import type { Command } from '../protocol/index.ts';
import { RocksLogStore } from '../storage/log/rocks.ts';
import { RocksDb } from '../storage/rocks/db.ts';
import { MemoryTree } from '../storage/tree/memory.ts';
import { RocksTree } from '../storage/tree/rocks.ts';
import type { KeyTree } from '../storage/tree/types.ts';

const { values: args } = parseArgs({
  options: { keys: { type: 'string', default: '1000000' }, seconds: { type: 'string', default: '2' } },
});
const KEYS = Number(args.keys);
const SECONDS = Number(args.seconds);
const rows: [string, string, string][] = [];
const root = await mkdtemp(join(tmpdir(), 'ensemble-bench-'));
let dirs = 0;
const newDir = () => join(root, `d${dirs++}`);
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => `${n.toFixed(n < 10 ? 2 : 0)} ms`;

function bar(title: string, total: number): SingleBar {
  const b = new SingleBar(
    {
      format: `${title.padEnd(34)} [{bar}] {percentage}% {value}/{total}`,
      stream: process.stderr,
      hideCursor: true,
    },
    Presets.shades_classic,
  );
  b.start(total, 0);
  return b;
}

async function time<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T; stallMs: number }> {
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  const start = performance.now();
  const value = await fn();
  const elapsed = performance.now() - start;
  h.disable();
  return { ms: elapsed, value, stallMs: h.max / 1e6 };
}

const payload = Buffer.alloc(100, 7);

// ---- synced appends ---------------------------------------------------------------------------

async function rawBatches(size: number): Promise<{ perSec: number; batchMs: number }> {
  const db = await RocksDb.open(newDir());
  let key = 0;
  let batches = 0;
  const start = performance.now();
  while (performance.now() - start < SECONDS * 1000) {
    const ops = [];
    for (let i = 0; i < size; i++)
      ops.push({ type: 'put' as const, key: Buffer.from(`e${key++}`), value: payload });
    await db.batch(ops, true);
    batches++;
  }
  const elapsed = performance.now() - start;
  await db.close();
  return { perSec: (key * 1000) / elapsed, batchMs: elapsed / batches };
}

async function groupCommit(writers: number): Promise<{ perSec: number; batchSize: number; batchMs: number }> {
  const store = await RocksLogStore.open(newDir());
  let next = 1;
  let done = 0;
  const start = performance.now();
  const deadline = start + SECONDS * 1000;
  const writer = async () => {
    while (performance.now() < deadline) {
      const e: Entry = { index: next++, term: 1, type: 'normal', data: payload };
      await store.write({ entries: [e] });
      done++;
    }
  };
  await Promise.all(Array.from({ length: writers }, writer));
  const elapsed = performance.now() - start;
  const stats = store.stats();
  await store.close();
  return {
    perSec: (done * 1000) / elapsed,
    batchSize: stats.writes / stats.batches,
    batchMs: elapsed / stats.batches,
  };
}

process.stderr.write('synced appends...\n');
// Writers wait for their write before the next one, so half of them ride the batch in flight
// and half pile up for the next: 2B writers make batches of about B.
for (const size of [1, 16, 256]) {
  const base = await rawBatches(size);
  const store = await groupCommit(size === 1 ? 1 : 2 * size);
  rows.push([
    `synced appends/s, group commit ~${size}`,
    `${fmt(store.perSec)} (batch ${store.batchSize.toFixed(1)}, ${ms(store.batchMs)}/fsync)`,
    `raw RocksDB batch of ${size}: ${fmt(base.perSec)} (${ms(base.batchMs)}/fsync)`,
  ]);
}

// ---- apply ------------------------------------------------------------------------------------

const APPLY_N = Math.min(100_000, Math.max(10_000, KEYS));

async function applyRate(tree: KeyTree, exactlyOnce: boolean, title: string): Promise<number> {
  const b = bar(title, APPLY_N);
  let index = tree.appliedIndex;
  if (exactlyOnce)
    await tree.apply(++index, { op: 'sessionOpen', id: 'bench', secret: payload, ttlMs: 10_000 });
  const start = performance.now();
  for (let i = 0; i < APPLY_N; i++) {
    const cmd: Command = exactlyOnce
      ? {
          op: 'put',
          key: `/bench/${i % 1000}/${i}`,
          value: payload,
          client: { session: 'bench', seq: i + 1, lowSeq: i },
        }
      : { op: 'put', key: `/bench/${i % 1000}/${i}`, value: payload };
    await tree.apply(++index, cmd);
    if (i % 5000 === 0) b.update(i);
  }
  await tree.sync();
  const elapsed = performance.now() - start;
  b.update(APPLY_N);
  b.stop();
  return (APPLY_N * 1000) / elapsed;
}

{
  const memPlain = await applyRate(new MemoryTree(), false, 'apply: MemoryTree');
  const rt = await RocksTree.open(newDir());
  const rocksPlain = await applyRate(rt, false, 'apply: RocksTree');
  await rt.close();
  const memOnce = await applyRate(new MemoryTree(), true, 'apply: MemoryTree, exactly-once');
  const rt2 = await RocksTree.open(newDir());
  const rocksOnce = await applyRate(rt2, true, 'apply: RocksTree, exactly-once');
  await rt2.close();
  rows.push([`applied puts/s, RocksTree (${fmt(APPLY_N)})`, fmt(rocksPlain), `MemoryTree: ${fmt(memPlain)}`]);
  rows.push(['applied puts/s, RocksTree, exactly-once', fmt(rocksOnce), `MemoryTree: ${fmt(memOnce)}`]);
}

// ---- snapshot and restore ---------------------------------------------------------------------

{
  const source = new MemoryTree();
  const b = bar(`building ${fmt(KEYS)} keys`, KEYS);
  let index = 0;
  for (let i = 0; i < KEYS; i += 100) {
    const success = [];
    for (let j = i; j < Math.min(KEYS, i + 100); j++) {
      success.push({ op: 'put' as const, key: `/svc/${j % 1000}/${j}`, value: payload });
    }
    await source.apply(++index, { op: 'txn', compare: [], success, failure: [] });
    if (i % 10_000 === 0) b.update(i);
  }
  b.update(KEYS);
  b.stop();
  await source.apply(++index, { op: 'compact', revision: source.revision });

  const collect = async (tree: KeyTree, title: string) => {
    const snap = await tree.snapshot();
    const p = bar(title, KEYS);
    const chunks: Uint8Array[] = [];
    let bytes = 0;
    for await (const c of snap) {
      chunks.push(c);
      bytes += c.length;
      p.update(Math.min(KEYS, Math.round((bytes / (KEYS * 150)) * KEYS)));
    }
    p.update(KEYS);
    p.stop();
    return { chunks, bytes };
  };
  const memSnap = await time(() => collect(source, 'snapshot: MemoryTree'));
  const mib = (memSnap.value.bytes / 1024 / 1024).toFixed(0);
  rows.push([
    `snapshot ${fmt(KEYS)} keys, MemoryTree`,
    `${ms(memSnap.ms)} (${mib} MiB, ${memSnap.value.chunks.length} chunks)`,
    `longest event-loop stall ${ms(memSnap.stallMs)}`,
  ]);

  const dir = newDir();
  const target = await RocksTree.open(dir);
  process.stderr.write('restore: RocksTree...\n');
  const rocksRestore = await time(() => target.restore(memSnap.value.chunks));
  rows.push([
    `restore ${fmt(KEYS)} keys, RocksTree`,
    ms(rocksRestore.ms),
    `longest event-loop stall ${ms(rocksRestore.stallMs)}`,
  ]);
  const rocksSnap = await time(() => collect(target, 'snapshot: RocksTree'));
  rows.push([
    `snapshot ${fmt(KEYS)} keys, RocksTree`,
    ms(rocksSnap.ms),
    `longest event-loop stall ${ms(rocksSnap.stallMs)}`,
  ]);
  await target.close();
  process.stderr.write('reopen: RocksTree...\n');
  const reopen = await time(() => RocksTree.open(dir));
  rows.push([`open (load) ${fmt(KEYS)} keys, RocksTree`, ms(reopen.ms), '']);
  await reopen.value.close();
  const memTarget = new MemoryTree();
  process.stderr.write('restore: MemoryTree...\n');
  const memRestore = await time(() => memTarget.restore(memSnap.value.chunks));
  rows.push([
    `restore ${fmt(KEYS)} keys, MemoryTree`,
    ms(memRestore.ms),
    `longest event-loop stall ${ms(memRestore.stallMs)}`,
  ]);
}

await rm(root, { recursive: true, force: true });

const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]?.length ?? 0), 10));
const line = (r: readonly string[]) => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
console.log(line(['measure', 'value', 'baseline (same run)']));
console.log(line(widths.map((w) => '-'.repeat(w))));
for (const r of rows) console.log(line(r));
