// A greeter service. Registers as `greeter/<id>`, answers requests on `app.greeter.<id>` with
// "hello <name>", and reports its load (requests in flight) so that callers picking
// 'least-loaded' steer around it when it is busy. Every `--report` ms it asks a frontend
// (picked least-loaded too) for its stats: the services call each other.
//
//   node examples/greeter.mjs [--id g1] [--delay 20] [--report 5000]
import { pause, start } from './common.mjs';

const { client, values, signal } = await start({
  id: { type: 'string', default: `g${process.pid}` },
  delay: { type: 'string', default: '20' }, // ms of pretend work per greeting
  report: { type: 'string', default: '5000' },
});
const { id } = values;
const address = `app.greeter.${id}`;
let inFlight = 0;
let answered = 0;

const me = await client.registry.register('greeter', id, { address });
// Loads are coalesced by the registration (one write per 100 ms at most): report every change.
const report = (load) => me.setLoad(load).catch(() => {});

const sub = client.nc.subscribe(address, {
  callback: async (err, msg) => {
    if (err) return;
    report(++inFlight);
    try {
      const { name } = msg.json();
      await pause(Number(values.delay) * (0.5 + Math.random()));
      msg.respond(JSON.stringify({ greeting: `hello ${name}`, from: id }));
      answered++;
    } catch (e) {
      msg.respond(JSON.stringify({ error: e.message }));
    } finally {
      report(--inFlight);
    }
  },
});
console.log(`greeter ${id}: registered, answering on ${address}`);

while (!signal.aborted) {
  await pause(Number(values.report), signal);
  if (signal.aborted) break;
  const frontend = await client.registry.pick('frontend', 'least-loaded').catch(() => null);
  if (frontend === null) continue;
  try {
    const stats = (await client.nc.request(frontend.address, '', { timeout: 2000 })).json();
    console.log(
      `greeter ${id}: frontend ${stats.id} has ${stats.replies} replies, ${stats.inFlight} in flight`,
    );
  } catch (e) {
    console.log(`greeter ${id}: frontend ${frontend.id} did not answer (${e.message})`);
  }
}

await me.deregister(); // callers stop picking this instance
await sub.drain(); // answers what already arrived
await client.close();
console.log(`greeter ${id}: stopped after ${answered} greetings`);
