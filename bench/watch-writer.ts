/**
 * The writer of `bench:watch`, in its own process so that the watchers' work does not slow it:
 * `tsx bench/watch-writer.ts <nats url> <cluster> <prefix> <writes/s> <seconds>`. Each write's
 * value is its send time (`performance.timeOrigin + performance.now()`, ms); prints
 * `{"writes":N,"seconds":S}` when every write is answered.
 */
import { connect } from '../client/index.ts';
import { natsCredentials } from '../cluster/nats-server.ts';

const [url, cluster, prefix, rateArg, secondsArg] = process.argv.slice(2);
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const c = await connect({
  servers: [url!],
  cluster: cluster!,
  user: 'client',
  pass: natsCredentials('client').pass,
  timeoutMs: 30_000,
});
const total = rate * seconds;
const t0 = performance.now();
let writes = 0;
const pending = new Set<Promise<unknown>>();
// Every 5 ms, issue the writes that are due: a steady rate even with coarse timers.
while (writes < total) {
  const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000));
  while (writes < due && pending.size < 1024) {
    const p = c
      .put(`${prefix}${writes % 100}`, String(performance.timeOrigin + performance.now()))
      .catch(() => {});
    pending.add(p);
    void p.finally(() => pending.delete(p));
    writes++;
  }
  await new Promise((r) => setTimeout(r, 5));
}
await Promise.all(pending);
console.log(JSON.stringify({ writes, seconds: (performance.now() - t0) / 1000 }));
await c.close();
process.exit(0);
