/**
 * The operator's side of inspection: keeps the inspection stream of every member on (the
 * `inspect` admin op is a lease: renewed every `renewMs`, for `leaseMs`), listens to
 * `P.inspect.*` and hands each batch to a sink (the inspect server).
 *
 * Resync (`resync: true`: the node sends every live actor again, with its definition) is asked
 * on the first request to a node, after a request to it failed, when a node not seen before
 * publishes, and when a node's `seq` goes back (a restarted process): each time the inspector
 * may have missed an `@xstate.actor`. Those cases renew at once, not at the next round.
 *
 * Nothing is turned off on stop: the leases run out by themselves within `leaseMs`, and a node
 * started with `--inspect`, or leased by another inspector, goes on publishing for it.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { InspectBatch, InspectControl, InspectControlReply, Subjects } from '../../protocol/index.ts';
import { parseBatch } from './model.ts';

export const LEASE_MS = 10_000;
export const RENEW_MS = 3000;

/** `inspectControl` of control.ts, or a double. */
export type InspectControlFn = (
  nc: Pick<NatsConnection, 'request'>,
  subjects: Subjects,
  node: string,
  req: InspectControl,
) => Promise<InspectControlReply>;

export interface InspectorOptions {
  /** An admin connection: it may request `P.node.*.admin.inspect` and subscribe `P.inspect.*`. */
  readonly nc: Pick<NatsConnection, 'request' | 'subscribe'>;
  readonly subjects: Subjects;
  readonly control: InspectControlFn;
  /** Where batches go. */
  readonly sink: (batch: InspectBatch) => void;
  /** Members known from the start. */
  readonly members?: readonly string[];
  /** Asked every round for the current members (errors are ignored: the known ones stay). */
  readonly discover?: () => Promise<readonly string[]>;
  readonly leaseMs?: number;
  readonly renewMs?: number;
  readonly log?: (line: string) => void;
}

/** What the inspector knows of one node's lease. */
export interface LeaseState {
  /** Ask for a resync in the next request. */
  resync: boolean;
  /** The last batch's seq (0: none yet). */
  seq: number;
  /** Whether the last request was answered (null: none yet). */
  ok: boolean | null;
  /** The last failure's message. */
  error: string | null;
  /** When the lease ends, by the node's last answer. */
  until: number | null;
  /** Requests answered. */
  renewals: number;
}

export class Inspector {
  readonly leases = new Map<string, LeaseState>();
  private sub: Subscription | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly inFlight = new Map<string, Promise<void>>();
  private stopped = false;
  private toldNoMembers = false;
  private reading: Promise<void> = Promise.resolve();
  /** Batches that were not JSON or not batches. */
  rejected = 0;

  constructor(private readonly o: InspectorOptions) {}

  /** Subscribes, then asks every known member at once and every `renewMs` after. */
  start(): void {
    if (this.sub !== null) throw new TypeError('the inspector is started already');
    const sub = this.o.nc.subscribe(this.o.subjects.inspectWildcard());
    this.sub = sub;
    this.reading = (async () => {
      const text = new TextDecoder();
      for await (const m of sub) {
        let data: unknown;
        try {
          data = JSON.parse(text.decode(m.data));
        } catch {
          this.rejected++;
          continue;
        }
        const batch = parseBatch(data);
        if (batch === null || m.subject !== this.o.subjects.inspect(batch.node)) {
          this.rejected++;
          continue;
        }
        this.received(batch);
      }
    })();
    for (const id of this.o.members ?? []) this.lease(id);
    void this.round();
    this.timer = setInterval(() => void this.round(), this.o.renewMs ?? RENEW_MS);
  }

  /** Ends the subscription and the renewals (the leases run out by themselves). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.sub?.unsubscribe();
    await this.reading.catch(() => {});
    await Promise.all(this.inFlight.values());
  }

  private lease(id: string): LeaseState {
    let s = this.leases.get(id);
    if (s === undefined) {
      s = { resync: true, seq: 0, ok: null, error: null, until: null, renewals: 0 };
      this.leases.set(id, s);
    }
    return s;
  }

  private received(batch: InspectBatch): void {
    const known = this.leases.has(batch.node);
    const s = this.lease(batch.node);
    const restarted = batch.seq <= s.seq;
    s.seq = batch.seq;
    this.o.sink(batch);
    if (!known || restarted) {
      s.resync = true;
      void this.renew(batch.node);
    }
  }

  private async round(): Promise<void> {
    if (this.stopped) return;
    if (this.o.discover) {
      try {
        for (const id of await this.o.discover()) this.lease(id);
      } catch (err) {
        // Keep the members known; say once why there are none yet.
        if (this.leases.size === 0 && !this.toldNoMembers) {
          this.toldNoMembers = true;
          this.o.log?.(`no node answered a status request yet (${(err as Error)?.message ?? err}); waiting`);
        }
      }
    }
    await Promise.all([...this.leases.keys()].map((id) => this.renew(id)));
  }

  /**
   * One request to `id`. At most one is in flight per node: a call meanwhile waits for it, then
   * sends another if a resync was asked since (the one in flight may predate a restart).
   */
  private renew(id: string): Promise<void> {
    const pending = this.inFlight.get(id);
    const s = this.lease(id);
    if (pending) return pending.then(() => (s.resync && !this.stopped ? this.renew(id) : undefined));
    const resync = s.resync;
    s.resync = false;
    const p = this.o
      .control(this.o.nc, this.o.subjects, id, { on: true, leaseMs: this.o.leaseMs ?? LEASE_MS, resync })
      .then(
        (reply) => {
          if (s.ok !== true) this.o.log?.(`${id}: inspection on${resync ? ' (resync asked)' : ''}`);
          s.ok = true;
          s.error = null;
          s.until = reply.until;
          s.renewals++;
        },
        (err: unknown) => {
          const message = (err as Error)?.message ?? String(err);
          if (s.ok !== false) this.o.log?.(`${id}: no answer to the inspect request (${message})`);
          s.ok = false;
          s.error = message;
          s.resync = true;
        },
      )
      .finally(() => this.inFlight.delete(id));
    this.inFlight.set(id, p);
    return p;
  }
}
