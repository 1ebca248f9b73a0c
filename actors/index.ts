/**
 * actors/: the runtime that gives the machines a body — the node (`EnsembleNode`) and its parts:
 * storage writer, transport, applier, API, session keeper, watch hub, ticker.
 */

export {
  type Answer,
  ApiHandlers,
  answerWith,
  type HandlerPorts,
  newCounters,
  PendingTable,
  type Reply,
} from './api/index.ts';
export type { ApplierPorts, StateMachine } from './applier.ts';
export { Executor, type ExecutorPorts, type LogPort } from './executor.ts';
export { defaultRaftOptions, defaultTickMs, EnsembleNode, type NodeConfig } from './node.ts';
export { type AgesPeers, type AgesQuestion, SessionKeeper, type SessionKeeperOptions } from './sessions.ts';
export { nodeMachine } from './supervisor.ts';
