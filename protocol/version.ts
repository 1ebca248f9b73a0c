/**
 * Versions. `PROTOCOL_VERSION` is carried as `v` by every envelope on the wire (client and peer);
 * a node answers a message of a version it does not speak with `UNSUPPORTED_VERSION` (clients)
 * or drops and counts it (peers). `FORMAT_VERSION` is written into every record on disk.
 *
 * Compatibility rule: a change that an older node could misread gets a new protocol version; a
 * new optional field that older nodes may ignore does not.
 */

/** The wire protocol this build speaks and sends. */
export const PROTOCOL_VERSION = 1;

/** Every wire protocol version this build accepts. */
export const SUPPORTED_PROTOCOL_VERSIONS: readonly number[] = [PROTOCOL_VERSION];

/** The on-disk record format this build writes (storage/ stamps every record with it). */
export const FORMAT_VERSION = 1;

export const isSupportedProtocolVersion = (v: unknown): v is number =>
  typeof v === 'number' && SUPPORTED_PROTOCOL_VERSIONS.includes(v);
