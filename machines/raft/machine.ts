/**
 * The Raft node as an XState v5 statechart. States are the roles; every peer message first
 * meets the term check (the same three transitions in every role, in this order), then the
 * role's own logic. Role logic runs on a draft (state.ts) and leaves effects as emitted events:
 * run it as an actor and listen with `actor.on('*')`, or step it purely with `stepRaft`.
 */
import { and, enqueueActions, initialTransition, type SnapshotFrom, setup, transition } from 'xstate';
import { electionOutcome, stepCandidate } from './candidate.ts';
import type { Effect, LocalEvent, RaftEvent } from './events.ts';
import { followerLocal, stepFollower } from './follower.ts';
import {
  becomeLeader,
  leaderLocal,
  leaderPersisted,
  quorumLost,
  removedFromConfig,
  stepLeader,
  tickLeader,
} from './leader.ts';
import { isMessage, type Message, type MessageType, messageTypes } from './messages.ts';
import {
  answerOutOfTerm,
  becomeCandidate,
  becomeFollower,
  becomePreCandidate,
  classifyTerm,
  closeDraft,
  type Draft,
  handleApplied,
  handlePersisted,
  handleSnapshotTaken,
  initialContext,
  isVoter,
  leaderOf,
  openDraft,
  type RaftContext,
  type RaftInput,
} from './state.ts';
import type { NodeId } from './types.ts';

interface FollowParams {
  readonly term: number;
  readonly leader: NodeId | null;
}

/** Wraps a draft-stepping function as one XState action: assign the stepped context, emit
 * its effects in order. */
// biome-ignore lint/suspicious/noExplicitAny: setup() types the action; enqueueActions alone cannot.
export function step<P = undefined>(fn: (d: Draft, event: RaftEvent, params: P) => void): any {
  // biome-ignore lint/suspicious/noExplicitAny: as above.
  return enqueueActions(({ context, event, enqueue }: any, params: P) => {
    const d = openDraft(context as RaftContext);
    fn(d, event as RaftEvent, params);
    const [next, effects] = closeDraft(d);
    enqueue.assign(next);
    for (const e of effects) enqueue.emit(e);
  });
}

export const raftMachine = setup({
  types: {
    context: {} as RaftContext,
    events: {} as RaftEvent,
    input: {} as RaftInput,
    emitted: {} as Effect,
  },
  actions: {
    becomeFollower: step<FollowParams>((d, _e, p) => becomeFollower(d, p.term, p.leader)),
    becomePreCandidate: step((d) => becomePreCandidate(d)),
    becomeCandidate: step<{ transfer: boolean }>((d, _e, p) => becomeCandidate(d, p.transfer)),
    becomeLeader: step((d) => becomeLeader(d)),
    stepFollower: step((d, e) => stepFollower(d, e as Message)),
    stepCandidate: step((d, e) => stepCandidate(d, e as Message)),
    stepLeader: step((d, e) => stepLeader(d, e as Message)),
    answerOutOfTerm: step((d, e) => answerOutOfTerm(d, e as Message)),
    followerLocal: step((d, e) => followerLocal(d, e as LocalEvent)),
    leaderLocal: step((d, e) => leaderLocal(d, e as LocalEvent)),
    tickElection: step((d) => {
      d.electionElapsed++;
    }),
    tickLeader: step((d) => tickLeader(d)),
    persisted: step((d, e) => {
      const p = e as Extract<RaftEvent, { type: 'raft.persisted' }>;
      handlePersisted(d, p.index, p.term);
      if (d.role === 'leader') leaderPersisted(d);
    }),
    applied: step((d, e) => handleApplied(d, (e as Extract<RaftEvent, { type: 'raft.applied' }>).index)),
    snapshotTaken: step((d, e) =>
      handleSnapshotTaken(d, (e as Extract<RaftEvent, { type: 'raft.snapshotTaken' }>).index),
    ),
  },
  guards: {
    fromNewerTerm: ({ context, event }) => isMessage(event) && classifyTerm(context, event) === 'newer',
    outOfTerm: ({ context, event }) => {
      if (!isMessage(event)) return false;
      const c = classifyTerm(context, event);
      return c === 'stale' || c === 'ignore';
    },
    electionDue: ({ context }) =>
      isVoter(context) && context.electionElapsed + 1 >= context.randomizedElectionTimeout,
    preVoteEnabled: ({ context }) => context.opts.preVote,
    promotable: ({ context }) => isVoter(context),
    electionWon: ({ context }) => electionOutcome(context) === 'won',
    electionLost: ({ context }) => electionOutcome(context) === 'lost',
    quorumLost: ({ context }) => quorumLost(context),
    removedFromConfig: ({ context }) => removedFromConfig(context),
  },
}).createMachine({
  id: 'raft',
  // transition() re-runs the context factory without input on every step: skip the work then
  // (the snapshot's own context is what counts).
  context: ({ input }) => (input === undefined ? ({} as RaftContext) : initialContext(input)),
  initial: 'follower',
  on: {
    'raft.persisted': { actions: 'persisted' },
    'raft.applied': { actions: 'applied' },
    'raft.snapshotTaken': { actions: 'snapshotTaken' },
  },
  states: {
    follower: {
      on: {
        ...onMessages('stepFollower'),
        'raft.timeoutNow': [
          ...termCheck(),
          {
            guard: 'promotable',
            target: '#raft.candidate.campaign',
            actions: { type: 'becomeCandidate', params: { transfer: true } },
          },
          { actions: 'stepFollower' },
        ],
        'raft.tick': startElection('tickElection'),
        'raft.propose': { actions: 'followerLocal' },
        'raft.readIndex': { actions: 'followerLocal' },
        'raft.changeMembership': { actions: 'followerLocal' },
      },
    },
    candidate: {
      initial: 'preVote',
      on: {
        ...onMessages('stepCandidate'),
        'raft.appendEntries': leaderFound(),
        'raft.heartbeat': leaderFound(),
        'raft.installSnapshot': leaderFound(),
        'raft.tick': startElection('tickElection'),
        'raft.propose': { actions: 'followerLocal' },
        'raft.readIndex': { actions: 'followerLocal' },
        'raft.changeMembership': { actions: 'followerLocal' },
      },
      states: {
        preVote: {
          always: [
            {
              guard: 'electionWon',
              target: 'campaign',
              actions: { type: 'becomeCandidate', params: { transfer: false } },
            },
            { guard: 'electionLost', target: '#raft.follower', actions: stepDown() },
          ],
        },
        campaign: {
          always: [
            { guard: 'electionWon', target: '#raft.leader', actions: 'becomeLeader' },
            { guard: 'electionLost', target: '#raft.follower', actions: stepDown() },
          ],
        },
      },
    },
    leader: {
      always: { guard: 'removedFromConfig', target: 'follower', actions: stepDown() },
      on: {
        ...onMessages('stepLeader'),
        'raft.tick': [
          { guard: 'quorumLost', target: 'follower', actions: stepDown() },
          { actions: 'tickLeader' },
        ],
        'raft.propose': { actions: 'leaderLocal' },
        'raft.readIndex': { actions: 'leaderLocal' },
        'raft.changeMembership': { actions: 'leaderLocal' },
        'raft.transferLeader': { actions: 'leaderLocal' },
        'raft.snapshotFailed': { actions: 'leaderLocal' },
      },
    },
  },
});

/** The term check, before any role logic (etcd's Step): a newer term makes us a follower of
 * it first; an older one is answered or dropped. */
function termCheck() {
  return [
    {
      guard: 'fromNewerTerm' as const,
      target: '#raft.follower',
      reenter: true,
      actions: [
        {
          type: 'becomeFollower' as const,
          params: ({ event }: { event: RaftEvent }) => {
            const m = event as Message;
            return { term: m.term, leader: leaderOf(m) };
          },
        },
        'stepFollower' as const,
      ],
    },
    { guard: 'outOfTerm' as const, actions: 'answerOutOfTerm' as const },
  ];
}

function onMessages(role: 'stepFollower' | 'stepCandidate' | 'stepLeader') {
  const on = {} as Record<MessageType, ReturnType<typeof termCheck>>;
  for (const t of messageTypes) on[t] = [...termCheck(), { actions: role }] as ReturnType<typeof termCheck>;
  return on;
}

/** A candidate that hears from a leader of its term follows it (§5.2). */
function leaderFound() {
  return [
    ...termCheck(),
    {
      target: '#raft.follower',
      actions: [
        {
          type: 'becomeFollower' as const,
          params: ({ event }: { event: RaftEvent }) => ({
            term: (event as Message).term,
            leader: (event as Message).from,
          }),
        },
        'stepFollower' as const,
      ],
    },
  ];
}

function startElection(otherwise: 'tickElection') {
  return [
    {
      guard: and(['electionDue', 'preVoteEnabled']),
      target: '#raft.candidate.preVote',
      reenter: true,
      actions: 'becomePreCandidate' as const,
    },
    {
      guard: 'electionDue' as const,
      target: '#raft.candidate.campaign',
      reenter: true,
      actions: { type: 'becomeCandidate' as const, params: { transfer: false } },
    },
    { actions: otherwise },
  ];
}

function stepDown() {
  return {
    type: 'becomeFollower' as const,
    params: ({ context }: { context: RaftContext }) => ({ term: context.term, leader: null }),
  };
}

export type RaftSnapshot = SnapshotFrom<typeof raftMachine>;

function effectsOf(actions: readonly { type: string; params?: unknown }[]): Effect[] {
  const out: Effect[] = [];
  for (const a of actions) if (a.type === 'xstate.emit') out.push((a.params as { event: Effect }).event);
  return out;
}

export type RaftMachine = typeof raftMachine;

/** The pure step: (snapshot, event) -> (next snapshot, effects). The log reader in context must
 * reflect every `persist`/`restore` the runtime completed and reported. */
export function stepRaft(
  snapshot: RaftSnapshot,
  event: RaftEvent,
  machine: RaftMachine = raftMachine,
): [RaftSnapshot, Effect[]] {
  const [next, actions] = transition(machine, snapshot, event);
  return [next, effectsOf(actions)];
}

export function startRaft(input: RaftInput, machine: RaftMachine = raftMachine): [RaftSnapshot, Effect[]] {
  const [s, actions] = initialTransition(machine, input);
  return [s, effectsOf(actions)];
}
