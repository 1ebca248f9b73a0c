/**
 * A copy of the built command (`bin/`, `dist/`) for processes that must outlive a rebuild:
 * `npm run build` (and so `npm test`) deletes and rewrites `dist/`, and a node restarted in that
 * window would exit at once. Benchmarks and chaos runs start their nodes from the copy.
 */
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Whether every file the bundle in `dist` imports (`./chunk-….js`) is there. */
function wholeBuild(dist: string): boolean {
  if (!existsSync(path.join(dist, 'cli.js'))) return false;
  for (const f of readdirSync(dist).filter((n) => n.endsWith('.js'))) {
    const text = readFileSync(path.join(dist, f), 'utf8');
    for (const m of text.matchAll(/(?:from |import\()\s*"\.\/([^"]+\.js)"/g))
      if (!existsSync(path.join(dist, m[1]!))) return false;
  }
  return true;
}

/**
 * Copies the built command of checkout `root` (default this one) into `<dir>/app`, waiting out a
 * build in progress; its bin path. Its node_modules are this checkout's.
 */
export async function pinBuild(dir: string, root = ROOT): Promise<string> {
  const app = path.join(dir, 'app');
  for (let attempt = 0; ; attempt++) {
    rmSync(app, { recursive: true, force: true });
    mkdirSync(app, { recursive: true });
    try {
      cpSync(path.join(root, 'bin'), path.join(app, 'bin'), { recursive: true });
      cpSync(path.join(root, 'dist'), path.join(app, 'dist'), { recursive: true });
      if (wholeBuild(path.join(app, 'dist'))) break;
    } catch {
      // dist/ deleted or rewritten under us: a build is running
    }
    if (attempt >= 100) throw new Error(`no whole build in ${path.join(root, 'dist')}: run npm run build`);
    await new Promise((r) => setTimeout(r, 300));
  }
  copyFileSync(path.join(root, 'package.json'), path.join(app, 'package.json')); // "type": "module"
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(app, 'node_modules'), 'dir');
  return path.join(app, 'bin', 'ensemble.mjs');
}
