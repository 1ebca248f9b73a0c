// A leader-elected worker: run several copies; they campaign in election `--election`, and only
// the leader works. Every `--every` ms it counts the live instances of each registered service
// and writes that report to `--key`, only through its fence (`leadership.put`): a write that
// lands only while it still leads, so a leader paused past its session's TTL cannot overwrite
// its successor. When the leadership is lost (`leadership.signal` aborts, or a fenced write is
// refused) it stops working and campaigns again. With `--rounds N` it exits after N reports.
//
//   node examples/worker.mjs [--id w1] [--every 1000] [--rounds 5]
import { pause, start } from './common.mjs';

const { client, values, signal } = await start({
  id: { type: 'string', default: `w${process.pid}` },
  election: { type: 'string', default: 'report-worker' },
  key: { type: 'string', default: '/examples/report' },
  every: { type: 'string', default: '1000' },
  rounds: { type: 'string', default: '0' },
});
const { id, key } = values;
const limit = Number(values.rounds) || Number.POSITIVE_INFINITY;
const election = client.election(values.election);
let rounds = 0;

while (!signal.aborted && rounds < limit) {
  let leadership;
  try {
    console.log(`worker ${id}: campaigning`);
    leadership = await election.campaign(id, { signal });
  } catch (e) {
    if (!signal.aborted) console.log(`worker ${id}: campaign failed (${e.message}), trying again`);
    await pause(1000, signal);
    continue;
  }
  const { token } = leadership;
  console.log(`worker ${id}: leading (token ${token})`);
  const working = AbortSignal.any([signal, leadership.signal]);
  try {
    while (!working.aborted && rounds < limit) {
      const services = Object.fromEntries(
        Object.entries(await client.registry.services()).map(([name, list]) => [name, list.length]),
      );
      const round = rounds + 1;
      const { revision } = await leadership.put(key, JSON.stringify({ worker: id, token, round, services }));
      rounds = round;
      console.log(`worker ${id}: round ${round} written (token ${token}, revision ${revision})`);
      await pause(Number(values.every), working);
    }
    if (leadership.signal.aborted) console.log(`worker ${id}: lost the leadership (session lost)`);
  } catch (e) {
    console.log(`worker ${id}: lost the leadership (${e.message})`);
  }
  await leadership.resign().catch(() => {}); // the next candidate takes over at once
}

await client.close();
console.log(`worker ${id}: stopped after ${rounds} rounds`);
