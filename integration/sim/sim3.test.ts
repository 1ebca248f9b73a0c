/** 150 seeds of mixed faults on a 3-node cluster; every Raft safety property after every step. */
import test from 'ava';
import { sweep } from './seeds.ts';

// Every other batch with the leader's commit notices on (the node's setting), the rest without
// (the setting the simulator's teeth were calibrated with).
for (let batch = 0; batch < 6; batch++) {
  const first = 3000 + batch * 25;
  const commitNotice = batch % 2 === 0;
  test(`3 nodes, seeds ${first}-${first + 24}${commitNotice ? ', commit notices' : ''}: safe under faults, live after healing`, (t) => {
    sweep(t, 3, first, 25, 5000, { raft: { commitNotice } });
  });
}
