/**
 * The Raft node as an XState v5 statechart. States are the roles, and the only place the role
 * is kept: `roleOf(snapshot)` reads it from the state value. Every peer message first meets the
 * term check (the same three transitions in every role, in this order), then the role's own
 * logic. Role logic runs on a draft (state.ts) and leaves effects as emitted events: run it as
 * an actor and listen with `actor.on('*')`, or step it purely with `stepRaft`.
 *
 * A machine is made for one log (`createRaftMachine({ log })`): the log reader is its port,
 * not part of its context, so a snapshot of the machine is plain data an inspector can show.
 */
import { and, enqueueActions, initialTransition, type SnapshotFrom, setup, transition } from 'xstate';
import { electionOutcome, stepCandidate } from './candidate.ts';
import type { Effect, LocalEvent, RaftEvent, Role } from './events.ts';
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
  lastIndex,
  leaderOf,
  openDraft,
  type RaftContext,
  type RaftInput,
} from './state.ts';
import type { LogReader, NodeId } from './types.ts';

/** What a machine reads beyond its context. */
export interface RaftPorts {
  /** The durable log: the runtime writes it and reports each write (`raft.persisted`). */
  readonly log: LogReader;
}

interface RoleParams {
  /** The role of the state the action runs in (its source state, for a transition). */
  readonly role: Role;
}
interface FollowParams extends RoleParams {
  readonly term: number;
  readonly leader: NodeId | null;
}
interface CampaignParams extends RoleParams {
  readonly transfer: boolean;
}

/** One step of the machine on a draft. */
export type DraftStep<P extends RoleParams = RoleParams> = (d: Draft, event: RaftEvent, params: P) => void;

/** Every step the machine's actions run, by name. */
export const raftSteps = {
  becomeFollower: ((d, _e, p) => becomeFollower(d, p.term, p.leader)) as DraftStep<FollowParams>,
  becomePreCandidate: ((d) => becomePreCandidate(d)) as DraftStep,
  becomeCandidate: ((d, _e, p) => becomeCandidate(d, p.transfer)) as DraftStep<CampaignParams>,
  becomeLeader: ((d) => becomeLeader(d)) as DraftStep,
  stepFollower: ((d, e) => stepFollower(d, e as Message)) as DraftStep,
  stepCandidate: ((d, e) => stepCandidate(d, e as Message)) as DraftStep,
  stepLeader: ((d, e) => stepLeader(d, e as Message)) as DraftStep,
  answerOutOfTerm: ((d, e) => answerOutOfTerm(d, e as Message)) as DraftStep,
  followerLocal: ((d, e) => followerLocal(d, e as LocalEvent)) as DraftStep,
  leaderLocal: ((d, e) => leaderLocal(d, e as LocalEvent)) as DraftStep,
  tickElection: ((d) => {
    d.electionElapsed++;
  }) as DraftStep,
  tickLeader: ((d) => tickLeader(d)) as DraftStep,
  persisted: ((d, e) => {
    const p = e as Extract<RaftEvent, { type: 'raft.persisted' }>;
    handlePersisted(d, p.index, p.term);
    if (d.role === 'leader') leaderPersisted(d);
  }) as DraftStep,
  applied: ((d, e) =>
    handleApplied(d, (e as Extract<RaftEvent, { type: 'raft.applied' }>).index)) as DraftStep,
  snapshotTaken: ((d, e) =>
    handleSnapshotTaken(d, (e as Extract<RaftEvent, { type: 'raft.snapshotTaken' }>).index)) as DraftStep,
};
export type StepName = keyof typeof raftSteps;

const raftGuards = {
  fromNewerTerm: ({ context, event }: GuardArgs) =>
    isMessage(event) && classifyTerm(context, event) === 'newer',
  outOfTerm: ({ context, event }: GuardArgs) => {
    if (!isMessage(event)) return false;
    const c = classifyTerm(context, event);
    return c === 'stale' || c === 'ignore';
  },
  electionDue: ({ context }: GuardArgs) =>
    isVoter(context) && context.electionElapsed + 1 >= context.randomizedElectionTimeout,
  preVoteEnabled: ({ context }: GuardArgs) => context.opts.preVote,
  promotable: ({ context }: GuardArgs) => isVoter(context),
  electionWon: ({ context }: GuardArgs) => electionOutcome(context) === 'won',
  electionLost: ({ context }: GuardArgs) => electionOutcome(context) === 'lost',
  quorumLost: ({ context }: GuardArgs) => quorumLost(context),
  removedFromConfig: ({ context }: GuardArgs) => removedFromConfig(context),
};
interface GuardArgs {
  readonly context: RaftContext;
  readonly event: RaftEvent;
}

/** A machine with some parts replaced: planted bugs in the simulator's teeth tests (the real
 * steps and guards are never edited). */
export interface RaftVariant {
  readonly steps?: { readonly [K in StepName]?: (typeof raftSteps)[K] };
  readonly guards?: { readonly [K in keyof typeof raftGuards]?: (typeof raftGuards)[K] };
}

/** Wraps a draft step as one XState action: open a draft in the action's role, step, assign the
 * stepped context, emit its effects in order. */
// biome-ignore lint/suspicious/noExplicitAny: setup() types the action; enqueueActions alone cannot.
function action<P extends RoleParams>(log: LogReader, fn: DraftStep<P>): any {
  // biome-ignore lint/suspicious/noExplicitAny: as above.
  return enqueueActions(({ context, event, enqueue }: any, params: P) => {
    const d = openDraft(context as RaftContext, log, params.role);
    fn(d, event as RaftEvent, params);
    const [next, effects] = closeDraft(d);
    enqueue.assign(() => next);
    for (const e of effects) enqueue.emit(e);
  });
}

/** The Raft machine for one node's log. */
export function createRaftMachine(ports: RaftPorts, variant: RaftVariant = {}) {
  const s = { ...raftSteps, ...variant.steps };
  const log = ports.log;
  return setup({
    types: {
      context: {} as RaftContext,
      events: {} as RaftEvent,
      input: {} as RaftInput,
      emitted: {} as Effect,
    },
    actions: {
      becomeFollower: action<FollowParams>(log, s.becomeFollower),
      becomePreCandidate: action<RoleParams>(log, s.becomePreCandidate),
      becomeCandidate: action<CampaignParams>(log, s.becomeCandidate),
      becomeLeader: action<RoleParams>(log, s.becomeLeader),
      stepFollower: action<RoleParams>(log, s.stepFollower),
      stepCandidate: action<RoleParams>(log, s.stepCandidate),
      stepLeader: action<RoleParams>(log, s.stepLeader),
      answerOutOfTerm: action<RoleParams>(log, s.answerOutOfTerm),
      followerLocal: action<RoleParams>(log, s.followerLocal),
      leaderLocal: action<RoleParams>(log, s.leaderLocal),
      tickElection: action<RoleParams>(log, s.tickElection),
      tickLeader: action<RoleParams>(log, s.tickLeader),
      persisted: action<RoleParams>(log, s.persisted),
      applied: action<RoleParams>(log, s.applied),
      snapshotTaken: action<RoleParams>(log, s.snapshotTaken),
    },
    guards: { ...raftGuards, ...variant.guards },
  }).createMachine({
    id: 'raft',
    // transition() re-runs the context factory without input on every step: skip the work then
    // (the snapshot's own context is what counts).
    context: ({ input }) => (input === undefined ? ({} as RaftContext) : initialContext(input, log)),
    initial: 'follower',
    states: {
      follower: {
        on: {
          ...onMessages('stepFollower', 'follower'),
          'raft.timeoutNow': [
            ...termCheck('follower'),
            {
              guard: 'promotable',
              target: '#raft.candidate.campaign',
              actions: { type: 'becomeCandidate', params: { role: 'follower', transfer: true } },
            },
            { actions: { type: 'stepFollower', params: { role: 'follower' } } },
          ],
          'raft.tick': startElection('follower'),
          ...notLeader('follower'),
          ...bookkeeping('follower'),
        },
      },
      candidate: {
        initial: 'preVote',
        states: {
          preVote: {
            on: candidateEvents('preCandidate'),
            always: [
              {
                guard: 'electionWon',
                target: 'campaign',
                actions: { type: 'becomeCandidate', params: { role: 'preCandidate', transfer: false } },
              },
              { guard: 'electionLost', target: '#raft.follower', actions: stepDown('preCandidate') },
            ],
          },
          campaign: {
            on: candidateEvents('candidate'),
            always: [
              {
                guard: 'electionWon',
                target: '#raft.leader',
                actions: { type: 'becomeLeader', params: { role: 'candidate' } },
              },
              { guard: 'electionLost', target: '#raft.follower', actions: stepDown('candidate') },
            ],
          },
        },
      },
      leader: {
        always: { guard: 'removedFromConfig', target: 'follower', actions: stepDown('leader') },
        on: {
          ...onMessages('stepLeader', 'leader'),
          'raft.tick': [
            { guard: 'quorumLost', target: 'follower', actions: stepDown('leader') },
            { actions: { type: 'tickLeader', params: { role: 'leader' } } },
          ],
          'raft.propose': { actions: { type: 'leaderLocal', params: { role: 'leader' } } },
          'raft.readIndex': { actions: { type: 'leaderLocal', params: { role: 'leader' } } },
          'raft.changeMembership': { actions: { type: 'leaderLocal', params: { role: 'leader' } } },
          'raft.transferLeader': { actions: { type: 'leaderLocal', params: { role: 'leader' } } },
          'raft.snapshotFailed': { actions: { type: 'leaderLocal', params: { role: 'leader' } } },
          ...bookkeeping('leader'),
        },
      },
    },
  });
}

export type RaftMachine = ReturnType<typeof createRaftMachine>;
export type RaftSnapshot = SnapshotFrom<RaftMachine>;

/** The role a machine is in: its state value. */
export function roleOf(snapshot: { readonly value: unknown }): Role {
  const v = snapshot.value;
  if (v === 'follower' || v === 'leader') return v;
  return (v as { candidate?: string }).candidate === 'preVote' ? 'preCandidate' : 'candidate';
}

/** The term check, before any role logic (etcd's Step): a newer term makes us a follower of
 * it first; an older one is answered or dropped. */
function termCheck(role: Role) {
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
            return { role, term: m.term, leader: leaderOf(m) };
          },
        },
        { type: 'stepFollower' as const, params: { role: 'follower' as Role } },
      ],
    },
    { guard: 'outOfTerm' as const, actions: { type: 'answerOutOfTerm' as const, params: { role } } },
  ];
}

function onMessages(step: 'stepFollower' | 'stepCandidate' | 'stepLeader', role: Role) {
  const on = {} as Record<MessageType, ReturnType<typeof termCheck>>;
  for (const t of messageTypes)
    on[t] = [...termCheck(role), { actions: { type: step, params: { role } } }] as ReturnType<
      typeof termCheck
    >;
  return on;
}

/** The runtime's reports, handled alike in every role. */
function bookkeeping(role: Role) {
  return {
    'raft.persisted': { actions: { type: 'persisted' as const, params: { role } } },
    'raft.applied': { actions: { type: 'applied' as const, params: { role } } },
    'raft.snapshotTaken': { actions: { type: 'snapshotTaken' as const, params: { role } } },
  };
}

/** Local requests while not leading: refused with a hint (reads are forwarded by followers). */
function notLeader(role: Role) {
  const act = { actions: { type: 'followerLocal' as const, params: { role } } };
  return { 'raft.propose': act, 'raft.readIndex': act, 'raft.changeMembership': act };
}

/** Both phases of a candidacy handle the same events; only the role differs. */
function candidateEvents(role: 'preCandidate' | 'candidate') {
  return {
    ...onMessages('stepCandidate', role),
    'raft.appendEntries': leaderFound(role),
    'raft.heartbeat': leaderFound(role),
    'raft.installSnapshot': leaderFound(role),
    'raft.tick': startElection(role),
    ...notLeader(role),
    ...bookkeeping(role),
  };
}

/** A candidate that hears from a leader of its term follows it (§5.2). */
function leaderFound(role: Role) {
  return [
    ...termCheck(role),
    {
      target: '#raft.follower',
      actions: [
        {
          type: 'becomeFollower' as const,
          params: ({ event }: { event: RaftEvent }) => ({
            role,
            term: (event as Message).term,
            leader: (event as Message).from,
          }),
        },
        { type: 'stepFollower' as const, params: { role: 'follower' as Role } },
      ],
    },
  ];
}

function startElection(role: Role) {
  return [
    {
      guard: and(['electionDue', 'preVoteEnabled']),
      target: '#raft.candidate.preVote',
      reenter: true,
      actions: { type: 'becomePreCandidate' as const, params: { role } },
    },
    {
      guard: 'electionDue' as const,
      target: '#raft.candidate.campaign',
      reenter: true,
      actions: { type: 'becomeCandidate' as const, params: { role, transfer: false } },
    },
    { actions: { type: 'tickElection' as const, params: { role } } },
  ];
}

function stepDown(role: Role) {
  return {
    type: 'becomeFollower' as const,
    params: ({ context }: { context: RaftContext }) => ({ role, term: context.term, leader: null }),
  };
}

function effectsOf(actions: readonly { type: string; params?: unknown }[]): Effect[] {
  const out: Effect[] = [];
  for (const a of actions) if (a.type === 'xstate.emit') out.push((a.params as { event: Effect }).event);
  return out;
}

/** The pure step: (snapshot, event) -> (next snapshot, effects). The machine's log must reflect
 * every `persist`/`restore` the runtime completed and reported. */
export function stepRaft(
  machine: RaftMachine,
  snapshot: RaftSnapshot,
  event: RaftEvent,
): [RaftSnapshot, Effect[]] {
  const [next, actions] = transition(machine, snapshot, event);
  return [next, effectsOf(actions)];
}

export function startRaft(machine: RaftMachine, input: RaftInput): [RaftSnapshot, Effect[]] {
  const [s, actions] = initialTransition(machine, input);
  return [s, effectsOf(actions)];
}

/** What the runtime reads of its running machine. */
export interface RaftReader {
  /** The role: the machine's state value. */
  role(): Role;
  /** The context: term, leader, commit, configuration, progress. */
  context(): RaftContext;
  /** The last index of the log the machine sees (the durable log and its unstable tail). */
  lastIndex(): number;
}

export function raftReader(snapshot: () => RaftSnapshot, log: LogReader): RaftReader {
  return {
    role: () => roleOf(snapshot()),
    context: () => snapshot().context,
    lastIndex: () => lastIndex({ ...snapshot().context, log }),
  };
}
