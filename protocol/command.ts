/**
 * Log commands: what a committed `normal` entry carries for the key tree, one schema per op built
 * from the same field rules as the requests (api.ts), so a put flag is declared once for the wire,
 * the log and the tree. A command is checked twice by the same rules: when the API builds it from
 * a valid request, and again in apply, because a log entry may hold anything (an older or a broken
 * proposer): apply answers a bad command with the typed error as its outcome.
 *
 * A write's command keeps the request's fields and drops the session secret from its exactly-once
 * tag; a client's write that may create keys names the user (`user`), which the tree records as
 * each new key's creator (keys per user are counted by it); a client's session names its `owner`: the proposer checked the secret; the log never carries it (only `sessionOpen`, which
 * creates the session, records its secret).
 */
import type { ValidRequest } from './api.ts';
import {
  checkDelete,
  checkEphemeral,
  checkTag,
  checkTxn,
  deleteFields,
  grantFields,
  putFields,
  sequentialFields,
  tagFields,
  txnFields,
} from './api.ts';
import { DEFAULT_MAX_REQUEST_FRAME, decodeCborTrusted, encodeCbor } from './codec.ts';
import { BadRequestError, TooLargeError } from './errors.ts';
import {
  type Accepts,
  type ApiLimits,
  count,
  defaultApiLimits,
  flag,
  isBytes,
  obj,
  oneOf,
  opt,
  secret,
  sessionId,
  ttlMs,
  userName,
} from './schema.ts';

/** The exactly-once tag a write's command carries (Raft thesis §6.3): no secret. */
export const commandTag = obj(tagFields, checkTag);
export type CommandTag = Accepts<typeof commandTag>;

export const commands = {
  put: obj({ ...putFields, client: opt(commandTag), user: opt(userName) }, checkEphemeral),
  delete: obj({ ...deleteFields, client: opt(commandTag) }, checkDelete),
  createSequential: obj(
    { ...sequentialFields, client: opt(commandTag), user: opt(userName) },
    checkEphemeral,
  ),
  txn: obj({ ...txnFields, client: opt(commandTag), user: opt(userName) }, (t, l) => {
    checkTxn(t, l);
    checkEphemeral(t);
  }),
  /** Id, secret and TTL are chosen by the proposer, never inside apply. */
  sessionOpen: obj({ id: sessionId, secret, ttlMs, owner: opt(userName) }),
  sessionClose: obj({ id: sessionId }),
  /** Proposed by the leader's session keeper once the session's expiry is confirmed. */
  sessionExpire: obj({ id: sessionId }),
  compact: obj({ revision: count() }),
  authGrant: obj({ ...grantFields, read: flag, write: flag }),
  authRevoke: obj(grantFields),
};

const command = oneOf(commands);
export type Command = Accepts<typeof command>;
export type CommandOp = Command['op'];
/** The command of one op: `CommandOf<'put'>`. */
export type CommandOf<K extends CommandOp> = Extract<Command, { readonly op: K }>;

/**
 * Turns what a log entry carries (a command object or its CBOR bytes) into a `Command`.
 * Throws `BadRequestError`, `UnknownOpError`, `TooLargeError` or `BadPathError`.
 */
export function decodeCommand(input: unknown, limits: ApiLimits = defaultApiLimits): Command {
  let raw = input;
  if (isBytes(input)) {
    // A command is what a valid request became: bounded like the request's whole frame (values
    // are bounded by maxRequestBytes, but keys, compares and framing come on top).
    if (input.length > DEFAULT_MAX_REQUEST_FRAME)
      throw new TooLargeError(
        input.length,
        DEFAULT_MAX_REQUEST_FRAME,
        `command of ${input.length} bytes exceeds ${DEFAULT_MAX_REQUEST_FRAME}`,
      );
    // Log entries come from a leader that encoded them itself (peers are trusted by nats.conf):
    // no plain-CBOR scan first; what decodes is still checked field by field below.
    try {
      raw = decodeCborTrusted(input);
    } catch (err) {
      throw new BadRequestError(`undecodable command: ${(err as Error).message}`);
    }
  }
  return command.parse(raw, 'command', limits);
}

/** Encodes a command as the CBOR bytes a log entry carries. Throws `TypeError`. */
export const encodeCommand = (c: Command): Uint8Array => encodeCbor(c);

/** Drops the secret of a write's tag: what the log keeps of it. */
const tagOf = (r: { readonly client?: CommandTag }): { client?: CommandTag } =>
  r.client ? { client: { session: r.client.session, seq: r.client.seq, lowSeq: r.client.lowSeq } } : {};

/**
 * The command a valid request becomes, or null for an op that is not a log command. A session's
 * id and secret, when the client chose none, come from `choose` (the proposer's randomness:
 * never inside apply).
 */
export function commandOf(
  v: ValidRequest,
  choose: () => { readonly id: string; readonly secret: Uint8Array },
): Command | null {
  switch (v.op) {
    case 'put':
    case 'delete':
    case 'createSequential':
    case 'txn':
      return { ...v.request, op: v.op, ...tagOf(v.request) } as Command;
    case 'sessionOpen': {
      const r = v.request;
      const chosen = r.id !== undefined && r.secret !== undefined ? null : choose();
      return {
        op: 'sessionOpen',
        id: r.id ?? chosen!.id,
        secret: r.secret ?? chosen!.secret,
        ttlMs: r.ttlMs,
      };
    }
    case 'sessionClose':
      return { op: 'sessionClose', id: v.request.id };
    case 'compact':
      return { op: 'compact', revision: v.request.revision };
    case 'authGrant':
      return { op: 'authGrant', ...v.request };
    case 'authRevoke':
      return { op: 'authRevoke', ...v.request };
    default:
      return null;
  }
}
