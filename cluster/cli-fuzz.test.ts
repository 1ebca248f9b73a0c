/**
 * The command line, fuzzed with fast-check. cli.ts exports nothing and parses `process.argv` when
 * it is loaded, so the parser is driven as a user drives it: the built `bin/ensemble.mjs` with
 * arbitrary arguments (commands, options valid and not, arbitrary strings, `--`), pointed at a
 * NATS port nobody listens on, so a command that parses goes as far as connecting and stops
 * there. Whatever the arguments, the process ends promptly with 0 or 1 and a clear message
 * (`ensemble: …` from the CLI, `error: …` from commander), never a stack trace. `node` and `up`
 * are left out: with arguments that parse they start a node or a whole cluster.
 *
 * In process: the helpers that read option values before anything connects (isLoopback, tlsOf,
 * runNode's checks, which throw before it starts a node) and the services table.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import fc from 'fast-check';
import type { Instance } from '../client/index.ts';
import { instanceTable } from './cli-recipes.ts';
import { DEV_PASSWORDS } from './nats-server.ts';
import { isLoopback, runNode } from './node-main.ts';
import { tlsOf } from './tls.ts';

fc.configureGlobal({ includeErrorInReport: true });

const BIN = fileURLToPath(new URL('../bin/ensemble.mjs', import.meta.url));
const BUNDLE = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
/** Nobody listens on port 1 (and nobody unprivileged can): connecting fails at once. */
const NOWHERE = 'nats://127.0.0.1:1';

interface Run {
  readonly code: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs `ensemble <args>`; kills it after `limitMs` (the result then says so: signal SIGKILL). */
function ensemble(args: readonly string[], limitMs = 10_000): Promise<Run> {
  const t0 = performance.now();
  const env: NodeJS.ProcessEnv = { ...process.env, ENSEMBLE_NATS: NOWHERE };
  for (const k of Object.keys(env)) if (k.startsWith('ENSEMBLE_') && k !== 'ENSEMBLE_NATS') delete env[k];
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
  return new Promise((resolve) =>
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0 });
    }),
  );
}

/** What every run must show: a prompt end, 0 or 1, a clear message, no stack trace. */
function checkRun(args: readonly string[], r: Run): string | null {
  const shown = `ensemble ${JSON.stringify(args)} -> code ${r.code} signal ${r.signal}\n${r.stderr.slice(0, 800)}`;
  if (r.signal !== null) return `did not end by itself: ${shown}`;
  if (r.code !== 0 && r.code !== 1) return `exit code ${r.code}: ${shown}`;
  if (/\n\s+at .+:\d+:\d+\)?\n/.test(`${r.stderr}\n`) || /\bat file:\/\//.test(r.stderr))
    return `a stack trace: ${shown}`;
  if (/Unhandled|uncaught|ERR_[A-Z_]+\]/i.test(r.stderr)) return `an unhandled error: ${shown}`;
  // `ensemble: …` (the CLI), `error: …` (commander), or commander's help (no command given).
  if (r.code === 1 && !/^((ensemble|error): \S|Usage: ensemble)/.test(r.stderr.trimStart()))
    return `no clear message: ${shown}`;
  if (r.code === 0 && `${r.stdout}${r.stderr}`.trim() === '') return `nothing said: ${shown}`;
  return null;
}

// ---------------------------------------------------------------------------------------------
// Arguments

const COMMANDS = [
  ['get'],
  ['put'],
  ['del'],
  ['ls'],
  ['range'],
  ['txn'],
  ['status'],
  ['members'],
  ['members', 'add'],
  ['members', 'frob'],
  ['watch'],
  ['sessions'],
  ['compact'],
  ['transfer'],
  ['auth', 'grant'],
  ['auth', 'revoke'],
  ['auth', 'list'],
  ['auth'],
  ['admin', 'stop-actor'],
  ['lock'],
  ['elect'],
  ['services'],
  ['help'],
  ['nonsense'],
  [],
];

const OPTIONS = [
  '--json',
  '--timeout',
  '--ttl',
  '--listen',
  '--prefix',
  '--subtree',
  '--from',
  '--prev',
  '--progress',
  '--serializable',
  '--revision',
  '--if-absent',
  '--if-version',
  '--limit',
  '--node',
  '--watch',
  '--read-only',
  '--write-only',
  '--cluster',
  '--user',
  '--password',
  '--help',
  '-h',
  '--',
  '--bogus',
  '-x',
];

/** Values, odd ones included: empty, negative, huge, not numbers, JSON that is not a txn. */
const VALUES = [
  '',
  ' ',
  '0',
  '-1',
  '-5',
  '1e999',
  'NaN',
  'Infinity',
  '0x10',
  '1.5',
  '9007199254740993',
  '/',
  '/a',
  'a',
  '{',
  '{}',
  '[]',
  '{"compare":5}',
  'null',
  '--',
  '-',
  'é',
  '\u0000',
];

/** Tokens that would leave the sandbox: another NATS, TLS files, configuration files. */
const unsafe = (s: string) => /^-+(nats|tls|config|data|port)/.test(s);

const token = fc
  .oneof(
    { weight: 4, arbitrary: fc.constantFrom(...OPTIONS) },
    { weight: 4, arbitrary: fc.constantFrom(...VALUES) },
    { weight: 3, arbitrary: fc.string({ maxLength: 12 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.constantFrom(...OPTIONS), fc.string({ maxLength: 6 }))
        .map(([o, v]) => `${o}=${v}`),
    },
  )
  .filter((s) => !unsafe(s) && !s.includes('\u0000'));

const argv = fc
  .tuple(fc.constantFrom(...COMMANDS), fc.array(token, { maxLength: 6 }))
  .map(([command, rest]) => [...command, ...rest]);

const bundleBuilt = existsSync(BUNDLE);
/** Runs per half (each starts a process, about a quarter of a second): `CLI_FUZZ_RUNS` for more. */
const RUNS = Number(process.env.CLI_FUZZ_RUNS) || 12;

for (const half of [0, 1]) {
  test(`ensemble with arbitrary arguments (${half + 1}/2): ends at once with 0 or 1 and a clear message, never a stack trace`, async (t) => {
    t.true(bundleBuilt, `${BUNDLE} is missing: run npm run build`);
    if (!bundleBuilt) return;
    t.timeout(RUNS * 3000 + 30_000);
    let ran = 0;
    await fc.assert(
      fc.asyncProperty(argv, async (args) => {
        const r = await ensemble(args);
        ran++;
        const problem = checkRun(args, r);
        if (problem !== null) throw new Error(problem);
      }),
      { numRuns: RUNS },
    );
    t.true(ran >= RUNS, `${ran} runs`);
  });
}

test('ensemble: option values are checked before connecting where the CLI checks them', async (t) => {
  t.true(bundleBuilt, `${BUNDLE} is missing: run npm run build`);
  if (!bundleBuilt) return;
  const cases: [string[], RegExp][] = [
    [['lock', 'l', '--ttl', '-5'], /^ensemble: --ttl must be a positive number of ms, got -5/],
    [['lock', 'l', '--ttl', 'abc'], /^ensemble: --ttl must be a positive number of ms/],
    [['elect', 'e', 'p', '--ttl', '0'], /^ensemble: --ttl must be a positive number of ms/],
    [['lock', 'l', '--ttl', ''], /^ensemble: --ttl must be a positive number of ms/],
    [['elect', 'e'], /^ensemble: .*give a proposal, or --listen/],
    [['elect', 'e', 'p', '--listen'], /^ensemble: .*not both/],
    [['services', '--watch'], /^ensemble: .*name the service to watch/],
    [['get'], /^error: missing required argument 'key'/],
    [['get', '/a', '--bogus'], /^error: unknown option '--bogus'/],
    [['frobnicate'], /^error: unknown command 'frobnicate'/],
    [['get', '/a'], /^ensemble: connection refused/],
  ];
  const runs = await Promise.all(cases.map(([args]) => ensemble(args)));
  runs.forEach((r, i) => {
    const [args, expected] = cases[i]!;
    t.is(checkRun(args, r), null);
    t.is(r.code, 1, args.join(' '));
    t.regex(r.stderr, expected, args.join(' '));
  });
});

// ---------------------------------------------------------------------------------------------
// In process: what reads option values before anything connects

test('isLoopback takes any string: a boolean, true exactly for 127/8, ::1 and localhost', (t) => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.webUrl()), (s) => {
      const r = isLoopback(s);
      if (typeof r !== 'boolean') throw new Error(`not a boolean for ${JSON.stringify(s)}`);
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(
      fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255)),
      fc.integer({ min: 1, max: 65535 }),
      fc.constantFrom('nats://', 'tls://', ''),
      ([a, b, c], port, scheme) => {
        if (!isLoopback(`${scheme}127.${a}.${b}.${c}:${port}`))
          throw new Error(`127.${a}.${b}.${c} not loopback`);
        if (!isLoopback(`${scheme}localhost:${port}`)) throw new Error('localhost not loopback');
        if (isLoopback(`${scheme}${a + 1 === 127 ? 128 : a + 1}.${b}.${c}.1:${port}`))
          throw new Error('a remote host is loopback');
      },
    ),
    { numRuns: 500 },
  );
  t.pass();
});

test('tlsOf takes any combination of option values: undefined without files, else exactly the files given', (t) => {
  const v = fc.option(fc.string({ maxLength: 8 }), { nil: undefined });
  fc.assert(
    fc.property(v, v, v, (tlsCa, tlsCert, tlsKey) => {
      const a = {
        ...(tlsCa !== undefined ? { tlsCa } : {}),
        ...(tlsCert !== undefined ? { tlsCert } : {}),
        ...(tlsKey !== undefined ? { tlsKey } : {}),
      };
      const r = tlsOf(a);
      if (!tlsCa && !tlsCert && !tlsKey) {
        if (r !== undefined) throw new Error('TLS without files');
        return;
      }
      const expected = {
        ...(tlsCa ? { caFile: tlsCa } : {}),
        ...(tlsCert ? { certFile: tlsCert } : {}),
        ...(tlsKey ? { keyFile: tlsKey } : {}),
      };
      if (JSON.stringify(r) !== JSON.stringify(expected))
        throw new Error(`${JSON.stringify(r)} for ${JSON.stringify(a)}`);
    }),
    { numRuns: 500 },
  );
  t.pass();
});

/** A quota value Number() does not read as a non-negative number. */
const badQuota = fc
  .oneof(fc.string({ maxLength: 8 }), fc.constantFrom('-1', 'NaN', 'abc', '-0.5', '1e999', '-Infinity'))
  .filter((s) => {
    const n = Number(s);
    return !(Number.isSafeInteger(n) && n >= 1 && s.trim() !== '');
  });

test('runNode refuses bad arguments with a TypeError before it starts anything', async (t) => {
  const quotaFlags = ['quotaBackendBytes', 'maxSessionsPerUser', 'maxKeysPerSession', 'ratePerUser'] as const;
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        // Missing id or data.
        fc.record({ id: fc.constantFrom(undefined, ''), data: fc.string() }),
        fc.record({ id: fc.string({ minLength: 1 }), data: fc.constantFrom(undefined, '') }),
        // Neither an initial cluster nor --join.
        fc.record({
          id: fc.constant('n1'),
          data: fc.constant('/nonexistent/x'),
          initialCluster: fc.constantFrom(undefined, '', ',,'),
        }),
        // The public development password for a NATS server off this machine.
        fc.record({
          id: fc.constant('n1'),
          data: fc.constant('/nonexistent/x'),
          initialCluster: fc.constant('n1'),
          nats: fc.constantFrom(
            'nats://10.1.2.3:4222',
            'nats://127.0.0.1:1,nats://example.com:4222',
            'tls://nats.example.org',
          ),
          password: fc.constant(DEV_PASSWORDS.peer),
        }),
        // A quota that is not a non-negative number.
        fc.record({ flag: fc.constantFrom(...quotaFlags), value: badQuota }).map(({ flag, value }) => ({
          id: 'n1',
          data: '/nonexistent/x',
          initialCluster: 'n1',
          nats: NOWHERE,
          password: 'not-the-dev-one',
          [flag]: value,
        })),
      ),
      async (args) => {
        try {
          await runNode(args as Parameters<typeof runNode>[0]);
        } catch (err) {
          if (!(err instanceof TypeError)) throw new Error(`threw ${String(err)}`);
          if (!/--id|--initial-cluster|development password|takes a whole number/.test(err.message))
            throw new Error(`unclear: ${err.message}`);
          return;
        }
        throw new Error(`runNode accepted ${JSON.stringify(args)}`);
      },
    ),
    { numRuns: 300 },
  );
  t.pass();
});

const instance: fc.Arbitrary<Instance> = fc.record({
  service: fc.string({ maxLength: 10 }),
  id: fc.string({ maxLength: 10 }),
  key: fc.string({ maxLength: 10 }),
  address: fc.string({ maxLength: 20 }),
  meta: fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }),
  health: fc.constantFrom('passing', 'warning', 'critical'),
  load: fc.double(),
  weight: fc.double(),
});

test('the services table takes any instances: a header and one line each, every value shown', (t) => {
  fc.assert(
    fc.property(fc.array(instance, { maxLength: 8 }), (list) => {
      const table = instanceTable(list);
      const lines = table.split('\n');
      const multiline = list.some((i) => /[\n\r\u2028\u2029]/.test(JSON.stringify(i)));
      if (!multiline && lines.length !== list.length + 1)
        throw new Error(`${lines.length} lines for ${list.length}`);
      if (!lines[0]!.startsWith('SERVICE')) throw new Error('no header');
      for (const i of list)
        for (const cell of [i.service, i.id, i.address, String(i.load), String(i.weight)])
          if (!table.includes(cell.trimEnd())) throw new Error(`${JSON.stringify(cell)} not shown`);
    }),
    { numRuns: 500 },
  );
  t.pass();
});
