/**
 * One node process: config from flags, env or a JSON file; /metrics and /health on its HTTP
 * port; clean shutdown on SIGTERM/SIGINT; exit code 1 when the node stopped on a fatal error
 * (an I/O failure: restart it and it resumes from RocksDB).
 */
import { EnsembleNode } from '../actors/index.ts';
import { wholeArg } from './args.ts';
import { serveMetrics } from './metrics.ts';
import { DEV_PASSWORDS, natsCredentials } from './nats-server.ts';
import { tlsOf } from './tls.ts';

/** True for a NATS URL on this machine only (127.0.0.0/8, ::1, localhost). */
export function isLoopback(url: string): boolean {
  let host: string;
  try {
    host = new URL(url.includes('://') ? url : `nats://${url}`).hostname;
  } catch {
    return false;
  }
  return host === 'localhost' || host === '[::1]' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export interface NodeArgs {
  id?: string;
  data?: string;
  nats?: string;
  initialCluster?: string;
  join?: boolean;
  cluster?: string;
  prefix?: string;
  httpPort?: string | number;
  tickMs?: string | number;
  electionTicks?: string | number;
  snapshotThreshold?: string | number;
  user?: string;
  password?: string;
  quotaBackendBytes?: string | number;
  maxSessionsPerUser?: string | number;
  maxKeysPerSession?: string | number;
  maxKeysPerUser?: string | number;
  ratePerUser?: string | number;
  /** Comma-separated NATS users treated as admins. */
  admins?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** Serve the chaos admin subject (stop an actor by name). */
  chaos?: boolean;
  /** Publish inspection batches from the start. */
  inspect?: boolean;
  inspectRate?: string | number;
  treeWriteDelayMs?: string | number;
  historyRetention?: string | number;
}

export async function runNode(a: NodeArgs): Promise<void> {
  if (!a.id || !a.data) throw new TypeError('ensemble node needs --id and --data');
  const initial = (a.initialCluster ?? '').split(',').filter(Boolean);
  if (!a.join && initial.length === 0)
    throw new TypeError('ensemble node needs --initial-cluster (or --join)');
  const log = (line: string) => console.log(`${new Date().toISOString()} ${line}`);
  const raft: Record<string, number> = {};
  const electionTicks = wholeArg('--election-ticks', a.electionTicks, 2);
  if (electionTicks !== undefined) raft.electionTicks = electionTicks;
  const snapshotThreshold = wholeArg('--snapshot-threshold', a.snapshotThreshold, 1);
  if (snapshotThreshold !== undefined) raft.snapshotThreshold = snapshotThreshold;
  const tickMs = wholeArg('--tick-ms', a.tickMs, 1);
  const inspectRate = wholeArg('--inspect-rate', a.inspectRate, 1);
  const treeWriteDelayMs = wholeArg('--tree-write-delay-ms', a.treeWriteDelayMs, 0);
  const historyRetention = wholeArg('--history-retention', a.historyRetention, 0);
  const httpPort = wholeArg('--http-port', a.httpPort, 0);
  if (httpPort !== undefined && httpPort > 65535) throw new TypeError('--http-port takes 0 to 65535');
  const servers = (a.nats ?? 'nats://127.0.0.1:4222').split(',');
  const pass = a.password ?? process.env.ENSEMBLE_PEER_PASSWORD ?? natsCredentials('peer').pass;
  const remote = servers.filter((s) => !isLoopback(s));
  if (pass === DEV_PASSWORDS.peer && remote.length > 0)
    throw new TypeError(
      `refusing the public development password of peer for ${remote.join(', ')} (not loopback): set ENSEMBLE_PEER_PASSWORD`,
    );
  const quotas = Object.fromEntries(
    (
      [
        ['databaseBytes', wholeArg('--quota-backend-bytes', a.quotaBackendBytes, 1)],
        ['sessionsPerUser', wholeArg('--max-sessions-per-user', a.maxSessionsPerUser, 1)],
        ['keysPerSession', wholeArg('--max-keys-per-session', a.maxKeysPerSession, 1)],
        ['keysPerUser', wholeArg('--max-keys-per-user', a.maxKeysPerUser, 1)],
        ['requestsPerSecond', wholeArg('--rate-per-user', a.ratePerUser, 0)],
      ] as const
    ).filter(([, v]) => v !== undefined),
  );
  const node = await EnsembleNode.start({
    id: a.id,
    dataDir: a.data,
    servers,
    user: a.user ?? 'peer',
    pass,
    quotas,
    ...(tlsOf(a) ? { tls: tlsOf(a)! } : {}),
    ...(a.admins ? { admins: a.admins.split(',').filter(Boolean) } : {}),
    cluster: a.cluster ?? 'dev',
    ...(a.prefix ? { prefix: a.prefix } : {}),
    initialCluster: initial,
    join: Boolean(a.join),
    ...(tickMs !== undefined ? { tickMs } : {}),
    raft,
    log,
    chaos: Boolean(a.chaos),
    inspect: Boolean(a.inspect),
    ...(inspectRate !== undefined ? { inspectRate } : {}),
    ...(treeWriteDelayMs !== undefined ? { treeWriteDelayMs } : {}),
    ...(historyRetention !== undefined ? { historyRetention } : {}),
  });
  const metrics = await serveMetrics(node, httpPort ?? 0);
  log(
    `[${a.id}] metrics http://127.0.0.1:${metrics.port}/metrics  health http://127.0.0.1:${metrics.port}/health`,
  );
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`[${a.id}] ${signal}: stopping`);
    await node.stop();
    await metrics.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  const failure = await node.closed();
  if (failure !== null && !stopping) {
    log(`[${a.id}] stopped on a fatal error: ${(failure as Error).message ?? String(failure)}`);
    await metrics.close();
    process.exit(1);
  }
}
