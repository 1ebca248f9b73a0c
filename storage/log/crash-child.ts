/**
 * Child process of crash.test.ts: opens the log store in `argv[2]`, then appends for ever with
 * several writes in flight, printing `ack <lastIndex> <term>` once each write is durable. The
 * parent kills it with SIGKILL at a random moment. Entry data is a function of the index
 * (`payloadOf`), so the parent can check every entry is intact.
 */
import { RocksLogStore } from './rocks.ts';

export function payloadOf(index: number): Uint8Array {
  const bytes = new Uint8Array(1 + ((index * 7919) % 700));
  for (let j = 0; j < bytes.length; j++) bytes[j] = (index * 31 + j * 17) & 255;
  return bytes;
}

async function main(dir: string): Promise<void> {
  const store = await RocksLogStore.open(dir);
  const term = store.hardState().term + 1;
  let next = store.lastIndex() + 1;
  let commit = store.hardState().commit;
  process.stdout.write(`ready ${store.lastIndex()} ${term}\n`);
  await store.write({ hardState: { term, vote: 'self', commit }, entries: [] });
  process.stdout.write(`term ${term}\n`);
  const inFlight = new Set<Promise<void>>();
  for (;;) {
    while (inFlight.size < 8) {
      const n = 1 + Math.floor(Math.random() * 24);
      const entries = [];
      for (let k = 0; k < n; k++, next++)
        entries.push({ index: next, term, type: 'normal' as const, data: payloadOf(next) });
      const last = next - 1;
      commit = Math.max(commit, last - 50);
      const p = store.write({ hardState: { term, vote: 'self', commit }, entries }).then(() => {
        process.stdout.write(`ack ${last} ${term}\n`);
      });
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    }
    await Promise.race(inFlight);
    if (Math.random() < 0.02 && store.lastIndex() > 300) {
      const index = store.lastIndex() - 200;
      const snapTerm = store.term(index);
      if (snapTerm !== undefined)
        void store.compact({ index, term: snapTerm, config: { voters: ['self'], learners: [] } });
    }
  }
}

const dir = process.argv[2];
if (dir !== undefined && process.argv[1]?.endsWith('crash-child.ts')) {
  main(dir).catch((err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(2);
  });
}
