import test from 'ava';
import { PEER_CALLER, RateLimitedError } from '../../protocol/index.ts';
import { RateLimiter } from './quotas.ts';

test('the rate limiter lets a burst of twice the rate through, then the rate, per user; peers and admins are free', (t) => {
  let now = 0;
  const r = new RateLimiter(10, () => now);
  const ann = { kind: 'client', user: 'ann' } as const;
  const bob = { kind: 'client', user: 'bob' } as const;
  let passed = 0;
  for (let i = 0; i < 50; i++) if (r.take(ann) === null) passed++;
  t.is(passed, 20, 'a burst of 2 × rate');
  const e = r.take(ann);
  t.true(e instanceof RateLimitedError);
  t.true((e as RateLimitedError).retryAfterMs > 0 && (e as RateLimitedError).retryAfterMs <= 100);
  t.is(r.take(bob), null, 'another user has its own bucket');
  now += 1000;
  passed = 0;
  for (let i = 0; i < 50; i++) if (r.take(ann) === null) passed++;
  t.is(passed, 10, 'one second later: the rate');
  for (let i = 0; i < 1000; i++) t.is(r.take(PEER_CALLER), null);
  t.is(r.take({ kind: 'admin', user: 'admin' }), null);
  t.is(new RateLimiter(0).take(ann), null, '0: no limit');
});
