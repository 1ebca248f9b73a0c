#!/usr/bin/env node
// The `ensemble` command: loads the TypeScript sources through tsx.
import { register } from 'tsx/esm/api';

register();
await import('../cluster/cli.ts');
