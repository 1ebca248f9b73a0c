import test from 'ava';
import { EnsembleError, fromWire, InternalError } from '../protocol/index.ts';
import { CorruptedError, IdentityMismatchError, StorageFatalError, storageFatal } from './errors.ts';

test('storage errors have stable codes and stay Ensemble errors', (t) => {
  for (const [err, code] of [
    [new CorruptedError('bad record'), 'CORRUPTED'],
    [new StorageFatalError('EIO'), 'STORAGE_FATAL'],
    [new IdentityMismatchError(), 'IDENTITY_MISMATCH'],
  ] as const) {
    t.is(err.code, code);
    t.true(err instanceof EnsembleError);
    t.not(err.name, 'Error');
    const back = fromWire(err.toWire());
    t.true(back instanceof InternalError, 'a peer sees INTERNAL with the code');
    t.is((back as InternalError).remoteCode, code);
  }
});

test('storageFatal keeps the I/O error as cause and never wraps twice', (t) => {
  const io = new Error('EIO: i/o error');
  const err = storageFatal('write', io);
  t.is(err.cause, io);
  t.is(err.code, 'STORAGE_FATAL');
  t.regex(err.message, /write: EIO/);
  t.false('cause' in err.toWire());
  t.is(storageFatal('again', err), err);
});
