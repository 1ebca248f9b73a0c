/**
 * Who asks. A node learns the identity of every request from nats-server, never from the request
 * body: requests from applications cross a service import with `share: true` (nats.conf), so the
 * server adds a `Nats-Request-Info` header naming the sender's account and user (and replaces any
 * such header the sender set). A request without it was published inside the nodes' own account,
 * where only peers log in.
 */
import { ADMIN_USER, INBOX_ROOT, inboxPrefix, isClientInbox, isLiteralSubject, isToken } from './subjects.ts';

/** `peer`: a node (trusted); `admin`: an operator (admin ops, every key); `client`: key grants. */
export type CallerKind = 'peer' | 'admin' | 'client';

export interface Caller {
  readonly kind: CallerKind;
  /** The NATS user (for a peer, `peer`). */
  readonly user: string;
}

/** A node, or anyone in the nodes' account. */
export const PEER_CALLER: Caller = Object.freeze({ kind: 'peer', user: 'peer' });

/** Users the nodes treat as admins unless configured otherwise. */
export const DEFAULT_ADMINS: readonly string[] = [ADMIN_USER];

/**
 * The caller of a request, from its `Nats-Request-Info` header (`null` or absent: a peer). `null`
 * for a header without a user: the server always names one, so such a request is refused.
 */
export function callerOf(
  info: string | null | undefined,
  admins: readonly string[] = DEFAULT_ADMINS,
): Caller | null {
  if (info === null || info === undefined || info === '') return PEER_CALLER;
  let user: unknown;
  try {
    user = (JSON.parse(info) as { user?: unknown }).user;
  } catch {
    return null;
  }
  if (typeof user !== 'string' || user === '' || user.length > 256) return null;
  return { kind: admins.includes(user) ? 'admin' : 'client', user };
}

/**
 * True if a node may deliver watch events for `caller` to `inbox`: a peer to any client inbox,
 * anyone else only below its own inbox prefix `_INBOX.<user>.` (which nats.conf exports to that
 * user's account alone).
 */
export function mayDeliverTo(caller: Caller, inbox: string): boolean {
  if (!isClientInbox(inbox)) return false;
  if (caller.kind === 'peer') return true;
  return isToken(caller.user) && inbox.startsWith(`${inboxPrefix(caller.user)}.`);
}

/**
 * True for a subject a node may answer a request on: a client inbox, or a reply subject the
 * server mapped for a request that crossed a service import (`_R_.…`).
 */
export const isReplySubject = (subject: unknown): subject is string =>
  isClientInbox(subject) ||
  (isLiteralSubject(subject) && subject.startsWith('_R_.') && !subject.startsWith(`${INBOX_ROOT}.`));
