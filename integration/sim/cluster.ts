/**
 * A deterministic simulation of a whole Ensemble Raft cluster: the real machine (pure steps) and
 * the real runtime that carries out its effects (actors/executor.ts: persist order, answers held
 * until durable, restores, the applier) over the real key tree (in memory: MVCC, txn, sessions,
 * the exactly-once table), an in-memory disk that loses unsynced writes on a crash, a virtual network with loss, delay,
 * reordering, duplication and partitions, per-node clocks that may run slow or fast, processes
 * that pause, a nemesis (nemesis.ts) that follows the seed's fault schedule, and a client
 * (workload.ts) that writes real commands under a session and reads through ReadIndex. Everything is drawn from one seed, so a failing run
 * replays exactly.
 *
 * Safety is checked as the run goes (checker.ts, against its own model in oracle.ts; replicas'
 * key trees compared at the same applied index); liveness once the faults have healed
 * (liveness.ts); the client's history for linearizability and retried writes applied once at the
 * end (workload.ts).
 *
 * Lines marked [fault] and [oracle] in the node runtime (persist, disk completion, held sends,
 * apply, reads) are the only hooks the nemesis and the checker need there.
 */

import { createActor } from 'xstate';
import {
  ApiHandlers,
  answerWith,
  Executor,
  newCounters,
  PendingTable,
  type Reply,
} from '../../actors/index.ts';
import {
  createRaftMachine,
  defaultOptions,
  type Effect,
  type Entry,
  type Message,
  nextRandom,
  type RaftEvent,
  type RaftOptions,
  raftReader,
  roleOf,
  type SnapshotMeta,
  seedFrom,
} from '../../machines/raft/index.ts';
import { BadRequestError, validateRequest } from '../../protocol/index.ts';
import type { Persist } from '../../storage/index.ts';
import { type ApplyOutcome, MemoryTree } from '../../storage/index.ts';
import { Checker } from './checker.ts';
import { SimDisk, type SimState } from './disk.ts';
import { Agenda } from './heap.ts';
import { Liveness } from './liveness.ts';
import { makeNemesis, type Nemesis, type ScheduleName, scheduleFor, setupOf } from './nemesis.ts';
import {
  type AgendaItem,
  type RuntimeMistakes,
  SimNode,
  type SimOptions,
  type SimResult,
  TICK_MS,
  type Write,
} from './node.ts';
import { type SessionItem, SessionWorld } from './sessions.ts';
import { SIM_CLUSTER, type SimReply, Workload } from './workload.ts';

export { SimNode, type SimOptions, type SimResult, TICK_MS } from './node.ts';

const TRACE_LINES = 60;
const LIVENESS_MS = 6000;
/** How long a node's API holds a request before TIMEOUT (virtual ms). */
const REQUEST_TIMEOUT_MS = 2000;

/** The simulator runs no watches: the hub's part the API handlers use, refusing every watch. */
const noWatches = {
  add: () => ({ error: new BadRequestError('the simulator runs no watches') }),
  cancel: () => false,
  ack: () => {},
  sessionEnded: () => {},
};

export class Simulation {
  readonly nodes = new Map<string, SimNode>();
  readonly checker: Checker;
  readonly sessions: SessionWorld | null;
  readonly workload: Workload;
  readonly scheduleName: ScheduleName;
  readonly raftOptions: Partial<RaftOptions>;
  private readonly nemesis: Nemesis;
  private readonly liveness: Liveness;
  private readonly agenda = new Agenda<AgendaItem>();
  private readonly mistakes: RuntimeMistakes;
  private rng: number;
  now = 0;
  steps = 0;
  private raftSteps = 0;
  private healed = false;
  private healedAt = 0;
  private probeAckedAt = -1;
  private blocked = new Set<string>();
  private loss = 0;
  private dup = 0;
  private leaderGuess: string | null = null;
  /** The last TRACE_LINES events, formatted only when a result is built: most runs never
   * look at them, and formatting every delivery would cost more than the checks. */
  private readonly traceRing: (string | { t: number; to: string; m: Message } | undefined)[] = new Array(
    TRACE_LINES,
  );
  private traceNext = 0;
  /** Faults of the disk and network that the nemesis sets (nemesis.ts). */
  readonly faults = {
    /** Each write takes [lo, hi] ms to become durable, in order. */
    diskLatency: [0, 3] as [number, number],
    /** Chance that a write fails: the node stops at once (crash-only). */
    diskFailRate: 0,
    /** Chance that an InstallSnapshot is delivered once more, long after (a stale retry). */
    lateSnapshotRate: 0,
  };
  readonly stats = {
    commits: 0,
    acked: 0,
    reads: 0,
    crashes: 0,
    snapshotsInstalled: 0,
    configChanges: 0,
    transfers: 0,
    /** Times a scripted schedule reached the moment it aims for (nemesis.ts). */
    scenarios: 0,
  };

  constructor(readonly opts: SimOptions) {
    this.rng = seedFrom('simulation', opts.seed);
    this.mistakes = opts.mistakes ?? {};
    const voters = Array.from({ length: opts.nodes }, (_, i) => `n${i + 1}`);
    const spare = `n${opts.nodes + 1}`;
    // A run that configures sessions (the session teeth) gets the faults their checker models.
    const schedule = opts.schedule ?? (typeof opts.sessions === 'object' ? 'random' : scheduleFor(opts.seed));
    const setup = setupOf(schedule, opts.seed);
    this.scheduleName = schedule;
    this.raftOptions = {
      snapshotThreshold: 40,
      snapshotCatchUpEntries: 0,
      maxAppendEntries: 16,
      maxInflight: 8,
      ...setup.raft,
      ...opts.raft,
    };
    const boot: SnapshotMeta = { index: 0, term: 0, config: { voters, learners: [] } };
    this.checker = new Checker(this, opts.stopOnViolation ?? true, boot, opts.checks);
    const electionTicks = this.raftOptions.electionTicks ?? defaultOptions.electionTicks;
    this.sessions =
      opts.sessions === false || !setup.sessions
        ? null
        : new SessionWorld(this, opts.sessions ?? {}, electionTicks * 2 * TICK_MS);
    this.liveness = new Liveness(this, {
      electionMs: electionTicks * 2 * TICK_MS,
      rejoin: (this.raftOptions.preVote ?? true) && (this.raftOptions.checkQuorum ?? true),
    });
    for (const id of voters) this.nodes.set(id, new SimNode(id, new SimDisk(boot)));
    // The spare starts empty, knowing no configuration: it joins only when added.
    this.nodes.set(
      spare,
      new SimNode(spare, new SimDisk({ index: 0, term: 0, config: { voters: [], learners: [] } })),
    );
    this.nemesis = makeNemesis(schedule, this);
    this.workload = new Workload(this);
    for (const node of this.nodes.values()) this.boot(node);
    this.agenda.push(5, { kind: 'client' });
    if (opts.faults !== false) this.agenda.push(200, { kind: 'nemesis' });
  }

  random(): number {
    const [v, s] = nextRandom(this.rng);
    this.rng = s;
    return v;
  }

  int(lo: number, hi: number): number {
    return lo + Math.floor(this.random() * (hi - lo + 1));
  }

  pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[Math.floor(this.random() * items.length)];
  }

  trace(line: string): void {
    this.traceRing[this.traceNext++ % TRACE_LINES] = `t=${this.now} ${line}`;
  }

  private traceDelivery(to: string, m: Message): void {
    this.traceRing[this.traceNext++ % TRACE_LINES] = { t: this.now, to, m };
  }

  private traceLines(): string[] {
    const out: string[] = [];
    for (let i = Math.max(0, this.traceNext - TRACE_LINES); i < this.traceNext; i++) {
      const e = this.traceRing[i % TRACE_LINES]!;
      out.push(typeof e === 'string' ? e : `t=${e.t} ${e.to} <- ${describe(e.m)}`);
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // The run.

  run(): SimResult {
    const chaosEnd = this.opts.steps;
    let item = this.agenda.pop();
    while (item !== undefined) {
      const [time, ev] = item;
      this.now = time;
      this.steps++;
      if (ev.kind !== 'session') this.raftSteps++;
      if (!this.healed && this.raftSteps >= chaosEnd) this.heal();
      this.handle(ev);
      if (this.checker.stopped) break;
      this.checker.afterItem();
      this.sessions?.afterStep();
      if (this.checker.stopped) break;
      if (this.healed) this.liveness.afterItem();
      else this.nemesis.afterItem();
      if (this.checker.stopped) break;
      const done = this.probeAckedAt >= 0 && (this.sessions?.settled() ?? true) && this.liveness.done;
      if (this.healed && (done || this.now - this.healedAt > LIVENESS_MS)) break;
      item = this.agenda.pop();
    }
    if (!this.checker.stopped) {
      if (this.probeAckedAt < 0) {
        this.checker.violate(
          'liveness',
          `no write committed within ${LIVENESS_MS} ms after faults healed (leader: ${this.currentLeader() ?? 'none'})`,
        );
      } else if (this.sessions !== null && !this.sessions.settled()) {
        this.checker.violate(
          'session-liveness',
          `sessions of dead clients still open ${LIVENESS_MS} ms after faults healed: ${[...this.sessions.checker.openSessions()].join(',')}`,
        );
      } else this.liveness.finish();
      if (!this.checker.stopped) this.checker.finalCheck();
      if (!this.checker.stopped) this.workload.finish([...this.nodes.values()].map((n) => n.tree));
    }
    return {
      seed: this.opts.seed,
      nodes: this.opts.nodes,
      schedule: this.scheduleName,
      steps: this.steps,
      time: this.now,
      commits: this.stats.commits,
      acked: this.stats.acked,
      reads: this.stats.reads,
      elections: this.checker.elections,
      crashes: this.stats.crashes,
      snapshotsInstalled: this.stats.snapshotsInstalled,
      configChanges: this.stats.configChanges,
      transfers: this.stats.transfers,
      scenarios: this.stats.scenarios,
      settleMs: this.probeAckedAt >= 0 ? this.probeAckedAt - this.healedAt : -1,
      sessions: this.sessions?.stats() ?? null,
      violations: this.checker.violations,
      trace: this.traceLines(),
    };
  }

  private handle(ev: AgendaItem): void {
    switch (ev.kind) {
      case 'tick': {
        const node = this.nodes.get(ev.node)!;
        if (!node.up || node.life !== ev.life || this.deferIfPaused(node, ev)) return;
        if (node.lagging !== null) {
          for (const [index, data] of node.lagging.backlog) node.lagging.tree.applyNow(index, data);
          node.lagging.backlog = [];
        }
        node.pending?.sweep();
        this.step(node, { type: 'raft.tick' });
        this.sessions?.onTick(node);
        this.agenda.push(this.now + node.tickMs, ev);
        return;
      }
      case 'deliver': {
        const node = this.nodes.get(ev.to)!;
        if (!node.up || this.blocked.has(`${ev.from}>${ev.to}`) || this.deferIfPaused(node, ev)) return;
        this.traceDelivery(ev.to, ev.message);
        this.checker.onDeliver(node, ev.message);
        this.step(node, ev.message);
        return;
      }
      case 'diskDone': {
        const node = this.nodes.get(ev.node)!;
        if (node.up && node.life === ev.life && this.deferIfPaused(node, ev)) return;
        return this.diskDone(ev.node, ev.life);
      }
      case 'local': {
        const node = this.nodes.get(ev.node)!;
        if (!node.up || node.life !== ev.life || this.deferIfPaused(node, ev)) return;
        this.step(node, ev.event);
        return;
      }
      case 'run': {
        const node = this.nodes.get(ev.node)!;
        if (!node.up || node.life !== ev.life || this.deferIfPaused(node, ev)) return;
        ev.fn();
        return;
      }
      case 'resume': {
        const node = this.nodes.get(ev.node)!;
        if (node.up && node.life === ev.life && this.now >= node.pausedUntil) this.resume(node);
        return;
      }
      case 'restart':
        return this.restart(this.nodes.get(ev.node)!);
      case 'client':
        // Once the probe is in, the run only waits for sessions to settle: no more writes.
        if (this.probeAckedAt >= 0) return;
        this.client();
        this.agenda.push(this.now + this.int(2, 12), ev);
        return;
      case 'nemesis':
        if (this.healed) return;
        this.agenda.push(this.now + this.nemesis.act(), ev);
        return;
      case 'heal':
        return this.heal();
      case 'session':
        return this.sessions?.handle(ev.item);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Nodes: boot, crash, restart, step, effects.

  private boot(node: SimNode): void {
    node.life++;
    // Where the state machine resumes: the tree's durable index, or the snapshot's when entries
    // after the tree's last command were no-ops or configurations (as the node boots).
    node.applied = this.resumeIndex(node);
    node.sm = { ...node.disk.snapshotData, applied: node.applied };
    node.writes = [];
    node.proposalAt.clear();
    node.takenSnapshot = null;
    node.pendingRestores = [];
    node.pausedUntil = 0;
    node.inbox = [];
    node.machine = raftReader(() => node.snap!, node.disk.log);
    node.executor = this.runtime(node);
    if (this.mistakes.ackBeforeApply) {
      const lag = new MemoryTree();
      lag.restoreNow(node.tree.durableState);
      node.lagging = { tree: lag, backlog: [] };
    }
    this.startApi(node);
    this.sessions?.onBoot(node);
    this.checker.onBoot(node); // [oracle]
    // The node's own machine, for its log, run as an actor like a node runs it; its effects are
    // collected during a step and carried out after it (as the executor would, in order).
    const actor = createActor(createRaftMachine({ log: node.disk.log }, this.opts.variant), {
      input: {
        id: node.id,
        hardState: node.disk.hardState,
        snapshot: node.disk.snapshot,
        applied: node.sm.applied,
        seed: seedFrom(node.id, this.opts.seed * 31 + node.life),
        options: this.raftOptions,
      },
    });
    actor.on('*', (e) => node.emitted.push(e));
    actor.subscribe({ error: () => {} }); // reported by step() from the snapshot
    node.emitted.length = 0;
    node.actor = actor.start();
    node.snap = actor.getSnapshot();
    const effects = node.emitted.splice(0);
    this.checker.observe(node, effects); // [oracle]
    this.perform(node, effects);
    this.agenda.push(this.now + this.int(1, TICK_MS), { kind: 'tick', node: node.id, life: node.life });
  }

  /**
   * The node's real runtime (the executor and its applier), with the simulator's ports: a disk
   * that completes writes in order on the virtual clock, the virtual network, the node's real key
   * tree (applied at once, so a step runs to its end), and the client and checkers for answers.
   */
  private runtime(node: SimNode): Executor {
    const life = node.life;
    const live = () => node.up && node.life === life;
    return new Executor(
      {
        raft: (e) => {
          if (live()) this.step(node, e);
        },
        log: {
          write: (p: Persist, done) =>
            this.startWrite(
              node,
              { type: 'persist', entries: p.entries, ...(p.hardState ? { hardState: p.hardState } : {}) },
              done,
            ),
          compact: (snapshot, done) => {
            const restored = node.pendingRestores[0];
            if (restored?.index === snapshot.index) {
              // A received snapshot: the log's reset (the tree restored it already, or was past it).
              node.pendingRestores.shift();
              return this.startWrite(node, { type: 'restore', snapshot, data: restored.data }, done);
            }
            // The log drops what a snapshot of this node covers (up to its index, or below it:
            // the machine keeps catch-up entries); the tree was synced for it.
            const taken = node.takenSnapshot;
            if (taken === null || snapshot.index > taken.applied) {
              this.checker.violate(
                'runtime',
                `${node.id} compact at ${snapshot.index} without its snapshot (taken at ${taken?.applied ?? 'none'})`,
              );
              return;
            }
            node.disk.snapshot = snapshot;
            node.disk.snapshotData = taken;
            node.disk.log.compact(snapshot);
            node.takenSnapshot = null;
            done(null);
          },
        },
        tree: {
          apply: (index, data) => {
            node.lagging?.backlog.push([index, data]);
            return this.mistakes.apply
              ? this.mistakes.apply(node.id, index, data, node.tree)
              : node.tree.applyNow(index, data);
          },
          sync: (done) => {
            node.tree.syncNow();
            // At the applier's index: entries after the tree's last command may be no-ops.
            node.takenSnapshot = { ...node.sm, applied: node.applied, tree: node.tree.durableState };
            done(null);
          },
          restore: (data, done) => {
            // As the node's tree does: the state is replaced, durably, before the applier jumps
            // to its index (and serves reads from it); the log's reset is the write after it.
            const s = data as SimState;
            node.tree.restoreNow(s.tree ?? new MemoryTree().durableState);
            if (node.lagging !== null) {
              node.lagging.tree.restoreNow(node.tree.durableState);
              node.lagging.backlog = [];
            }
            node.sm = { ...s };
            node.applied = s.applied;
            this.sessions?.restored(node);
            done(null, s.applied);
          },
        },
        send: (to, m) => this.transmit(node.id, to, m),
        sendSnapshot: (to, m) => this.transmit(node.id, to, { ...m, data: { ...node.disk.snapshotData } }),
        requests: (e) => this.requests(node, e),
        applied: (entry, outcome) => this.applied(node, entry, outcome),
        fatal: (err) => this.checker.violate('runtime', `${node.id}: ${(err as Error).message}`),
      },
      node.sm.applied,
    );
  }

  /**
   * The node's real API handlers, with the simulator's ports: the virtual clock for deadlines,
   * the agenda for work deferred to the next turn, the node's tree, applier and machine.
   */
  private startApi(node: SimNode): void {
    const life = node.life;
    const counters = newCounters();
    const answer = answerWith(SIM_CLUSTER, counters);
    const pending = new PendingTable(answer, REQUEST_TIMEOUT_MS, () => this.now);
    const applier = node.executor!.applier;
    let sessions = 0;
    node.pending = pending;
    node.api = new ApiHandlers({
      self: node.id,
      cluster: SIM_CLUSTER,
      tickMs: TICK_MS,
      raft: (e) => {
        if (node.up && node.life === life) this.step(node, e);
      },
      machine: node.machine!,
      // [mistakes.ackBeforeApply] reads see a tree behind the applied index.
      tree: node.lagging?.tree ?? node.tree,
      // [mistakes.readBeforeApply] an applier that says every index is applied.
      applier: this.mistakes.readBeforeApply
        ? {
            get index() {
              return applier.index;
            },
            whenApplied: (_index: number, fn: () => void) => fn(),
          }
        : applier,
      watches: noWatches,
      answer,
      pending,
      counters,
      defer: (fn) => this.agenda.push(this.now, { kind: 'run', node: node.id, life, fn }),
      onKeepalive: (id) => this.sessions?.heard(node, id),
      onUnknownKeepalive: (id, secret) => this.sessions?.heardUnknown(node, id, secret),
      newSession: () => ({
        id: `s-${node.id}-${life}-${++sessions}`,
        secret: new TextEncoder().encode(`secret-${node.id}-${life}-${sessions}`),
      }),
    });
  }

  /** A request from a client reaches `node`'s API: handled now, or when its process resumes;
   * lost if the node is down (the client hears nothing). */
  request(node: SimNode, op: string, body: unknown, reply: Reply): void {
    if (!node.up) return;
    const v = validateRequest(op, body);
    if (!v.ok) {
      this.checker.violate('runtime', `the workload sent an invalid ${op}: ${v.error.message}`);
      return;
    }
    const api = node.api!;
    this.inProcess(node, () => api.dispatch(v, reply));
  }

  /** Runs `fn` in `node`'s process: now, or when it resumes from a pause; never if it is down. */
  inProcess(node: SimNode, fn: () => void): void {
    if (!node.up) return;
    const item: AgendaItem = { kind: 'run', node: node.id, life: node.life, fn };
    if (!this.deferIfPaused(node, item)) fn();
  }

  /** A linearizable read was answered by `node`: it returned the state at its applied index. */
  readAnswered(node: SimNode, id: number, floor: number): void {
    this.stats.reads++;
    this.checker.onRead(node, `r${id}`, node.applied, floor);
    this.checker.onReturned(node.applied);
  }

  /** A workload write sent at `sentAt` was answered: the first one sent after healing ends the
   * wait for progress. */
  writeAnswered(sentAt: number): void {
    if (this.healed && sentAt >= this.healedAt && this.probeAckedAt < 0) this.probeAckedAt = this.now;
  }

  private resumeIndex(node: SimNode): number {
    return Math.max(node.tree.appliedIndex, node.disk.snapshot.index);
  }

  crash(node: SimNode): void {
    if (!node.up) return;
    this.trace(`nemesis: crash ${node.id} (${node.writes.length} writes in flight lost)`);
    node.snap = null;
    node.actor?.stop();
    node.actor = null;
    node.api = null; // requests held die with the process: their clients hear nothing
    node.pending = null;
    node.life++;
    node.executor?.stop();
    node.executor = null;
    node.tree = node.tree.crash(); // what the tree had not synced is lost; the log replays it
    node.writes = [];
    node.inbox = [];
    this.stats.crashes++;
    this.sessions?.onCrash(node);
  }

  restart(node: SimNode): void {
    if (node.up) return;
    this.trace(`nemesis: restart ${node.id}`);
    this.boot(node);
  }

  step(node: SimNode, event: RaftEvent): void {
    const actor = node.actor!;
    actor.send(event);
    const next = actor.getSnapshot();
    const effects = node.emitted.splice(0);
    if (next.status === 'error') {
      const err = next.error as Error;
      this.checker.violate('machine-threw', `${node.id} on ${event.type}: ${err?.message ?? err}`);
      return;
    }
    node.snap = next;
    // The role lives only in the state value: what a step announces must be where it ended.
    for (let i = effects.length - 1; i >= 0; i--) {
      const e = effects[i]!;
      if (e.type !== 'roleChanged') continue;
      if (e.role !== roleOf(next))
        this.checker.violate(
          'role-state',
          `${node.id} announced ${e.role} but its machine is in ${JSON.stringify(next.value)}`,
        );
      break;
    }
    this.checker.observe(node, effects); // [oracle] the writes, roles and commit of this step
    this.perform(node, effects);
  }

  /** Hands the step's effects to the node's executor, in order. */
  private perform(node: SimNode, effects: readonly Effect[]): void {
    for (const e of effects) {
      if (!node.up || this.checker.stopped) return;
      if (e.type === 'send' && e.afterPersist && this.mistakes.sendBeforePersist) {
        this.transmit(node.id, e.to, e.message); // a broken runtime, for the teeth tests
        continue;
      }
      if (e.type === 'proposed')
        for (let i = 0; i < e.ids.length; i++) {
          node.proposalAt.set(e.index + i, { id: e.ids[i]!, term: e.term });
          const seq = (node.pending?.writes.get(e.ids[i]!)?.reply as SimReply | undefined)?.write;
          if (seq !== undefined) this.workload.proposed(seq, e.index + i, e.term);
        }
      // A received snapshot: written to disk with the log's reset (the tree restores it first,
      // unless it is already past it).
      if (e.type === 'restore')
        node.pendingRestores.push({ index: e.snapshot.index, data: e.data as SimState });
      node.executor!.effect(e);
      if (e.type === 'apply' && node.sm.applied !== node.applied)
        node.sm = { ...node.sm, applied: node.applied };
    }
  }

  /** Effects about requests (the executor's `requests` port). */
  private requests(node: SimNode, e: Effect): void {
    this.sessions?.effect(node, e);
    node.api?.effect(e);
    switch (e.type) {
      case 'proposeFailed':
        if (e.leader !== null) this.leaderGuess = e.leader;
        return;
      case 'readFailed':
        if (e.leader !== null) this.leaderGuess = e.leader;
        return;
      case 'changeResult':
        if (e.ok) {
          this.stats.configChanges++;
          this.trace(`${node.id} appended config change ${e.id} at ${e.index}`);
        }
        return;
      case 'roleChanged':
        if (e.role === 'leader') this.leaderGuess = node.id;
        this.trace(`${node.id} is ${e.role} of term ${e.term} (leader ${e.leader ?? '-'})`);
        return;
      default:
        return;
    }
  }

  private startWrite(node: SimNode, effect: Write['effect'], done: (err: unknown) => void): void {
    node.writes.push({ effect, done });
    // FIFO: a write completes after the one before it (group commit merges them in reality).
    const [lo, hi] = this.faults.diskLatency; // [fault] slow disks
    const at = Math.max(node.lastDiskTime, this.now) + this.int(lo, hi);
    node.lastDiskTime = at;
    this.agenda.push(at, { kind: 'diskDone', node: node.id, life: node.life });
  }

  private diskDone(id: string, life: number): void {
    const node = this.nodes.get(id)!;
    if (!node.up || node.life !== life) return;
    // [fault] A failed write stops the node (crash-only, DESIGN "Runtime contracts"): none of
    // it reaches the disk and nothing waiting on it is sent.
    if (this.faults.diskFailRate > 0 && node.writes.length > 0 && this.random() < this.faults.diskFailRate) {
      this.trace(`nemesis: ${id}'s disk write fails, the node stops`);
      this.crash(node);
      this.scheduleRestart(node, this.int(30, 400));
      return;
    }
    const w = node.writes.shift();
    if (w === undefined) return;
    this.checker.beforeDiskWrite(node, w.effect); // [oracle]
    const disk = node.disk;
    if (w.effect.type === 'persist') {
      if (w.effect.hardState) disk.hardState = w.effect.hardState;
      disk.log.write(w.effect.entries);
    } else {
      const s = w.effect.snapshot;
      const data = w.effect.data as SimState;
      disk.snapshot = s;
      disk.snapshotData = { ...data };
      disk.log.reset(s);
      this.stats.snapshotsInstalled++;
      this.trace(`${id} installed snapshot at ${s.index}`);
    }
    w.done(null);
  }

  /** One entry the node's applier applied, with the tree's outcome (the executor's `applied`). */
  private applied(node: SimNode, e: Entry, outcome: ApplyOutcome | null): void {
    if (e.index !== node.applied + 1) {
      this.checker.violate('apply-gap', `${node.id} applies ${e.index} after ${node.applied}`);
      return;
    }
    this.checker.onApply(node, e);
    node.applied = e.index;
    const mine = node.proposalAt.get(e.index);
    const proposal = mine !== undefined && mine.term === e.term ? mine.id : null;
    if (mine !== undefined) node.proposalAt.delete(e.index);
    if (proposal !== null) {
      this.stats.acked++;
      this.checker.onReturned(e.index);
    }
    // [mistakes.answerByIndex] the entry reaches the API without its own term.
    const placed = this.mistakes.answerByIndex ? node.pending?.byIndex.get(e.index)?.term : undefined;
    node.api?.applied(placed === undefined ? e : { ...e, term: placed }, outcome);
    this.workload.applied(node, e);
    this.sessions?.apply(node, e, outcome);
  }

  // -------------------------------------------------------------------------------------------
  // Network.

  /** Whether `from` can reach `to` now (no partition or cut between them). */
  connected(from: string, to: string): boolean {
    return !this.blocked.has(`${from}>${to}`);
  }

  get lossRate(): number {
    return this.loss;
  }

  get dupRate(): number {
    return this.dup;
  }

  get isHealed(): boolean {
    return this.healed;
  }

  /** The node clients last learnt leads (from NOT_LEADER hints and elections). */
  get leaderHint(): string | null {
    return this.leaderGuess;
  }

  /** Puts a session item on the agenda (sessions.ts). */
  schedule(time: number, item: SessionItem): void {
    this.agenda.push(time, { kind: 'session', item });
  }

  private transmit(from: string, to: string, message: Message): void {
    this.checker.onSend(this.nodes.get(from)!, to, message);
    if (this.blocked.has(`${from}>${to}`)) return;
    if (this.loss > 0 && this.random() < this.loss) return;
    this.agenda.push(this.now + this.int(1, 15), { kind: 'deliver', from, to, message });
    if (this.dup > 0 && this.random() < this.dup) {
      this.agenda.push(this.now + this.int(1, 30), { kind: 'deliver', from, to, message });
    }
    if (
      message.type === 'raft.installSnapshot' &&
      this.faults.lateSnapshotRate > 0 &&
      this.random() < this.faults.lateSnapshotRate
    ) {
      this.agenda.push(this.now + this.int(20, 300), { kind: 'deliver', from, to, message });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Client: writes and linearizable reads against whichever node it believes leads.

  private client(): void {
    const upIds = [...this.nodes.values()].filter((n) => n.up).map((n) => n.id);
    let target = this.leaderGuess;
    if (target === null || this.random() < 0.2 || !this.nodes.get(target)?.up)
      target = this.pick(upIds) ?? null;
    if (target === null) return;
    const node = this.nodes.get(target)!;
    if (this.random() < 0.7) this.clientWrite(node, this.int(1, 3));
    else this.clientRead(node);
  }

  /** A client sends `n` writes through `node` (workload.ts). */
  clientWrite(node: SimNode, n: number): void {
    this.workload.write(node, n);
  }

  /** A client asks `node` for a linearizable read: it must see everything any operation
   * returned before now, and fit the history (workload.ts). */
  clientRead(node: SimNode): void {
    this.workload.read(node, this.checker.maxReturned);
  }

  /** A request from outside the Raft group (client, operator) reaches `node`: handled now, or
   * when the node's process resumes. */
  local(node: SimNode, event: RaftEvent): void {
    if (!node.up) return;
    if (this.now < node.pausedUntil) {
      node.inbox.push({ kind: 'local', node: node.id, life: node.life, event });
      return;
    }
    this.step(node, event);
  }

  private deferIfPaused(node: SimNode, ev: AgendaItem): boolean {
    if (this.now >= node.pausedUntil) return false;
    node.inbox.push(ev);
    return true;
  }

  /** The process runs again: its timer fires and what waited for it is handled, in order. */
  private resume(node: SimNode): void {
    node.pausedUntil = Math.min(node.pausedUntil, this.now);
    const waiting = node.inbox;
    node.inbox = [];
    for (const ev of waiting) this.agenda.push(this.now, ev);
  }

  // -------------------------------------------------------------------------------------------
  // Faults.

  currentLeader(): string | null {
    let best: SimNode | null = null;
    for (const n of this.nodes.values()) {
      const c = n.snap?.context;
      if (c && n.role === 'leader' && (best === null || c.term > best.snap!.context.term)) best = n;
    }
    return best?.id ?? null;
  }

  heal(): void {
    if (this.healed) return;
    this.healed = true;
    this.healedAt = this.now;
    this.trace('heal: network whole, every node up, clocks true, disks sound');
    this.blocked.clear();
    this.loss = 0;
    this.dup = 0;
    this.faults.diskLatency = [0, 3];
    this.faults.diskFailRate = 0;
    this.faults.lateSnapshotRate = 0;
    for (const n of this.nodes.values()) {
      if (n.up) this.resume(n);
      n.tickMs = TICK_MS;
      if (!n.up) this.restart(n);
    }
    this.nemesis.onHeal();
    this.sessions?.onHeal();
    this.liveness.onHeal();
  }

  // -------------------------------------------------------------------------------------------
  // Controls for the nemesis and the liveness checker.

  get healedTime(): number {
    return this.healedAt;
  }

  /** When the first client write after healing was acknowledged, or -1. */
  get probeAckedTime(): number {
    return this.probeAckedAt;
  }

  scheduleRestart(node: SimNode, afterMs: number): void {
    this.agenda.push(this.now + afterMs, { kind: 'restart', node: node.id });
  }

  /** Messages from `from` to `to` are lost (those in flight too) until reconnected. */
  cut(from: string, to: string): void {
    this.blocked.add(`${from}>${to}`);
  }

  /** Cuts `id` from every other node, both ways. */
  isolate(id: string): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.blocked.add(`${id}>${other}`);
      this.blocked.add(`${other}>${id}`);
    }
  }

  /** Restores every link of `id`. */
  reconnect(id: string): void {
    for (const other of this.nodes.keys()) {
      this.blocked.delete(`${id}>${other}`);
      this.blocked.delete(`${other}>${id}`);
    }
  }

  /** Cuts every link between a node of `side` and one outside it. */
  split(side: ReadonlySet<string>): void {
    for (const a of this.nodes.keys())
      for (const b of this.nodes.keys()) if (side.has(a) !== side.has(b)) this.blocked.add(`${a}>${b}`);
  }

  healNetwork(): void {
    this.blocked.clear();
  }

  get partitioned(): boolean {
    return this.blocked.size > 0;
  }

  setLoss(loss: number, dup: number): void {
    this.loss = loss;
    this.dup = dup;
  }

  /** Stops `node`'s process for `ms` (SIGSTOP, a long GC, a stalled VM). */
  pause(node: SimNode, ms: number): void {
    if (!node.up) return;
    node.pausedUntil = Math.max(node.pausedUntil, this.now + ms);
    this.agenda.push(node.pausedUntil, { kind: 'resume', node: node.id, life: node.life });
    this.trace(`nemesis: pause ${node.id} until ${node.pausedUntil}`);
  }

  paused(node: SimNode): boolean {
    return this.now < node.pausedUntil;
  }

  /** The simulator's own view of a node's latest configuration (the checker's model). */
  configOf(node: SimNode): { readonly voters: readonly string[]; readonly learners: readonly string[] } {
    return this.checker.logOf(node).configs.latest();
  }
}

export function fingerprint(e: Entry): number {
  const s = JSON.stringify(e.type === 'normal' ? e.data : e.type === 'config' ? e.config : 'noop');
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h | 0;
}

function describe(m: Message): string {
  switch (m.type) {
    case 'raft.appendEntries':
      return `append from ${m.from} t${m.term} prev ${m.prevIndex}/${m.prevTerm} n=${m.entries.length} commit ${m.commit}`;
    case 'raft.appendResult':
      return `appendResult from ${m.from} t${m.term} ${m.success ? 'ok' : 'reject'} ${m.index}`;
    case 'raft.requestVote':
      return `${m.preVote ? 'preVote' : 'vote'} request from ${m.from} t${m.term} last ${m.lastIndex}/${m.lastTerm}`;
    case 'raft.voteResult':
      return `${m.preVote ? 'preVote' : 'vote'} ${m.granted ? 'granted' : 'rejected'} by ${m.from} t${m.term}`;
    case 'raft.installSnapshot':
      return `installSnapshot from ${m.from} t${m.term} at ${m.snapshot.index}`;
    default:
      return `${m.type.slice(5)} from ${m.from} t${m.term}`;
  }
}

export function simulate(opts: SimOptions): SimResult {
  return new Simulation(opts).run();
}
