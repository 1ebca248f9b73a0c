/**
 * `connect({ inspect })`: the client's session machine (connecting, active, suspended, expired)
 * shown in an inspector, Ensemble's page (`ensemble inspect`) or Stately's, through any XState
 * inspection observer, e.g. `createWebSocketInspector({ url: 'ws://127.0.0.1:4280' }).inspect`
 * of `@statelyai/inspect`. What reaches the observer is sanitized as the nodes' inspection stream
 * is (protocol/inspection.ts): the session secret and any value never leave the process.
 */
import type { AnyActorRef, InspectionEvent, Observer } from 'xstate';
import { sanitize } from '../protocol/index.ts';

/** An XState inspection observer: a function or an observer object. */
export type InspectObserver = Observer<InspectionEvent> | ((event: InspectionEvent) => void);

/** A snapshot with its context sanitized (status, value and the rest as they are). */
function cleanSnapshot(s: unknown): unknown {
  if (typeof s !== 'object' || s === null) return s;
  const snap = s as { context?: unknown };
  return { ...snap, context: sanitize(snap.context) };
}

/** The actor as the observer sees it: its snapshots sanitized. */
function cleanRef(ref: AnyActorRef): AnyActorRef {
  return new Proxy(ref, {
    get(target, prop, receiver) {
      if (prop === 'getSnapshot') return () => cleanSnapshot(target.getSnapshot());
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

/**
 * Wraps `target` so it gets the actor, event and snapshot inspection events with contexts and
 * events sanitized (other kinds, which carry raw action parameters, are not passed on). A
 * throwing observer never reaches the client.
 */
export function sanitizedObserver(target: InspectObserver): (event: InspectionEvent) => void {
  const next = typeof target === 'function' ? target : (e: InspectionEvent) => target.next?.(e);
  return (ev) => {
    let out: InspectionEvent;
    switch (ev.type) {
      case '@xstate.actor':
        out = { ...ev, actorRef: cleanRef(ev.actorRef as AnyActorRef) };
        break;
      case '@xstate.event':
        out = { ...ev, event: sanitize(ev.event) as typeof ev.event };
        break;
      case '@xstate.snapshot':
        out = {
          ...ev,
          actorRef: cleanRef(ev.actorRef as AnyActorRef),
          snapshot: cleanSnapshot(ev.snapshot) as typeof ev.snapshot,
          event: sanitize(ev.event) as typeof ev.event,
        };
        break;
      default:
        return;
    }
    try {
      next(out);
    } catch {
      // An inspector's failure is not the client's.
    }
  };
}
