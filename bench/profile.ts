/**
 * `npm run bench:profile [-- --seconds 10] [--in-flight 64]`: where a put's time goes. Starts a
 * 3-node cluster whose node processes sample themselves with V8's profiler (a preload module
 * through NODE_OPTIONS: `--cpu-prof` is not allowed there), drives 256-byte puts with the given
 * number in flight, stops the nodes and prints, per node process, its share of CPU by package or
 * file and its hottest functions (self time). The profiles stay in the run directory for Chrome
 * DevTools.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startBenchCluster } from './lib.ts';

const args = process.argv.slice(2);
const opt = (name: string, fallback: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const seconds = opt('--seconds', 10);
const inFlight = opt('--in-flight', 64);

interface CpuProfile {
  readonly nodes: readonly {
    readonly id: number;
    readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  }[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Self time by package (node_modules), node built-in, file of the build, or V8 pseudo-frame. */
function placeOf(url: string, fn: string): string {
  if (url === '') return `(${fn})`;
  const nm = url.split('node_modules/')[1];
  if (nm !== undefined) {
    const parts = nm.split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  return url.startsWith('node:') ? url : path.basename(url);
}

function summarize(file: string): string {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
  const self = new Map<number, number>();
  p.samples.forEach((s, i) => {
    self.set(s, (self.get(s) ?? 0) + (p.timeDeltas[i] ?? 0));
  });
  const places = new Map<string, number>();
  const fns = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of self) {
    const cf = byId.get(id)!;
    if (cf.functionName === '(idle)') continue;
    busy += us;
    const place = placeOf(cf.url, cf.functionName);
    places.set(place, (places.get(place) ?? 0) + us);
    const fn = `${cf.functionName || '(anonymous)'} ${place}:${cf.lineNumber + 1}`;
    fns.set(fn, (fns.get(fn) ?? 0) + us);
  }
  const top = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, us]) => `    ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${k}`)
      .join('\n');
  return [
    `  busy ${(busy / 1e6).toFixed(2)} s of CPU; by place:`,
    top(places, 10),
    '  hottest functions (self time):',
    top(fns, 12),
  ].join('\n');
}

const dir = await mkdtemp(path.join(tmpdir(), 'ensemble-profile-'));
const profiles = path.join(dir, 'profiles');
const hook = path.join(dir, 'profile-hook.mjs');
writeFileSync(
  hook,
  `import { Session } from 'node:inspector';
import { mkdirSync, writeFileSync } from 'node:fs';
const s = new Session();
s.connect();
s.post('Profiler.enable');
s.post('Profiler.setSamplingInterval', { interval: 200 });
s.post('Profiler.start');
process.on('exit', () => {
  s.post('Profiler.stop', (err, r) => {
    if (err) return;
    mkdirSync(${JSON.stringify(profiles)}, { recursive: true });
    writeFileSync(${JSON.stringify(profiles)} + '/' + process.pid + '.cpuprofile', JSON.stringify(r.profile));
  });
});
`,
);
// Only the node processes started now inherit the preload.
process.env.NODE_OPTIONS = `--import=${hook}`;
const cluster = await startBenchCluster(dir, 'profile');
delete process.env.NODE_OPTIONS;
const pids = new Map(cluster.ids.map((id) => [cluster.pid(id), id]));
const c = await cluster.client();
const leader = (await c.status()).leader;
const value = new Uint8Array(256).fill(97);
let n = 0;
process.stderr.write(`profiling: ${inFlight} puts in flight for ${seconds} s (leader ${leader})\n`);
const end = performance.now() + seconds * 1000;
await Promise.all(
  Array.from({ length: inFlight }, async () => {
    while (performance.now() < end) await c.put(`/profile/k${n++ % 1000}`, value);
  }),
);
await c.close();
await cluster.stop();
process.stdout.write(`${(n / seconds).toFixed(0)} puts/s with ${inFlight} in flight\n`);
for (const f of readdirSync(profiles).sort()) {
  const id = pids.get(Number(f.split('.')[0])) ?? '?';
  process.stdout.write(
    `\n${id}${id === leader ? ' (leader)' : ''}: ${path.join(profiles, f)}\n${summarize(path.join(profiles, f))}\n`,
  );
}
