import test from 'ava';
import {
  BadPathError,
  BadRequestError,
  CompactedError,
  EnsembleError,
  ExistsError,
  fromWire,
  InternalError,
  isErrorCode,
  NoQuorumError,
  NotFoundError,
  NotLeaderError,
  PermissionDeniedError,
  QuotaExceededError,
  RateLimitedError,
  SessionExpiredError,
  TimeoutError,
  TooLargeError,
  UnknownOpError,
  UnknownOutcomeError,
  VersionMismatchError,
  WatchMovedError,
} from './errors.ts';

const samples: EnsembleError[] = [
  new NotLeaderError('n2'),
  new NotLeaderError(null),
  new NoQuorumError(),
  new TimeoutError(),
  new UnknownOutcomeError('n3'),
  new BadRequestError('missing key'),
  new TooLargeError(2_000_000, 1_572_864),
  new BadPathError('/a//b'),
  new VersionMismatchError(3, 4),
  new CompactedError(17),
  new SessionExpiredError('s1'),
  new NotFoundError('/x'),
  new ExistsError('/x'),
  new UnknownOpError('frob'),
  new InternalError('boom', 'SOME_FUTURE_CODE'),
  new PermissionDeniedError('client2', 'no write grant on /a'),
  new QuotaExceededError('sessionsPerUser', 1000),
  new RateLimitedError(250),
  new WatchMovedError('n2'),
];

samples.forEach((err, i) => {
  test(`${err.code} (${i}) crosses the wire as the same class with its extras`, (t) => {
    const wire = err.toWire();
    t.is(wire.code, err.code);
    t.is(wire.message, err.message);
    t.true(isErrorCode(err.code));
    const back = fromWire(JSON.parse(JSON.stringify(wire)));
    t.is(back.constructor, err.constructor);
    t.is(back.name, err.name);
    t.not(back.name, 'Error');
    t.deepEqual(back.toWire(), wire);
    t.true(back instanceof EnsembleError);
    t.true(back instanceof Error);
  });
});

test('extras travel with their codes', (t) => {
  t.like(new NotLeaderError('n3').toWire(), { code: 'NOT_LEADER', leader: 'n3' });
  t.like(new CompactedError(42).toWire(), { code: 'COMPACTED', compactRevision: 42 });
  t.is(
    (fromWire({ code: 'COMPACTED', message: 'x', compactRevision: 9 }) as CompactedError).compactRevision,
    9,
  );
  t.is((fromWire({ code: 'NOT_LEADER', message: 'x', leader: 'n1' }) as NotLeaderError).leader, 'n1');
});

test('cause is kept locally and not sent', (t) => {
  const io = new Error('EIO: i/o error');
  const err = new InternalError('wrapped', null, { cause: io });
  t.is(err.cause, io);
  t.false('cause' in err.toWire());
});

test('fromWire never throws: malformed objects and unknown codes', (t) => {
  for (const bad of [null, undefined, 42, 'NOT_LEADER', [], { message: 'no code' }, { code: 7 }]) {
    t.true(fromWire(bad) instanceof BadRequestError);
  }
  const unknown = fromWire({ code: 'FROM_THE_FUTURE', message: 'hi' });
  t.true(unknown instanceof InternalError);
  t.is((unknown as InternalError).remoteCode, 'FROM_THE_FUTURE');
  t.is(unknown.message, 'hi');
  // Codes of other layers (storage, client) reach a peer as INTERNAL with their code.
  const storage = fromWire({ code: 'STORAGE_FATAL', message: 'EIO' });
  t.true(storage instanceof InternalError);
  t.is((storage as InternalError).remoteCode, 'STORAGE_FATAL');
  const typed = fromWire({ code: 'TOO_LARGE', message: 'm', size: 'big' });
  t.true(typed instanceof TooLargeError);
  t.is((typed as TooLargeError).size, 0, 'a mistyped extra falls back to a default');
});
