/**
 * A worker thread of `npm run sim -- --jobs N`: runs the seeds it is sent, one at a time, and
 * posts each result back (the trace only when a property was violated). Seeds are
 * independent, so running them side by side changes no result.
 */
import { parentPort } from 'node:worker_threads';
import { type SimOptions, simulate } from './cluster.ts';

parentPort!.on('message', (opts: SimOptions) => {
  const r = simulate(opts);
  parentPort!.postMessage(r.violations.length > 0 ? r : { ...r, trace: [] });
});
