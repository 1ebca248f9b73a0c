/**
 * The supervisor of a node's actors: a machine that spawns each part with a `systemId` and, when
 * one fails or is stopped, applies its policy (`SUPERVISION`): restart it, or stop the node
 * (crash-only). See node.ts for the parts and README's "Actors and supervision".
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { type AnyActorRef, assign, enqueueActions, fromCallback, setup } from 'xstate';
import {
  createRaftMachine,
  type Effect,
  type LogReader,
  type RaftInput,
  type RaftMachine,
} from '../machines/raft/index.ts';
import type { Api } from './api/index.ts';
import type { Executor } from './executor.ts';
import type { NodeConfig } from './node.ts';
import type { SessionKeeper } from './sessions.ts';
import type { Ticker } from './ticker.ts';
import type { Transport } from './transport.ts';
import type { WatchHub } from './watches.ts';

export interface Parts {
  readonly config: NodeConfig;
  readonly raftInput: RaftInput;
  readonly nc: NatsConnection;
  readonly executor: Executor;
  readonly transport: Transport;
  readonly api: Api;
  readonly ticker: Ticker;
  readonly sessions: SessionKeeper;
  readonly watches: WatchHub;
}

/** What the supervisor does when an actor fails or is stopped: restart it, or stop the node. */
export type Policy = 'restart' | 'crash';

export const SUPERVISION = {
  /** Its state is the node's promises (term, vote, log): never rebuilt behind its back. */
  raft: 'crash',
  /** The storage writer and the applier: a lost write or apply could acknowledge without durability. */
  executor: 'crash',
  transport: 'restart',
  api: 'restart',
  sessions: 'restart',
  watches: 'restart',
  ticker: 'restart',
} as const satisfies Record<string, Policy>;

export type ActorName = keyof typeof SUPERVISION;
export const actorNames = Object.keys(SUPERVISION) as ActorName[];
export const isActorName = (s: unknown): s is ActorName =>
  typeof s === 'string' && Object.hasOwn(SUPERVISION, s);

export const MAX_RESTARTS = 5;
export const RESTART_WINDOW_MS = 10_000;

type NodeEvent =
  | { readonly type: 'node.fatal'; readonly error: unknown }
  | { readonly type: 'node.stop' }
  /** Chaos: stop this actor; its policy decides what follows. */
  | { readonly type: 'node.stopActor'; readonly actor: ActorName; readonly now: number }
  /** An actor reported a failure of its own. */
  | {
      readonly type: 'node.actorFailed';
      readonly actor: ActorName;
      readonly error: unknown;
      readonly now: number;
    };

interface NodeContext {
  readonly parts: Parts;
  readonly error: unknown;
  /** Restart times of each actor within the window. */
  readonly restarts: Readonly<Partial<Record<ActorName, readonly number[]>>>;
  /** Restarts of each actor since the node started. */
  readonly restarted: Readonly<Partial<Record<ActorName, number>>>;
}

/** A part with start and stop, as a callback actor: stopping the actor stops the part. */
const part = (select: (p: Parts) => { start(): void; stop(): void }) =>
  fromCallback<{ type: string }, Parts>(({ input }) => {
    const x = select(input);
    x.start();
    return () => x.stop();
  });

/** Which actor an event is about: `node.stopActor`/`node.actorFailed`, or an actor's error event. */
function actorOf(event: { readonly type: string; readonly actor?: unknown }): ActorName | null {
  if (isActorName(event.actor)) return event.actor;
  const m = /^xstate\.error\.actor\.(.+)$/.exec(event.type);
  return m && isActorName(m[1]) ? m[1] : null;
}

/** Stands for a node's log until `superviseNode` provides the node's own Raft machine. */
function unboundLog(): LogReader {
  const unbound = (): never => {
    throw new Error("the supervisor runs a Raft machine made for the node's log: use superviseNode()");
  };
  return { firstIndex: unbound, lastIndex: unbound, term: unbound, entries: unbound };
}

/** The supervisor of one node, with its Raft machine (made for the node's log). */
export function superviseNode(raft: RaftMachine) {
  return nodeMachine.provide({ actors: { raft } });
}

/** The node's supervisor: starts every actor, applies each one's policy when it fails or stops. */
export const nodeMachine = setup({
  types: {
    input: {} as Parts,
    context: {} as NodeContext,
    events: {} as NodeEvent,
  },
  actors: {
    raft: createRaftMachine({ log: unboundLog() }),
    executor: fromCallback<{ type: string }, Parts>(({ input, system }) => {
      const raft = system.get('raft') as AnyActorRef & {
        on: (t: '*', h: (e: Effect) => void) => { unsubscribe(): void };
      };
      const sub = raft.on('*', (e) => input.executor.effect(e));
      return () => {
        sub.unsubscribe();
        input.executor.stop();
      };
    }),
    transport: part((p) => p.transport),
    api: part((p) => p.api),
    sessions: part((p) => p.sessions),
    watches: part((p) => p.watches),
    ticker: part((p) => p.ticker),
  },
  guards: {
    /** Restart, not crash: its policy says so and it is not in a crash loop. */
    restartable: ({ context, event }) => {
      const actor = actorOf(event);
      if (actor === null || SUPERVISION[actor] !== 'restart') return false;
      const now = 'now' in event ? event.now : performance.now();
      const recent = (context.restarts[actor] ?? []).filter((t) => now - t < RESTART_WINDOW_MS);
      return recent.length < MAX_RESTARTS;
    },
  },
  actions: {
    spawnAll: enqueueActions(({ context, enqueue }) => {
      enqueue.spawnChild('raft', { id: 'raft', systemId: 'raft', input: context.parts.raftInput });
      for (const name of actorNames)
        if (name !== 'raft') enqueue.spawnChild(name, { id: name, systemId: name, input: context.parts });
    }),
    restart: enqueueActions(({ context, event, enqueue }) => {
      const actor = actorOf(event);
      if (actor === null || actor === 'raft') return;
      const now = 'now' in event ? event.now : performance.now();
      enqueue.stopChild(actor);
      enqueue.spawnChild(actor, { id: actor, systemId: actor, input: context.parts });
      enqueue.assign({
        restarts: {
          ...context.restarts,
          [actor]: [...(context.restarts[actor] ?? []).filter((t) => now - t < RESTART_WINDOW_MS), now],
        },
        restarted: { ...context.restarted, [actor]: (context.restarted[actor] ?? 0) + 1 },
      });
    }),
    recordFailure: assign({
      error: ({ event }) => {
        const actor = actorOf(event);
        const cause = 'error' in event ? event.error : undefined;
        if (event.type === 'node.fatal') return event.error;
        return new Error(
          actor === null
            ? 'an actor failed'
            : `actor ${actor} ${event.type === 'node.stopActor' ? 'was stopped' : 'failed'} (policy: ${SUPERVISION[actor]}${SUPERVISION[actor] === 'restart' ? ', restarting too often' : ''})`,
          cause === undefined ? undefined : { cause },
        );
      },
    }),
  },
}).createMachine({
  id: 'node',
  context: ({ input }) => ({ parts: input, error: null, restarts: {}, restarted: {} }),
  entry: 'spawnAll',
  initial: 'running',
  states: {
    running: {
      on: {
        'node.stopActor': [
          { guard: 'restartable', actions: 'restart' },
          { target: 'failed', actions: 'recordFailure' },
        ],
        'node.actorFailed': [
          { guard: 'restartable', actions: 'restart' },
          { target: 'failed', actions: 'recordFailure' },
        ],
        'xstate.error.actor.*': [
          { guard: 'restartable', actions: 'restart' },
          { target: 'failed', actions: 'recordFailure' },
        ],
        'node.fatal': { target: 'failed', actions: 'recordFailure' },
        'node.stop': { target: 'stopped' },
      },
    },
    failed: { type: 'final' },
    stopped: { type: 'final' },
  },
});
