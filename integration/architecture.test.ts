/**
 * The layers' arrows (shared/DESIGN.md), checked on the import graph of every source file, so a
 * wrong-way import fails CI:
 *   cluster -> actors -> machines, storage, protocol;  storage -> machines (the Raft types it
 *   persists), protocol;  client -> protocol, machines;  machines and protocol depend on nothing.
 * An import from another layer goes through that layer's `index.ts` (or a sub-package's, such as
 * `machines/raft/index.ts`), never into its files. Machines do no IO: of packages they import
 * only xstate.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { isNodeId } from '../machines/raft/index.ts';
import { isToken } from '../protocol/index.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const LAYERS = ['machines', 'protocol', 'storage', 'actors', 'client', 'cluster'] as const;
type Layer = (typeof LAYERS)[number];
const ALLOWED: Record<Layer, readonly Layer[]> = {
  machines: [],
  protocol: [],
  storage: ['machines', 'protocol'],
  actors: ['machines', 'storage', 'protocol'],
  client: ['protocol', 'machines'],
  cluster: ['actors', 'client', 'storage', 'protocol', 'machines'],
};

function sources(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'dist' && e.name !== 'node_modules') sources(p, out);
    } else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g;
  return [...text.matchAll(found)].map((m) => (m[1] ?? m[2])!);
}

const layerOf = (file: string): string => path.relative(ROOT, file).split(path.sep)[0]!;

/** Why importing `spec` from `rel` (a path from the root) breaks the rules, or null. */
function judge(rel: string, spec: string): string | null {
  const layer = rel.split('/')[0] as Layer;
  if (!spec.startsWith('.')) {
    if (layer === 'machines' && spec !== 'xstate' && !rel.endsWith('.test.ts'))
      return 'machines import no package but xstate';
    return null;
  }
  const target = path.resolve(ROOT, path.dirname(rel), spec);
  const to = layerOf(target);
  if (to === layer || !(LAYERS as readonly string[]).includes(to)) return null; // package.json and the like
  if (!ALLOWED[layer].includes(to as Layer)) return `${layer} may not depend on ${to}`;
  const inside = path.relative(path.join(ROOT, to), target).split(path.sep);
  return inside.at(-1) === 'index.ts' && inside.length <= 2 ? null : `into ${to}/ past its index.ts`;
}

/** Every import that breaks the rules, as `file: import (why)`. */
function violations(): string[] {
  const found: string[] = [];
  for (const layer of LAYERS) {
    for (const file of sources(path.join(ROOT, layer))) {
      const rel = path.relative(ROOT, file).split(path.sep).join('/');
      for (const spec of imports(file)) {
        const why = judge(rel, spec);
        if (why !== null) found.push(`${rel}: ${spec} (${why})`);
      }
    }
  }
  return found;
}

test('imports follow the layers’ arrows and go through each layer’s index.ts', (t) => {
  const bad = violations();
  t.deepEqual(bad, [], `\n${bad.join('\n')}`);
});

test('the rule has teeth: wrong-way imports, imports past an index, IO in machines', (t) => {
  t.regex(judge('storage/tree/base.ts', '../../actors/node.ts') ?? '', /may not depend on actors/);
  t.regex(judge('protocol/api.ts', '../machines/raft/index.ts') ?? '', /may not depend on machines/);
  t.regex(judge('client/index.ts', '../storage/index.ts') ?? '', /may not depend on storage/);
  t.regex(judge('actors/api.ts', '../storage/tree/base.ts') ?? '', /past its index/);
  t.regex(judge('machines/raft/state.ts', 'node:fs') ?? '', /no package but xstate/);
  t.is(judge('actors/api.ts', '../storage/index.ts'), null);
  t.is(judge('actors/api.ts', '../machines/raft/index.ts'), null);
  t.is(judge('actors/api.ts', './watches.ts'), null);
  t.deepEqual(imports(path.join(ROOT, 'integration', 'architecture.test.ts')).slice(0, 2), [
    'node:fs',
    'node:path',
  ]);
});

test('node ids: the Raft frames and the subject table agree on what a token is', (t) => {
  for (const s of [
    'n1',
    'node_7',
    'A-b',
    'x'.repeat(64),
    '',
    'x'.repeat(65),
    'a.b',
    'a b',
    '*',
    '>',
    'é',
    7,
    null,
  ])
    t.is(isNodeId(s), isToken(s), JSON.stringify(s));
});
