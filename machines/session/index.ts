export { type AgeReport, SessionClock } from './clock.ts';
export type {
  ConnectionState,
  FailoverReason,
  SessionEffect,
  SessionEffectOf,
  SessionEvent,
  SessionInput,
  SessionStateName,
} from './events.ts';
export {
  type AgesReply,
  type AgesRequest,
  ExpiryPlanner,
  type ExpiryPlannerOptions,
  type PlannerOutput,
} from './expiry.ts';
export {
  initialSessionContext,
  keepaliveInterval,
  nextWakeup,
  type SessionContext,
  type SessionMachine,
  type SessionSnapshot,
  sessionMachine,
  startSession,
  stepSession,
} from './machine.ts';
