/**
 * Child process of restore-crash.test.ts: opens the RocksDB tree in `argv[2]`, prints `ready`,
 * restores the dump in file `argv[3]`, prints `restored <ms>`, and exits. The parent kills it
 * with SIGKILL somewhere along the way.
 */
import { createReadStream } from 'node:fs';
import { RocksTree } from './rocks.ts';

async function main(dir: string, file: string): Promise<void> {
  const tree = await RocksTree.open(dir);
  process.stdout.write('ready\n');
  const started = performance.now();
  await tree.restore(createReadStream(file, { highWaterMark: 64 * 1024 }));
  process.stdout.write(`restored ${Math.round(performance.now() - started)}\n`);
  await tree.close();
}

const [dir, file] = process.argv.slice(2);
if (dir !== undefined && file !== undefined) {
  main(dir, file).catch((err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(2);
  });
}
