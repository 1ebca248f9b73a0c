/**
 * Test fixture of children.test.ts: starts a nats-server and a `sleep`, prints their pids, then
 * waits; `exit` as argument makes it exit on its own after printing.
 */
import { spawn } from 'node:child_process';
import { adopt } from './children.ts';
import { startNatsServer } from './nats-server.ts';

const server = await startNatsServer();
const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
adopt(sleeper);
process.stdout.write(`pids ${server.pid} ${sleeper.pid}\n`);
if (process.argv.includes('exit')) process.exit(3);
setInterval(() => undefined, 1000);
