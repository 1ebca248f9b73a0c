/**
 * One Ensemble node: the Raft machine given a body. The node is an XState actor system: a
 * supervisor machine (`nodeMachine`) whose children are the Raft machine and the actors that
 * carry out its effects, each with a `systemId` (an inspector sees them all) and a stated policy
 * (`SUPERVISION`): an actor whose loss cannot cost an acknowledged write is restarted (transport,
 * API ingress, session keeper, watch hub, ticker: they rebuild what they need from storage and
 * the Raft machine); one whose loss could (the Raft machine, the executor: storage writer and
 * applier) stops the node, crash-only, and the process restarts from disk. An actor restarted
 * more than `MAX_RESTARTS` times within `RESTART_WINDOW_MS` stops the node instead (a crash loop).
 * Every node serves the admin op `inspect` (its inspection stream on `P.inspect.<id>`,
 * actors/inspection.ts). With `chaos` set, the node also serves chaos admin ops on `P.node.<id>.admin.<op>` (peers only, by
 * nats.conf): `stopActor` stops an actor by name, and the policy applies; `filter` sets the
 * transport's fault filter (drops and delays of peer messages, actors/chaos.ts); `hash` answers a
 * hash of this node's key tree at a revision, so a chaos run can compare the nodes' trees.
 *
 * Start-up: open RocksDB, record (or check) the node identity, finish a snapshot install a
 * crash interrupted, bootstrap the initial configuration on an empty data directory (never
 * when joining), then start the machine from the durable log.
 * Any storage failure stops the node (crash-only): it restarts from disk.
 */
import { randomInt } from 'node:crypto';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { type AnyActorRef, createActor, type InspectionEvent } from 'xstate';
import {
  createRaftMachine,
  currentConfig,
  type RaftEvent,
  type RaftInput,
  type RaftOptions,
  type RaftReader,
  type RaftSnapshot,
  raftReader,
  type SnapshotMeta,
} from '../machines/raft/index.ts';
import {
  type ApiLimits,
  BadRequestError,
  decodeEnvelope,
  EnsembleError,
  encodeReply,
  InternalError,
  type Outcome,
  type Subjects,
  subjects as subjectTable,
} from '../protocol/index.ts';
import { type NodeStorage, openStorage } from '../storage/index.ts';
import { Api, type Quotas } from './api/index.ts';
import type { Applier } from './applier.ts';
import { ChaosFilter, parseFilter, parseHash, treeHash } from './chaos.ts';
import { Executor } from './executor.ts';
import { type InspectorStats, inspectStatus, NodeInspector } from './inspection.ts';
import { DEFAULT_HISTORY_RETENTION, HistoryRetention } from './retention.ts';
import { natsAgesPeers, SessionKeeper } from './sessions.ts';
import { Ticker } from './ticker.ts';
import { chaosConnection, Transport } from './transport.ts';
import { WatchHub } from './watches.ts';

export interface NodeConfig {
  readonly id: string;
  readonly dataDir: string;
  /** NATS server URLs (all of them, for failover). */
  readonly servers: readonly string[];
  readonly user?: string;
  readonly pass?: string;
  /** TLS to NATS: the servers' CA, and for mutual TLS this node's certificate and key (PEM files). */
  readonly tls?: { readonly caFile?: string; readonly certFile?: string; readonly keyFile?: string };
  /** Cluster name: a subject token, and the cluster id every envelope carries. */
  readonly cluster: string;
  readonly prefix?: string;
  /** Members of a new cluster; used only when the data directory is empty. */
  readonly initialCluster: readonly string[];
  /** Start empty and wait to be added by the leader (member add), instead of bootstrapping. */
  readonly join?: boolean;
  readonly tickMs?: number;
  readonly raft?: Partial<RaftOptions>;
  readonly limits?: Partial<ApiLimits>;
  /** Quotas: database bytes, sessions per user, keys per session, requests per second per user. */
  readonly quotas?: Partial<Quotas>;
  /** NATS users treated as admins (default `admin`). */
  readonly admins?: readonly string[];
  readonly requestTimeoutMs?: number;
  readonly watch?: {
    progressMs?: number;
    window?: number;
    maxBehind?: number;
    maxPerSession?: number;
    sliceMs?: number;
  };
  readonly log?: (line: string) => void;
  /** Serve the chaos admin ops `P.node.<id>.admin.<op>`: stopActor, filter, hash (chaos tests;
   * off by default). */
  readonly chaos?: boolean;
  /** Publish inspection batches from the start (`--inspect`), until the admin op `inspect`
   * turns them off; off by default, and the admin op can turn them on at run time. */
  readonly inspect?: boolean;
  /** Inspection events per second at most (default `INSPECT_DEFAULT_RATE`). */
  readonly inspectRate?: number;
  /** Revisions of history the leader keeps: it proposes a compaction below the newest this
   * many (default `DEFAULT_HISTORY_RETENTION`; 0 keeps everything). */
  readonly historyRetention?: number;
  /** How long the key tree gathers applied changes before writing them (storage/tree/rocks.ts). */
  readonly treeWriteDelayMs?: number;
}

export const defaultTickMs = 50;
export const defaultRaftOptions: Partial<RaftOptions> = {
  electionTicks: 10,
  heartbeatTicks: 2,
  snapshotThreshold: 10_000,
  maxAppendEntries: 1024,
  maxInflight: 64,
  commitNotice: true,
};

import {
  type ActorName,
  actorNames,
  isActorName,
  type nodeMachine,
  type Parts,
  SUPERVISION,
  superviseNode,
} from './supervisor.ts';

/** What a chaos admin op answers, and what it does once the answer is out. */
interface AdminAnswer {
  readonly result: unknown;
  readonly after?: () => void;
}
/** One chaos admin op: validates the body and serves it (throwing typed errors). */
type AdminOp = (body: unknown) => AdminAnswer | Promise<AdminAnswer>;

export class EnsembleNode {
  private actor!: ReturnType<typeof createActor<typeof nodeMachine>>;
  private raftRef!: AnyActorRef;
  private machine!: RaftReader;
  private parts!: Parts;
  private fatalError: unknown = null;
  private readonly done: Promise<unknown>;
  private resolveDone!: (err: unknown) => void;
  private stopping = false;
  private adminSubs: Subscription[] = [];
  private inspector: NodeInspector | undefined;
  /** The transport's fault filter (set by the `filter` admin op of a `--chaos` node). */
  private readonly chaos = new ChaosFilter();

  private constructor(
    readonly config: NodeConfig,
    private readonly storage: NodeStorage,
  ) {
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
  }

  /** Opens storage, connects to NATS and starts every actor. */
  static async start(config: NodeConfig, inspect?: (ev: unknown) => void): Promise<EnsembleNode> {
    const storage = await openStorage(
      config.dataDir,
      config.treeWriteDelayMs !== undefined ? { writeDelayMs: config.treeWriteDelayMs } : {},
    );
    const node = new EnsembleNode(config, storage);
    try {
      await node.boot(inspect);
    } catch (err) {
      await storage.close().catch(() => {});
      throw err;
    }
    return node;
  }

  private log(line: string): void {
    this.config.log?.(`[${this.config.id}] ${line}`);
  }

  private async boot(external?: (ev: unknown) => void): Promise<void> {
    const { config, storage } = this;
    const { log, tree } = storage;
    const identity = await log.initIdentity({ clusterId: config.cluster, nodeId: config.id });
    // A snapshot install that a crash interrupted after the tree switched: finish it.
    const meta = tree.raftMeta;
    if (meta !== null && meta.index > (log.snapshot()?.index ?? 0)) await log.compact(meta);
    const fresh = log.lastIndex() === 0 && log.snapshot() === null && log.hardState().term === 0;
    if (fresh && !config.join) {
      if (!config.initialCluster.includes(config.id)) {
        throw new TypeError(
          `--initial-cluster ${config.initialCluster.join(',')} does not name this node ${config.id}`,
        );
      }
      // The same first entry on every initial member (as etcd bootstraps): membership lives in
      // the log from index 1 on, so nothing but the log decides it after this.
      await log.write({
        hardState: { term: 1, vote: null, commit: 1 },
        entries: [
          { index: 1, term: 1, type: 'config', config: { voters: [...config.initialCluster], learners: [] } },
        ],
      });
      this.log(`bootstrapped cluster ${config.cluster} with ${config.initialCluster.join(',')}`);
    }
    const snapshot: SnapshotMeta | undefined = log.snapshot() ?? undefined;
    const raftInput: RaftInput = {
      id: config.id,
      hardState: log.hardState(),
      ...(snapshot ? { snapshot } : {}),
      applied: tree.appliedIndex,
      seed: randomInt(2 ** 31),
      options: { ...defaultRaftOptions, ...config.raft },
    };

    const nc = await connect({
      servers: [...config.servers],
      name: `ensemble-${config.cluster}-${config.id}`,
      ...(config.user ? { user: config.user } : {}),
      ...(config.pass ? { pass: config.pass } : {}),
      inboxPrefix: '_INBOX.peer',
      ...(config.tls ? { tls: { ...config.tls } } : {}),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 200,
      pingInterval: 2000,
    });
    const subjects = subjectTable({
      cluster: config.cluster,
      ...(config.prefix ? { prefix: config.prefix } : {}),
    });
    const raft = (e: RaftEvent) => this.raftRef.send(e);
    const machine = raftReader(() => this.raftRef.getSnapshot() as RaftSnapshot, log);
    this.machine = machine;
    const fatal = (error: unknown) => this.fail(error);
    // What the actors that call peers outside the transport send and receive: through the chaos
    // filter on a `--chaos` node (forwarded requests, session-age rounds).
    const peerNc = config.chaos ? chaosConnection(nc, { subjects, self: config.id, chaos: this.chaos }) : nc;

    const raftOptions = { ...defaultRaftOptions, ...config.raft };
    const graceMs = (raftOptions.electionTicks ?? 10) * (config.tickMs ?? defaultTickMs);
    const sessions = new SessionKeeper({
      self: config.id,
      tree,
      graceMs,
      machine,
      expire: (id) => api.expire(id),
      peers: natsAgesPeers({
        nc: peerNc,
        subjects,
        cluster: config.cluster,
        self: config.id,
        timeoutMs: graceMs,
      }),
    });
    const inspector = new NodeInspector({
      nc,
      subjects,
      cluster: config.cluster,
      self: config.id,
      root: () => this.actor,
      status: () => inspectStatus(machine, tree.sessions().length),
      ...(config.inspect ? { on: true } : {}),
      ...(config.inspectRate ? { rate: config.inspectRate } : {}),
      log: (line) => this.log(line),
    });
    this.inspector = inspector;
    const both = (ev: InspectionEvent) => {
      inspector.observe(ev);
      external?.(ev);
    };
    const watches = new WatchHub({
      nc,
      subjects,
      self: config.id,
      tree,
      ...config.watch,
      inspect: () => (inspector.isOn ? both : (external as ((ev: InspectionEvent) => void) | undefined)),
    });
    // The one executor of the machine's effects, over RocksDB (promises adapted to callbacks).
    const executor = new Executor(
      {
        raft,
        log: {
          write: (p, done) => log.write(p).then(() => done(null), done),
          compact: (snapshot, done) => log.compact(snapshot).then(() => done(null), done),
        },
        tree: {
          apply: (index, data) => tree.applyEager(index, data),
          sync: (done) => tree.sync().then(() => done(null), done),
          restore: (data, done) =>
            tree.restore(data as Uint8Array[]).then((info) => {
              sessions.restored();
              done(null, info.appliedIndex);
            }, done),
        },
        send: (to, m) => transport.send(to, m),
        sendSnapshot: (to, m) => transport.sendSnapshot(to, m),
        members: (c) => transport.forgetNonMembers([...c.voters, ...c.learners]),
        requests: (e) => {
          if (e.type === 'roleChanged' && (e.role === 'leader' || e.leader !== null))
            this.log(`${e.role} of term ${e.term} (leader ${e.leader ?? '-'})`);
          sessions.effect(e);
          api.effect(e);
        },
        applied: (entry, outcome) => {
          sessions.applied(outcome);
          api.applied(entry, outcome);
          watches.applied();
        },
        fatal,
      },
      Math.max(tree.appliedIndex, snapshot?.index ?? 0),
    );
    const applier = executor.applier;
    const api: Api = new Api({
      nc: peerNc,
      subjects,
      cluster: config.cluster,
      self: config.id,
      tickMs: config.tickMs ?? defaultTickMs,
      raft,
      machine,
      tree,
      applier,
      ...(config.limits ? { limits: config.limits } : {}),
      ...(config.quotas ? { quotas: config.quotas } : {}),
      ...(config.admins ? { admins: config.admins } : {}),
      ...(config.requestTimeoutMs ? { requestTimeoutMs: config.requestTimeoutMs } : {}),
      onKeepalive: (id) => sessions.heard(id),
      onUnknownKeepalive: (id, secret) => sessions.heardUnknown(id, secret),
      watches,
    });
    const transport = new Transport({
      nc,
      subjects,
      cluster: config.cluster,
      self: config.id,
      incarnation: identity.incarnation,
      log: (line) => this.log(line),
      raft,
      admits: (id) => {
        const c = currentConfig(machine.context());
        return (
          (c.voters.length === 0 && c.learners.length === 0) ||
          c.voters.includes(id) ||
          c.learners.includes(id)
        );
      },
      snapshotChunks: async () => tree.snapshot(),
      chaos: this.chaos,
    });
    const retention = new HistoryRetention({
      keep: config.historyRetention ?? DEFAULT_HISTORY_RETENTION,
      tree,
      propose: (revision) => api.compact(revision),
    });
    let ticks = 0;
    const ticker = new Ticker({
      tickMs: config.tickMs ?? defaultTickMs,
      raft: (e) => {
        raft(e);
        if (++ticks % 4 === 0 && machine.role() === 'leader') {
          sessions.check();
          retention.check();
        }
      },
      onPause: (ms) => {
        this.log(`event loop paused ${ms.toFixed(0)} ms: counted as contact for every session`);
        sessions.everyoneHeard();
      },
    });
    this.parts = { config, raftInput, nc, executor, transport, api, ticker, sessions, watches };
    this.adminSubs = this.serveAdmin(nc, subjects);

    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'reconnect') {
          this.log('NATS reconnected: counted as contact for every session');
          sessions.everyoneHeard();
        }
      }
    })().catch(() => {});

    this.actor = createActor(superviseNode(createRaftMachine({ log })), {
      input: this.parts,
      ...(external ? { inspect: external } : {}),
    });
    // The inspector subscribes to the actor system while inspection is on: no inspection events
    // are even built while it is off.
    inspector.attach(this.actor.system);
    this.actor.subscribe({
      next: (s) => {
        if (s.status !== 'done') return;
        if (s.value === 'failed') this.fatalError ??= s.context.error ?? new Error('the node failed');
        this.finish();
      },
      error: (err) => this.fail(err),
    });
    this.actor.start();
    this.raftRef = this.actor.system.get('raft') as AnyActorRef;
    this.raftRef.subscribe({ error: (err: unknown) => this.fail(err) });
    this.log(
      `started (incarnation ${identity.incarnation}, term ${log.hardState().term}, last index ${log.lastIndex()})`,
    );
  }

  /**
   * The admin ops, each on `P.node.<id>.admin.<op>` (peers and the admin, by nats.conf), request
   * and answer in the API's envelope and codec; a bad body gets BAD_REQUEST:
   * - `inspect` `{ on, leaseMs?, rate?, resync? }` → `{ node, on, until, rate, subject }` (every
   *   node): turns the inspection stream on for a lease, or off (actors/inspection.ts).
   * Only on a node started with `--chaos`:
   * - `stopActor` `{ actor }` → `{ actor, policy }`, answered first; then the actor stops and its
   *   policy applies (restart, or the node stops).
   * - `filter` `{ rules: [{ peer, direction, drop?, delayMs? }] }` → `{ rules }` (defaults filled
   *   in): replaces the fault filter on peer messages; `{ rules: [] }` heals.
   * - `hash` `{ revision? }` → `{ revision, hash, keys }`: this node's key tree at `revision`
   *   (default: its applied revision), waited for up to 5 s (TIMEOUT); COMPACTED below compaction.
   */
  private serveAdmin(nc: NatsConnection, subjects: Subjects): Subscription[] {
    const cluster = this.config.cluster;
    const inspect: Record<string, AdminOp> = {
      inspect: (body) => {
        if (!this.inspector) throw new InternalError('the node is starting');
        return { result: this.inspector.control(body) };
      },
    };
    const chaos: Record<string, AdminOp> = {
      stopActor: (body) => {
        const actor = (body as { actor?: unknown } | null)?.actor;
        if (!isActorName(actor)) throw new BadRequestError(`actor must be one of ${actorNames.join(', ')}`);
        const policy = SUPERVISION[actor];
        return {
          result: { actor, policy },
          after: () => {
            this.log(`chaos: stopping actor ${actor} (policy: ${policy})`);
            this.actor.send({ type: 'node.stopActor', actor, now: performance.now() });
          },
        };
      },
      filter: (body) => {
        const rules = parseFilter(body);
        this.chaos.set(rules);
        const said = rules.map((r) => `${r.direction} ${r.peer} drop ${r.drop} delay ${r.delayMs} ms`);
        this.log(rules.length === 0 ? 'chaos: filter healed' : `chaos: filter ${said.join('; ')}`);
        return { result: { rules } };
      },
      hash: async (body) => ({ result: await treeHash(this.storage.tree, parseHash(body).revision) }),
    };
    const ops = this.config.chaos ? { ...inspect, ...chaos } : inspect;
    return Object.entries(ops).map(([op, handler]) =>
      nc.subscribe(subjects.nodeAdmin(this.config.id, op), {
        callback: (err, msg) => {
          if (err) return;
          const d = decodeEnvelope(msg.data, { cluster, headers: msg.headers ?? null });
          const respond = (outcome: Outcome) => {
            if (msg.reply) msg.respond(encodeReply(outcome, { cluster, format: d.format }));
          };
          if (!d.ok) return respond({ error: d.error });
          const failed = (e: unknown) =>
            respond({ error: e instanceof EnsembleError ? e : new InternalError(String(e)) });
          const answered = (a: AdminAnswer) => {
            respond({ result: a.result });
            a.after?.();
          };
          try {
            const r = handler(d.envelope.body);
            if (r instanceof Promise) r.then(answered, failed);
            else answered(r);
          } catch (e) {
            failed(e);
          }
        },
      }),
    );
  }

  /** Restarts of each actor so far (metrics, tests). */
  get restarts(): Readonly<Partial<Record<ActorName, number>>> {
    return this.actor.getSnapshot().context.restarted;
  }

  /** The running Raft machine: its role, context and last index. */
  get raft(): RaftReader {
    return this.machine;
  }

  get api(): Api {
    return this.parts.api;
  }

  get transport(): Transport {
    return this.parts.transport;
  }

  get executor(): Executor {
    return this.parts.executor;
  }

  get watches(): WatchHub {
    return this.parts.watches;
  }

  get applier(): Applier {
    return this.parts.executor.applier;
  }

  /** The key tree (read-only use: metrics, tests). */
  get tree(): NodeStorage['tree'] {
    return this.storage.tree;
  }

  /** The inspection stream's counters (events sent, dropped, batches). */
  get inspection(): InspectorStats {
    return this.inspector?.stats ?? { sent: 0, dropped: 0, batches: 0 };
  }

  get nats(): NatsConnection {
    return this.parts.nc;
  }

  get system() {
    return this.actor.system;
  }

  /** Resolves when the node stopped: with the fatal error, or null after `stop()`. */
  closed(): Promise<unknown> {
    return this.done;
  }

  private fail(error: unknown): void {
    if (this.fatalError !== null || this.stopping) return;
    this.fatalError = error ?? new Error('unknown failure');
    this.log(`fatal: ${(error as Error)?.message ?? String(error)}`);
    this.actor.send({ type: 'node.fatal', error });
  }

  private finish(): void {
    if (this.stopping && this.fatalError === null) return;
    void this.shutdown();
  }

  /** Stops every actor, drains NATS, closes RocksDB. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.actor.send({ type: 'node.stop' });
    await this.shutdown();
  }

  private shutdownPromise: Promise<void> | null = null;

  private shutdown(): Promise<void> {
    this.shutdownPromise ??= (async () => {
      for (const s of this.adminSubs) s.unsubscribe();
      this.inspector?.close();
      this.actor.stop();
      this.parts.api.close();
      await this.parts.nc.drain().catch(() => this.parts.nc.close());
      await this.storage.close().catch(() => {});
      this.resolveDone(this.fatalError);
    })();
    return this.shutdownPromise;
  }
}
