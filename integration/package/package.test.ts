/**
 * The packages as users get them: `npm pack` of `ensemble` and of `@ensemble/client`, installed
 * into scratch apps, used from plain `node` and from a strict TypeScript app, against a real
 * cluster. Needs `npm run build` first (`npm test` runs it); packs with `--ignore-scripts` so the
 * build other test files run from is not rebuilt under them.
 */
import { type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { natsCredentials } from '../../cluster/nats-server.ts';
import { useCluster } from '../cluster.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const cluster = useCluster(test, { label: 'ensemble-package', cluster: 'pkg' });
/** The two tarballs, packed once into a temp directory (removed with the file's harness). */
let packed: Promise<{ ensemble: string; client: string }> | null = null;
const packs = () => {
  packed ??= cluster()
    .h.tempDir('packs')
    .then((into) => ({ ensemble: pack(ROOT, into), client: pack(path.join(ROOT, 'client'), into) }));
  return packed;
};

/** The environment of a user's shell: none of the npm script variables of this test run. */
const userEnv = (): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));

function run(cmd: string, args: readonly string[], cwd: string): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: userEnv(), timeout: 180_000 });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

function pack(dir: string, into: string): string {
  const r = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', into], dir);
  const [info] = JSON.parse(r.stdout) as { filename: string }[];
  return path.join(into, info!.filename);
}

function tarList(tgz: string): string[] {
  return run('tar', ['tzf', tgz], ROOT)
    .stdout.split('\n')
    .filter(Boolean)
    .map((f) => f.replace(/^package\//, ''));
}

async function scratchApp(name: string, install: readonly string[]): Promise<string> {
  const dir = await cluster().h.tempDir(name);
  writeFileSync(
    path.join(dir, 'package.json'),
    JSON.stringify({ name, version: '1.0.0', private: true, type: 'module' }),
  );
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...install], dir);
  return dir;
}

/** Files under `dir` whose name matches `pattern`. */
function findFiles(dir: string, pattern: RegExp, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) findFiles(p, pattern, out);
    else if (pattern.test(e.name)) out.push(p);
  }
  return out;
}

/** Runs `node args` in `cwd`; resolves with its output, exit code, and how long it took to exit
 * after printing `done` (the work is finished: nothing may keep it alive). */
function nodeApp(cwd: string, args: readonly string[]) {
  return new Promise<{ out: string; code: number | null; lingerMs: number }>((resolve) => {
    const child = spawn(process.execPath, args, { cwd, env: userEnv() });
    let out = '';
    let doneAt = Number.NaN;
    const onData = (b: Buffer) => {
      out += b.toString();
      if (Number.isNaN(doneAt) && /^done$/m.test(out)) doneAt = performance.now();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ out, code, lingerMs: performance.now() - doneAt });
    });
  });
}

const connectArgs = () => [cluster().h.natsUrls.join(','), 'pkg', natsCredentials('client').pass];

test('the tarballs hold compiled JavaScript with types and maps, and no sources, tests or benchmarks', async (t) => {
  const client = tarList((await packs()).client);
  const full = tarList((await packs()).ensemble);
  for (const f of [
    'dist/client/index.js',
    'dist/client/index.d.ts',
    'dist/client/index.js.map',
    'dist/client/recipes/lock.js',
  ])
    t.true(client.includes(f), `client has ${f}`);
  for (const f of [
    'bin/ensemble.mjs',
    'dist/cli.js',
    'index.js',
    'index.d.ts',
    'nats.conf',
    'client/dist/client/index.js',
  ])
    t.true(full.includes(f), `ensemble has ${f}`);
  const unwanted = /(\.test\.|\.fixture\.|^integration\/|^bench\/|(^|\/)(storage|actors|cluster)\/|\.ts$)/;
  t.deepEqual(
    client.filter((f) => unwanted.test(f) && !f.endsWith('.d.ts')),
    [],
  );
  t.deepEqual(
    full.filter((f) => unwanted.test(f) && !f.endsWith('.d.ts')),
    [],
  );
  const clientPkg = JSON.parse(readFileSync(path.join(ROOT, 'client', 'package.json'), 'utf8'));
  t.deepEqual(Object.keys(clientPkg.dependencies).sort(), ['@nats-io/transport-node', 'cbor-x', 'xstate']);
  const rootPkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  for (const dev of ['tsx', '@nats-io/services', 'typescript'])
    t.false(dev in rootPkg.dependencies, `${dev} is not a runtime dependency`);
});

test('a plain Node ESM app with only @ensemble/client (no native module) works and exits as soon as it is done', async (t) => {
  const app = await scratchApp('client-app', ['--omit=optional', (await packs()).client]);
  t.deepEqual(findFiles(path.join(app, 'node_modules'), /\.node$/), [], 'no native module installed');
  t.false(existsSync(path.join(app, 'node_modules', 'rocksdb')));
  writeFileSync(
    path.join(app, 'app.mjs'),
    `import { connect, ClosedError } from '@ensemble/client';
const [servers, cluster, pass] = process.argv.slice(2);
const c = await connect({ servers: servers.split(','), cluster, user: 'client', pass });
await c.put('/pkg/app', 'hello');
const hold = await c.lock('pkg').acquire({ timeout: 5000 });
console.log('value', await c.getText('/pkg/app'), 'token', hold.token > 0);
await hold.release();
const loop = (async () => {
  try {
    for await (const e of c.watch({ prefix: '/pkg/' })) console.log('event', e.type);
    console.log('watch ended quietly');
  } catch (e) {
    console.log('watch ended', e instanceof ClosedError);
  }
})();
await new Promise((r) => setTimeout(r, 100));
await c.close();
await loop;
console.log('done');
`,
  );
  const r = await nodeApp(app, ['app.mjs', ...connectArgs()]);
  t.is(r.code, 0, r.out);
  t.regex(r.out, /value hello token true/);
  t.regex(r.out, /watch ended true/, 'close ends an open watch with ClosedError');
  t.true(r.lingerMs < 5000, `exited ${r.lingerMs.toFixed(0)} ms after its work (generous bound: 5 s)`);
  t.log(`exited ${r.lingerMs.toFixed(0)} ms after its work was done`);
});

test('a strict TypeScript app compiles against ensemble and runs in plain node; one nats-core; the CLI runs compiled', async (t) => {
  const app = await scratchApp('ts-app', [(await packs()).ensemble]);
  const cores = findFiles(path.join(app, 'node_modules'), /^package\.json$/).filter((f) =>
    f.endsWith(path.join('@nats-io', 'nats-core', 'package.json')),
  );
  t.is(cores.length, 1, `one copy of @nats-io/nats-core: ${cores.join(', ')}`);
  t.notRegex(JSON.parse(readFileSync(cores[0]!, 'utf8')).version, /-/, 'not a prerelease');
  t.false(existsSync(path.join(app, 'node_modules', 'tsx')), 'no TypeScript loader');
  writeFileSync(
    path.join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        skipLibCheck: false,
        outDir: 'out',
        types: ['node'],
        typeRoots: [path.join(ROOT, 'node_modules', '@types')],
      },
      files: ['app.ts'],
    }),
  );
  writeFileSync(
    path.join(app, 'app.ts'),
    `import { connect, type Client, type Instance, type LeaderInfo, NotHeldError } from 'ensemble';
const [servers, cluster, pass] = process.argv.slice(2) as [string, string, string];
const c: Client = await connect({ servers: servers.split(','), cluster, user: 'client', pass });
const me = await c.election('pkg-ts').campaign('ts-app');
const leader: LeaderInfo | null = await c.election('pkg-ts').leader();
await me.put('/pkg/ts', 'fenced');
const reg = await c.registry.register('pkg-svc', 'i1', { address: 'app.pkg.i1', load: 3 });
const found: Instance[] = await c.registry.discover('pkg-svc');
await me.resign();
try {
  await me.put('/pkg/ts', 'stale');
} catch (e) {
  console.log('fenced', e instanceof NotHeldError);
}
console.log('leader', leader?.text, 'found', found.map((i) => i.id + ':' + i.load).join(','));
await reg.deregister();
await c.close();
console.log('done');
`,
  );
  const tsc = spawnSync(
    process.execPath,
    [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app],
    {
      encoding: 'utf8',
    },
  );
  t.is(tsc.status, 0, `tsc: ${tsc.stdout}${tsc.stderr}`);
  const r = await nodeApp(app, ['out/app.js', ...connectArgs()]);
  t.is(r.code, 0, r.out);
  t.regex(r.out, /fenced true/);
  t.regex(r.out, /leader ts-app found i1:3/);
  t.true(r.lingerMs < 5000, `exited ${r.lingerMs.toFixed(0)} ms after its work`);

  const cli = path.join(app, 'node_modules', 'ensemble', 'bin', 'ensemble.mjs');
  const help = spawnSync(process.execPath, [cli, '--help'], { encoding: 'utf8', env: userEnv() });
  t.is(help.status, 0);
  t.regex(help.stdout, /Usage: ensemble/);
  const get = spawnSync(
    process.execPath,
    [cli, 'get', '/pkg/ts', '--json', '--nats', cluster().h.natsUrls.join(','), '--cluster', 'pkg'],
    {
      encoding: 'utf8',
      env: { ...userEnv(), ENSEMBLE_PASSWORD: natsCredentials('client').pass },
      timeout: 30_000,
    },
  );
  t.is(get.status, 0, get.stderr);
  t.is(JSON.parse(get.stdout).value, 'fenced');
});
