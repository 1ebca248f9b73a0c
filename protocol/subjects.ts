/**
 * The one subject table. Every NATS subject Ensemble publishes or subscribes to is built here,
 * under a prefix (default `ensemble.<cluster>`), and so are the permission patterns nats.conf
 * grants its users. Layout, with `P` the prefix:
 *
 * | subject                        | who publishes        | who subscribes                  |
 * |--------------------------------|----------------------|---------------------------------|
 * | `P.peer.<node>`                | peers (Raft frames)  | node `<node>`                   |
 * | `P.peer.<node>.forward`        | peers (request)      | node `<node>` (forwarded ops)   |
 * | `P.peer.<node>.snapshot`       | peers (request)      | node `<node>` (snapshot chunks) |
 * | `P.node.<node>.api.<op>`       | clients, peers       | node `<node>`                   |
 * | `P.api.<op>`                   | clients, peers       | every node, queue group         |
 * | `P.session.keepalive`          | clients              | every node (no queue group)     |
 * | `P.watch.<node>.<group>`       | node `<node>`        | clients (shared watch streams)  |
 * | `P.claims.watch`               | peers                | every node (session watch moves) |
 * | `P.leader`                     | a new leader         | clients (leader announcements)   |
 * | `P.inspect.<node>`             | node `<node>`        | the admin (inspection batches)   |
 * | `_INBOX.<user>.…`              | peers (replies, watch events) | the client of NATS user `<user>` |
 *
 * Clients publish only on the API and keepalive subjects and read only their own user's inbox
 * and the shared watch streams (the same events any client may watch through the API);
 * peer subjects are closed to them (nats.conf enforces it, `natsPermissions` generates it). A node
 * answers a client only on a client inbox (`isClientInbox`), never on a peer inbox or on one of the
 * cluster's subjects, so a forged reply subject cannot make a node publish into peer traffic.
 *
 * Node ids, cluster names and ops are single subject tokens: `[A-Za-z0-9_-]`, 1 to 64 characters.
 * Builders throw `TypeError` for anything else (a programmer or configuration mistake).
 */

/** The first token of every default prefix. */
export const DEFAULT_ROOT = 'ensemble';

/** The inbox root: every reply and watch subject starts with `_INBOX.`. */
export const INBOX_ROOT = '_INBOX';

/** The NATS user that node processes connect as. */
export const PEER_USER = 'peer';

/** The NATS user of operators: admin ops (membership, leader transfer, compaction, auth). */
export const ADMIN_USER = 'admin';

/**
 * The NATS users nats.conf defines: the nodes, an operator, two client applications. Each lives in
 * its own NATS account (`natsAccount`), so the server keeps their subjects apart.
 */
export const natsUsers = ['peer', 'admin', 'client', 'client2'] as const;
export type NatsUser = (typeof natsUsers)[number];

const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

/** True for a valid node id, cluster name or op: one subject token of `[A-Za-z0-9_-]{1,64}`. */
export const isToken = (s: unknown): s is string => typeof s === 'string' && TOKEN.test(s);

function token(s: string, what: string): string {
  if (!isToken(s)) throw new TypeError(`${what} must match [A-Za-z0-9_-]{1,64}: ${JSON.stringify(s)}`);
  return s;
}

/** A literal subject: dot-separated non-empty tokens of printable ASCII, no wildcards. */
const LITERAL = /^[\x21-\x29\x2b-\x2d\x2f-\x3d\x3f-\x7e]+(\.[\x21-\x29\x2b-\x2d\x2f-\x3d\x3f-\x7e]+)*$/;

/** True for a subject one can publish to: no wildcards, no empty tokens, no whitespace. */
export const isLiteralSubject = (s: unknown): s is string =>
  typeof s === 'string' && s.length <= 512 && LITERAL.test(s);

/** The default prefix of a cluster: `ensemble.<cluster>`. */
export const defaultPrefix = (cluster: string): string => `${DEFAULT_ROOT}.${token(cluster, 'cluster name')}`;

export interface SubjectOptions {
  /** The cluster name (a token). */
  readonly cluster: string;
  /** The subject prefix (default `ensemble.<cluster>`): literal tokens joined by dots. */
  readonly prefix?: string;
}

export interface ApiSubject {
  /** The node addressed, or `null` for the any-node subject. */
  readonly node: string | null;
  readonly op: string;
}

/** The subjects of one cluster. Pure functions of the prefix; no state. */
export interface Subjects {
  readonly cluster: string;
  readonly prefix: string;
  /** Raft frames to `nodeId` (one-way, CBOR peer envelopes). */
  peer(nodeId: string): string;
  /** Requests a follower forwards to `nodeId` (the leader); replies go to the peer's inbox. */
  forward(nodeId: string): string;
  /** Snapshot chunks sent to `nodeId` (requests; each reply acknowledges one chunk). */
  snapshot(nodeId: string): string;
  /** The leader's session-age rounds to `nodeId` (request/reply; peers only). */
  ages(nodeId: string): string;
  /** The API of one node: writes and linearizable reads go straight to the leader this way. */
  nodeApi(nodeId: string, op: string): string;
  /** Subscription of node `nodeId` to its own API: `P.node.<nodeId>.api.*`. */
  nodeApiWildcard(nodeId: string): string;
  /** The API any node answers (a queue group; followers forward writes to the leader). */
  api(op: string): string;
  /** Subscription of every node to the any-node API: `P.api.*`, with queue group `apiQueue`. */
  apiWildcard(): string;
  /** The queue group of the any-node API subjects. */
  readonly apiQueue: string;
  /** Published keepalives, heard by every node (subscribe without a queue group). */
  sessionKeepalive(): string;
  /**
   * An admin op of one node (`P.node.<nodeId>.admin.<op>`): `inspect` (every node), and chaos
   * tools such as `stopActor`, answered only by a node started with `--chaos`; nats.conf lets only
   * peers and the admin publish there.
   */
  nodeAdmin(nodeId: string, op: string): string;
  /**
   * Where a node announces its election (`{ leader, term }`, CBOR envelope): clients move their
   * requests in flight to the new leader at once instead of waiting out an attempt.
   */
  leaderAnnounce(): string;
  /**
   * Where a node announces that it now serves a session's watches (peers only): the others end
   * theirs for that session with WATCH_MOVED, so a session's watches live on one node at a time.
   */
  watchClaims(): string;
  /**
   * Where node `nodeId` publishes its inspection batches while inspection is on (JSON,
   * protocol/inspection.ts); only the admin may subscribe. Turned on by the admin op `inspect`.
   */
  inspect(nodeId: string): string;
  /** Every node's inspection batches: `P.inspect.*`. */
  inspectWildcard(): string;
  /** The shared stream of node `nodeId`'s watch group `group` (a token naming target + options). */
  watchGroup(nodeId: string, group: string): string;
  /** Parses an API subject (node or any-node); `null` if `subject` is not one of this cluster's. */
  parseApi(subject: string): ApiSubject | null;
  /** The node id of a peer subject (`P.peer.<node>`); `null` otherwise. */
  parsePeer(subject: string): string | null;
  /** True for any subject under this cluster's prefix. */
  owns(subject: string): boolean;
}

/** Builds the subject table of a cluster. Throws `TypeError` for a bad cluster name or prefix. */
export function subjects(options: SubjectOptions): Subjects {
  const cluster = token(options.cluster, 'cluster name');
  const prefix = options.prefix ?? defaultPrefix(cluster);
  if (!isLiteralSubject(prefix) || prefix.startsWith(`${INBOX_ROOT}.`) || prefix.startsWith('$')) {
    throw new TypeError(`bad subject prefix ${JSON.stringify(prefix)}`);
  }
  const peerRoot = `${prefix}.peer.`;
  const nodeRoot = `${prefix}.node.`;
  const apiRoot = `${prefix}.api.`;
  return {
    cluster,
    prefix,
    peer: (nodeId) => `${peerRoot}${token(nodeId, 'node id')}`,
    forward: (nodeId) => `${peerRoot}${token(nodeId, 'node id')}.forward`,
    snapshot: (nodeId) => `${peerRoot}${token(nodeId, 'node id')}.snapshot`,
    ages: (nodeId) => `${peerRoot}${token(nodeId, 'node id')}.ages`,
    nodeApi: (nodeId, op) => `${nodeRoot}${token(nodeId, 'node id')}.api.${token(op, 'op')}`,
    nodeApiWildcard: (nodeId) => `${nodeRoot}${token(nodeId, 'node id')}.api.*`,
    nodeAdmin: (nodeId, op) => `${nodeRoot}${token(nodeId, 'node id')}.admin.${token(op, 'op')}`,
    api: (op) => `${apiRoot}${token(op, 'op')}`,
    apiWildcard: () => `${apiRoot}*`,
    // A queue group is scoped to its subjects already; NATS services refuse dots in its name.
    apiQueue: 'ensemble-api',
    sessionKeepalive: () => `${prefix}.session.keepalive`,
    watchClaims: () => `${prefix}.claims.watch`,
    leaderAnnounce: () => `${prefix}.leader`,
    inspect: (nodeId) => `${prefix}.inspect.${token(nodeId, 'node id')}`,
    inspectWildcard: () => `${prefix}.inspect.*`,
    watchGroup: (nodeId, group) =>
      `${prefix}.watch.${token(nodeId, 'node id')}.${token(group, 'watch group')}`,
    parseApi(subject) {
      if (subject.startsWith(apiRoot)) {
        const op = subject.slice(apiRoot.length);
        return isToken(op) ? { node: null, op } : null;
      }
      if (subject.startsWith(nodeRoot)) {
        const rest = subject.slice(nodeRoot.length).split('.');
        if (rest.length === 3 && rest[1] === 'api' && isToken(rest[0]) && isToken(rest[2])) {
          return { node: rest[0], op: rest[2] };
        }
      }
      return null;
    },
    parsePeer(subject) {
      if (!subject.startsWith(peerRoot)) return null;
      const id = subject.slice(peerRoot.length);
      return isToken(id) ? id : null;
    },
    owns: (subject) => subject === prefix || subject.startsWith(`${prefix}.`),
  };
}

/**
 * The inbox prefix a NATS user must connect with (`inboxPrefix` option of nats.js, `--inbox-prefix`
 * of the `nats` CLI, `CustomInboxPrefix` in Go): `_INBOX.<user>`. nats.conf lets each user
 * subscribe below its own prefix only.
 */
export const inboxPrefix = (user: string): string => `${INBOX_ROOT}.${token(user, 'user')}`;

/**
 * True for a subject a node may deliver replies and watch events to on a client's behalf: a
 * literal subject below `_INBOX.`, not below the peers' inbox.
 */
export function isClientInbox(subject: unknown): subject is string {
  return (
    isLiteralSubject(subject) &&
    subject.startsWith(`${INBOX_ROOT}.`) &&
    !subject.startsWith(`${INBOX_ROOT}.${PEER_USER}.`) &&
    subject !== `${INBOX_ROOT}.${PEER_USER}`
  );
}

/** True for a reply subject of a forwarded request: below the peers' inbox. */
export const isPeerInbox = (subject: unknown): subject is string =>
  isLiteralSubject(subject) && subject.startsWith(`${INBOX_ROOT}.${PEER_USER}.`);

/**
 * The subject a watch delivers its events to: `<inbox>.watch.<watchId>`, below the client's
 * inbox (`inboxPrefix(user)` plus anything unique to the connection). Throws `TypeError` if the
 * result is not a client inbox.
 */
export function watchInbox(inbox: string, watchId: string): string {
  const subject = `${inbox}.watch.${token(watchId, 'watch id')}`;
  if (!isClientInbox(subject)) throw new TypeError(`not a client inbox: ${JSON.stringify(inbox)}`);
  return subject;
}

export interface UserPermissions {
  readonly publish: readonly string[];
  readonly subscribe: readonly string[];
  /** May answer requests it received (publish to their reply subjects, once each). */
  readonly allowResponses: boolean;
}

/**
 * Applications' own subjects (`app.>`): client users may publish, subscribe and answer requests
 * there, within their own account, so the processes of one application can call each other over
 * the same NATS (the examples do). Ensemble itself never uses them.
 */
export const APP_SUBJECTS = 'app.>';

/** The NATS account a user lives in: `ENSEMBLE` for the nodes, the user's name in capitals else. */
export const natsAccount = (user: string): string => (user === PEER_USER ? 'ENSEMBLE' : user.toUpperCase());

/** The header nats-server adds to a request that crossed a `share: true` service import. */
export const REQUEST_INFO_HEADER = 'Nats-Request-Info';

/** One export of the nodes' account: a service (requests in) or a stream (messages out). */
export interface NatsExport {
  readonly kind: 'service' | 'stream';
  readonly subject: string;
  /** The accounts that may import it (all when absent). */
  readonly accounts?: readonly string[];
  /** `stream`: a request may get several answers (service discovery). */
  readonly responseType?: 'stream';
}

const apiServices = (p: string): string[] => [`${p}.api.*`, `${p}.node.*.api.*`, `${p}.session.keepalive`];
const clientUsers = natsUsers.filter((u) => u !== PEER_USER);

/**
 * What the nodes' account (`ENSEMBLE`) offers the others. Requests come in through services
 * imported with `share: true`, so nats-server adds a `Nats-Request-Info` header naming the
 * account and user that sent each one (a client cannot forge it: the server replaces it), and
 * maps the reply subject so the answer can reach only the sender's own account. Watch events go
 * out as streams: `_INBOX.<user>.>` is exported to that user's account alone, and a node delivers
 * a watch only below the inbox of the user who opened it.
 */
export function natsExports(prefixPattern = `${DEFAULT_ROOT}.*`): NatsExport[] {
  return [
    ...apiServices(prefixPattern).map((subject) => ({ kind: 'service' as const, subject })),
    { kind: 'service', subject: '$SRV.>', responseType: 'stream' },
    { kind: 'service', subject: `${prefixPattern}.node.*.admin.*`, accounts: [natsAccount(ADMIN_USER)] },
    { kind: 'stream', subject: `${prefixPattern}.watch.*.*` },
    { kind: 'stream', subject: `${prefixPattern}.leader` },
    { kind: 'stream', subject: `${prefixPattern}.inspect.*`, accounts: [natsAccount(ADMIN_USER)] },
    ...clientUsers.map((u) => ({
      kind: 'stream' as const,
      subject: `${inboxPrefix(u)}.>`,
      accounts: [natsAccount(u)],
    })),
  ];
}

/** What a user's account imports from `ENSEMBLE`: the exports it is allowed. */
export function natsImports(user: NatsUser, prefixPattern = `${DEFAULT_ROOT}.*`): NatsExport[] {
  if (user === PEER_USER) return [];
  const account = natsAccount(user);
  return natsExports(prefixPattern).filter((e) => e.accounts === undefined || e.accounts.includes(account));
}

/**
 * The NATS permissions of a user inside its own account, as patterns over `prefixPattern` (default
 * `ensemble.*`: every cluster under the default root). Peers may use every subject of the
 * cluster, deliver watch events into any client inbox (each exported to its user's account
 * only), read their own inbox, answer requests (replies through the server's import mapping) and
 * service discovery (`$SRV`). Clients may publish API requests, keepalives and service-discovery
 * requests, and subscribe below their own inbox and to the shared watch streams; on the
 * applications' subjects (`app.>`) they may publish, subscribe and answer requests. The admin may
 * also publish the nodes' admin subjects (inspection, chaos) and read the inspection batches.
 */
export function natsPermissions(user: NatsUser, prefixPattern = `${DEFAULT_ROOT}.*`): UserPermissions {
  if (user === PEER_USER) {
    return {
      publish: [`${prefixPattern}.>`, `${INBOX_ROOT}.>`],
      subscribe: [`${prefixPattern}.>`, `${inboxPrefix(PEER_USER)}.>`, '$SRV.>'],
      allowResponses: true,
    };
  }
  return {
    publish: [
      ...apiServices(prefixPattern),
      ...(user === ADMIN_USER ? [`${prefixPattern}.node.*.admin.*`] : []),
      '$SRV.>',
      APP_SUBJECTS,
    ],
    subscribe: [
      `${inboxPrefix(user)}.>`,
      `${prefixPattern}.watch.*.*`,
      `${prefixPattern}.leader`,
      ...(user === ADMIN_USER ? [`${prefixPattern}.inspect.*`] : []),
      APP_SUBJECTS,
    ],
    allowResponses: true,
  };
}
