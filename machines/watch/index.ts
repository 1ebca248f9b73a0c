export {
  type EndReason,
  phaseOf,
  type WatcherContext,
  type WatcherEvent,
  type WatcherInput,
  type WatcherPhase,
  watcherMachine,
} from './machine.ts';
