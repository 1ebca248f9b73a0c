/**
 * `npm test`'s `pretest` step: makes sure `nats-server` is installed before ava starts test files
 * in parallel (as root on Debian it is installed with apt; elsewhere this fails with a message
 * saying how to install it). Prints the binary it found.
 */
import { ensureNatsServer } from '../cluster/nats-server.ts';

try {
  const binary = await ensureNatsServer();
  process.stdout.write(`nats-server: ${binary}\n`);
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
}
