/**
 * Network namespaces for the chaos suite: each node (and its own NATS server) in a namespace of
 * its own, joined by veth pairs to a private bridge on the host, so that faults cut real links:
 * partitions (majority/minority, a bridge node), one-way cuts, isolation, added latency and packet
 * loss. Nodes then talk only through a NATS cluster over a (virtual) network: the multi-machine
 * story on one machine. Needs root, `ip` and `tc` (iproute2) and a kernel with veth, bridge and the
 * HTB qdisc with the u32 classifier; `netnsAvailable` says whether they are here.
 *
 * Layout of a network (run `r`, 4 hex digits; `pid` of the creating process; `prefix` default
 * `ens`):
 * - bridge `ensb<r>` on the host with address `10.231.X.1/24` (`hostIp`), X picked so that the
 *   subnet is on no host interface yet;
 * - per id (index i): namespace `<prefix>-<pid>-<r>-<id>` with `lo` up and `eth0` =
 *   `10.231.X.(10+i)/24`, the other end of its veth pair `ensv<r><i>` a port of the bridge.
 * Interfaces carry the alias `ensemble-netns prefix=<prefix> pid=<pid> run=<r>`, so `sweepStale`
 * can tell what a crashed run left behind.
 *
 * How faults are made (no iptables: iproute2 only):
 * - Cuts drop silently, in the network, like a real partition: no reset, no ICMP, and the
 *   sender's own stack sees nothing (its TCP retransmits into the void). Each bridge port (the
 *   host end of a node's veth, where the bridge hands frames to that node) has an HTB root qdisc
 *   whose class 1:2 leads to a `pfifo limit 0` (drops everything); `cut(from, to)` adds a u32
 *   filter there sending packets from `ip(from)` to that class. The host is cut only when asked
 *   (`HOST`, `isolate(id, { fromHost: true })`). What a node sends to the host is dropped by the
 *   same HTB on the node's own `eth0` (there is no other place for it without tc actions or
 *   iptables): a drop at the sender's qdisc, which its TCP does notice (NATS closes such a
 *   connection after some 15 s, where a drop in the network leaves it hanging until pings fail).
 * - Latency and loss (`netem`): the kernel's `tc netem` qdisc when the kernel has it (under HTB
 *   class 1:1 on the node's `eth0`; with `direction: 'both'` also under that of its bridge port).
 *   Kernels without sch_netem (some VM kernels) get a userspace relay instead: the node's bridge
 *   port is moved into a helper namespace `<ns>@relay`, where a small Python program (python3
 *   needed) forwards frames between it and a fresh veth pair into the bridge, holding them for the
 *   delay (plus or minus jitter, without reordering) and dropping the lost ones (a frame as the
 *   relay sees it: one TCP segmentation-offload burst of up to 64 KiB counts as one). `shaper`
 *   says which is used. Kernel netem reorders packets under jitter; the relay does not.
 *
 * Contracts:
 * - Faults add up: `cut`, `partition`, `bridge`, `isolate` and `netem` add to what is in place;
 *   `heal` removes every one of them (idempotent). Operations on one network run one at a time.
 * - `destroy` kills the processes still inside the network's namespaces (by pid; normally the
 *   caller has stopped them), deletes the namespaces, veths and the bridge; idempotent, never
 *   throws. Networks still alive when this process exits, or dies of SIGINT, SIGTERM or SIGHUP,
 *   are destroyed then (synchronously). After a SIGKILL, the next `createNetwork` (or
 *   `sweepStale`) removes what a run whose process is dead left behind.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants, readdirSync, readlinkSync, statSync } from 'node:fs';
import path from 'node:path';
import { adopt } from '../../cluster/children.ts';

/** The host, as an endpoint of `cut`: what the host's processes (clients) send or receive. */
export const HOST = 'host';

export interface NetemOptions {
  /** Added one-way latency, ms (default 0). */
  readonly delayMs?: number;
  /** Plus or minus this much, uniformly, ms (default 0). */
  readonly jitterMs?: number;
  /** Percentage of packets dropped (default 0). */
  readonly lossPct?: number;
  /**
   * `egress` (default): what the node sends (one-way loss and latency); `both`: also what it
   * receives (a round trip through the node then pays the delay twice).
   */
  readonly direction?: 'egress' | 'both';
}

export interface IsolateOptions {
  /** Cut the host from the node too (clients on the host then cannot reach its NATS server). */
  readonly fromHost?: boolean;
}

export interface NetworkOptions {
  /** Prefix of namespace names (default `ens`). */
  readonly prefix?: string;
  /** How `netem` shapes traffic: `auto` (default): kernel netem if present, else the relay. */
  readonly shaper?: 'auto' | 'netem' | 'relay';
}

export interface Network {
  readonly ids: readonly string[];
  /** The host's address on the bridge (the source address of host clients). */
  readonly hostIp: string;
  /** The private subnet, e.g. `10.231.7.0/24`. */
  readonly subnet: string;
  /** The bridge device on the host. */
  readonly bridgeDevice: string;
  /** What `netem` uses: kernel netem, the userspace relay, or nothing available (`netem` throws). */
  readonly shaper: 'netem' | 'relay' | null;
  /** The namespace of `id`. */
  ns(id: string): string;
  /** The address of `id` (or of the host, for `HOST`). */
  ip(id: string): string;
  /** The command prefix that runs a process in `id`'s namespace: `['/usr/sbin/ip', 'netns', 'exec', ns]`. */
  exec(id: string): string[];
  /** Drops what `from` sends to `to` (one way; either may be `HOST`). */
  cut(from: string, to: string): Promise<void>;
  /**
   * Cuts, both ways, every pair of listed ids that share no group; ids listed in no group keep all
   * their links. An id may be in several groups: `partition([[a, b], [b, c]])` makes `b` a bridge
   * node (`bridge(b)` for three nodes). The host keeps its links.
   */
  partition(groups: readonly (readonly string[])[]): Promise<void>;
  /** `node` reaches every other node, which reach no one else: `partition` of `[other, node]` pairs. */
  bridge(node: string): Promise<void>;
  /** Cuts `id` from every other node, both ways (and from the host with `fromHost`). */
  isolate(id: string, options?: IsolateOptions): Promise<void>;
  /** Latency and loss on `id`'s link; replaces its earlier `netem` (all zero: none). */
  netem(id: string, options: NetemOptions): Promise<void>;
  /** Removes every cut and netem. Idempotent. */
  heal(): Promise<void>;
  /** One line: the faults in place (`no faults` when none). */
  describe(): string;
  /** Removes namespaces, veths, bridge (and kills what runs inside). Idempotent; never throws. */
  destroy(): Promise<void>;
}

// -------------------------------------------------------------------------------------------------
// Running iproute2.

const SYSTEM_DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin', '/usr/local/sbin', '/usr/local/bin'];

/**
 * The absolute path of `name` in the system directories or on PATH, or null. System directories
 * first: the tools run as root, and a version manager's shim (pyenv) on PATH can take a second to
 * start.
 */
function findBin(name: string): string | null {
  const dirs = [...SYSTEM_DIRS, ...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean)];
  for (const dir of dirs) {
    const file = path.join(dir, name);
    try {
      accessSync(file, fsConstants.X_OK);
      if (statSync(file).isFile()) return file;
    } catch {
      // not here
    }
  }
  return null;
}

const bins = new Map<string, string | null>();
const bin = (name: string): string | null => {
  if (!bins.has(name)) bins.set(name, findBin(name));
  return bins.get(name) ?? null;
};
const ipBin = (): string => bin('ip') ?? 'ip';
const tcBin = (): string => bin('tc') ?? 'tc';

interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: readonly string[], input?: string): Promise<RunResult> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    const child = spawn(command, [...args], {
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (c: Buffer) => {
      stdout += c.toString('utf8');
    });
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
    });
    child.on('error', (err) => resolve({ code: -1, stdout, stderr: `${stderr}${err.message}` }));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Runs `command`; rejects with its stderr when it fails. */
async function must(command: string, args: readonly string[], input?: string): Promise<string> {
  const r = await run(command, args, input);
  if (r.code !== 0) {
    const what = input === undefined ? '' : `\n${input.trim()}`;
    throw new Error(
      `${path.basename(command)} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}${what}`,
    );
  }
  return r.stdout;
}

/** `ip` (or `tc`) commands, one a line, in one process, in namespace `ns` (host when null). */
const batch = (tool: 'ip' | 'tc', ns: string | null, lines: readonly string[], force = false) =>
  lines.length === 0
    ? Promise.resolve('')
    : must(
        tool === 'ip' ? ipBin() : tcBin(),
        [...(ns ? ['-n', ns] : []), ...(force ? ['-force'] : []), '-batch', '-'],
        `${lines.join('\n')}\n`,
      );

const quiet = async (tool: 'ip' | 'tc', ns: string | null, lines: readonly string[]): Promise<void> => {
  await batch(tool, ns, lines, true).catch(() => {});
};

// -------------------------------------------------------------------------------------------------
// Availability.

let probe: Promise<string | null> | null = null;

/**
 * Why network namespaces cannot be used here, or null when they can: root, `ip netns add/del` of
 * a probe namespace, `tc`, and inside the probe a bridge, a veth pair and an HTB qdisc.
 */
export function netnsUnavailableReason(): Promise<string | null> {
  probe ??= (async () => {
    if (process.platform !== 'linux') return `not Linux (${process.platform})`;
    if (process.getuid?.() !== 0) return 'not root';
    if (bin('ip') === null) return 'ip (iproute2) not found';
    if (bin('tc') === null) return 'tc (iproute2) not found';
    const ns = `ens-${process.pid}-${randomBytes(2).toString('hex')}-probe`;
    try {
      await must(ipBin(), ['netns', 'add', ns]);
    } catch (err) {
      return `ip netns add is not permitted: ${(err as Error).message}`;
    }
    try {
      await batch('ip', ns, [
        'link set lo up',
        'link add pbr type bridge',
        'link add pa type veth peer name pb',
      ]);
      await batch('tc', ns, ['qdisc add dev lo root handle 1: htb default 1', ...dropClass('lo')]);
      return null;
    } catch (err) {
      return `network namespace lacks bridge, veth or tc htb/u32: ${(err as Error).message}`;
    } finally {
      await run(ipBin(), ['netns', 'del', ns]);
    }
  })();
  return probe;
}

/** True when network namespaces can be used here (see `netnsUnavailableReason`). */
export async function netnsAvailable(): Promise<boolean> {
  return (await netnsUnavailableReason()) === null;
}

// -------------------------------------------------------------------------------------------------
// Stale runs.

const NETNS_DIR = '/run/netns';
const ALIAS = 'ensemble-netns';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The pids of processes (other than this one) inside the named namespaces. */
function pidsIn(namespaces: readonly string[]): number[] {
  const inodes = new Set<number>();
  for (const ns of namespaces) {
    try {
      inodes.add(statSync(path.join(NETNS_DIR, ns)).ino);
    } catch {
      // gone
    }
  }
  if (inodes.size === 0) return [];
  const pids: number[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const m = /^net:\[(\d+)\]$/.exec(readlinkSync(`/proc/${entry}/ns/net`));
      if (m && inodes.has(Number(m[1]))) pids.push(Number(entry));
    } catch {
      // exited, or not ours to read
    }
  }
  return pids;
}

function killAll(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

const listNamespaces = (): string[] => {
  try {
    return readdirSync(NETNS_DIR);
  } catch {
    return [];
  }
};

interface LinkInfo {
  readonly ifname: string;
  readonly ifalias?: string;
  readonly addr_info?: readonly {
    readonly family: string;
    readonly local: string;
    readonly prefixlen: number;
  }[];
}

async function listLinks(): Promise<LinkInfo[]> {
  try {
    return JSON.parse(await must(ipBin(), ['-j', '-d', 'addr', 'show'])) as LinkInfo[];
  } catch {
    return [];
  }
}

/**
 * Removes what runs of this module whose creating process is dead left behind: namespaces named
 * `<prefix>-<pid>-…` (after killing the processes still inside them) and interfaces with its
 * alias (bridges, veths). Runs of live processes are left alone. Resolves with what it removed.
 */
export async function sweepStale(prefix = 'ens'): Promise<{ namespaces: string[]; links: string[] }> {
  return sweep(prefix, await listLinks());
}

async function sweep(
  prefix: string,
  all: readonly LinkInfo[],
): Promise<{ namespaces: string[]; links: string[] }> {
  const nsRe = new RegExp(`^${escapeRe(prefix)}-(\\d+)-[0-9a-f]{4}-`);
  const namespaces = listNamespaces().filter((ns) => {
    const m = nsRe.exec(ns);
    return m !== null && !alive(Number(m[1]));
  });
  const aliasRe = new RegExp(`^${ALIAS} prefix=${escapeRe(prefix)} pid=(\\d+) `);
  const links = all
    .filter((l) => {
      const m = aliasRe.exec(l.ifalias ?? '');
      return m !== null && !alive(Number(m[1]));
    })
    .map((l) => l.ifname);
  if (namespaces.length === 0 && links.length === 0) return { namespaces, links };
  killAll(pidsIn(namespaces));
  await quiet('ip', null, [
    ...links.map((l) => `link del ${l}`),
    ...namespaces.map((ns) => `netns del ${ns}`),
  ]);
  return { namespaces, links };
}

// -------------------------------------------------------------------------------------------------
// Cleanup at exit.

const live = new Set<NetworkImpl>();
const SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];
let hooked = false;

function destroyAllSync(): void {
  for (const n of [...live]) n.destroySync();
}

/**
 * A signal that would kill this process: destroy the networks, then die of it. As in children.ts,
 * a process with its own handler keeps the signal (the exit hook still cleans up). children.ts's
 * handler (named `onSignal`) is not such a handler: it stands aside while another listener is
 * there, so this one leaves, then raises the signal again for it to reap its children and die.
 */
function onNetnsSignal(signal: NodeJS.Signals): void {
  const others = process.listeners(signal).filter((l) => l !== onNetnsSignal && l.name !== 'onSignal');
  if (others.length > 0) return;
  destroyAllSync();
  unhook();
  process.kill(process.pid, signal);
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', destroyAllSync);
  for (const s of SIGNALS) process.on(s, onNetnsSignal);
}

function unhook(): void {
  if (!hooked) return;
  hooked = false;
  process.off('exit', destroyAllSync);
  for (const s of SIGNALS) process.off(s, onNetnsSignal);
}

// -------------------------------------------------------------------------------------------------
// The network.

/** HTB root (class 1:1 passes, class 1:2 drops everything) on `dev`: what cuts need. */
const dropClass = (dev: string): string[] => [
  `class add dev ${dev} parent 1: classid 1:1 htb rate 10gbit quantum 60000`,
  `class add dev ${dev} parent 1: classid 1:2 htb rate 8bit quantum 1514`,
  `qdisc add dev ${dev} parent 1:2 handle 2: pfifo limit 0`,
];
const egressSetup = (dev: string): string[] => [
  `qdisc replace dev ${dev} root handle 1: htb default 1`,
  ...dropClass(dev).map((line) => line.replace(/^(class|qdisc) add/, '$1 replace')),
];

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

interface Shaped {
  readonly options: NetemOptions;
  readonly label: string;
  relay: ChildProcess | null;
  relayExited: Promise<void> | null;
}

/** Pick a /24 in 10.231.0.0/16 that overlaps no address of a host interface. */
function pickSubnet(links: readonly LinkInfo[]): number {
  const used: [number, number][] = [];
  for (const l of links) {
    for (const a of l.addr_info ?? []) {
      if (a.family !== 'inet') continue;
      const n = a.local.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
      const size = 2 ** (32 - a.prefixlen);
      const start = n - (n % size);
      used.push([start, start + size - 1]);
    }
  }
  const base = (10 * 256 + 231) * 65536;
  const free: number[] = [];
  for (let x = 0; x < 256; x++) {
    const lo = base + x * 256;
    if (!used.some(([s, e]) => s <= lo + 255 && e >= lo)) free.push(x);
  }
  if (free.length === 0) throw new Error('no free 10.231.x.0/24 subnet for the chaos network');
  return free[randomBytes(2).readUInt16BE(0) % free.length] as number;
}

class NetworkImpl implements Network {
  readonly ids: readonly string[];
  readonly hostIp: string;
  readonly subnet: string;
  readonly bridgeDevice: string;
  shaper: 'netem' | 'relay' | null = null;
  private readonly net: string;
  private readonly alias: string;
  private readonly cuts = new Set<string>();
  private readonly shaped = new Map<string, Shaped>();
  /** Nodes whose bridge port is behind the netem relay. */
  private readonly relayed = new Set<string>();
  private labels: string[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  private destroyed = false;

  constructor(
    ids: readonly string[],
    private readonly prefix: string,
    private readonly run: string,
    x: number,
  ) {
    this.ids = [...ids];
    this.net = `10.231.${x}`;
    this.hostIp = `${this.net}.1`;
    this.subnet = `${this.net}.0/24`;
    this.bridgeDevice = `ensb${run}`;
    this.alias = `${ALIAS} prefix=${prefix} pid=${process.pid} run=${run}`;
  }

  private index(id: string): number {
    const i = this.ids.indexOf(id);
    if (i < 0) throw new TypeError(`unknown node ${JSON.stringify(id)} (nodes: ${this.ids.join(', ')})`);
    return i;
  }

  ns(id: string): string {
    this.index(id);
    return `${this.prefix}-${process.pid}-${this.run}-${id}`;
  }

  private relayNs(id: string): string {
    return `${this.ns(id)}@relay`;
  }

  private port(id: string): string {
    return `ensv${this.run}${this.index(id)}`;
  }

  private relayPorts(id: string): { inner: string; outer: string } {
    const i = this.index(id);
    return { inner: `ensq${this.run}${i}`, outer: `ensr${this.run}${i}` };
  }

  ip(id: string): string {
    return id === HOST ? this.hostIp : `${this.net}.${10 + this.index(id)}`;
  }

  exec(id: string): string[] {
    return [ipBin(), 'netns', 'exec', this.ns(id)];
  }

  /** Runs `fn` after every operation before it. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(() => {
      if (this.destroyed) throw new Error('network destroyed');
      return fn();
    });
    this.chain = next.catch(() => {});
    return next;
  }

  async create(shaper: NetworkOptions['shaper']): Promise<void> {
    const host = [
      `link add ${this.bridgeDevice} type bridge`,
      // A fixed address: a bridge otherwise takes its ports' lowest, which changes as ports come and go.
      `link set ${this.bridgeDevice} address 02:${this.run.slice(0, 2)}:${this.run.slice(2)}:00:00:01`,
      `link set ${this.bridgeDevice} alias "${this.alias}"`,
      `addr add ${this.hostIp}/24 dev ${this.bridgeDevice}`,
      `link set ${this.bridgeDevice} up`,
    ];
    for (const id of this.ids) {
      host.push(
        `netns add ${this.ns(id)}`,
        `link add ${this.port(id)} type veth peer name eth0 netns ${this.ns(id)}`,
        `link set ${this.port(id)} alias "${this.alias}"`,
        `link set ${this.port(id)} master ${this.bridgeDevice} up`,
      );
    }
    await batch('ip', null, host);
    await Promise.all([
      batch(
        'tc',
        null,
        this.ids.flatMap((id) => egressSetup(this.port(id))),
      ),
      ...this.ids.map(async (id) => {
        await batch('ip', this.ns(id), [
          'link set lo up',
          `addr add ${this.ip(id)}/24 dev eth0`,
          'link set eth0 up',
        ]);
        await batch('tc', this.ns(id), egressSetup('eth0'));
      }),
    ]);
    this.shaper = await this.pickShaper(shaper ?? 'auto');
  }

  private async pickShaper(wanted: 'auto' | 'netem' | 'relay'): Promise<'netem' | 'relay' | null> {
    if (wanted !== 'relay') {
      const first = this.ns(this.ids[0] as string);
      const r = await run(tcBin(), [
        '-n',
        first,
        'qdisc',
        'add',
        'dev',
        'lo',
        'root',
        'netem',
        'delay',
        '0ms',
      ]);
      if (r.code === 0) {
        await run(tcBin(), ['-n', first, 'qdisc', 'del', 'dev', 'lo', 'root']);
        return 'netem';
      }
      if (wanted === 'netem') throw new Error(`tc netem is not available: ${r.stderr.trim()}`);
    }
    return bin('python3') === null ? null : 'relay';
  }

  /** The bridge port frames for `id` leave the bridge through: its veth, or the relay's while relayed. */
  private bridgePort(id: string): string {
    return this.relayed.has(id) ? this.relayPorts(id).outer : this.port(id);
  }

  /**
   * Where the cut `from` → `to` is made: a filter on `to`'s bridge port matching the source, or
   * (to the host) on `from`'s eth0 matching the destination. One priority per filter of a device.
   */
  private where(from: string, to: string): { ns: string | null; dev: string; prio: number; match: string } {
    if (to === HOST) return { ns: this.ns(from), dev: 'eth0', prio: 99, match: `dst ${this.hostIp}/32` };
    const prio = from === HOST ? 99 : 100 + this.index(from);
    return { ns: null, dev: this.bridgePort(to), prio, match: `src ${this.ip(from)}/32` };
  }

  private filterLine(from: string, to: string, dev = this.where(from, to).dev): string {
    const w = this.where(from, to);
    return `filter add dev ${dev} parent 1: protocol ip prio ${w.prio} u32 match ip ${w.match} flowid 1:2`;
  }

  /** HTB and the filters of the cuts in place towards `id`, for a new bridge port `dev` of it. */
  private portSetup(id: string, dev: string): string[] {
    const filters = [...this.cuts]
      .map((key) => key.split('>') as [string, string])
      .filter(([, to]) => to === id)
      .map(([from, to]) => this.filterLine(from, to, dev));
    return [...egressSetup(dev), ...filters];
  }

  private checkEndpoint(id: string): void {
    if (id !== HOST) this.index(id);
  }

  /** Adds the directed cuts not in place yet. */
  private async addCuts(pairs: readonly (readonly [string, string])[]): Promise<void> {
    const byNs = new Map<string | null, string[]>();
    for (const [from, to] of pairs) {
      const key = `${from}>${to}`;
      if (from === to || this.cuts.has(key)) continue;
      const { ns } = this.where(from, to);
      byNs.set(ns, [...(byNs.get(ns) ?? []), this.filterLine(from, to)]);
      this.cuts.add(key);
    }
    await Promise.all([...byNs].map(([ns, lines]) => batch('tc', ns, lines)));
  }

  async cut(from: string, to: string): Promise<void> {
    this.checkEndpoint(from);
    this.checkEndpoint(to);
    return this.serial(async () => {
      await this.addCuts([[from, to]]);
      this.labels.push(`cut ${from}->${to}`);
    });
  }

  async partition(groups: readonly (readonly string[])[]): Promise<void> {
    for (const g of groups) for (const id of g) this.index(id);
    const of = new Map<string, Set<number>>();
    groups.forEach((g, i) => {
      for (const id of g) of.set(id, (of.get(id) ?? new Set()).add(i));
    });
    const pairs: [string, string][] = [];
    for (const a of of.keys()) {
      for (const b of of.keys()) {
        const ga = of.get(a) as Set<number>;
        if (a !== b && ![...(of.get(b) as Set<number>)].some((i) => ga.has(i))) pairs.push([a, b]);
      }
    }
    return this.serial(async () => {
      await this.addCuts(pairs);
      this.labels.push(`partition ${groups.map((g) => g.join(' ')).join(' | ')}`);
    });
  }

  async bridge(node: string): Promise<void> {
    this.index(node);
    const others = this.ids.filter((id) => id !== node);
    const pairs: [string, string][] = [];
    for (const a of others) for (const b of others) if (a !== b) pairs.push([a, b]);
    return this.serial(async () => {
      await this.addCuts(pairs);
      this.labels.push(`bridge ${node} (${others.join(' x ')})`);
    });
  }

  async isolate(id: string, options: IsolateOptions = {}): Promise<void> {
    this.index(id);
    const others = [...this.ids.filter((o) => o !== id), ...(options.fromHost ? [HOST] : [])];
    const pairs = others.flatMap((o): [string, string][] => [
      [id, o],
      [o, id],
    ]);
    return this.serial(async () => {
      await this.addCuts(pairs);
      this.labels.push(`isolate ${id}${options.fromHost ? ' (and from host)' : ''}`);
    });
  }

  async netem(id: string, options: NetemOptions): Promise<void> {
    this.index(id);
    const delayMs = options.delayMs ?? 0;
    const jitterMs = options.jitterMs ?? 0;
    const lossPct = options.lossPct ?? 0;
    if (![delayMs, jitterMs, lossPct].every((v) => Number.isFinite(v) && v >= 0) || lossPct > 100) {
      throw new RangeError('netem: delayMs, jitterMs >= 0 and 0 <= lossPct <= 100');
    }
    const direction = options.direction ?? 'egress';
    return this.serial(async () => {
      if (this.shaper === null) {
        throw new Error(
          'netem: the kernel has no sch_netem and python3 (for the userspace relay) is missing',
        );
      }
      await this.unshape(id);
      this.labels = this.labels.filter((l) => !l.startsWith(`netem ${id} `));
      if (delayMs === 0 && jitterMs === 0 && lossPct === 0) return;
      const parts = [
        ...(delayMs > 0 || jitterMs > 0 ? [`delay ${delayMs}ms${jitterMs > 0 ? `±${jitterMs}ms` : ''}`] : []),
        ...(lossPct > 0 ? [`loss ${lossPct}%`] : []),
      ];
      const label = `netem ${id} ${parts.join(' ')} ${direction} (${this.shaper === 'netem' ? 'tc netem' : 'relay'})`;
      const shaped: Shaped = {
        options: { delayMs, jitterMs, lossPct, direction },
        label,
        relay: null,
        relayExited: null,
      };
      this.shaped.set(id, shaped);
      if (this.shaper === 'netem') {
        const args = [
          ...(delayMs > 0 || jitterMs > 0
            ? ['delay', `${delayMs}ms`, ...(jitterMs > 0 ? [`${jitterMs}ms`] : [])]
            : []),
          ...(lossPct > 0 ? ['loss', `${lossPct}%`] : []),
        ].join(' ');
        await batch('tc', this.ns(id), [`qdisc replace dev eth0 parent 1:1 handle 10: netem ${args}`]);
        if (direction === 'both') {
          await batch('tc', null, [`qdisc replace dev ${this.port(id)} parent 1:1 handle 10: netem ${args}`]);
        }
      } else {
        await this.startRelay(id, shaped);
      }
      this.labels.push(label);
    });
  }

  /** Puts `id`'s bridge port behind the relay and starts it. */
  private async startRelay(id: string, shaped: Shaped): Promise<void> {
    const rns = this.relayNs(id);
    const port = this.port(id);
    const { inner, outer } = this.relayPorts(id);
    await batch('ip', null, [
      `netns add ${rns}`,
      `link set ${port} nomaster`,
      `link set ${port} netns ${rns}`,
      `link add ${outer} type veth peer name ${inner} netns ${rns}`,
      `link set ${outer} alias "${this.alias}"`,
      `link set ${outer} master ${this.bridgeDevice} up`,
    ]);
    this.relayed.add(id);
    await batch('tc', null, this.portSetup(id, outer));
    await batch('ip', rns, [`link set ${port} up`, `link set ${inner} up`]);
    const o = shaped.options;
    const egress = {
      delay: (o.delayMs ?? 0) / 1000,
      jitter: (o.jitterMs ?? 0) / 1000,
      loss: (o.lossPct ?? 0) / 100,
    };
    const none = { delay: 0, jitter: 0, loss: 0 };
    const cfg = JSON.stringify({ ab: egress, ba: o.direction === 'both' ? egress : none });
    const child = spawn(
      ipBin(),
      ['netns', 'exec', rns, bin('python3') as string, '-u', '-c', RELAY, port, inner, cfg],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    adopt(child);
    shaped.relay = child;
    shaped.relayExited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    let err = '';
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString('utf8');
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`netem relay for ${id} not ready in 10 s: ${err}`)),
        10_000,
      );
      child.stdout?.on('data', (c: Buffer) => {
        if (c.toString('utf8').includes('ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`netem relay for ${id} exited (${signal ?? code}): ${err}`));
      });
    });
  }

  /** Removes `id`'s netem (qdiscs, or relay and its detour). */
  private async unshape(id: string): Promise<void> {
    const s = this.shaped.get(id);
    if (s === undefined) return;
    this.shaped.delete(id);
    if (this.shaper === 'netem') {
      await quiet('tc', this.ns(id), ['qdisc del dev eth0 parent 1:1 handle 10:']);
      if (s.options.direction === 'both') {
        await quiet('tc', null, [`qdisc del dev ${this.port(id)} parent 1:1 handle 10:`]);
      }
      return;
    }
    if (s.relay !== null && s.relay.exitCode === null && s.relay.signalCode === null) {
      const relay = s.relay;
      const timer = setTimeout(() => relay.kill('SIGKILL'), 2000);
      relay.kill('SIGTERM');
      await s.relayExited;
      clearTimeout(timer);
    }
    const rns = this.relayNs(id);
    const port = this.port(id);
    // Back into the bridge; the move dropped the port's qdiscs, so its HTB and filters come anew.
    await quiet('ip', rns, [`link set ${port} netns ${process.pid}`]);
    this.relayed.delete(id);
    await quiet('ip', null, [
      `link set ${port} master ${this.bridgeDevice}`,
      `link set ${port} up`,
      `link del ${this.relayPorts(id).outer}`,
      `netns del ${rns}`,
    ]);
    await batch('tc', null, this.portSetup(id, port));
  }

  async heal(): Promise<void> {
    if (this.destroyed) return;
    return this.serial(async () => {
      const byNs = new Map<string | null, string[]>();
      for (const key of this.cuts) {
        const [from, to] = key.split('>') as [string, string];
        const w = this.where(from, to);
        byNs.set(w.ns, [
          ...(byNs.get(w.ns) ?? []),
          `filter del dev ${w.dev} parent 1: protocol ip prio ${w.prio}`,
        ]);
      }
      await Promise.all([...byNs].map(([ns, lines]) => quiet('tc', ns, lines)));
      this.cuts.clear();
      await Promise.all([...this.shaped.keys()].map((id) => this.unshape(id)));
      this.labels = [];
    });
  }

  describe(): string {
    if (this.destroyed) return 'destroyed';
    return this.labels.length === 0 ? 'no faults' : this.labels.join('; ');
  }

  private namespaces(): string[] {
    return this.ids.flatMap((id) => [this.ns(id), this.relayNs(id)]);
  }

  private teardownLines(): string[] {
    return [
      ...this.ids.flatMap((id) => [`link del ${this.port(id)}`, `link del ${this.relayPorts(id).outer}`]),
      ...this.namespaces().map((ns) => `netns del ${ns}`),
      `link del ${this.bridgeDevice}`,
    ];
  }

  private existing(): string[] {
    const all = new Set(listNamespaces());
    return this.namespaces().filter((ns) => all.has(ns));
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    try {
      await this.chain;
      for (const s of this.shaped.values()) s.relay?.kill('SIGKILL');
      killAll(pidsIn(this.existing()));
      await quiet('ip', null, this.teardownLines());
    } catch {
      // never throws
    } finally {
      live.delete(this);
      if (live.size === 0) unhook();
    }
  }

  /** For exit and signal hooks: the same, synchronously. */
  destroySync(): void {
    this.destroyed = true;
    live.delete(this);
    try {
      for (const s of this.shaped.values()) s.relay?.kill('SIGKILL');
      killAll(pidsIn(this.existing()));
      spawnSync(ipBin(), ['-force', '-batch', '-'], {
        input: `${this.teardownLines().join('\n')}\n`,
        stdio: ['pipe', 'ignore', 'ignore'],
      });
    } catch {
      // nothing more to do at exit
    }
  }

  register(): void {
    live.add(this);
    hook();
  }
}

/**
 * Creates a bridge with a private /24 and one namespace per id, each with its veth into the
 * bridge (see the top of this file). Sweeps stale runs of `prefix` first. On failure, removes
 * what it made and rejects.
 */
export async function createNetwork(ids: readonly string[], options: NetworkOptions = {}): Promise<Network> {
  const prefix = options.prefix ?? 'ens';
  if (!/^[A-Za-z0-9_.]{1,32}$/.test(prefix)) throw new TypeError(`bad prefix ${JSON.stringify(prefix)}`);
  if (ids.length === 0 || ids.length > 240) throw new TypeError('createNetwork: 1 to 240 ids');
  for (const id of ids) {
    if (!ID_RE.test(id) || id === HOST) throw new TypeError(`bad node id ${JSON.stringify(id)}`);
  }
  if (new Set(ids).size !== ids.length) throw new TypeError('createNetwork: ids must be distinct');
  const reason = await netnsUnavailableReason();
  if (reason !== null) throw new Error(`network namespaces not permitted here: ${reason}`);
  let links = await listLinks();
  const swept = await sweep(prefix, links);
  if (swept.links.length > 0) links = await listLinks();
  const names = new Set(links.map((l) => l.ifname));
  let run = randomBytes(2).toString('hex');
  while (names.has(`ensb${run}`)) run = randomBytes(2).toString('hex');
  const network = new NetworkImpl(ids, prefix, run, pickSubnet(links));
  network.register();
  try {
    await network.create(options.shaper);
  } catch (err) {
    await network.destroy();
    throw err;
  }
  return network;
}

/**
 * The userspace netem: forwards Ethernet frames between interface A (the node's side) and B (the
 * bridge's side), delaying and dropping them as `cfg` says (`ab`: A to B, `ba`: B to A; delay and
 * jitter in seconds, loss as a fraction). Frames keep their order. Virtio-net headers (GSO,
 * checksum offload) pass through untouched. Exits when its parent does.
 */
const RELAY = `
import os, sys, socket, select, random, time, json
from collections import deque
ETH_P_ALL, SOL_PACKET, PACKET_VNET_HDR, PACKET_OUTGOING, CAP = 3, 263, 15, 4, 10000
a_name, b_name, cfg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
parent = os.getppid()
def open_sock(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((name, ETH_P_ALL))
    s.setblocking(False)
    return s
sa, sb = open_sock(a_name), open_sock(b_name)
dirs = [(sa, sb, cfg['ab'], deque(), [0.0]), (sb, sa, cfg['ba'], deque(), [0.0])]
print('ready', flush=True)
while True:
    now = time.monotonic()
    timeout = 0.5
    for _, _, _, q, _ in dirs:
        if q:
            timeout = min(timeout, max(0.0, q[0][0] - now))
    r, _, _ = select.select([sa, sb], [], [], timeout)
    for src, dst, c, q, last in dirs:
        if src not in r:
            continue
        while True:
            try:
                data, addr = src.recvfrom(1 << 18)
            except BlockingIOError:
                break
            if addr[2] == PACKET_OUTGOING:
                continue
            if c['loss'] > 0 and random.random() < c['loss']:
                continue
            if len(q) >= CAP:
                continue
            d = c['delay']
            if c['jitter'] > 0:
                d = max(0.0, d + random.uniform(-c['jitter'], c['jitter']))
            due = max(time.monotonic() + d, last[0])
            last[0] = due
            q.append((due, data))
    now = time.monotonic()
    for src, dst, c, q, last in dirs:
        while q and q[0][0] <= now:
            try:
                dst.send(q.popleft()[1])
            except OSError:
                pass
    if os.getppid() != parent:
        sys.exit(0)
`;
