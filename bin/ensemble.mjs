#!/usr/bin/env node
// The `ensemble` command: the compiled bundle of cluster/cli.ts (`npm run build`).
import { existsSync } from 'node:fs';

const cli = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(cli)) {
  console.error('ensemble: dist/cli.js is missing: run `npm run build` (npm ci and npm install run it too)');
  process.exit(1);
}
await import(cli.href);
