// What the examples share: where the cluster is, and a clean stop on SIGINT/SIGTERM.
//
// Flags, else environment variables (the names the `ensemble` command reads too), else what
// `npm start` runs:
//   --nats nats://a:4222,nats://b:4222      ENSEMBLE_NATS         nats://127.0.0.1:4222
//   --cluster dev                           ENSEMBLE_CLUSTER      dev
//   --user client                           ENSEMBLE_USER         client
//   --session-ttl 10000 (ms)                ENSEMBLE_SESSION_TTL  10000
//   (the password only from the environment, never a flag: ENSEMBLE_PASSWORD, else the
//   development default of nats.conf)
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { connect } from 'ensemble';

const env = process.env;
const common = {
  nats: { type: 'string', default: env.ENSEMBLE_NATS ?? 'nats://127.0.0.1:4222' },
  cluster: { type: 'string', default: env.ENSEMBLE_CLUSTER ?? 'dev' },
  user: { type: 'string', default: env.ENSEMBLE_USER ?? 'client' },
  'session-ttl': { type: 'string', default: env.ENSEMBLE_SESSION_TTL ?? '10000' },
};

/**
 * Parses the common flags and the example's own (`options`, as `util.parseArgs` takes them),
 * connects, and returns the client, the flag values and a signal that aborts on SIGINT or SIGTERM
 * (a second one kills at once).
 */
export async function start(options) {
  const { values } = parseArgs({ options: { ...common, ...options } });
  const client = await connect({
    servers: values.nats.split(','),
    cluster: values.cluster,
    user: values.user,
    pass: env.ENSEMBLE_PASSWORD ?? 'ensemble-client-dev',
    sessionTtlMs: Number(values['session-ttl']),
  });
  const stop = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => stop.abort());
  return { client, values, signal: stop.signal };
}

/** Waits `ms`, or less if `signal` aborts (never throws). */
export function pause(ms, signal) {
  return sleep(ms, undefined, { signal }).catch(() => {});
}
