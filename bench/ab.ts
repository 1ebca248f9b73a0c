/**
 * `npm run bench:ab -- --a '<node flags>' --b '<node flags>'`: one lever, A against B. Starts a
 * 3-node cluster with the nodes' flags of A and one with those of B, alternately for `--rounds`
 * rounds (ABBA…, so drift of the machine hits both alike), and measures on each: puts/s with 64
 * in flight, sequential put latency, the nodes' CPU per 1000 puts, and the inspection traffic
 * (an admin subscriber reads every node's batches, as `ensemble inspect` does). Prints the
 * medians side by side.
 *
 *   npm run build && npm run bench:ab -- --a '' --b '--inspect' [--seconds 8] [--rounds 3] [--json]
 *   npm run bench:inspect   (the same, A without inspection, B with `--inspect`)
 *   npm run bench:ab -- --a-root ../before --b= …   (A runs the build of another checkout)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { natsCredentials } from '../cluster/nats-server.ts';
import { inboxPrefix, subjects } from '../protocol/index.ts';
import type { InspectBatch } from '../protocol/inspection.ts';
import { startBenchCluster } from './lib.ts';
import { rssMiB } from './systems/procs.ts';
import { VALUE } from './systems/types.ts';
import { closedLoop, sequential } from './workloads.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
    a: { type: 'string', default: '' },
    b: { type: 'string', default: '--inspect' },
    'label-a': { type: 'string' },
    'label-b': { type: 'string' },
    'a-root': { type: 'string' },
    'b-root': { type: 'string' },
    'a-env': { type: 'string', default: '' },
    'b-env': { type: 'string', default: '' },
  },
});
const flagsOf = (s: string) => s.split(/\s+/).filter(Boolean);
/** `K=V K2=V2` → an environment. */
const envOf = (s: string) =>
  Object.fromEntries(flagsOf(s).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const sides = {
  a: {
    flags: flagsOf(args.a),
    env: envOf(args['a-env']),
    root: args['a-root'],
    label: args['label-a'] ?? (`${args['a-env']} ${args.a}`.trim() || 'default'),
  },
  b: {
    flags: flagsOf(args.b),
    env: envOf(args['b-env']),
    root: args['b-root'],
    label: args['label-b'] ?? (`${args['b-env']} ${args.b}`.trim() || 'default'),
  },
};
const seconds = Number(args.seconds);
const rounds = Number(args.rounds);
const log = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

interface Run {
  readonly side: 'a' | 'b';
  readonly putsPerSec: number;
  readonly seqP50: number;
  readonly seqP99: number;
  readonly cpuMsPer1kPuts: number;
  readonly batchesPerSec: number;
  readonly kibPerSec: number;
  readonly eventsPerSec: number;
  readonly droppedPerSec: number;
  /** The largest peak RSS of the three nodes (VmHWM), MiB. */
  readonly peakRssMiB: number;
}

async function once(side: 'a' | 'b'): Promise<Run> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ensemble-bench-inspect-'));
  const cluster = await startBenchCluster(
    dir,
    'benchab',
    sides[side].flags,
    sides[side].root,
    sides[side].env,
  );
  try {
    const admin = await connect({
      servers: cluster.url,
      ...natsCredentials('admin'),
      inboxPrefix: inboxPrefix('admin'),
    });
    let batches = 0;
    let bytes = 0;
    let events = 0;
    let dropped = 0;
    admin.subscribe(subjects({ cluster: 'benchab' }).inspectWildcard(), {
      callback: (_e, m) => {
        const b = m.json<InspectBatch>();
        batches++;
        bytes += m.data.length;
        events += b.events.length;
        dropped += b.dropped;
      },
    });
    const c = await cluster.client({ timeoutMs: 30_000 });
    await closedLoop((i) => c.put(`/bench/k${i % 1000}`, VALUE), 64, 1); // warm-up
    const cpu0 = cluster.cpu().reduce((a, b) => a + b, 0);
    const counted0 = { batches, bytes, events, dropped };
    const t0 = performance.now();
    const loop = await closedLoop((i) => c.put(`/bench/k${i % 1000}`, VALUE), 64, seconds);
    const elapsed = (performance.now() - t0) / 1000;
    const cpu = cluster.cpu().reduce((a, b) => a + b, 0) - cpu0;
    const per = (n: number, n0: number) => (n - n0) / elapsed;
    const traffic = {
      batchesPerSec: per(batches, counted0.batches),
      kibPerSec: per(bytes, counted0.bytes) / 1024,
      eventsPerSec: per(events, counted0.events),
      droppedPerSec: per(dropped, counted0.dropped),
    };
    const seq = await sequential((i) => c.put(`/bench/k${i}`, VALUE), 500);
    const peakRssMiB = Math.max(...cluster.ids.map((id) => rssMiB(cluster.pid(id), 'VmHWM') ?? 0));
    await c.close();
    await admin.close();
    return {
      side,
      putsPerSec: loop.rate,
      seqP50: seq.p50,
      seqP99: seq.p99,
      cpuMsPer1kPuts: (cpu / (loop.rate * elapsed)) * 1000,
      peakRssMiB,
      ...traffic,
    };
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const runs: Run[] = [];
for (let r = 1; r <= rounds; r++) {
  for (const side of r % 2 === 1 ? (['a', 'b'] as const) : (['b', 'a'] as const)) {
    log(`round ${r}/${rounds}: ${sides[side].label}, ${seconds} s of puts with 64 in flight…`);
    const run = await once(side);
    log(
      `  ${run.putsPerSec.toFixed(0)} puts/s, sequential p50 ${run.seqP50.toFixed(2)} ms, ${run.cpuMsPer1kPuts.toFixed(0)} ms CPU per 1000 puts`,
    );
    runs.push(run);
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2
    ? (s[(s.length - 1) / 2] as number)
    : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};
const of = (side: 'a' | 'b', k: keyof Omit<Run, 'side'>) =>
  median(runs.filter((x) => x.side === side).map((x) => x[k]));
const summary = Object.fromEntries(
  (
    [
      'putsPerSec',
      'seqP50',
      'seqP99',
      'cpuMsPer1kPuts',
      'peakRssMiB',
      'batchesPerSec',
      'kibPerSec',
      'eventsPerSec',
      'droppedPerSec',
    ] as const
  ).map((k) => [k, { a: of('a', k), b: of('b', k) }]),
);
if (args.json) console.log(JSON.stringify({ seconds, rounds, sides, runs, median: summary }, null, 2));
else {
  console.log(
    `\nA: ${sides.a.label}; B: ${sides.b.label}. Medians of ${rounds} rounds, 3 nodes, 256-byte values\n`,
  );
  console.log(`| figure | A: ${sides.a.label} | B: ${sides.b.label} | B / A |`);
  console.log('|---|---:|---:|---:|');
  const row = (name: string, k: keyof typeof summary, digits = 0) => {
    const { a: off, b: on } = summary[k] as { a: number; b: number };
    console.log(
      `| ${name} | ${off.toFixed(digits)} | ${on.toFixed(digits)} | ${off ? (on / off).toFixed(2) : '-'} |`,
    );
  };
  row('puts/s, 64 in flight', 'putsPerSec');
  row('sequential put p50 ms', 'seqP50', 2);
  row('sequential put p99 ms', 'seqP99', 2);
  row('node CPU ms per 1000 puts (3 nodes)', 'cpuMsPer1kPuts');
  row('peak RSS of the largest node, MiB', 'peakRssMiB');
  row('inspection batches/s (all nodes)', 'batchesPerSec', 1);
  row('inspection KiB/s', 'kibPerSec', 1);
  row('inspection events sent/s', 'eventsPerSec');
  row('inspection events dropped/s (rate limit)', 'droppedPerSec');
}
