/**
 * Answers to requests: a `Reply` is where one goes and in which format (the request's own: CBOR
 * or JSON, base64 if it used base64); `answerWith` encodes an outcome into it and never throws.
 */
import { encodeReply, InternalError, type Outcome, type WireFormat } from '../../protocol/index.ts';

export interface Reply {
  readonly format: WireFormat;
  readonly base64: boolean;
  /** `leader`: set on answers relayed from the leader, so clients learn where to go. */
  readonly respond: (bytes: Uint8Array, leader?: string) => void;
}

export type Answer = (reply: Reply, outcome: Outcome) => void;

export interface ApiCounters {
  requests: number;
  errors: number;
  forwarded: number;
  proposals: number;
  proposalBatches: number;
  reads: number;
  readBatches: number;
  badInput: number;
  forgedKeepalives: number;
  /** Requests refused for lack of permission (admin ops, grants, another user's inbox). */
  denied: number;
  /** Requests refused by a quota, or by the rate limit. */
  quotaExceeded: number;
  rateLimited: number;
}

export const newCounters = (): ApiCounters => ({
  requests: 0,
  errors: 0,
  forwarded: 0,
  proposals: 0,
  proposalBatches: 0,
  reads: 0,
  readBatches: 0,
  badInput: 0,
  forgedKeepalives: 0,
  denied: 0,
  quotaExceeded: 0,
  rateLimited: 0,
});

/** The answer function of a node: encodes in the reply's format, counts errors. */
export function answerWith(cluster: string, counters: ApiCounters): Answer {
  return (reply, outcome) => {
    if ('error' in outcome) counters.errors++;
    let bytes: Uint8Array;
    try {
      bytes = encodeReply(outcome, { cluster, format: reply.format, base64: reply.base64 });
    } catch (err) {
      const error = new InternalError(`cannot encode the answer: ${(err as Error).message}`);
      bytes = encodeReply({ error }, { cluster, format: reply.format });
    }
    reply.respond(bytes);
  };
}
