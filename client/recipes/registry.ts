/**
 * Service registration, discovery and client-side load balancing (Curator's `ServiceDiscovery`,
 * Consul's catalog with health).
 *
 * An instance is an ephemeral key `/services/<service>/<instance>` whose value is JSON (so any
 * client reads it): `{ address, meta, health, load, weight }`. It vanishes when the registering
 * process dies (its session expires). The instance reports its health (`passing`, `warning`,
 * `critical`) and a load figure of its choosing (in-flight requests, CPU, queue length) as often as
 * it likes: updates are coalesced to at most one write per `minIntervalMs`, the newest winning.
 * When the connection's session is lost and reopened, registrations are written again under the
 * new session.
 *
 * Discovery reads the live instances; `watch` follows the set as it changes; `pick` chooses one
 * from a live view kept per service (no request per pick): `round-robin`, `weighted-random` (by
 * `weight`), or `least-loaded` (the power of two choices: of two instances drawn by weight, the
 * one reporting the lower load per weight, which steers traffic off loaded instances without
 * sending everything to the one that looked idlest a moment ago). Only healthy instances are
 * picked: `passing` ones, or `warning` ones when no instance passes.
 */
import { isToken } from '../../protocol/index.ts';
import type { Client } from '../index.ts';
import type { Session } from '../session.ts';
import { follow, type LiveKey, text, type WaitOptions, waitSignal } from './common.ts';

export type Health = 'passing' | 'warning' | 'critical';
export type PickStrategy = 'round-robin' | 'weighted-random' | 'least-loaded';

export interface InstanceInfo {
  /** Where to reach the instance: a URL, host:port, or a NATS subject. */
  readonly address: string;
  readonly meta?: Readonly<Record<string, string>>;
  /** Default `passing`. */
  readonly health?: Health;
  /** Any non-negative figure where lower is better (default 0). */
  readonly load?: number;
  /** Relative share of traffic for `weighted-random` and `least-loaded` (default 1). */
  readonly weight?: number;
}

export interface Instance {
  readonly service: string;
  readonly id: string;
  readonly key: string;
  readonly address: string;
  readonly meta: Readonly<Record<string, string>>;
  readonly health: Health;
  readonly load: number;
  readonly weight: number;
}

const ROOT = '/services';
const HEALTH: readonly Health[] = ['passing', 'warning', 'critical'];

function name(kind: string, v: unknown): string {
  if (typeof v !== 'string' || !isToken(v))
    throw new TypeError(
      `${kind} must be a non-empty name without '/', '.', '*', '>' or spaces, got ${JSON.stringify(v)}`,
    );
  return v;
}

function checked(info: InstanceInfo): Required<InstanceInfo> {
  if (info === null || typeof info !== 'object' || typeof info.address !== 'string' || info.address === '')
    throw new TypeError('register: address must be a non-empty string');
  const health = info.health ?? 'passing';
  if (!HEALTH.includes(health))
    throw new TypeError(`health must be one of ${HEALTH.join(', ')}, got ${health}`);
  const load = info.load ?? 0;
  if (!Number.isFinite(load) || load < 0)
    throw new RangeError(`load must be a non-negative number, got ${load}`);
  const weight = info.weight ?? 1;
  if (!Number.isFinite(weight) || weight <= 0)
    throw new RangeError(`weight must be a positive number, got ${weight}`);
  const meta = info.meta ?? {};
  for (const [k, v] of Object.entries(meta))
    if (typeof v !== 'string') throw new TypeError(`meta.${k} must be a string`);
  return { address: info.address, meta, health, load, weight };
}

/** An instance from its key, or null for a value that is not one (a foreign key under /services). */
function instanceOf(kv: LiveKey): Instance | null {
  const parts = kv.key.slice(ROOT.length + 1).split('/');
  if (parts.length !== 2) return null;
  try {
    const v = JSON.parse(text(kv.value)) as InstanceInfo;
    const c = checked(v);
    return { service: parts[0]!, id: parts[1]!, key: kv.key, ...c };
  } catch {
    return null;
  }
}

const healthy = (list: readonly Instance[]): Instance[] => {
  const passing = list.filter((i) => i.health === 'passing');
  return passing.length > 0 ? passing : list.filter((i) => i.health === 'warning');
};

/** A registered instance: report health and load; `deregister()` (or `await using`) removes it. */
export class Registration implements AsyncDisposable {
  private info: Required<InstanceInfo>;
  private written: string;
  private timer: NodeJS.Timeout | null = null;
  private lastWrite = 0;
  private flushing: Promise<void> = Promise.resolve();
  /** Rejects the flush the timer waits to write (the instance is deregistered first). */
  private cancelFlush: ((err: unknown) => void) | null = null;
  private gone = false;
  private readonly stopListening: () => void;
  /** The session id the key was last written under. */
  private sessionId: string | null;

  /** @internal */
  constructor(
    private readonly client: Client,
    readonly service: string,
    readonly id: string,
    info: Required<InstanceInfo>,
    private readonly session: Session,
    private readonly minIntervalMs: number,
  ) {
    this.info = info;
    this.written = JSON.stringify(info);
    this.sessionId = session.id;
    // The connection's session reopens after LOST: the key went with the old one, write it again.
    this.stopListening = session.onState((state, id) => {
      if (!this.gone && (state === 'CONNECTED' || state === 'RECONNECTED') && id !== this.sessionId)
        void this.write().catch(() => {});
    });
  }

  get key(): string {
    return `${ROOT}/${this.service}/${this.id}`;
  }

  /** What the instance reports now (written, or about to be). */
  get current(): Readonly<Required<InstanceInfo>> {
    return this.info;
  }

  setHealth(health: Health): Promise<void> {
    return this.update({ health });
  }

  setLoad(load: number): Promise<void> {
    return this.update({ load });
  }

  /**
   * Changes what the instance reports. Writes are coalesced: at most one per `minIntervalMs`,
   * carrying the newest values; the promise resolves once a write with them is done.
   */
  update(change: Partial<InstanceInfo>): Promise<void> {
    if (this.gone) return Promise.reject(new TypeError(`${this.key} was deregistered`));
    this.info = checked({ ...this.info, ...change });
    if (JSON.stringify(this.info) === this.written) return this.flushing;
    if (this.timer === null) {
      const wait = Math.max(0, this.lastWrite + this.minIntervalMs - performance.now());
      this.flushing = new Promise<void>((resolve, reject) => {
        this.cancelFlush = reject;
        this.timer = setTimeout(() => {
          this.timer = null;
          this.cancelFlush = null;
          this.write().then(resolve, reject);
        }, wait);
        this.timer.unref();
      });
      this.flushing.catch(() => {});
    }
    return this.flushing;
  }

  /** @internal Writes the current values under the session. */
  async write(): Promise<void> {
    const value = JSON.stringify(this.info);
    this.lastWrite = performance.now();
    const r = await this.client.put(this.key, value, { ephemeral: true, session: this.session });
    this.written = value;
    this.sessionId = r.session;
  }

  /** Removes the instance. */
  async deregister(): Promise<void> {
    if (this.gone) return;
    this.gone = true;
    this.stopListening();
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.cancelFlush?.(new TypeError(`${this.key} was deregistered before the update was written`));
    }
    await this.client.delete(this.key, { session: this.session });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.deregister();
  }
}

/** The live instances of one service, kept up to date by a watch; `pick` costs no request. */
export class ServiceView {
  private list: Instance[] = [];
  private next = 0;
  private readonly ctl = new AbortController();
  /** Resolves once the first read is in. */
  readonly ready: Promise<void>;

  /** @internal */
  constructor(
    client: Client,
    readonly service: string,
    private readonly random: () => number = Math.random,
  ) {
    let first: () => void = () => {};
    let failed: (err: unknown) => void = () => {};
    this.ready = new Promise<void>((resolve, reject) => {
      first = resolve;
      failed = reject;
    });
    this.ready.catch(() => {});
    const signal = waitSignal(client, { signal: this.ctl.signal });
    void (async () => {
      for await (const { keys } of follow(client, `${ROOT}/${service}/`, signal)) {
        this.list = [...keys.values()]
          .map(instanceOf)
          .filter((i): i is Instance => i !== null && i.service === service)
          .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
        first();
      }
    })().catch(failed);
  }

  /** Every live instance, healthy or not. */
  get instances(): readonly Instance[] {
    return this.list;
  }

  /** One healthy instance by `strategy`, or null when none is healthy. */
  pick(strategy: PickStrategy = 'round-robin'): Instance | null {
    const up = healthy(this.list);
    if (up.length === 0) return null;
    switch (strategy) {
      case 'round-robin':
        return up[this.next++ % up.length]!;
      case 'weighted-random':
        return this.byWeight(up);
      case 'least-loaded': {
        const a = this.byWeight(up);
        if (up.length === 1) return a;
        let b = this.byWeight(up);
        for (let i = 0; b === a && i < 8; i++) b = this.byWeight(up);
        if (b === a) b = up[(up.indexOf(a) + 1) % up.length]!;
        return b.load / b.weight < a.load / a.weight ? b : a;
      }
      default:
        throw new TypeError(`unknown pick strategy ${JSON.stringify(strategy)}`);
    }
  }

  private byWeight(up: readonly Instance[]): Instance {
    const total = up.reduce((s, i) => s + i.weight, 0);
    let r = this.random() * total;
    for (const i of up) if ((r -= i.weight) < 0) return i;
    return up[up.length - 1]!;
  }

  /** Stops following. */
  close(): void {
    this.ctl.abort();
  }
}

export class Registry {
  private readonly views = new Map<string, ServiceView>();

  /** @internal use `client.registry` */
  constructor(private readonly client: Client) {}

  /**
   * Registers `instance` of `service` (an ephemeral key in `session`, default the connection's).
   * Registering an id that exists replaces it.
   */
  async register(
    service: string,
    instance: string,
    info: InstanceInfo,
    options: { readonly session?: Session; readonly minIntervalMs?: number } = {},
  ): Promise<Registration> {
    const r = new Registration(
      this.client,
      name('service', service),
      name('instance', instance),
      checked(info),
      options.session ?? this.client.needSession(),
      options.minIntervalMs ?? 100,
    );
    await r.write();
    return r;
  }

  /** Live instances of `service`: the healthy ones (see `pick`), or all with `{ all: true }`. */
  async discover(service: string, options: { readonly all?: boolean } = {}): Promise<Instance[]> {
    const prefix = `${ROOT}/${name('service', service)}/`;
    const { kvs } = await this.client.rangeAll(prefix);
    const list = kvs.map(instanceOf).filter((i): i is Instance => i !== null && i.service === service);
    return options.all ? list : healthy(list);
  }

  /** Every service and its live instances (all of them, with health and load). */
  async services(): Promise<Record<string, Instance[]>> {
    const { kvs } = await this.client.rangeAll(`${ROOT}/`);
    const out: Record<string, Instance[]> = {};
    for (const kv of kvs) {
      const i = instanceOf(kv);
      if (i !== null) (out[i.service] ??= []).push(i);
    }
    return out;
  }

  /** The live set of `service` (every instance, with health and load) now and after each change. */
  async *watch(service: string, options: Pick<WaitOptions, 'signal'> = {}): AsyncGenerator<Instance[]> {
    const prefix = `${ROOT}/${name('service', service)}/`;
    for await (const { keys } of follow(this.client, prefix, waitSignal(this.client, options)))
      yield [...keys.values()]
        .map(instanceOf)
        .filter((i): i is Instance => i !== null && i.service === service);
  }

  /** A live view of `service` to pick from without a request per pick (close it when done). */
  async view(service: string): Promise<ServiceView> {
    const v = new ServiceView(this.client, name('service', service));
    await v.ready;
    return v;
  }

  /**
   * One healthy instance of `service` by `strategy`, or null. The first call for a service starts
   * a live view that later calls share (closed with the client).
   */
  async pick(service: string, strategy: PickStrategy = 'round-robin'): Promise<Instance | null> {
    let v = this.views.get(service);
    if (v === undefined) {
      v = new ServiceView(this.client, name('service', service));
      this.views.set(service, v);
      v.ready.catch(() => this.views.delete(service));
    }
    await v.ready;
    return v.pick(strategy);
  }

  /** @internal Stops the shared views (the client is closing). */
  stop(): void {
    for (const v of this.views.values()) v.close();
    this.views.clear();
  }
}
