/**
 * Watchers: the node side of watches. Each watch replays the key tree's history from its start
 * revision, then follows it live, sending whole revisions in order to the client's inbox.
 *
 * - History is the one source: after every apply the hub reads `eventsSince(next)` for each
 *   watcher, so replay and live delivery are the same code and nothing can fall between them.
 * - NATS core delivers at most once: every message of a watch carries the next `seq`, and an
 *   idle watch gets a progress heartbeat every `progressMs`, so the client detects a lost
 *   message or a dead node and resumes elsewhere from the last revision it delivered.
 * - Flow control: at most `window` unacknowledged messages per watcher; a watcher that stops
 *   acknowledging is paused (the node never blocks on it), and cancelled with WATCH_BEHIND once
 *   it lags `maxBehind` revisions: the client resumes from its last revision, from history.
 * - A watch belongs to a session and ends with it; at most `maxPerSession` per session.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { WatchEvent, WatchMessage, WatchRequest } from '../protocol/api.ts';
import { encodeEnvelope } from '../protocol/codec.ts';
import {
  CompactedError,
  type EnsembleError,
  LimitExceededError,
  SessionExpiredError,
  WatchBehindError,
} from '../protocol/errors.ts';
import type { EventFilter, KeyTree, TreeEvent } from '../storage/tree/types.ts';

export interface WatchHubOptions {
  readonly nc: NatsConnection;
  readonly cluster: string;
  readonly tree: KeyTree;
  readonly progressMs?: number;
  readonly window?: number;
  readonly maxBehind?: number;
  readonly maxPerSession?: number;
  /** Events per message (whole revisions are never split). */
  readonly batch?: number;
}

interface Watcher {
  readonly key: string;
  readonly req: WatchRequest;
  readonly filter: EventFilter;
  /** The next revision to send. */
  next: number;
  seq: number;
  acked: number;
  lastSent: number;
  /** Waiting for the tree to reach the start revision (a resume on a node behind). */
  waiting: boolean;
}

export interface WatchCounters {
  watchers: number;
  messages: number;
  events: number;
  cancelledBehind: number;
}

export class WatchHub {
  private readonly watchers = new Map<string, Watcher>();
  private readonly perSession = new Map<string, number>();
  private pumpScheduled = false;
  private timer: NodeJS.Timeout | null = null;
  readonly counters: WatchCounters = { watchers: 0, messages: 0, events: 0, cancelledBehind: 0 };

  constructor(private readonly opts: WatchHubOptions) {}

  private get progressMs(): number {
    return this.opts.progressMs ?? 1000;
  }

  start(): void {
    this.timer = setInterval(() => this.heartbeat(), Math.max(50, Math.floor(this.progressMs / 2)));
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.watchers.clear();
    this.perSession.clear();
  }

  /**
   * Starts a watch (the session's secret was checked by the caller). Returns the first
   * revision it will deliver, or the typed error to answer with.
   */
  add(req: WatchRequest): { revision: number } | { error: EnsembleError } {
    const tree = this.opts.tree;
    const key = `${req.session}/${req.id}`;
    const existing = this.watchers.get(key);
    if (existing) this.remove(existing);
    const n = this.perSession.get(req.session) ?? 0;
    const max = this.opts.maxPerSession ?? 64;
    if (n >= max) return { error: new LimitExceededError('watches', max) };
    const from = req.fromRevision ?? tree.revision + 1;
    if (from <= tree.compactRevision) {
      return {
        error: new CompactedError(
          tree.compactRevision,
          `revision ${from} is compacted (at ${tree.compactRevision})`,
        ),
      };
    }
    const filter: EventFilter =
      req.key !== undefined
        ? { key: req.key }
        : req.prefix !== undefined
          ? { prefix: req.prefix }
          : { subtree: req.subtree! };
    const w: Watcher = {
      key,
      req,
      filter,
      next: from,
      seq: 0,
      acked: 0,
      lastSent: performance.now(),
      waiting: from > tree.revision + 1,
    };
    this.watchers.set(key, w);
    this.perSession.set(req.session, n + 1);
    this.counters.watchers = this.watchers.size;
    this.schedule();
    return { revision: from };
  }

  cancel(session: string, id: string): boolean {
    const w = this.watchers.get(`${session}/${id}`);
    if (w === undefined) return false;
    this.remove(w);
    return true;
  }

  ack(session: string, id: string, seq: number): void {
    const w = this.watchers.get(`${session}/${id}`);
    if (w === undefined || seq <= w.acked || seq > w.seq) return;
    w.acked = seq;
    this.schedule();
  }

  /** The session ended: its watches end, telling the client why. */
  sessionEnded(session: string): void {
    for (const w of [...this.watchers.values()]) {
      if (w.req.session !== session) continue;
      this.fail(w, new SessionExpiredError(session));
    }
  }

  /** The tree advanced: deliver what the watchers are owed. */
  applied(): void {
    this.schedule();
  }

  private schedule(): void {
    if (this.pumpScheduled || this.watchers.size === 0) return;
    this.pumpScheduled = true;
    setImmediate(() => this.pump());
  }

  private pump(): void {
    this.pumpScheduled = false;
    const tree = this.opts.tree;
    const window = this.opts.window ?? 64;
    const maxBehind = this.opts.maxBehind ?? 100_000;
    for (const w of [...this.watchers.values()]) {
      if (w.waiting) {
        if (tree.revision + 1 < w.next) continue; // a resume waits until this node caught up
        w.waiting = false;
      }
      let sent = 0;
      while (w.next <= tree.revision && w.seq - w.acked < window && sent < 16) {
        let batch: ReturnType<KeyTree['eventsSince']>;
        try {
          batch = tree.eventsSince(w.next, w.filter, { limit: this.opts.batch ?? 256 });
        } catch (err) {
          this.fail(w, err as EnsembleError);
          break;
        }
        if (batch.events.length > 0)
          this.send(
            w,
            batch.events.map((e) => wireEvent(e, w.req.prevValue === true)),
            batch.next - 1,
          );
        w.next = batch.next;
        sent++;
        if (batch.events.length === 0) break;
      }
      if (w.seq - w.acked >= window && tree.revision - w.next > maxBehind) {
        this.counters.cancelledBehind++;
        this.fail(w, new WatchBehindError(w.next));
      }
    }
  }

  private heartbeat(): void {
    const now = performance.now();
    for (const w of this.watchers.values()) {
      if (w.waiting || now - w.lastSent < this.progressMs) continue;
      this.send(w, [], w.next - 1, true);
    }
    this.schedule();
  }

  private send(w: Watcher, events: WatchEvent[], revision: number, progress = false): void {
    w.seq++;
    w.lastSent = performance.now();
    const body: WatchMessage = {
      id: w.req.id,
      seq: w.seq,
      revision,
      events,
      ...(progress ? { progress: true } : {}),
    };
    this.counters.messages++;
    this.counters.events += events.length;
    try {
      this.opts.nc.publish(w.req.inbox, encodeEnvelope(body, { cluster: this.opts.cluster }));
    } catch {
      // Reconnecting: the client sees the gap or the silence and resumes.
    }
  }

  private fail(w: Watcher, error: EnsembleError): void {
    w.seq++;
    const body: WatchMessage = {
      id: w.req.id,
      seq: w.seq,
      revision: w.next - 1,
      events: [],
      error: error.toWire(),
    };
    try {
      this.opts.nc.publish(w.req.inbox, encodeEnvelope(body, { cluster: this.opts.cluster }));
    } catch {
      // as above
    }
    this.remove(w);
  }

  private remove(w: Watcher): void {
    if (!this.watchers.delete(w.key)) return;
    const n = (this.perSession.get(w.req.session) ?? 1) - 1;
    if (n <= 0) this.perSession.delete(w.req.session);
    else this.perSession.set(w.req.session, n);
    this.counters.watchers = this.watchers.size;
  }
}

function wireEvent(e: TreeEvent, prev: boolean): WatchEvent {
  const out: Record<string, unknown> = { type: e.type, key: e.key, revision: e.revision };
  if (e.kv !== null) {
    out.value = e.kv.value;
    out.version = e.kv.version;
    out.createRevision = e.kv.createRevision;
    out.modRevision = e.kv.modRevision;
  }
  if (prev && e.prevValue !== null) out.prevValue = e.prevValue;
  return out as unknown as WatchEvent;
}
