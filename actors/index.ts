/**
 * actors/: the runtime that gives the machines a body — the node (`EnsembleNode`) and its parts:
 * storage writer, transport, applier, API, session keeper, watch hub, ticker.
 */

export type { ApplierPorts, StateMachine } from './applier.ts';
export { Executor, type ExecutorPorts, type LogPort } from './executor.ts';
export { defaultRaftOptions, defaultTickMs, EnsembleNode, type NodeConfig } from './node.ts';
