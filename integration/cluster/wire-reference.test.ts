/**
 * The wire reference (protocol/README.md) checked against a real 3-node cluster named `dev`.
 *
 * Every fenced block of the README whose first line is `// request <subject> [as <user>]`,
 * `// message <subject> [as <user>]` (a whole envelope) or `// cbor <subject> [as <user>]` (an
 * envelope in CBOR, as hex bytes; `//` starts a comment on each line) is an example. Then come
 * `// result [($name)]` or `// error [($name)]`, and after a result optionally `// event
 * [($name)]`: the next message (not a heartbeat) in the inbox of the latest watch. The examples
 * are sent in README order, as raw JSON (or the CBOR bytes) over NATS request/reply, as user
 * `client` unless `as admin`, and each reply must match: same keys, same literal values;
 * `<n>` any non-negative integer, `"…"` any string, `[…]` any array. `"$name.field"` (in bodies
 * and replies) and `$name.field` (in subjects) stand for a field of an earlier result named
 * `($name)`; `$leader` and `$follower` for the leader's id and a follower's at the time. Before
 * each example, every node has applied everything the leader committed, so answers from any node
 * are deterministic.
 *
 * Besides: every op of protocol/api.ts has an example, a row in the operations table and a place
 * in the `Ops:` list; the error table names exactly the codes of protocol/errors.ts, and an error
 * example carries exactly the extra fields the table lists for its code.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from '@nats-io/transport-node';
import test from 'ava';
import { ops } from '../../protocol/api.ts';
import { checkPlainCbor, decodeCbor, encodeCbor, encodeJson } from '../../protocol/codec.ts';
import { isErrorCode } from '../../protocol/errors.ts';
import { useCluster } from '../cluster.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const README = path.join(here, '../../protocol/README.md');
const ERRORS = path.join(here, '../../protocol/errors.ts');
const CLUSTER = 'dev';
const PREFIX = `ensemble.${CLUSTER}`;

const cluster = useCluster(test, { label: 'ensemble-wire-reference', cluster: CLUSTER });

// ---------------------------------------------------------------------------------------------
// Reading the README

/** Placeholders in documented replies. */
const ANY_N = '\u0000<n>';
const ANY_A = '\u0000[…]';
const ANY_S = '…';

interface Reply {
  readonly kind: 'result' | 'error';
  readonly name: string | null;
  readonly expected: unknown;
}

interface Example {
  /** Line of the block's first line in the README (1-based). */
  readonly line: number;
  readonly kind: 'request' | 'message' | 'cbor';
  /** As written: `P.…`, with `$…` references. */
  readonly subject: string;
  readonly user: 'client' | 'admin';
  /** The body (`request`), the whole envelope (`message`), or the CBOR bytes (`cbor`). */
  readonly payload: unknown;
  readonly reply: Reply;
  readonly event: { readonly name: string | null; readonly expected: unknown } | null;
}

const HEADER = /^\/\/ (request|message|cbor|result|error|event)\b(.*)$/;
const SENDER = /^ (P\.\S+)(?: as (client|admin))?$/;
const NAMED = /^(?: \(\$([A-Za-z]\w*)\))?$/;

/** JSON with the README's placeholders (`<n>`, `[…]`) and `//` comments outside strings. */
function parseRelaxed(text: string, where: string): unknown {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      out += c;
      if (c === '\\') out += text[++i] ?? '';
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if (text.startsWith('<n>', i)) {
      out += JSON.stringify(ANY_N);
      i += 2;
    } else if (text.startsWith('[…]', i)) {
      out += JSON.stringify(ANY_A);
      i += 2;
    } else if (text.startsWith('//', i)) {
      while (i < text.length && text[i] !== '\n') i++;
      out += '\n';
    } else out += c;
  }
  try {
    return JSON.parse(out);
  } catch (err) {
    throw new Error(`${where}: not JSON: ${(err as Error).message}\n${text}`);
  }
}

function parseHex(text: string, where: string): Uint8Array {
  const hex = text
    .split('\n')
    .map((l) => l.replace(/\/\/.*$/, ''))
    .join('')
    .replace(/\s+/g, '');
  if (!/^(?:[0-9a-f]{2})+$/i.test(hex)) throw new Error(`${where}: not hex bytes`);
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

interface Block {
  readonly line: number;
  readonly lines: readonly string[];
}

function fencedBlocks(md: string): Block[] {
  const blocks: Block[] = [];
  const lines = md.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.startsWith('```')) continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && !lines[end]!.startsWith('```')) end++;
    blocks.push({ line: start + 1, lines: lines.slice(start, end) });
    i = end;
  }
  return blocks;
}

function parseExamples(md: string): Example[] {
  const examples: Example[] = [];
  for (const b of fencedBlocks(md)) {
    const first = b.lines[0]?.match(HEADER);
    if (!first || !['request', 'message', 'cbor'].includes(first[1]!)) continue;
    const where = `README line ${b.line}`;
    // Sections: a header line, then its content up to the next header.
    const sections: { kind: string; rest: string; text: string }[] = [];
    for (const l of b.lines) {
      const h = l.match(HEADER);
      if (h) sections.push({ kind: h[1]!, rest: h[2]!, text: '' });
      else sections[sections.length - 1]!.text += `${l}\n`;
    }
    const [req, rep, ev, ...more] = sections;
    const sender = req!.rest.match(SENDER);
    if (!sender) throw new Error(`${where}: expected "// ${req!.kind} P.<subject> [as <user>]"`);
    if (rep === undefined || (rep.kind !== 'result' && rep.kind !== 'error'))
      throw new Error(`${where}: a request needs a "// result" or "// error" after it`);
    if (more.length > 0 || (ev !== undefined && (ev.kind !== 'event' || rep.kind !== 'result')))
      throw new Error(`${where}: after the result, only one "// event" may follow`);
    const named = (s: { rest: string }) => {
      const m = s.rest.match(NAMED);
      if (!m) throw new Error(`${where}: expected "// ${rep.kind} [($name)]", got "${s.rest}"`);
      return m[1] ?? null;
    };
    const payload =
      req!.kind === 'cbor' ? parseHex(req!.text, where) : parseRelaxed(req!.text, `${where} (request)`);
    examples.push({
      line: b.line,
      kind: req!.kind as Example['kind'],
      subject: sender[1]!,
      user: (sender[2] ?? 'client') as Example['user'],
      payload,
      reply: {
        kind: rep.kind,
        name: named(rep),
        expected: parseRelaxed(rep.text, `${where} (${rep.kind})`),
      },
      event:
        ev === undefined ? null : { name: named(ev), expected: parseRelaxed(ev.text, `${where} (event)`) },
    });
  }
  return examples;
}

/** The lines of the section that starts with `heading` (up to the next `## `). */
function section(md: string, heading: string): string {
  const start = md.indexOf(`\n${heading}`);
  if (start < 0) throw new Error(`no section ${heading}`);
  const end = md.indexOf('\n## ', start + heading.length);
  return md.slice(start, end < 0 ? undefined : end);
}

/** The first cells of a section's table rows (the header and the divider left out). */
function firstCells(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('|') && !/^\|[-| ]+\|$/.test(l))
    .slice(1)
    .map((l) => l.split(/(?<!\\)\|/)[1]!.trim());
}

/** The error table: each code and the extra fields it lists, `(`a`, `b`)` after the code. */
function errorTable(md: string): Map<string, string[]> {
  const table = new Map<string, string[]>();
  for (const cell of firstCells(section(md, '## Error codes'))) {
    for (const m of cell.matchAll(/`([A-Z_]+)`(?:\s*\(([^)]*)\))?/g)) {
      const extras = [...(m[2] ?? '').matchAll(/`(\w+)`/g)].map((x) => x[1]!);
      table.set(m[1]!, extras);
    }
  }
  return table;
}

/** The op an example asks for: the last token of an API subject (`P.api.<op>`, `P.node.…api.<op>`). */
const opOf = (subject: string): string | null => subject.match(/\.api\.([^.]+)$/)?.[1] ?? null;

// ---------------------------------------------------------------------------------------------
// Substitutions and matching

type Vars = Map<string, unknown>;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const REF = /^\$([A-Za-z]\w*)((?:\.\w+)*)$/;

function lookup(ref: string, vars: Vars, where: string): unknown {
  const m = ref.match(REF)!;
  let v = vars.get(m[1]!);
  if (v === undefined) throw new Error(`${where}: $${m[1]} is not known here`);
  for (const f of m[2]!.split('.').slice(1)) {
    if (!isObject(v) || !Object.hasOwn(v, f)) throw new Error(`${where}: ${ref} has no field ${f}`);
    v = v[f];
  }
  return v;
}

/** `value` with every `"$name.field"` string replaced by what it names. */
function substitute(value: unknown, vars: Vars, where: string): unknown {
  if (typeof value === 'string') return REF.test(value) ? lookup(value, vars, where) : value;
  if (Array.isArray(value)) return value.map((x) => substitute(x, vars, where));
  if (isObject(value))
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, vars, where)]));
  return value;
}

/** `P.…` with its `$name.field` tokens resolved (a reference takes tokens while they name fields). */
function resolveSubject(subject: string, vars: Vars, where: string): string {
  if (!subject.startsWith('P.')) throw new Error(`${where}: a subject starts with P.`);
  const tokens = subject.slice(2).split('.');
  const out: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (!t.startsWith('$')) {
      out.push(t);
      continue;
    }
    let v = lookup(t, vars, where);
    while (i + 1 < tokens.length && isObject(v) && Object.hasOwn(v, tokens[i + 1]!)) v = v[tokens[++i]!];
    if (typeof v !== 'string') throw new Error(`${where}: ${t} in a subject must name a string`);
    out.push(v);
  }
  return `${PREFIX}.${out.join('.')}`;
}

/** True if a documented request holds a placeholder (requests must be concrete). */
function hasPlaceholder(v: unknown): boolean {
  if (v === ANY_N || v === ANY_A || v === ANY_S) return true;
  if (Array.isArray(v)) return v.some(hasPlaceholder);
  if (isObject(v)) return Object.values(v).some(hasPlaceholder);
  return false;
}

/** Where `actual` differs from the documented `expected` (placeholders resolved already). */
function differences(expected: unknown, actual: unknown, at = ''): string[] {
  const here = at === '' ? '(top)' : at;
  const show = (v: unknown) => JSON.stringify(v);
  if (expected === ANY_N)
    return Number.isSafeInteger(actual) && (actual as number) >= 0
      ? []
      : [`${here}: expected a non-negative integer, got ${show(actual)}`];
  if (expected === ANY_S)
    return typeof actual === 'string' ? [] : [`${here}: expected a string, got ${show(actual)}`];
  if (expected === ANY_A)
    return Array.isArray(actual) ? [] : [`${here}: expected an array, got ${show(actual)}`];
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return [`${here}: expected an array, got ${show(actual)}`];
    if (actual.length !== expected.length)
      return [`${here}: expected ${expected.length} items, got ${actual.length}: ${show(actual)}`];
    return expected.flatMap((e, i) => differences(e, actual[i], `${at}[${i}]`));
  }
  if (isObject(expected)) {
    if (!isObject(actual)) return [`${here}: expected an object, got ${show(actual)}`];
    const out: string[] = [];
    for (const k of Object.keys(expected))
      if (!Object.hasOwn(actual, k)) out.push(`${at}.${k}: documented, missing in the reply`);
    for (const k of Object.keys(actual))
      if (!Object.hasOwn(expected, k))
        out.push(`${at}.${k}: in the reply (${show(actual[k])}), not documented`);
    for (const k of Object.keys(expected))
      if (Object.hasOwn(actual, k)) out.push(...differences(expected[k], actual[k], `${at}.${k}`));
    return out;
  }
  return Object.is(expected, actual) ? [] : [`${here}: expected ${show(expected)}, got ${show(actual)}`];
}

// ---------------------------------------------------------------------------------------------
// Talking to the cluster

const ENC = new TextEncoder();
const DEC = new TextDecoder();

/** A decoded CBOR value as the README shows it: JSON, byte strings as text (or base64). */
const asJson = (v: unknown): unknown => JSON.parse(DEC.decode(encodeJson(v)));

/** Decodes a reply envelope in the format it must have; its `result` or `error`, or a problem. */
function openReply(
  data: Uint8Array,
  format: 'json' | 'cbor',
): { kind: 'result' | 'error'; value: unknown } | string {
  let env: unknown;
  if (format === 'json') {
    if (data[0] !== 0x7b) return 'the reply to a JSON request is not JSON';
    env = JSON.parse(DEC.decode(data));
  } else {
    const d = decodeCbor(data);
    if (!d.ok) return `the reply to a CBOR request is not plain CBOR: ${d.error.message}`;
    env = asJson(d.value);
  }
  if (!isObject(env)) return 'the reply is not a map';
  const keys = Object.keys(env).sort().join(',');
  if (env.v !== 1 || env.cluster !== CLUSTER || (keys !== 'cluster,result,v' && keys !== 'cluster,error,v'))
    return `not a reply envelope: ${JSON.stringify(env)}`;
  return 'result' in env ? { kind: 'result', value: env.result } : { kind: 'error', value: env.error };
}

/** Messages of a watch inbox, taken one by one. */
class Inbox {
  private readonly queue: Uint8Array[] = [];
  private wake: (() => void) | null = null;

  constructor(nc: NatsConnection, subject: string) {
    nc.subscribe(subject, {
      callback: (err, m) => {
        if (err) return;
        this.queue.push(m.data);
        this.wake?.();
      },
    });
  }

  /** The next message's body that is not a bare heartbeat (`progress` without events). */
  async next(timeoutMs: number): Promise<unknown> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const data = this.queue.shift();
      if (data !== undefined) {
        if (data[0] === 0x7b) throw new Error('a watch message is JSON, not CBOR');
        const d = decodeCbor(data);
        if (!d.ok) throw new Error(`a watch message is not plain CBOR: ${d.error.message}`);
        const env = asJson(d.value) as { v?: unknown; cluster?: unknown; body?: Record<string, unknown> };
        if (env.v !== 1 || env.cluster !== CLUSTER || !isObject(env.body))
          throw new Error(`not a watch envelope: ${JSON.stringify(env)}`);
        const body = env.body;
        if (body.progress === true && Array.isArray(body.events) && body.events.length === 0) continue;
        return body;
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no watch message within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }
}

async function ask(nc: NatsConnection, subject: string, data: Uint8Array): Promise<Uint8Array> {
  return (await nc.request(subject, data, { timeout: 10_000 })).data;
}

const jsonEnvelope = (body: unknown): Uint8Array =>
  ENC.encode(JSON.stringify({ v: 1, cluster: CLUSTER, body }));

/**
 * Waits until every node names the same leader and has applied what that leader committed;
 * returns the leader and a follower.
 */
async function settle(
  nc: NatsConnection,
  ids: readonly string[],
): Promise<{ leader: string; follower: string }> {
  const deadline = performance.now() + 20_000;
  for (;;) {
    const all = await Promise.all(
      ids.map(async (id) => {
        try {
          const r = openReply(await ask(nc, `${PREFIX}.node.${id}.api.status`, jsonEnvelope({})), 'json');
          return typeof r === 'object' && r.kind === 'result'
            ? (r.value as { id: string; leader: string | null; commitIndex: number; appliedIndex: number })
            : null;
        } catch {
          return null;
        }
      }),
    );
    const leader = all[0]?.leader ?? null;
    const lead = all.find((s) => s !== null && s.id === leader) ?? null;
    if (
      leader !== null &&
      lead !== null &&
      all.every((s) => s !== null && s.leader === leader && s.appliedIndex >= lead.commitIndex)
    ) {
      return { leader, follower: ids.find((id) => id !== leader)! };
    }
    if (performance.now() > deadline) throw new Error(`the cluster did not settle: ${JSON.stringify(all)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---------------------------------------------------------------------------------------------

const md = readFileSync(README, 'utf8');
const examples = parseExamples(md);

test('the README documents every op and every error code, and only those', (t) => {
  t.true(examples.length > 0, 'the README has examples');
  const asked = new Set(examples.map((e) => opOf(e.subject)).filter((op) => op !== null));
  for (const op of ops) t.true(asked.has(op), `an example of ${op}`);
  for (const e of examples) {
    const op = opOf(e.subject);
    if (op !== null && !(ops as readonly string[]).includes(op))
      t.like(
        e.reply,
        { kind: 'error', expected: { code: 'UNKNOWN_OP' } },
        `README line ${e.line}: ${op} is no op`,
      );
  }
  t.true(
    examples.some((e) => e.kind === 'cbor'),
    'a CBOR example',
  );

  const tableOps = firstCells(section(md, '## Operations')).flatMap((c) =>
    [...c.matchAll(/`(\w+)`/g)].map((m) => m[1]!),
  );
  t.deepEqual([...tableOps].sort(), [...ops].sort(), 'the operations table has one row per op');
  const listed = md.match(/\nOps: ([^(]*)/)?.[1] ?? '';
  t.deepEqual(
    listed.replace(/`/g, '').split(/\s+/).filter(Boolean).sort(),
    [...ops].sort(),
    'the Ops: list names every op',
  );

  const table = errorTable(md);
  for (const code of table.keys()) t.true(isErrorCode(code), `${code} is a code of protocol/errors.ts`);
  const union = readFileSync(ERRORS, 'utf8').match(/export type ErrorCode =([^;]*);/)?.[1] ?? '';
  const defined = [...union.matchAll(/'([A-Z_]+)'/g)].map((m) => m[1]!);
  t.true(defined.length > 10, 'the ErrorCode union of protocol/errors.ts is found');
  t.deepEqual(
    [...table.keys()].sort(),
    defined.sort(),
    'the error table has every code of protocol/errors.ts',
  );

  for (const e of examples) {
    if (e.reply.kind !== 'error') continue;
    const { code, message, ...extra } = e.reply.expected as Record<string, unknown>;
    t.is(typeof code, 'string', `README line ${e.line}: an error has a code`);
    t.is(message, ANY_S, `README line ${e.line}: messages are not stable: "…"`);
    t.deepEqual(
      Object.keys(extra).sort(),
      [...(table.get(code as string) ?? ['(not in the table)'])].sort(),
      `README line ${e.line}: ${String(code)} carries the extra fields the table lists`,
    );
  }
  for (const e of examples)
    if (e.kind !== 'cbor') t.false(hasPlaceholder(e.payload), `README line ${e.line}: a request is concrete`);
});

test.serial('every example in the README round-trips through a real node', async (t) => {
  const c = cluster();
  const nc = { client: await c.h.connect('client'), admin: await c.h.connect('admin') };
  const vars: Vars = new Map();
  let inbox: Inbox | null = null;
  let checked = 0;
  for (const e of examples) {
    const where = `README line ${e.line}`;
    const { leader, follower } = await settle(nc.client, c.ids);
    vars.set('leader', leader);
    vars.set('follower', follower);
    const conn = nc[e.user];
    const subject = resolveSubject(e.subject, vars, where);

    let data: Uint8Array;
    let format: 'json' | 'cbor' = 'json';
    if (e.kind === 'cbor') {
      const bytes = e.payload as Uint8Array;
      t.is(checkPlainCbor(bytes), null, `${where}: the bytes are plain CBOR`);
      const d = decodeCbor(bytes);
      if (!d.ok) return t.fail(`${where}: ${d.error.message}`);
      const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
      t.is(hex(encodeCbor(d.value)), hex(bytes), `${where}: the bytes are what the codec writes`);
      data = bytes;
      format = 'cbor';
    } else {
      const payload = substitute(e.payload, vars, where);
      if (e.kind === 'message') data = ENC.encode(JSON.stringify(payload));
      else {
        data = jsonEnvelope(payload);
        const target = (payload as { inbox?: unknown }).inbox;
        if (opOf(e.subject) === 'watch' && e.reply.kind === 'result' && typeof target === 'string') {
          inbox = new Inbox(nc.client, target);
          await nc.client.flush();
        }
      }
    }

    const reply = openReply(await ask(conn, subject, data), format);
    if (typeof reply === 'string') return t.fail(`${where}: ${reply}`);
    const shown = JSON.stringify(reply.value);
    if (reply.kind !== e.reply.kind)
      return t.fail(`${where}: documented ${e.reply.kind}, the node answered ${reply.kind} ${shown}`);
    const expected = substitute(e.reply.expected, vars, where);
    const diff = differences(expected, reply.value);
    if (diff.length > 0) return t.fail(`${where}: ${subject} answered ${shown}\n${diff.join('\n')}`);
    if (e.reply.name !== null) vars.set(e.reply.name, reply.value);

    if (e.event !== null) {
      if (inbox === null) return t.fail(`${where}: an event without a watch`);
      const body = await inbox.next(10_000);
      const ediff = differences(substitute(e.event.expected, vars, where), body);
      if (ediff.length > 0)
        return t.fail(`${where}: the watch got ${JSON.stringify(body)}\n${ediff.join('\n')}`);
      if (e.event.name !== null) vars.set(e.event.name, body);
    }
    checked++;
  }
  t.log(`${checked} examples checked`);
  t.is(checked, examples.length);
});
