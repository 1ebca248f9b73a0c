/**
 * The `ensemble` command.
 *
 *   ensemble up [--nodes 3|5] [--nats-cluster]      a local cluster: NATS + nodes, Ctrl-C stops it
 *   ensemble node --id n1 --data ./data/n1 --nats nats://127.0.0.1:4222 --initial-cluster n1,n2,n3
 *   ensemble get|put|del|ls|range|txn|status|members|transfer …   client commands
 *   ensemble lock|elect|services …                 recipes (cli-recipes.ts)
 *   ensemble inspect [--port 4280] [--open]          the cluster's machines live in a browser
 *
 * Client commands print for a person by default and one JSON document with `--json`. Options
 * also come from the environment: ENSEMBLE_NATS, ENSEMBLE_CLUSTER, ENSEMBLE_USER,
 * ENSEMBLE_PASSWORD (client), and for `node` a JSON config file (`--config`).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { type Client, type ConnectOptions, connect } from '../client/index.ts';
import { decodeReply, encodeEnvelope, inboxPrefix, type KeyValue, subjects } from '../protocol/index.ts';
import { wholeArg } from './args.ts';
import {
  electCommand,
  Interrupts,
  listenCommand,
  lockCommand,
  servicesCommand,
  watchServicesCommand,
} from './cli-recipes.ts';
import { userPassword } from './nats-server.ts';
import { tlsOf } from './tls.ts';
import { CONNECTION_FILE } from './up-file.ts';

const env = process.env;
const program = new Command()
  .name('ensemble')
  .description('Ensemble: a coordination cluster (Raft on XState, NATS, RocksDB)')
  .showHelpAfterError();

interface ConnectionOpts {
  nats: string;
  cluster: string;
  user: string;
  password?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  json?: boolean;
}

interface ClientOpts extends ConnectionOpts {
  timeout: string;
}

/**
 * Where and as whom to connect, and `--json`. Application commands connect as `client`
 * (`ENSEMBLE_USER`, `ENSEMBLE_PASSWORD`), operator commands as `admin` (`ENSEMBLE_ADMIN_USER`,
 * `ENSEMBLE_ADMIN_PASSWORD`); the password defaults to the user's development password.
 */
function connectionOptions(cmd: Command, as: 'client' | 'admin' = 'client'): Command {
  const env = as === 'admin' ? 'ENSEMBLE_ADMIN' : 'ENSEMBLE';
  return cmd
    .addOption(
      new Option('--nats <urls>', 'NATS server URLs, comma-separated')
        .env('ENSEMBLE_NATS')
        .default('nats://127.0.0.1:4222'),
    )
    .addOption(new Option('--cluster <name>', 'cluster name').env('ENSEMBLE_CLUSTER').default('dev'))
    .addOption(new Option('--user <user>', 'NATS user').env(`${env}_USER`).default(as))
    .addOption(
      new Option('--password <password>', 'NATS password (default: the development password)').env(
        `${env}_PASSWORD`,
      ),
    )
    .addOption(
      new Option('--tls-ca <file>', 'CA of the NATS servers (PEM): connect with TLS').env('ENSEMBLE_TLS_CA'),
    )
    .addOption(new Option('--tls-cert <file>', 'certificate for mutual TLS (PEM)').env('ENSEMBLE_TLS_CERT'))
    .addOption(new Option('--tls-key <file>', 'its private key (PEM)').env('ENSEMBLE_TLS_KEY'))
    .option('--json', 'print JSON for programs');
}

/** The options of a one-shot command: the connection's and a request deadline. */
function clientOptions(cmd: Command, as: 'client' | 'admin' = 'client'): Command {
  return connectionOptions(cmd, as).option(
    '--timeout <ms>',
    'deadline per request, retries included',
    '10000',
  );
}

/** Connects as the options say (the development password of the user unless one is given). */
function connectWith(
  o: ConnectionOpts,
  extra: Omit<ConnectOptions, 'servers' | 'cluster' | 'user' | 'pass'> = {},
) {
  const pass = passwordOf(o);
  const tls = tlsOf(o);
  return connect({
    servers: o.nats.split(','),
    cluster: o.cluster,
    user: o.user,
    ...(pass ? { pass } : {}),
    ...(tls ? { tls } : {}),
    ...extra,
  });
}

/**
 * The password of `--password` (or ENSEMBLE_PASSWORD / ENSEMBLE_ADMIN_PASSWORD), else the one
 * nats.conf reads for that user (`ENSEMBLE_<USER>_PASSWORD`, as `npm start` was given), else the
 * user's development default.
 */
function passwordOf(o: { user: string; password?: string }): string | undefined {
  return o.password ?? userPassword(o.user);
}

/** A positive number of milliseconds from an option; anything else ends the command (exit 1). */
function millis(option: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0)
    fail(new TypeError(`${option} must be a positive number of ms, got ${v}`));
  return n;
}

/**
 * Runs a command that lasts until it is interrupted or done (lock, elect, --watch): connects with
 * a session of `ttlMs` (and a request deadline, default 10 s), hands `run` the client and the
 * process's interrupts, then closes the client (ending the session and its keys at once) and
 * exits with the code `run` returned, so no timer or connection can keep the process waiting.
 */
async function untilDone(
  o: ConnectionOpts,
  session: { readonly ttlMs?: number | undefined; readonly requestTimeoutMs?: number | undefined },
  run: (c: Client, stop: Interrupts) => Promise<number>,
): Promise<never> {
  const stop = new Interrupts();
  const c = await connectWith(o, {
    ...(session.ttlMs === undefined ? {} : { sessionTtlMs: session.ttlMs }),
    ...(session.requestTimeoutMs === undefined ? {} : { timeoutMs: session.requestTimeoutMs }),
  }).catch(fail);
  let code: number;
  try {
    code = await run(c, stop);
  } catch (err) {
    await c.close().catch(() => {});
    fail(err);
  }
  await c.close().catch(() => {});
  process.exit(code);
}

async function withClient<T>(o: ClientOpts, session: boolean, fn: (c: Client) => Promise<T>): Promise<void> {
  const c = await connectWith(o, { timeoutMs: wholeArg('--timeout', o.timeout, 1)!, session });
  try {
    const result = await fn(c);
    if (o.json) console.log(JSON.stringify(result, jsonBytes));
  } finally {
    await c.close();
  }
}

/** Byte values as UTF-8 text when they are, else base64 with an encoding marker. */
function jsonBytes(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array || (value && (value as { type?: string }).type === 'Buffer')) {
    const b = value instanceof Uint8Array ? value : Uint8Array.from((value as { data: number[] }).data);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(b);
    } catch {
      return { base64: Buffer.from(b).toString('base64') };
    }
  }
  return value;
}

const text = (v: Uint8Array) => new TextDecoder().decode(v);
const describe = (kv: KeyValue) =>
  `${kv.key} = ${text(kv.value)}    (version ${kv.version}, created ${kv.createRevision}, modified ${kv.modRevision}${kv.session ? `, ephemeral of ${kv.session}` : ''})`;

function fail(err: unknown): never {
  const e = err as { code?: string; message?: string };
  console.error(`ensemble: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}`);
  process.exit(1);
}

program
  .command('node')
  .description('run one node process')
  .option('--id <id>', 'node id (a subject token)', env.ENSEMBLE_NODE_ID)
  .option('--data <dir>', 'data directory', env.ENSEMBLE_DATA)
  .option('--nats <urls>', 'NATS server URLs, comma-separated', env.ENSEMBLE_NATS ?? 'nats://127.0.0.1:4222')
  .option(
    '--initial-cluster <ids>',
    'members of a new cluster (only used on an empty data directory)',
    env.ENSEMBLE_INITIAL_CLUSTER,
  )
  .option('--join', 'start empty and wait to be added as a member', false)
  .option('--cluster <name>', 'cluster name', env.ENSEMBLE_CLUSTER ?? 'dev')
  .option('--prefix <subject>', 'subject prefix (default ensemble.<cluster>)')
  .option('--http-port <port>', 'port of /metrics and /health (0: any)', env.ENSEMBLE_HTTP_PORT ?? '0')
  .option('--tick-ms <ms>', 'Raft tick', env.ENSEMBLE_TICK_MS)
  .option('--election-ticks <n>', 'election timeout in ticks')
  .option('--snapshot-threshold <n>', 'entries applied between snapshots')
  .option('--chaos', 'serve P.node.<id>.admin.stopActor for chaos tests (admin only)', false)
  .option('--inspect', 'publish inspection batches from the start (ensemble inspect shows them)', false)
  .option('--inspect-rate <n>', 'inspection events per second at most (default 200)')
  .option(
    '--tree-write-delay-ms <ms>',
    'gather applied changes this long before writing them to the key tree',
  )
  .option(
    '--history-retention <revisions>',
    'revisions of history kept: the leader compacts below the newest this many (default 10000; 0: keep all)',
  )
  .option('--quota-backend-bytes <n>', 'bytes the key tree may hold, history included (default 2 GiB)')
  .option('--max-sessions-per-user <n>', 'open sessions one NATS user may have (default 10000)')
  .option('--max-keys-per-session <n>', 'ephemeral keys one session may own (default 10000)')
  .option('--max-keys-per-user <n>', 'live keys one NATS user may have created (default 1000000)')
  .option(
    '--rate-per-user <n>',
    'requests per second one user may send to this node (default 50000; 0: none)',
  )
  .option('--admins <users>', 'NATS users treated as admins, comma-separated (default admin)')
  .option('--tls-ca <file>', 'CA of the NATS servers (PEM): connect with TLS', env.ENSEMBLE_TLS_CA)
  .option('--tls-cert <file>', 'certificate for mutual TLS (PEM)', env.ENSEMBLE_TLS_CERT)
  .option('--tls-key <file>', 'its private key (PEM)', env.ENSEMBLE_TLS_KEY)
  .option('--config <file>', 'JSON file with any of these options')
  .action(async (o) => {
    const file = o.config ? (JSON.parse(readFileSync(o.config, 'utf8')) as Record<string, unknown>) : {};
    // Loaded only here: client commands start without RocksDB, metrics and the node runtime.
    const { runNode } = await import('./node-main.ts');
    await runNode({
      ...file,
      ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)),
    }).catch(fail);
  });

program
  .command('up')
  .description(
    'start nats-server and a local cluster (a node that exits is restarted); Ctrl-C stops everything',
  )
  .option('--nodes <n>', 'how many nodes', '3')
  .option('--data <dir>', 'where node data lives', './data')
  .option('--cluster <name>', 'cluster name', 'dev')
  .option('--port <port>', 'NATS client port', '4222')
  .option('--nats-cluster', 'run 3 NATS servers joined by routes (no single point of failure)', false)
  .option('--chaos', 'start the nodes with --chaos (ensemble admin stop-actor)', false)
  .option('--tls', 'TLS on NATS for clients and routes, with a local CA made in <data>/tls', false)
  .option(
    '--inspect',
    'start the nodes with --inspect and serve the inspector page (ensemble inspect)',
    false,
  )
  .option('--inspect-port <port>', 'port of the inspector page (default 4280, else any free one)')
  .option('--json', 'print where everything is as JSON')
  .action((o) => import('./up.ts').then(({ runUp }) => runUp(o)).catch(fail));

clientOptions(program.command('get <key>').description('read a key'))
  .option('--serializable', 'local read on whichever node answers (may be stale)')
  .option('--revision <rev>', 'read at a past revision')
  .action((key: string, o) =>
    withClient(o, false, async (c) => {
      const kv = await c.get(key, {
        ...(o.serializable ? { serializable: true } : {}),
        ...(o.revision ? { revision: wholeArg('--revision', o.revision, 1) } : {}),
      });
      if (!o.json) console.log(kv === null ? `${key} not found` : describe(kv));
      return kv;
    }).catch(fail),
  );

clientOptions(program.command('put <key> <value>').description('write a key'))
  .option('--if-absent', 'fail with EXISTS if the key exists')
  .option('--if-version <n>', 'fail with VERSION_MISMATCH unless the key has this version')
  .action((key: string, value: string, o) =>
    withClient(o, true, async (c) => {
      const r = await c.put(key, value, {
        ...(o.ifAbsent ? { ifAbsent: true } : {}),
        ...(o.ifVersion !== undefined ? { ifVersion: wholeArg('--if-version', o.ifVersion) } : {}),
      });
      if (!o.json) console.log(`${key} written: version ${r.version}, revision ${r.revision}`);
      return r;
    }).catch(fail),
  );

clientOptions(program.command('del <key>').description('delete a key (or a subtree)'))
  .option('--subtree', 'also delete every key below it')
  .action((key: string, o) =>
    withClient(o, true, async (c) => {
      const deleted = await c.delete(key, o.subtree ? { subtree: true } : {});
      if (!o.json) console.log(`${deleted} key${deleted === 1 ? '' : 's'} deleted`);
      return { deleted };
    }).catch(fail),
  );

clientOptions(program.command('ls [path]').description('list the children of a path'))
  .option('--limit <n>', 'at most this many names')
  .action((path: string | undefined, o) =>
    withClient(o, false, async (c) => {
      const r = await c.list(path ?? '/', o.limit ? { limit: wholeArg('--limit', o.limit, 1)! } : {});
      if (!o.json) {
        for (const n of r.names) console.log(n);
        if (r.more) console.log('… (more: use --limit and the last name)');
      }
      return r;
    }).catch(fail),
  );

clientOptions(program.command('range <prefix>').description('keys starting with a prefix'))
  .option('--limit <n>', 'at most this many keys')
  .action((prefix: string, o) =>
    withClient(o, false, async (c) => {
      const r = await c.range(prefix, o.limit ? { limit: wholeArg('--limit', o.limit, 1)! } : {});
      if (!o.json) for (const kv of r.kvs) console.log(describe(kv));
      return r;
    }).catch(fail),
  );

clientOptions(
  program
    .command('txn <spec>')
    .description(
      'a transaction from JSON: {"compare":[{"key":"/a","target":"version","result":"eq","value":0}],"success":[{"op":"put","key":"/a","value":"x"}],"failure":[]}',
    ),
).action((spec: string, o) =>
  withClient(o, true, async (c) => {
    const t = JSON.parse(spec, (k, v) =>
      k === 'value' && typeof v === 'string' ? new TextEncoder().encode(v) : v,
    );
    const r = await c.txn(t);
    if (!o.json)
      console.log(`txn ${r.succeeded ? 'succeeded' : 'failed its compares'} at revision ${r.revision}`);
    return r;
  }).catch(fail),
);

clientOptions(program.command('status').description('status of the cluster, node by node'))
  .option('--node <id>', 'only this node')
  .action((o) =>
    withClient(o, false, async (c) => {
      const first = await c.status(o.node);
      const ids = o.node ? [o.node] : [...first.members.voters, ...first.members.learners];
      const all = await Promise.all(
        ids.map((id) => c.status(id).catch((e: Error) => ({ id, error: e.message }))),
      );
      if (!o.json) {
        console.log('node   role       term   leader  commit  applied  revision');
        for (const s of all) {
          if ('error' in s) console.log(`${s.id.padEnd(6)} unreachable: ${s.error}`);
          else
            console.log(
              `${s.id.padEnd(6)} ${s.role.padEnd(10)} ${String(s.term).padEnd(6)} ${String(s.leader ?? '-').padEnd(7)} ${String(s.commitIndex).padEnd(7)} ${String(s.appliedIndex).padEnd(8)} ${s.revision}`,
            );
        }
      }
      return all;
    }).catch(fail),
  );

clientOptions(
  program.command('members [action] [id]').description('list members, or add|promote|remove <id>'),
  'admin',
).action((action: string | undefined, id: string | undefined, o) =>
  withClient(o, false, async (c) => {
    if (action === undefined) {
      const s = await c.status();
      if (!o.json) {
        console.log(`voters:   ${s.members.voters.join(', ')}`);
        console.log(`learners: ${s.members.learners.join(', ') || '-'}`);
      }
      return s.members;
    }
    if (id === undefined) throw new TypeError(`members ${action} needs a node id`);
    const r =
      action === 'add'
        ? await c.memberAdd(id)
        : action === 'promote'
          ? await c.memberPromote(id)
          : action === 'remove'
            ? await c.memberRemove(id)
            : fail(new TypeError(`unknown action ${action}: add, promote or remove`));
    if (!o.json)
      console.log(
        `done at index ${r.index}: voters ${r.members.voters.join(', ')}; learners ${r.members.learners.join(', ') || '-'}`,
      );
    return r;
  }).catch(fail),
);

clientOptions(
  program.command('watch <key>').description('stream changes of a key, a prefix or a subtree until Ctrl-C'),
)
  .option('--prefix', 'every key starting with <key>')
  .option('--subtree', '<key> and every key below it')
  .option('--from <rev>', 'replay from this revision (default: from now)')
  .option('--prev', 'show previous values')
  .option('--progress', 'also show progress notifications while idle')
  .action(async (key: string, o) => {
    const c = await connectWith(o).catch(fail);
    const target = o.prefix ? { prefix: key } : o.subtree ? { subtree: key } : { key };
    const w = c.watch(target, {
      ...(o.from ? { fromRevision: wholeArg('--from', o.from, 1)! } : {}),
      ...(o.prev ? { prevValue: true } : {}),
      ...(o.progress ? { progressNotify: true } : {}),
    });
    const stop = async () => {
      await w.return?.();
      await c.close();
      process.exit(0);
    };
    process.on('SIGINT', () => void stop());
    process.on('SIGTERM', () => void stop());
    if (!o.json)
      console.error(`watching ${o.prefix ? 'prefix ' : o.subtree ? 'subtree ' : ''}${key} (Ctrl-C stops)`);
    try {
      for await (const e of w) {
        if (o.json) console.log(JSON.stringify(e, jsonBytes));
        else if (e.type === 'progress') console.log(`progress: up to revision ${e.revision}`);
        else
          console.log(
            `${String(e.revision).padStart(6)} ${e.type.padEnd(6)} ${e.key}${e.value ? ` = ${text(e.value)}` : ''}${e.prevValue ? ` (was ${text(e.prevValue)})` : ''}`,
          );
      }
    } catch (err) {
      fail(err);
    }
  });

clientOptions(
  program.command('sessions').description('open sessions: id, TTL, ephemeral keys'),
  'admin',
).action((o) =>
  withClient(o, false, async (c) => {
    const s = await c.status();
    if (!o.json) {
      if (s.sessions.length === 0) console.log('no open sessions');
      for (const x of s.sessions)
        console.log(`${x.id}  ttl ${x.ttlMs} ms  ${x.ephemeralKeys} ephemeral keys`);
    }
    return s.sessions;
  }).catch(fail),
);

clientOptions(
  program.command('compact <revision>').description('drop history at and below a revision'),
  'admin',
).action((rev: string, o) =>
  withClient(o, false, async (c) => {
    const r = await c.compact(wholeArg('<revision>', rev, 1)!);
    if (!o.json) console.log(`history compacted up to revision ${r.compactRevision}`);
    return r;
  }).catch(fail),
);

clientOptions(
  program.command('transfer [to]').description('hand leadership to another voter'),
  'admin',
).action((to: string | undefined, o) =>
  withClient(o, false, async (c) => {
    const r = await c.transferLeader(to);
    if (!o.json) console.log(`leader is now ${r.leader}`);
    return r;
  }).catch(fail),
);

const auth = program.command('auth').description('who may do what: key grants per NATS user (admin)');
clientOptions(
  auth
    .command('grant <user> <prefix>')
    .description('let <user> read and write keys starting with <prefix> (/ for all)')
    .option('--read-only', 'read only')
    .option('--write-only', 'write only'),
  'admin',
).action((user: string, prefix: string, o) =>
  withClient(o, false, async (c) => {
    const perm = { read: !o.writeOnly, write: !o.readOnly };
    if (!perm.read && !perm.write) throw new TypeError('--read-only and --write-only exclude each other');
    const r = await c.authGrant(user, prefix, perm);
    if (!o.json)
      console.log(
        `${user} may ${[perm.read && 'read', perm.write && 'write'].filter(Boolean).join(' and ')} ${prefix}…`,
      );
    return r;
  }).catch(fail),
);
clientOptions(
  auth.command('revoke <user> <prefix>').description('drop the grant of <user> on <prefix>'),
  'admin',
).action((user: string, prefix: string, o) =>
  withClient(o, false, async (c) => {
    const r = await c.authRevoke(user, prefix);
    if (!o.json)
      console.log(r.revoked ? `revoked ${user} on ${prefix}` : `${user} had no grant on ${prefix}`);
    return r;
  }).catch(fail),
);
clientOptions(auth.command('list [user]').description('grants, by user then prefix'), 'admin').action(
  (user: string | undefined, o) =>
    withClient(o, false, async (c) => {
      const r = await c.authList(user);
      if (!o.json) {
        if (r.grants.length === 0) console.log('no grants');
        for (const g of r.grants)
          console.log(`${g.user.padEnd(12)} ${g.read ? 'r' : '-'}${g.write ? 'w' : '-'}  ${g.prefix}`);
      }
      return r.grants;
    }).catch(fail),
);

const admin = program.command('admin').description('operator tools that need the admin credential');
connectionOptions(
  admin
    .command('stop-actor <node> <actor>')
    .description(
      'chaos: stop one actor of a node started with --chaos (transport, api, sessions, watches, ticker restart; raft, executor stop the node)',
    ),
  'admin',
).action(async (node: string, actor: string, o) => {
  const user = o.user as string;
  const pass = passwordOf(o);
  const { connect: natsConnect } = await import('@nats-io/transport-node');
  const nc = await natsConnect({
    servers: String(o.nats).split(','),
    user,
    ...(pass ? { pass } : {}),
    ...(tlsOf(o) ? { tls: tlsOf(o) } : {}),
    inboxPrefix: inboxPrefix(user),
  }).catch(fail);
  try {
    const s = subjects({ cluster: o.cluster });
    const msg = await nc.request(
      s.nodeAdmin(node, 'stopActor'),
      encodeEnvelope({ actor }, { cluster: o.cluster }),
      {
        timeout: 5000,
      },
    );
    const r = decodeReply<{ actor: string; policy: string }>(msg.data, { cluster: o.cluster });
    if (!r.ok) fail(r.error);
    if (o.json) console.log(JSON.stringify(r.result));
    else
      console.log(
        `${node}: stopped ${r.result.actor} (${r.result.policy === 'restart' ? 'it restarts' : 'the node stops: crash-only'})`,
      );
  } catch (err) {
    fail(
      (err as { isNoResponders?: () => boolean }).isNoResponders?.()
        ? new Error(`${node} does not answer admin requests: is it running with --chaos?`)
        : err,
    );
  } finally {
    await nc.close();
  }
});

connectionOptions(
  program
    .command('inspect')
    .description(
      "watch every node's machines live in a browser, as statecharts: serves a page on 127.0.0.1 and keeps every member's inspection stream on until Ctrl-C",
    ),
  'admin',
)
  .option('--port <port>', 'port of the page (default 4280, else any free one; 0: any)')
  .option('--open', 'open the page in a browser')
  .option('--no-open', 'only print the URL (the default)')
  .option(
    '--stately <url>',
    "also forward every event to a Stately relay (@statelyai/inspect/server's createInspectorServer), e.g. ws://127.0.0.1:8080",
  )
  .action((o) =>
    import('./inspect/run.ts')
      .then(({ runInspect }) =>
        runInspect({
          servers: String(o.nats).split(','),
          cluster: o.cluster,
          user: o.user,
          pass: passwordOf(o),
          tls: tlsOf(o),
          port: o.port === undefined ? undefined : wholeArg('--port', o.port, 0),
          stately: o.stately,
          open: o.open === true,
          json: Boolean(o.json),
        }),
      )
      .catch(fail),
  );

connectionOptions(
  program
    .command('lock <name> [command...]')
    .description(
      'take a lock (FIFO, fenced); with a command after --, run it holding the lock (env ENSEMBLE_LOCK_KEY, ENSEMBLE_LOCK_TOKEN) and exit with its code; without, print key and token and hold until Ctrl-C',
    ),
)
  .option('--timeout <ms>', 'give up waiting for the lock after this long (exit code 1)')
  .option('--ttl <ms>', 'session TTL: how long the lock outlives this process should it die', '10000')
  .action((name: string, command: string[], o) =>
    untilDone(o, { ttlMs: millis('--ttl', o.ttl) }, (c, stop) =>
      lockCommand(c, name, command, { json: o.json, timeoutMs: millis('--timeout', o.timeout) }, stop),
    ).catch(fail),
  );

connectionOptions(
  program
    .command('elect <name> [proposal]')
    .description(
      'campaign with a proposal and hold the leadership until Ctrl-C (then resign); or --listen: print the leader and every change',
    ),
)
  .option('--listen', 'follow the leader instead of campaigning')
  .option('--timeout <ms>', 'give up campaigning after this long (exit code 1)')
  .option('--ttl <ms>', 'session TTL: how long the leadership outlives this process should it die', '10000')
  .action((name: string, proposal: string | undefined, o) => {
    if (o.listen && proposal !== undefined)
      fail(new TypeError('elect: give a proposal or --listen, not both'));
    if (!o.listen && proposal === undefined) fail(new TypeError('elect: give a proposal, or --listen'));
    return untilDone(o, { ttlMs: millis('--ttl', o.ttl) }, (c, stop) =>
      proposal === undefined
        ? listenCommand(c, name, o, stop)
        : electCommand(c, name, proposal, { json: o.json, timeoutMs: millis('--timeout', o.timeout) }, stop),
    ).catch(fail);
  });

clientOptions(
  program
    .command('services [service]')
    .description('registered instances (of one service): address, health, load, weight'),
)
  .option('--watch', "print the service's live set each time it changes, until Ctrl-C")
  .action((service: string | undefined, o) => {
    if (!o.watch) return withClient(o, false, (c) => servicesCommand(c, service, o)).catch(fail);
    if (service === undefined) fail(new TypeError('services --watch: name the service to watch'));
    return untilDone(o, { requestTimeoutMs: millis('--timeout', o.timeout) }, (c, stop) =>
      watchServicesCommand(c, service, o, stop),
    ).catch(fail);
  });

// Where `ensemble up` left its connection details (NATS URLs, cluster, TLS CA), options not given
// on the command line or in the environment come from there: `up --nats-cluster` or `up --tls`
// need no flags afterwards.
program.hook('preAction', (_root, action) => {
  const file = process.env.ENSEMBLE_CONNECTION ?? path.join('data', CONNECTION_FILE);
  let saved: { nats?: unknown; cluster?: unknown; tlsCa?: unknown };
  try {
    saved = JSON.parse(readFileSync(file, 'utf8')) as typeof saved;
  } catch {
    return;
  }
  const fill = (name: string, value: unknown) => {
    if (typeof value !== 'string' || !action.options.some((o) => o.attributeName() === name)) return;
    const source = action.getOptionValueSource(name);
    if (source === undefined || source === 'default') action.setOptionValueWithSource(name, value, 'config');
  };
  fill('nats', Array.isArray(saved.nats) ? saved.nats.join(',') : saved.nats);
  fill('cluster', saved.cluster);
  fill('tlsCa', saved.tlsCa);
});

await program.parseAsync();
