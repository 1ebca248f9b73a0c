/**
 * `/metrics` (Prometheus text format, prom-client) and `/health` of one node, on its own HTTP
 * port. Gauges are read from the node when scraped; counters mirror the actors' counters.
 */
import { createServer, type Server } from 'node:http';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { EnsembleNode } from '../actors/index.ts';

const ROLES = ['follower', 'preCandidate', 'candidate', 'leader'] as const;

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

export function nodeRegistry(node: EnsembleNode): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ node: node.config.id, cluster: node.config.cluster });
  collectDefaultMetrics({ register: registry });
  const raft = () => node.raft.context();

  new Gauge({
    name: 'ensemble_raft_role',
    help: 'Raft role of the node (1 for the current role)',
    labelNames: ['role'],
    registers: [registry],
    collect() {
      const role = node.raft.role();
      for (const r of ROLES) this.set({ role: r }, r === role ? 1 : 0);
    },
  });
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  gauge('ensemble_raft_term', 'Current Raft term', () => raft().term);
  gauge('ensemble_raft_commit_index', 'Highest log index known committed', () => raft().commit);
  gauge('ensemble_raft_applied_index', 'Highest log index applied to the key tree', () => node.applier.index);
  gauge('ensemble_raft_last_index', 'Last log index', () => node.raft.lastIndex());
  gauge('ensemble_revision', 'Revision of the key tree (applied)', () => node.tree.revision);
  gauge(
    'ensemble_compact_revision',
    'History at and below this revision is compacted (auto-compaction: --history-retention)',
    () => node.tree.compactRevision,
  );
  gauge(
    'ensemble_raft_elections_won_total',
    'Elections this node won since start',
    () => raft().stats.elections,
  );

  const counters = (name: string, help: string, read: () => number) => {
    let seen = 0;
    return new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        const v = read();
        if (v > seen) this.inc(v - seen);
        seen = v;
      },
    });
  };
  const t = () => node.transport.counters;
  const a = () => node.api.counters;
  counters('ensemble_proposals_total', 'Commands proposed to the log', () => a().proposals);
  counters(
    'ensemble_inspection_events_total',
    'Inspection events published (ensemble inspect)',
    () => node.inspection.sent,
  );
  counters(
    'ensemble_inspection_dropped_total',
    'Inspection events over the rate limit, counted and not sent',
    () => node.inspection.dropped,
  );
  counters(
    'ensemble_proposal_batches_total',
    'Proposal batches (one raft.propose each)',
    () => a().proposalBatches,
  );
  counters('ensemble_requests_total', 'Client requests received', () => a().requests);
  counters('ensemble_request_errors_total', 'Client requests answered with an error', () => a().errors);
  counters('ensemble_requests_forwarded_total', 'Requests forwarded to the leader', () => a().forwarded);
  counters(
    'ensemble_snapshots_installed_total',
    'Snapshots received and installed',
    () => node.executor.restores,
  );
  counters('ensemble_snapshots_sent_total', 'Snapshots streamed to followers', () => t().snapshotsSent);
  counters('ensemble_peer_frames_in_total', 'Peer frames received', () => t().framesIn);
  counters('ensemble_peer_frames_out_total', 'Peer frames sent', () => t().framesOut);
  counters('ensemble_peer_messages_in_total', 'Raft messages received', () => t().messagesIn);
  counters('ensemble_peer_messages_out_total', 'Raft messages sent', () => t().messagesOut);
  const w = () => node.watches.counters;
  gauge('ensemble_data_bytes', 'Bytes the key tree holds, history included', () => node.api.dataBytes);
  gauge(
    'ensemble_alarm_nospace',
    '1 while the database quota is used up (writes that add data refused)',
    () => (node.api.databaseFull ? 1 : 0),
  );
  gauge('ensemble_watchers', 'Watches served by this node', () => w().watchers);
  gauge('ensemble_watch_groups', 'Groups of live watches with the same target', () => w().groups);
  gauge('ensemble_watchers_shared', 'Watches following their group stream', () => w().shared);
  counters('ensemble_watch_messages_total', 'Messages sent to one watch', () => w().messages);
  counters(
    'ensemble_watch_group_messages_total',
    'Messages published on group streams',
    () => w().groupMessages,
  );
  counters('ensemble_watch_events_total', 'Events delivered to watches (one per watch)', () => w().events);
  counters('ensemble_watches_behind_total', 'Watches ended with WATCH_BEHIND', () => w().cancelledBehind);
  counters(
    'ensemble_watches_moved_total',
    "Watches ended with WATCH_MOVED (their session's watches went to another node)",
    () => w().moved,
  );
  new Gauge({
    name: 'ensemble_actor_restarts_total',
    help: 'Restarts of each supervised actor since the node started',
    labelNames: ['actor'],
    registers: [registry],
    collect() {
      for (const [actor, n] of Object.entries(node.restarts)) this.set({ actor }, n ?? 0);
    },
  });
  const pending = () => node.api.pending.sizes;
  gauge('ensemble_pending_writes', 'Writes waiting for the log', () => pending().writes);
  gauge('ensemble_pending_read_batches', 'ReadIndex batches waiting', () => pending().readBatches);
  const dropped = new Counter({
    name: 'ensemble_dropped_inputs_total',
    help: 'Bad inputs dropped or refused, by source and reason',
    labelNames: ['source', 'reason'],
    registers: [registry],
  });
  const seenDrops = new Map<string, number>();
  const dropsGauge = () => {
    const d = t().drops;
    const rows: [string, string, number][] = [
      ...Object.entries(d).map(([reason, v]) => ['peer', reason, v] as [string, string, number]),
      ['client', 'invalid', a().badInput],
      ['client', 'forgedKeepalive', a().forgedKeepalives],
      ['client', 'permissionDenied', a().denied],
      ['client', 'quotaExceeded', a().quotaExceeded],
      ['client', 'rateLimited', a().rateLimited],
      ['raft', 'unexpected', raft().stats.dropped],
    ];
    for (const [source, reason, v] of rows) {
      const k = `${source}/${reason}`;
      const before = seenDrops.get(k) ?? 0;
      if (v > before) dropped.inc({ source, reason }, v - before);
      seenDrops.set(k, v);
    }
  };
  const latency = new Histogram({
    name: 'ensemble_apply_seconds',
    help: 'Time to apply one command to the key tree',
    buckets: [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05],
    registers: [registry],
  });
  const drain = () => {
    for (const ms of node.applier.latencies.splice(0)) latency.observe(ms / 1000);
    dropsGauge();
  };
  const metrics = registry.metrics.bind(registry);
  registry.metrics = async () => {
    drain();
    return metrics();
  };
  return registry;
}

/** Serves `/metrics` and `/health` for `node` on `port` (0: any free port) of `host`. */
export function serveMetrics(node: EnsembleNode, port: number, host = '127.0.0.1'): Promise<MetricsServer> {
  const registry = nodeRegistry(node);
  const server: Server = createServer((req, res) => {
    if (req.url === '/metrics') {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        },
        (err) => {
          res.writeHead(500);
          res.end(String(err));
        },
      );
      return;
    }
    if (req.url === '/health') {
      const s = node.raft.context();
      const healthy = s.leader !== null;
      res.writeHead(healthy ? 200 : 503, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ healthy, role: node.raft.role(), term: s.term, leader: s.leader, commit: s.commit }),
      );
      return;
    }
    res.writeHead(404);
    res.end();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const address = server.address();
      resolve({
        port: typeof address === 'object' && address !== null ? address.port : port,
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}
