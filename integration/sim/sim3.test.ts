/** 150 seeds of mixed faults on a 3-node cluster; every Raft safety property after every step. */
import test from 'ava';
import { sweep } from './seeds.ts';

for (let batch = 0; batch < 6; batch++) {
  const first = 3000 + batch * 25;
  test(`3 nodes, seeds ${first}-${first + 24}: safe under faults, live after healing`, (t) => {
    sweep(t, 3, first, 25, 5000);
  });
}
