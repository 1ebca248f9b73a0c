/**
 * The `inspect` admin op from the operator's side: turn a node's inspection stream on (a lease
 * the caller renews) or off. The NATS connection must be the admin user's (nats.conf lets only
 * peers and the admin publish on `P.node.<id>.admin.*`).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import {
  decodeReply,
  encodeEnvelope,
  type InspectControl,
  type InspectControlReply,
  type Subjects,
} from '../../protocol/index.ts';

/**
 * Sends `req` to node `node` and returns its answer; throws the node's typed error, or NATS's
 * timeout / no-responders error when the node does not answer within `timeoutMs`.
 */
export async function inspectControl(
  nc: Pick<NatsConnection, 'request'>,
  subjects: Subjects,
  node: string,
  req: InspectControl,
  timeoutMs = 2000,
): Promise<InspectControlReply> {
  const msg = await nc.request(
    subjects.nodeAdmin(node, 'inspect'),
    encodeEnvelope(req, { cluster: subjects.cluster }),
    { timeout: timeoutMs },
  );
  const r = decodeReply<InspectControlReply>(msg.data, { cluster: subjects.cluster });
  if (!r.ok) throw r.error;
  return r.result;
}
