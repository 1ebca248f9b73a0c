/**
 * `npm run build` (also `prepare`, so a clone or a git/file install builds itself):
 * - the client package (`client/`, published as `@ensemble/client`): ESM JavaScript, `.d.ts`
 *   files and source maps by `tsc -p client/tsconfig.build.json`, into `client/dist/`. It holds
 *   the client and the parts of `protocol/` and `machines/session/` it imports, nothing else.
 * - the `ensemble` command: `cluster/cli.ts` and everything it imports bundled by esbuild into
 *   `dist/cli.js` (with a source map), so the CLI starts without a TypeScript loader and loads one
 *   file. Every runtime dependency in package.json stays an import; what is not one (a
 *   development-only library such as `@nats-io/services`, a prerelease that would pull in a second,
 *   prerelease `@nats-io/nats-core`) is bundled.
 * - the inspector page (`ensemble inspect`): `cluster/inspect/page/app.ts` bundled for the
 *   browser with everything it uses (elkjs included: the page works offline) into
 *   `dist/inspect/app.js`, beside its `index.html` and `style.css`.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
};

function step(name: string, fn: () => void | Promise<void>): Promise<void> {
  const t0 = performance.now();
  process.stdout.write(`build: ${name}… `);
  return Promise.resolve(fn()).then(() => console.log(`${Math.round(performance.now() - t0)} ms`));
}

await step('client package (tsc → client/dist)', () => {
  rmSync(path.join(root, 'client', 'dist'), { recursive: true, force: true });
  const tsc = path.join(
    path.dirname(createRequire(import.meta.url).resolve('typescript/package.json')),
    'bin',
    'tsc',
  );
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'client', 'tsconfig.build.json')], {
    stdio: 'inherit',
  });
  if (r.status !== 0) throw new Error(`tsc exited with ${r.status ?? r.signal}`);
});

await step('ensemble command (esbuild → dist/cli.js)', async () => {
  rmSync(path.join(root, 'dist'), { recursive: true, force: true });
  await build({
    entryPoints: [path.join(root, 'cluster', 'cli.ts')],
    outdir: path.join(root, 'dist'),
    // The node runtime and `up` are separate chunks, loaded only by `ensemble node` / `up`.
    splitting: true,
    chunkNames: '[name]-[hash]', // beside cli.js: paths like ../nats.conf hold in every file
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: true,
    external: Object.keys(pkg.dependencies),
    // Bundled CommonJS (`@nats-io/services`) calls `require`, which ESM lacks.
    banner: {
      js: "import { createRequire as __ensembleRequire } from 'node:module'; const require = __ensembleRequire(import.meta.url);",
    },
    logLevel: 'warning',
  });
});

await step('inspector page (esbuild → dist/inspect/)', async () => {
  const page = path.join(root, 'cluster', 'inspect', 'page');
  const out = path.join(root, 'dist', 'inspect');
  mkdirSync(out, { recursive: true });
  await build({
    entryPoints: [path.join(page, 'app.ts')],
    outfile: path.join(out, 'app.js'),
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    minify: true, // no source map: elkjs's would add 3 MB to the package
    logLevel: 'warning',
  });
  for (const f of ['index.html', 'style.css']) copyFileSync(path.join(page, f), path.join(out, f));
});
