export { electionOutcome } from './candidate.ts';
export type {
  Effect,
  EffectOf,
  LocalEvent,
  MembershipChange,
  RaftEvent,
  RejectReason,
  Role,
} from './events.ts';
export {
  isNodeId,
  MAX_APPEND_ENTRIES,
  MAX_FRAME_MESSAGES,
  type PeerFrame,
  type SnapshotChunk,
  type ValidatedChunk,
  type ValidatedFrame,
  validatePeerFrame,
  validateSnapshotChunk,
  validateSnapshotMeta,
} from './frames.ts';
export {
  createRaftMachine,
  type DraftStep,
  type RaftMachine,
  type RaftPorts,
  type RaftReader,
  type RaftSnapshot,
  type RaftVariant,
  raftReader,
  raftSteps,
  roleOf,
  type StepName,
  startRaft,
  stepRaft,
} from './machine.ts';
export { MemoryLog } from './memory-log.ts';
export * from './messages.ts';
export { nextRandom, seedFrom } from './prng.ts';
export {
  configAt,
  currentConfig,
  defaultOptions,
  initialContext,
  lastIndex,
  type Progress,
  type RaftContext,
  type RaftInput,
  type RaftOptions,
} from './state.ts';
export * from './types.ts';
