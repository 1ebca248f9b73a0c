import test from 'ava';
import cbor from 'cbor';
import { Encoder } from 'cbor-x';
import fc from 'fast-check';
import {
  checkPlainCbor,
  decodeCbor,
  decodeEnvelope,
  decodeJson,
  decodePeer,
  decodeReply,
  detectFormat,
  encodeCbor,
  encodeDecodeError,
  encodeEnvelope,
  encodeEnvelopeSpliced,
  encodeJson,
  encodePeer,
  encodeReply,
  MAX_DEPTH,
  newDropCounts,
} from './codec.ts';
import {
  BadRequestError,
  EnsembleError,
  NotLeaderError,
  TooLargeError,
  UnsupportedVersionError,
  WrongClusterError,
} from './errors.ts';
import { PROTOCOL_VERSION } from './version.ts';

const cluster = 'c1';
const hex = (s: string) => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const text = (s: string) => Buffer.from(s);
const headers = (h: Record<string, string>) => ({ get: (k: string) => h[k] ?? '' });

/** The diagnostic notation of an independent decoder (the `cbor` package): tags show as `N(…)`. */
const diagnose = async (bytes: Uint8Array): Promise<string> =>
  String(await cbor.diagnose(Buffer.from(bytes)));

const hasProtoKey = (v: unknown): boolean =>
  typeof v === 'object' &&
  v !== null &&
  (Object.hasOwn(v, '__proto__') || Object.values(v).some((x) => hasProtoKey(x)));

const sample = {
  type: 'raft.appendEntries',
  term: 7,
  from: 'n1',
  entries: [{ index: 1, term: 7, data: new Uint8Array([0, 1, 2, 255]) }],
  big: 2 ** 52,
  neg: -12,
  f: 0.25,
  nil: null,
  yes: true,
  nested: { deeper: { list: ['a', 'b'] } },
};

test('envelopes are plain CBOR: a map, byte strings untagged, no tags anywhere (independent decoder)', async (t) => {
  const bytes = encodeEnvelope(sample, { cluster });
  t.is(bytes[0]! >> 5, 5, 'top level is a CBOR map (major type 5)');
  const diag = await diagnose(bytes);
  t.notRegex(diag, /\d+\(/, `no tags: ${diag}`);
  t.regex(diag, /h'000102ff'/, 'bytes are a byte string');
  t.deepEqual(cbor.decodeFirstSync(Buffer.from(bytes)), {
    v: PROTOCOL_VERSION,
    cluster,
    body: { ...sample, entries: [{ index: 1, term: 7, data: Buffer.from([0, 1, 2, 255]) }] },
  });
  t.is(checkPlainCbor(bytes), null);
});

test('a reply and an error reply are plain CBOR maps with string keys', async (t) => {
  for (const bytes of [
    encodeReply({ result: { kv: { key: '/a', value: text('x'), version: 1 } } }, { cluster }),
    encodeReply({ error: new NotLeaderError('n2') }, { cluster }),
  ]) {
    t.is(bytes[0]! >> 5, 5);
    t.notRegex(await diagnose(bytes), /\d+\(/);
  }
});

test('encodeCbor leaves undefined properties out and keeps Buffers as byte strings', async (t) => {
  const bytes = encodeCbor({ a: undefined, b: 1, c: [{ d: undefined, e: Buffer.from('hi') }] });
  t.deepEqual(cbor.decodeFirstSync(Buffer.from(bytes)), { b: 1, c: [{ e: Buffer.from('hi') }] });
  t.notRegex(await diagnose(bytes), /undefined|\d+\(/);
  t.throws(() => encodeCbor({ f: () => 1 }), { instanceOf: TypeError });
});

test('what cbor-x extensions produce is refused: records, typed-array tags, dates', (t) => {
  const records = new Encoder({ useRecords: true }).encode({ a: 1, b: 2 });
  t.regex(checkPlainCbor(records) ?? '', /tag/);
  const typed = new Encoder({ useRecords: false, tagUint8Array: true }).encode({ a: new Uint8Array([1]) });
  t.regex(checkPlainCbor(typed) ?? '', /tag 64/);
  t.regex(checkPlainCbor(new Encoder({ useRecords: false }).encode(new Date(0))) ?? '', /tag 1/);
  const decoded = decodeCbor(records);
  t.false(decoded.ok);
  if (!decoded.ok) t.is(decoded.error.code, 'BAD_REQUEST');
});

test('checkPlainCbor: well-formed plain CBOR of other encoders is accepted', (t) => {
  t.is(checkPlainCbor(hex('a1 61 61 01')), null); // {"a": 1}
  t.is(checkPlainCbor(hex('d9 d9f7 a1 61 61 01')), null); // self-described
  t.is(checkPlainCbor(hex('bf 61 61 9f 01 02 ff ff')), null); // {_ "a": [_ 1, 2]}
  t.is(checkPlainCbor(hex('a1 61 61 5f 41 01 42 0203 ff')), null); // {"a": (_ h'01', h'0203')}
  t.is(checkPlainCbor(hex('a0')), null);
  t.is(checkPlainCbor(hex('80')), null);
  t.is(checkPlainCbor(hex('f9 3c00')), null); // 1.0 as half float
  t.is(checkPlainCbor(hex('1b 001fffffffffffff')), null);
});

test('checkPlainCbor: malformed and non-plain CBOR is refused with a reason', (t) => {
  const bad: Record<string, string> = {
    '': 'truncated',
    a1: 'truncated',
    'a1 01 02': 'map key is not a text string',
    'a1 41 61 01': 'map key is not a text string',
    '01 02': 'bytes after the item',
    '9a ffffffff 00': 'truncated', // claims 4 billion items
    '5b 00000000ffffffff 00': 'truncated',
    'a1 61 ff 01': 'invalid UTF-8',
    '1c': 'truncated or reserved head',
    ff: 'unexpected break',
    '9f 01': 'truncated',
    'bf 61 61 ff': 'map key without a value',
    f8_20: 'unassigned simple value',
    e0: 'unassigned simple value',
    c2_41_01: 'tag 2 (tags are not part of this protocol)',
    '1f': 'indefinite integer',
    df: 'tag ? (tags are not part of this protocol)',
    '5f 61 61 ff': 'bad chunk in an indefinite string',
    'a1 69 5f5f70726f746f5f5f 01': 'map key __proto__',
  };
  for (const [h, reason] of Object.entries(bad)) t.is(checkPlainCbor(hex(h.replace(/_/g, ''))), reason, h);
  const deep = new Uint8Array(MAX_DEPTH + 1).fill(0x81);
  t.regex(checkPlainCbor(new Uint8Array([...deep, 0x01])) ?? '', /nested deeper/);
  t.is(checkPlainCbor(new Uint8Array([...deep.subarray(1), 0x01])), null);
});

test('checkPlainCbor agrees with an independent encoder (the cbor package) on JSON-like values', (t) => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
      fc.pre(!hasProtoKey(value));
      const bytes = new Uint8Array(cbor.encode(value));
      const problem = checkPlainCbor(bytes);
      if (problem !== null) throw new Error(`${problem}: ${Buffer.from(bytes).toString('hex')}`);
      const decoded = decodeCbor(bytes);
      if (!decoded.ok) throw decoded.error;
      t.deepEqual(decoded.value, value);
    }),
    { numRuns: 300 },
  );
});

test('random bytes never throw out of any decoder, and fail with typed errors', (t) => {
  const drops = newDropCounts();
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (bytes, json) => {
      checkPlainCbor(bytes);
      const h = json ? headers({ 'Content-Type': 'application/json' }) : null;
      const env = decodeEnvelope(bytes, { cluster, headers: h });
      if (!env.ok && !(env.error instanceof EnsembleError)) throw new Error('untyped error');
      if (!env.ok) encodeDecodeError(env, cluster);
      const reply = decodeReply(bytes, { headers: h });
      if (!reply.ok && !(reply.error instanceof EnsembleError)) throw new Error('untyped error');
      decodePeer(bytes, { cluster, drops });
      decodeJson(bytes);
    }),
    { numRuns: 3000 },
  );
  t.true(drops.malformed > 0);
});

test('mutations of valid envelopes never throw out of the decoders', (t) => {
  const valid = encodeEnvelope(sample, { cluster });
  const validJson = encodeEnvelope({ key: '/a', value: text('v') }, { cluster, format: 'json' });
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
      fc.nat(),
      (json, edits, cut) => {
        const base = json ? validJson : valid;
        const bytes = base.slice(0, base.length - (cut % 4));
        for (const [i, b] of edits) bytes[i % bytes.length] = b;
        const env = decodeEnvelope(bytes, { cluster });
        if (!env.ok && !(env.error instanceof EnsembleError)) throw new Error('untyped error');
        decodeReply(bytes);
        decodePeer(bytes, { cluster });
      },
    ),
    { numRuns: 3000 },
  );
  t.pass();
});

test('random objects through encode and decode never throw and round-trip', (t) => {
  fc.assert(
    fc.property(
      fc.object({ maxDepth: 4, values: [fc.string(), fc.integer(), fc.boolean(), fc.constant(null)] }),
      (body) => {
        const proto = hasProtoKey(body);
        for (const format of ['cbor', 'json'] as const) {
          const decoded = decodeEnvelope(encodeEnvelope(body, { cluster, format }), { cluster });
          if (proto) {
            // Refused rather than renamed (cbor-x) or turned into a prototype.
            t.like(decoded, { ok: false, reason: 'malformed' });
            continue;
          }
          if (!decoded.ok) throw decoded.error;
          if (format === 'cbor') t.deepEqual(decoded.envelope.body, body);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('an envelope of an unknown protocol version decodes to UNSUPPORTED_VERSION, answered in its format', (t) => {
  for (const format of ['cbor', 'json'] as const) {
    const bytes =
      format === 'json'
        ? text(JSON.stringify({ v: 99, cluster, body: {} }))
        : encodeCbor({ v: 99, cluster, body: { anything: 1 } });
    const decoded = decodeEnvelope(bytes, { cluster });
    t.false(decoded.ok);
    if (decoded.ok) return;
    t.is(decoded.reason, 'version');
    t.is(decoded.format, format);
    t.true(decoded.error instanceof UnsupportedVersionError);
    t.like(decoded.error.toWire(), {
      code: 'UNSUPPORTED_VERSION',
      version: 99,
      supported: [PROTOCOL_VERSION],
    });
    const reply = decodeReply(encodeDecodeError(decoded, cluster));
    t.false(reply.ok);
    if (!reply.ok) {
      t.true(reply.error instanceof UnsupportedVersionError);
      t.deepEqual((reply.error as UnsupportedVersionError).supported, [PROTOCOL_VERSION]);
    }
  }
  const missing = decodeEnvelope(encodeCbor({ cluster, body: {} }), { cluster });
  t.like(missing, { ok: false, reason: 'malformed' });
});

test('an envelope for another cluster: WRONG_CLUSTER for clients, a counted drop for peers', (t) => {
  const bytes = encodeEnvelope({ op: 'x' }, { cluster: 'other' });
  const decoded = decodeEnvelope(bytes, { cluster });
  t.like(decoded, { ok: false, reason: 'cluster' });
  if (!decoded.ok) {
    t.true(decoded.error instanceof WrongClusterError);
    t.like(decoded.error.toWire(), { code: 'WRONG_CLUSTER', cluster, got: 'other' });
  }
  const drops = newDropCounts();
  t.like(decodePeer(bytes, { cluster, drops }), { ok: false, reason: 'cluster' });
  t.like(decodePeer(encodeCbor({ v: 2, cluster, body: 1 }), { cluster, drops }), {
    ok: false,
    reason: 'version',
  });
  t.like(decodePeer(new Uint8Array([1, 2, 3]), { cluster, drops }), { ok: false, reason: 'malformed' });
  t.like(decodePeer(encodePeer({ x: 1 }, cluster), { cluster, drops }), { ok: true, body: { x: 1 } });
  t.deepEqual(drops, { tooLarge: 0, malformed: 1, version: 1, cluster: 1 });
});

test('peer frames are CBOR only: a JSON peer frame is dropped as malformed', (t) => {
  const json = encodeEnvelope({ x: 1 }, { cluster, format: 'json' });
  t.like(decodePeer(json, { cluster }), { ok: false, reason: 'malformed' });
});

test('oversized messages are TOO_LARGE before any decoding', (t) => {
  const bytes = encodeEnvelope({ value: new Uint8Array(2000) }, { cluster });
  const decoded = decodeEnvelope(bytes, { cluster, maxBytes: 1000 });
  t.like(decoded, { ok: false, reason: 'tooLarge' });
  if (!decoded.ok) t.true(decoded.error instanceof TooLargeError);
});

test('detectFormat: Content-Type header first, then a leading "{" means JSON', (t) => {
  const json = text(' {"v":1}');
  const cborBytes = encodeCbor({ v: 1 });
  t.is(detectFormat(json), 'json');
  t.is(detectFormat(cborBytes), 'cbor');
  t.is(detectFormat(cborBytes, headers({ 'Content-Type': 'application/json; charset=utf-8' })), 'json');
  t.is(detectFormat(json, headers({ 'Content-Type': 'application/cbor' })), 'cbor');
  t.is(detectFormat(new Uint8Array()), 'cbor');
});

test('JSON byte fields: text by default, base64 where an object (or one around it) says so', (t) => {
  const body = (s: string) => {
    const d = decodeEnvelope(text(s), { cluster });
    if (!d.ok) throw d.error;
    return { body: d.envelope.body as Record<string, unknown>, base64: d.base64 };
  };
  const plain = body(`{"v":1,"cluster":"${cluster}","body":{"key":"/a","value":"héllo"}}`);
  t.deepEqual(plain.body.value, text('héllo'));
  t.false(plain.base64);
  const b64 = body(`{"v":1,"cluster":"${cluster}","body":{"key":"/a","value":"AAH/","encoding":"base64"}}`);
  t.deepEqual(b64.body.value, Buffer.from([0, 1, 255]));
  t.is(b64.body.encoding, undefined, 'the marker is consumed');
  t.true(b64.base64);
  const inherited = body(
    `{"v":1,"cluster":"${cluster}","encoding":"base64","body":{"success":[{"op":"put","key":"/a","value":"aGk="}]}}`,
  );
  t.deepEqual((inherited.body.success as Array<{ value: Uint8Array }>)[0]!.value, text('hi'));
  const nested = body(
    `{"v":1,"cluster":"${cluster}","body":{"compare":[{"key":"/a","target":"version","result":"eq","value":3}]}}`,
  );
  t.is((nested.body.compare as Array<{ value: unknown }>)[0]!.value, 3, 'numbers stay numbers');
  for (const bad of [
    `{"v":1,"cluster":"${cluster}","body":{"value":"not base64!","encoding":"base64"}}`,
    `{"v":1,"cluster":"${cluster}","body":{"value":"x","encoding":"rot13"}}`,
    `{"v":1,"cluster":"${cluster}","body":`,
  ]) {
    const d = decodeEnvelope(text(bad), { cluster });
    t.like(d, { ok: false, reason: 'malformed', format: 'json' });
    if (!d.ok) t.true(d.error instanceof BadRequestError);
  }
});

test('JSON replies mirror the request: text values, or base64 when asked or when not UTF-8', (t) => {
  const result = {
    kv: { key: '/a', value: text('hi'), version: 1 },
    raw: { value: new Uint8Array([0xff, 0]) },
  };
  const asText = JSON.parse(Buffer.from(encodeReply({ result }, { cluster, format: 'json' })).toString());
  t.deepEqual(asText, {
    v: PROTOCOL_VERSION,
    cluster,
    result: { kv: { key: '/a', value: 'hi', version: 1 }, raw: { value: '/wA=', encoding: 'base64' } },
  });
  const asB64 = JSON.parse(
    Buffer.from(encodeReply({ result }, { cluster, format: 'json', base64: true })).toString(),
  );
  t.deepEqual(asB64.result.kv, { key: '/a', value: 'aGk=', version: 1, encoding: 'base64' });
  for (const base64 of [false, true]) {
    const back = decodeReply<typeof result>(encodeReply({ result }, { cluster, format: 'json', base64 }));
    t.true(back.ok);
    if (back.ok) {
      t.deepEqual(back.result.kv.value, text('hi'));
      t.deepEqual(back.result.raw.value, Buffer.from([0xff, 0]));
    }
  }
  t.deepEqual(
    JSON.parse(Buffer.from(encodeJson({ list: [new Uint8Array([1])] })).toString()),
    { list: [{ value: 'AQ==', encoding: 'base64' }] },
    'bytes outside a field travel as a tagged object',
  );
});

test('errors cross the wire as {code, message, ...extra} and come back as the same class', (t) => {
  for (const format of ['cbor', 'json'] as const) {
    const bytes = encodeReply({ error: new NotLeaderError('n3') }, { cluster, format });
    const reply = decodeReply(bytes, { cluster });
    t.false(reply.ok);
    if (!reply.ok) {
      t.true(reply.error instanceof NotLeaderError);
      t.is((reply.error as NotLeaderError).leader, 'n3');
    }
    const wire = encodeReply({ error: { code: 'SOMETHING_NEW', message: 'm' } }, { cluster, format });
    const unknown = decodeReply(wire);
    t.like(unknown, { ok: false });
    if (!unknown.ok) t.like(unknown.error.toWire(), { code: 'INTERNAL', remoteCode: 'SOMETHING_NEW' });
  }
  const result = decodeReply<{ n: number }>(encodeReply({ result: { n: 1 } }, { cluster }), { cluster });
  t.deepEqual(result, { ok: true, result: { n: 1 } });
  t.like(decodeReply(encodeReply({ result: 1 }, { cluster: 'x' }), { cluster }), { ok: false });
});

test('integers up to 2^53 travel as CBOR integers, whatever their size, and decode as numbers', async (t) => {
  const values = [0, 23, 2 ** 32 - 1, 2 ** 32, 2 ** 40, Number.MAX_SAFE_INTEGER, -(2 ** 32) - 1, -(2 ** 50)];
  const bytes = encodeCbor({ values });
  t.notRegex(await diagnose(bytes), /\.|_/, 'no floats');
  const decoded = decodeCbor(bytes);
  t.deepEqual(decoded, { ok: true, value: { values } });
  // An 8-byte integer from another encoder decodes as a number, not a bigint.
  t.deepEqual(decodeCbor(hex('1b 0000010000000000')), { ok: true, value: 2 ** 40 });
});

test('decoders take anything without throwing, even what is not bytes', (t) => {
  for (const junk of [undefined, null, 'text', 42, {}, [1, 2]]) {
    const bytes = junk as unknown as Uint8Array;
    t.like(decodeEnvelope(bytes, { cluster }), { ok: false, reason: 'malformed' });
    t.like(decodeReply(bytes), { ok: false });
    t.like(decodePeer(bytes, { cluster }), { ok: false });
    t.is(detectFormat(bytes), 'cbor');
    t.like(decodeCbor(bytes), { ok: false });
    t.like(decodeJson(bytes), { ok: false });
    t.is(checkPlainCbor(bytes), 'not bytes');
  }
});

test('encodeEnvelopeSpliced: the same bytes as encoding the whole body, for any events and heads', (t) => {
  fc.assert(
    fc.property(
      fc.record({ id: fc.string({ maxLength: 20 }), seq: fc.nat(), revision: fc.nat() }),
      fc.array(
        fc.record({
          type: fc.constantFrom('put', 'delete'),
          key: fc.string({ maxLength: 40 }),
          revision: fc.nat(),
          value: fc.uint8Array({ maxLength: 64 }),
        }),
        { maxLength: 20 },
      ),
      (head, events) => {
        const spliced = encodeEnvelopeSpliced(head, 'events', encodeCbor(events), { cluster: 'c1' });
        t.deepEqual(
          Buffer.from(spliced),
          Buffer.from(encodeEnvelope({ ...head, events }, { cluster: 'c1' })),
        );
        const d = decodeEnvelope(spliced, { cluster: 'c1' });
        t.true(d.ok);
      },
    ),
    { numRuns: 200 },
  );
  t.throws(() => encodeEnvelopeSpliced({ events: 1 }, 'events', encodeCbor([]), { cluster: 'c1' }), {
    instanceOf: TypeError,
  });
});
