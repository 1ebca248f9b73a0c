/**
 * Planted bugs for the teeth tests (raft-teeth.test.ts, teeth.test.ts): Raft bugs as variants
 * of the real machine (`createRaftMachine(ports, variant)`: named steps replaced by the real
 * role code plus one wrong step), and runtime mistakes on the state machine's side. The real
 * code is never edited.
 */
import { stepCandidate } from '../../machines/raft/candidate.ts';
import type { LocalEvent, RaftEvent } from '../../machines/raft/events.ts';
import { stepFollower } from '../../machines/raft/follower.ts';
import type { DraftStep, Message, RaftVariant } from '../../machines/raft/index.ts';
import { leaderLocal, leaderPersisted, stepLeader } from '../../machines/raft/leader.ts';
import {
  currentConfig,
  type Draft,
  handlePersisted,
  lastConfigIndex,
  quorum,
  send,
  termAt,
} from '../../machines/raft/state.ts';
import { type Command, decodeCommand, encodeCommand } from '../../protocol/index.ts';
import type { MemoryTree } from '../../storage/index.ts';

type StepFn = (d: Draft, m: Message) => void;

/** §5.4.2 ignored: the leader commits whatever index a quorum holds, whatever its term. */
function commitByCounting(d: Draft): void {
  const config = currentConfig(d);
  const matches = config.voters
    .map((id) => (id === d.id ? d.persisted : (d.progress[id]?.match ?? 0)))
    .sort((a, b) => b - a);
  const candidate = matches[quorum(config) - 1] ?? 0;
  if (candidate > d.commit) d.commit = candidate;
}

/** 1. Figure 8: a leader commits an entry of a previous term by counting its replicas. */
export const figure8Bug: RaftVariant = {
  steps: {
    stepLeader: (d, e) => {
      stepLeader(d, e as Message);
      if (d.role === 'leader') commitByCounting(d);
    },
    persisted: (d, e) => {
      const p = e as Extract<RaftEvent, { type: 'raft.persisted' }>;
      handlePersisted(d, p.index, p.term);
      if (d.role === 'leader') {
        leaderPersisted(d);
        commitByCounting(d);
      }
    },
  },
};

/** 2. A leader answers ReadIndex at once, without a round of heartbeats confirming it still
 * leads (thesis §6.4 step 3 skipped). */
export const quorumlessReadBug: RaftVariant = {
  steps: {
    leaderLocal: (d, e) => {
      const ev = e as LocalEvent;
      if (ev.type === 'raft.readIndex' && termAt(d, d.commit) === d.term) {
        d.effects.push({ type: 'readReady', ids: ev.ids, index: d.commit });
        return;
      }
      leaderLocal(d, ev);
    },
  },
};

/** 3. A voter grants real votes without the log up-to-date check (§5.4.1); pre-votes keep it. */
function skipUpToDate(role: StepFn): DraftStep {
  return (d, e) => {
    const m = e as Message;
    if (m.type !== 'raft.requestVote' || m.preVote) return role(d, m);
    const granted = d.vote === m.from || (d.vote === null && d.leader === null);
    if (granted) {
      d.vote = m.from;
      d.electionElapsed = 0;
    }
    send(d, m.from, { type: 'raft.voteResult', term: d.term, from: d.id, granted, preVote: false });
  };
}
export const staleVoterBug: RaftVariant = {
  steps: {
    stepFollower: skipUpToDate(stepFollower),
    stepCandidate: skipUpToDate(stepCandidate),
    stepLeader: skipUpToDate(stepLeader),
  },
};

/** 4. A leader takes a second configuration change while the first is uncommitted: it looks
 * at its last configuration as if it were committed. */
export const secondChangeBug: RaftVariant = {
  steps: {
    leaderLocal: (d, e) => {
      const ev = e as LocalEvent;
      if (ev.type !== 'raft.changeMembership' || lastConfigIndex(d) <= d.commit) return leaderLocal(d, ev);
      const configs = d.configs;
      d.configs = configs.map((c, i) =>
        i === configs.length - 1 ? { ...c, index: Math.min(c.index, d.commit) } : c,
      );
      leaderLocal(d, ev);
      d.configs =
        d.configs.length > configs.length ? [...configs, d.configs[d.configs.length - 1]!] : configs;
    },
  },
};

/** 5. A new leader changes the configuration before an entry of its own term has committed
 * (the bug in single-server changes Ongaro corrected in 2015). */
export const earlyChangeBug: RaftVariant = {
  steps: {
    leaderLocal: (d, e) => {
      const ev = e as LocalEvent;
      if (ev.type !== 'raft.changeMembership') return leaderLocal(d, ev);
      const termStart = d.termStart;
      d.termStart = 0;
      leaderLocal(d, ev);
      d.termStart = termStart;
    },
  },
};

/** 6a. A vote answered before it is durable: the answer does not wait for the write. */
function voteBeforePersist(role: StepFn): DraftStep {
  return (d, e) => {
    const from = d.effects.length;
    role(d, e as Message);
    for (let i = from; i < d.effects.length; i++) {
      const x = d.effects[i]!;
      if (x.type === 'send' && x.message.type === 'raft.voteResult' && !x.message.preVote)
        d.effects[i] = { ...x, afterPersist: false };
    }
  };
}
export const earlyVoteBug: RaftVariant = {
  steps: {
    stepFollower: voteBeforePersist(stepFollower),
    stepCandidate: voteBeforePersist(stepCandidate),
    stepLeader: voteBeforePersist(stepLeader),
  },
};

/** 6b. A vote persisted as null: the write that should record it records no vote. The step
 * makes its write itself, as closeDraft would but with a null vote (closeDraft then has nothing
 * left to write); the machine believes its vote is on disk. */
function nullVote(role: StepFn): DraftStep {
  return (d, e) => {
    role(d, e as Message);
    const hs = d.savedHardState;
    const writes = d.appendFrom !== Number.POSITIVE_INFINITY;
    if (d.term === hs.term && d.vote === hs.vote && !writes) return;
    const off = d.unstable[0]?.index ?? 0;
    const entries = writes ? d.unstable.slice(d.appendFrom - off) : [];
    d.savedHardState = { term: d.term, vote: d.vote, commit: d.commit };
    d.appendFrom = Number.POSITIVE_INFINITY;
    d.effects.unshift({
      type: 'persist',
      hardState: { term: d.term, vote: null, commit: d.commit },
      entries,
    });
  };
}
export const nullVoteBug: RaftVariant = {
  steps: { stepFollower: nullVote(stepFollower), stepCandidate: nullVote(stepCandidate) },
};

/** 7. A follower installs a snapshot older than its commit index (§7 says ignore it). */
export const oldSnapshotBug: RaftVariant = {
  steps: {
    stepFollower: (d, e) => {
      const m = e as Message;
      if (m.type === 'raft.installSnapshot' && m.snapshot.index <= d.commit) d.commit = m.snapshot.index - 1;
      stepFollower(d, m);
    },
  },
};

// ---------------------------------------------------------------------------------------------
// Runtime mistakes: the state machine's side (SimOptions.mistakes.apply), never the real tree.

/** The command an entry carries, or null (other entries: the tree answers them as it would). */
function commandIn(data: unknown): Command | null {
  try {
    return decodeCommand(data);
  } catch {
    return null;
  }
}

/** 8. Apply ignores the session tag: a retried write is applied again instead of answered from
 * the exactly-once table (thesis §6.3). */
export function untaggedApply(_node: string, index: number, command: unknown, tree: MemoryTree) {
  const c = commandIn(command) as (Command & { client?: unknown }) | null;
  if (c === null || !('client' in c)) return tree.applyNow(index, command);
  const { client: _tag, ...untagged } = c;
  return tree.applyNow(index, encodeCommand(untagged as Command));
}

/** 10. Apply drops a put's `ephemeral` flag: the key outlives the session that wrote it. */
export function nonEphemeralApply(_node: string, index: number, command: unknown, tree: MemoryTree) {
  const c = commandIn(command);
  if (c?.op !== 'put' || !c.ephemeral) return tree.applyNow(index, command);
  return tree.applyNow(index, encodeCommand({ ...c, ephemeral: false }));
}

/** 9. Apply depends on something outside the log (here: which replica applies), so one replica's
 * tree drifts from the others: n2 stores the puts whose value ends in 7 with another value. */
export function driftingApply(node: string, index: number, command: unknown, tree: MemoryTree) {
  const c = commandIn(command);
  if (node !== 'n2' || c?.op !== 'put' || !new TextDecoder().decode(c.value).endsWith('7'))
    return tree.applyNow(index, command);
  return tree.applyNow(index, encodeCommand({ ...c, value: new TextEncoder().encode('drift') }));
}
