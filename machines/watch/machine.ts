/**
 * One watch on a node, as an XState v5 statechart: its life, not its traffic.
 *
 *   waiting -> replaying -> live.direct -> live.shared
 *                  ^  \         |
 *                  |   `--> paused --> ended (WATCH_BEHIND)
 *                  `--------'
 *   (any) -- cancel | sessionEnded | fail --> ended
 *
 * - `waiting`: a resume reached a node that has not applied the start revision yet; the node
 *   reports each revision it applies (`tree.at`) until it has.
 * - `replaying`: the watch reads the history on its own, a window of messages at a time, toward
 *   the node's live cursor.
 * - `live`: caught up. The node reads each new revision once for all the live watches with the
 *   same target (a group) and encodes it once. `direct`: the events still go to the watch's own
 *   inbox, one message each, acknowledged by the client. `shared`: the client subscribed to the
 *   group's subject (`sharedReady`), so one message on it serves every such watch; nothing is
 *   sent or acknowledged per watch any more.
 * - `paused`: the client stopped acknowledging and the window is full. The node never blocks on
 *   it: an acknowledgement sends it back to `replaying` (it left its group); lagging the live
 *   cursor by more than `maxBehind` revisions ends it with WATCH_BEHIND, and the client resumes
 *   from history when its consumer catches up.
 * - `ended`: final, with the reason (what the client is told, unless it cancelled).
 *
 * Pure: the node (actors/watches.ts) sends the events and acts on the state it lands in. It
 * sends an event only when the watch's life changes, never per revision, so 10k watchers cost
 * nothing per write here.
 */
import { assign, setup } from 'xstate';

export interface WatcherInput {
  /** `<session>/<watch id>`. */
  readonly key: string;
  /** The first revision the watch delivers. */
  readonly start: number;
  /** How far behind the live cursor a paused watch may fall before it is ended. */
  readonly maxBehind: number;
}

export type EndReason = 'cancelled' | 'session' | 'behind' | 'error';

export interface WatcherContext {
  readonly key: string;
  readonly start: number;
  readonly maxBehind: number;
  /** The client follows the group subject: a watch that goes live goes straight to `shared`. */
  readonly sharedReady: boolean;
  readonly ended: EndReason | null;
  /** The error code for `error` endings. */
  readonly code: string | null;
}

export type WatcherEvent =
  | { readonly type: 'tree.at'; readonly revision: number }
  | { readonly type: 'caughtUp' }
  | { readonly type: 'windowFull' }
  | { readonly type: 'acked' }
  | { readonly type: 'lag'; readonly behind: number }
  | { readonly type: 'sharedReady' }
  | { readonly type: 'cancel' }
  | { readonly type: 'sessionEnded' }
  | { readonly type: 'fail'; readonly code: string };

/** Where a watcher is, flattened: what the node acts on. */
export type WatcherPhase = 'waiting' | 'replaying' | 'direct' | 'shared' | 'paused' | 'ended';

export const watcherMachine = setup({
  types: {
    context: {} as WatcherContext,
    events: {} as WatcherEvent,
    input: {} as WatcherInput,
  },
  actions: {
    end: assign((_, params: { reason: EndReason }) => ({ ended: params.reason })),
  },
  guards: {
    reachedStart: ({ context, event }) => event.type === 'tree.at' && event.revision + 1 >= context.start,
    tooFarBehind: ({ context, event }) => event.type === 'lag' && event.behind > context.maxBehind,
    sharedReady: ({ context }) => context.sharedReady,
  },
}).createMachine({
  id: 'watcher',
  context: ({ input }) => ({
    key: input.key,
    start: input.start,
    maxBehind: input.maxBehind,
    sharedReady: false,
    ended: null,
    code: null,
  }),
  initial: 'waiting',
  on: {
    cancel: { target: '.ended', actions: { type: 'end', params: { reason: 'cancelled' } } },
    sessionEnded: { target: '.ended', actions: { type: 'end', params: { reason: 'session' } } },
    fail: { target: '.ended', actions: assign({ ended: 'error', code: ({ event }) => event.code }) },
    sharedReady: { actions: assign({ sharedReady: true }) },
  },
  states: {
    waiting: {
      on: { 'tree.at': { guard: 'reachedStart', target: 'replaying' } },
    },
    replaying: {
      on: { caughtUp: 'live', windowFull: 'paused' },
    },
    live: {
      initial: 'direct',
      states: {
        direct: {
          always: { guard: 'sharedReady', target: 'shared' },
          on: {
            sharedReady: { target: 'shared', actions: assign({ sharedReady: true }) },
            windowFull: '#watcher.paused',
          },
        },
        shared: {},
      },
    },
    paused: {
      on: {
        acked: 'replaying',
        lag: {
          guard: 'tooFarBehind',
          target: 'ended',
          actions: { type: 'end', params: { reason: 'behind' } },
        },
      },
    },
    ended: { type: 'final' },
  },
});

/** The phase of a watcher's snapshot value. */
export function phaseOf(value: unknown): WatcherPhase {
  if (typeof value === 'string') return value as WatcherPhase;
  const live = (value as { live?: string }).live;
  return live === 'shared' ? 'shared' : 'direct';
}
