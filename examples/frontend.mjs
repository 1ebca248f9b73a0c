// A frontend. Sends greeting requests to greeters, each time to the one `registry.pick` finds
// least loaded, `--count` requests in all (default 0: forever, one per `--interval` ms per
// caller), `--concurrency` at a time. Registers as `frontend/<id>`, reports its load (calls in
// flight) and answers stats requests on `app.frontend.<id>`: greeters call it back.
//
//   node examples/frontend.mjs [--id f1] [--count 100] [--concurrency 4] [--interval 100]
import { pause, start } from './common.mjs';

const { client, values, signal } = await start({
  id: { type: 'string', default: `f${process.pid}` },
  count: { type: 'string', default: '0' },
  concurrency: { type: 'string', default: '4' },
  interval: { type: 'string', default: '100' },
});
const { id } = values;
const address = `app.frontend.${id}`;
const count = Number(values.count);
let inFlight = 0;
let sent = 0;
let replies = 0;
const byGreeter = {};

const me = await client.registry.register('frontend', id, { address });
const report = (load) => me.setLoad(load).catch(() => {});
const sub = client.nc.subscribe(address, {
  callback: (err, msg) => {
    if (!err) msg.respond(JSON.stringify({ id, inFlight, replies, byGreeter }));
  },
});
console.log(`frontend ${id}: registered, answering stats on ${address}`);

/** Greets `name` through a greeter, trying another when one fails; null once stopped. */
async function greet(name) {
  while (!signal.aborted) {
    const greeter = await client.registry.pick('greeter', 'least-loaded').catch(() => null);
    if (greeter === null) {
      await pause(200, signal); // none registered (or the cluster did not answer) yet
      continue;
    }
    report(++inFlight);
    try {
      const reply = (
        await client.nc.request(greeter.address, JSON.stringify({ name }), { timeout: 2000 })
      ).json();
      if (reply.error) throw new Error(reply.error);
      return reply;
    } catch (e) {
      console.log(`frontend ${id}: greeter ${greeter.id} failed (${e.message}), trying again`);
    } finally {
      report(--inFlight);
    }
    await pause(100, signal);
  }
  return null;
}

const summary = () =>
  `${replies} replies (${Object.entries(byGreeter)
    .map(([g, n]) => `${g}: ${n}`)
    .join(', ')})`;

await Promise.all(
  Array.from({ length: Number(values.concurrency) }, async () => {
    while (!signal.aborted && (count === 0 || sent < count)) {
      const n = ++sent;
      const reply = await greet(`caller ${n}`);
      if (reply === null) break;
      replies++;
      byGreeter[reply.from] = (byGreeter[reply.from] ?? 0) + 1;
      if (replies % 100 === 0) console.log(`frontend ${id}: ${summary()}`);
      if (count === 0) await pause(Number(values.interval), signal);
    }
  }),
);

await me.deregister();
await sub.drain();
await client.close();
console.log(`frontend ${id}: done, ${summary()}`);
