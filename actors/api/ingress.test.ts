/**
 * API ingress on a real nats-server (nats.conf users), with the handlers replaced by a recording
 * test double: what reaches the handlers, what is refused and how, and routing of writes by role
 * (served, forwarded to the leader with the answer relayed, or NOT_LEADER with the leader).
 */
import test from 'ava';
import { useHarness } from '../../integration/harness.ts';
import { waitFor } from '../../integration/wait.ts';
import { initialContext, MemoryLog, type RaftContext, type Role } from '../../machines/raft/index.ts';
import {
  decodePeer,
  decodeReply,
  encodeEnvelope,
  encodeReply,
  LEADER_HEADER,
  subjects,
  type ValidRequest,
} from '../../protocol/index.ts';
import type { ApiHandlers } from './handlers.ts';
import { ApiIngress } from './ingress.ts';
import { answerWith, newCounters } from './reply.ts';

const harness = useHarness(test, { label: 'ensemble-ingress' });
const S = subjects({ cluster: 'ing' });

async function rig(self: string, role: Role, leader: string | null) {
  const nc = await harness().connect('peer');
  const log = new MemoryLog({ index: 0, term: 0, config: { voters: [], learners: [] } });
  const ctx: RaftContext = { ...initialContext({ id: self, seed: 1 }, log), leader };
  const counters = newCounters();
  const dispatched: ValidRequest[] = [];
  const answer = answerWith('ing', counters);
  const handlers = {
    dispatch: (v: ValidRequest, reply: Parameters<ApiHandlers['dispatch']>[1]) => {
      dispatched.push(v);
      answer(reply, { result: { servedBy: self } });
    },
    keepalive: () => null,
  } as unknown as ApiHandlers;
  const ingress = new ApiIngress({
    nc,
    subjects: S,
    cluster: 'ing',
    self,
    machine: { role: () => role, context: () => ctx, lastIndex: () => log.lastIndex() },
    forwardTimeoutMs: 2000,
    handlers,
    answer,
    counters,
  });
  ingress.start();
  await ingress.ready();
  return { ingress, dispatched, counters };
}

test.serial(
  'valid requests reach the handlers; bad bytes, unknown ops and bad bodies get typed errors',
  async (t) => {
    const r = await rig('i1', 'leader', 'i1');
    const client = await harness().connect('client');
    const ask = async (subject: string, data: Uint8Array) =>
      decodeReply((await client.request(subject, data, { timeout: 3000 })).data, { cluster: 'ing' });
    const ok = await ask(S.nodeApi('i1', 'get'), encodeEnvelope({ key: '/a' }, { cluster: 'ing' }));
    t.true(ok.ok);
    t.is(r.dispatched[0]?.op, 'get');
    const codes = async (subject: string, data: Uint8Array) => {
      const x = await ask(subject, data);
      return x.ok ? 'ok' : x.error.code;
    };
    t.is(await codes(S.nodeApi('i1', 'get'), new Uint8Array([0xff, 0x00])), 'BAD_REQUEST');
    t.is(await codes(S.nodeApi('i1', 'frobnicate'), encodeEnvelope({}, { cluster: 'ing' })), 'UNKNOWN_OP');
    t.is(
      await codes(
        S.nodeApi('i1', 'put'),
        encodeEnvelope({ key: 'no-slash', value: 'x' }, { cluster: 'ing' }),
      ),
      'BAD_PATH',
    );
    t.is(
      await codes(S.nodeApi('i1', 'get'), encodeEnvelope({ key: '/a' }, { cluster: 'other' })),
      'WRONG_CLUSTER',
    );
    t.is(r.dispatched.length, 1, 'nothing bad reached the handlers');
    t.true(r.counters.badInput >= 4);
    await r.ingress.stop();
  },
);

test.serial(
  'a write on a follower: NOT_LEADER on its own subject, forwarded from the any-node subject',
  async (t) => {
    // The leader side: a stand-in that answers forwarded requests the way a leader's ingress would.
    const leaderNc = await harness().connect('peer');
    leaderNc.subscribe(S.forward('L'), {
      callback: (_e, m) => {
        const d = decodePeer(m.data, { cluster: 'ing' });
        const op = d.ok ? (d.body as { op: string }).op : '?';
        m.respond(encodeReply({ result: { forwardedOp: op } }, { cluster: 'ing' }));
      },
    });
    await leaderNc.flush();
    const r = await rig('f1', 'follower', 'L');
    const client = await harness().connect('client');
    const direct = decodeReply(
      (
        await client.request(
          S.nodeApi('f1', 'put'),
          encodeEnvelope({ key: '/a', value: 'x' }, { cluster: 'ing' }),
          { timeout: 3000 },
        )
      ).data,
      { cluster: 'ing' },
    );
    t.false(direct.ok);
    if (!direct.ok) {
      t.is(direct.error.code, 'NOT_LEADER');
      t.is((direct.error as { leader?: string }).leader, 'L');
    }
    const msg = await client.request(
      S.api('put'),
      encodeEnvelope({ key: '/a', value: 'x' }, { cluster: 'ing' }),
      {
        timeout: 3000,
      },
    );
    t.is(msg.headers?.get(LEADER_HEADER), 'L', 'the answer names the leader to talk to next');
    t.deepEqual(decodeReply(msg.data, { cluster: 'ing' }), { ok: true, result: { forwardedOp: 'put' } });
    t.is(r.counters.forwarded, 1);
    // Reads are served on the follower itself.
    const read = decodeReply(
      (
        await client.request(S.nodeApi('f1', 'get'), encodeEnvelope({ key: '/a' }, { cluster: 'ing' }), {
          timeout: 3000,
        })
      ).data,
      { cluster: 'ing' },
    );
    t.deepEqual(read, { ok: true, result: { servedBy: 'f1' } });
    await r.ingress.stop();
  },
);

test.serial(
  'a forward to a leader that is gone: NOT_LEADER when it never arrived, UNKNOWN_OUTCOME once another leads',
  async (t) => {
    // A leader that takes forwarded requests and never answers (it crashed after proposing).
    const silent = await harness().connect('peer');
    silent.subscribe(S.forward('L3'), { callback: () => {} });
    await silent.flush();
    const r = await rig('f3', 'follower', 'L3');
    (r.ingress as unknown as { p: { forwardTimeoutMs: number } }).p.forwardTimeoutMs = 60_000;
    const client = await harness().connect('client');
    const pending = client.request(
      S.api('put'),
      encodeEnvelope({ key: '/a', value: 'x' }, { cluster: 'ing' }),
      {
        timeout: 10_000,
      },
    );
    await waitFor(() => r.counters.forwarded === 1, { what: 'the forward is out' });
    r.ingress.leaderChanged('L4');
    const answer = decodeReply((await pending).data, { cluster: 'ing' });
    t.false(answer.ok);
    if (!answer.ok) {
      t.is(answer.error.code, 'UNKNOWN_OUTCOME', 'it may have been proposed: not NOT_LEADER');
      t.is((answer.error as { leader?: string }).leader, 'L4');
    }
    await r.ingress.stop();
    // Nobody listens for the leader at all: the request never arrived, nothing was applied.
    const r2 = await rig('f4', 'follower', 'L-gone');
    const gone = decodeReply(
      (
        await client.request(S.api('put'), encodeEnvelope({ key: '/a', value: 'x' }, { cluster: 'ing' }), {
          timeout: 10_000,
        })
      ).data,
      { cluster: 'ing' },
    );
    t.false(gone.ok);
    if (!gone.ok) t.is(gone.error.code, 'NOT_LEADER');
    await r2.ingress.stop();
  },
);

test.serial(
  'a forwarded leader transfer is answered with the new leader once leadership moves',
  async (t) => {
    const silent = await harness().connect('peer');
    silent.subscribe(S.forward('L5'), { callback: () => {} });
    await silent.flush();
    const r = await rig('f5', 'follower', 'L5');
    (r.ingress as unknown as { p: { forwardTimeoutMs: number } }).p.forwardTimeoutMs = 60_000;
    const admin = await harness().connect('admin');
    const pending = admin.request(S.api('transferLeader'), encodeEnvelope({ to: 'L6' }, { cluster: 'ing' }), {
      timeout: 10_000,
    });
    await waitFor(() => r.counters.forwarded === 1, { what: 'the forward is out' });
    r.ingress.leaderChanged(null);
    r.ingress.leaderChanged('L6');
    const answer = decodeReply<{ leader: string }>((await pending).data, { cluster: 'ing' });
    t.deepEqual(answer.ok ? answer.result : answer.error.code, { leader: 'L6' });
    await r.ingress.stop();
  },
);
