/**
 * Chaos tools of a node started with `--chaos` (served on `P.node.<id>.admin.<op>`, peers only by
 * nats.conf; actors/node.ts dispatches them):
 *
 * - `filter`: a fault filter on the peer transport, for where network namespaces are not allowed.
 *   Rules name a peer (or `*`), a direction (`in`: what this node receives from it, `out`: what it
 *   sends to it, `both`), a drop probability (1 cuts) and a delay. `ChaosFilter` holds the rules
 *   in force; actors/transport.ts asks it about every message to or from a peer by id (Raft
 *   frames, snapshot chunks, forwarded requests, session-age rounds). The rules are pure data and
 *   `verdict` a pure function of them (and a random draw, taken only for a probability strictly
 *   between 0 and 1).
 * - `hash`: a SHA-256 of the key tree's content at a revision (every key with its value, version,
 *   create and mod revision and owning session), read from this node's own tree in pages, so
 *   a chaos run can check that every node holds the same tree at the same revision.
 */
import { createHash } from 'node:crypto';
import type { NodeId } from '../machines/raft/index.ts';
import { BadRequestError, isToken, type KeyValue, TimeoutError } from '../protocol/index.ts';
import type { KeyTree } from '../storage/index.ts';

export type ChaosDirection = 'in' | 'out';

/** One rule of the filter, with its defaults filled in. */
export interface ChaosRule {
  /** The peer's node id, or `*` for every peer. */
  readonly peer: string;
  readonly direction: ChaosDirection | 'both';
  /** Probability (0..1) that a matching message is dropped; 1 cuts the link. */
  readonly drop: number;
  /** Delay (ms) of a matching message that is not dropped. */
  readonly delayMs: number;
}

/** What to do with one message: drop it, or deliver it after `delayMs` (0: at once). */
export interface ChaosVerdict {
  readonly drop: boolean;
  readonly delayMs: number;
}

export const PASS: ChaosVerdict = Object.freeze({ drop: false, delayMs: 0 });
export const MAX_RULES = 64;
export const MAX_DELAY_MS = 60_000;
/** `*` in a rule's `peer`: every peer. */
export const ANY_PEER = '*';

/** True if `rule` applies to a message from (`in`) or to (`out`) `peer`. */
export function matches(rule: ChaosRule, peer: NodeId, direction: ChaosDirection): boolean {
  return (
    (rule.peer === ANY_PEER || rule.peer === peer) &&
    (rule.direction === 'both' || rule.direction === direction)
  );
}

/**
 * The fate of one message to or from `peer`. Every matching rule applies: the message survives
 * only if it survives each rule's drop (independent draws, so one draw against the combined
 * probability), and waits the longest delay among them. `random` is called only when the combined
 * probability is strictly between 0 and 1, so 0 never drops and 1 always does.
 */
export function verdict(
  rules: readonly ChaosRule[],
  peer: NodeId,
  direction: ChaosDirection,
  random: () => number = Math.random,
): ChaosVerdict {
  let keep = 1;
  let delayMs = 0;
  let matched = false;
  for (const r of rules) {
    if (!matches(r, peer, direction)) continue;
    matched = true;
    keep *= 1 - r.drop;
    if (r.delayMs > delayMs) delayMs = r.delayMs;
  }
  if (!matched) return PASS;
  const drop = keep <= 0 ? true : keep >= 1 ? false : random() >= keep;
  return drop ? { drop: true, delayMs: 0 } : delayMs === 0 ? PASS : { drop: false, delayMs };
}

const RULE_FIELDS = new Set(['peer', 'direction', 'drop', 'delayMs']);

/**
 * Validates the body of `filter`: `{ rules: [{ peer, direction, drop?, delayMs? }] }`, each rule
 * dropping or delaying (`drop` in 0..1, `delayMs` an integer in 0..60000), at most 64 rules, no
 * other fields. Throws `BadRequestError`; returns the rules with defaults filled in.
 */
export function parseFilter(body: unknown): ChaosRule[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new BadRequestError('filter takes { rules: [...] }');
  for (const k of Object.keys(body))
    if (k !== 'rules') throw new BadRequestError(`filter takes only rules, not ${JSON.stringify(k)}`);
  const rules = (body as { rules?: unknown }).rules;
  if (!Array.isArray(rules)) throw new BadRequestError('rules must be an array ([] heals)');
  if (rules.length > MAX_RULES) throw new BadRequestError(`at most ${MAX_RULES} rules`);
  return rules.map((r: unknown, i) => {
    const at = `rules[${i}]`;
    if (typeof r !== 'object' || r === null || Array.isArray(r))
      throw new BadRequestError(`${at} must be an object`);
    for (const k of Object.keys(r))
      if (!RULE_FIELDS.has(k)) throw new BadRequestError(`${at} has an unknown field ${JSON.stringify(k)}`);
    const { peer, direction, drop, delayMs } = r as Record<string, unknown>;
    if (peer !== ANY_PEER && !isToken(peer)) throw new BadRequestError(`${at}.peer must be a node id or "*"`);
    if (direction !== 'in' && direction !== 'out' && direction !== 'both')
      throw new BadRequestError(`${at}.direction must be "in", "out" or "both"`);
    if (drop === undefined && delayMs === undefined)
      throw new BadRequestError(`${at} must drop or delay (drop, delayMs)`);
    if (drop !== undefined && (typeof drop !== 'number' || !(drop >= 0 && drop <= 1)))
      throw new BadRequestError(`${at}.drop must be a probability from 0 to 1`);
    if (
      delayMs !== undefined &&
      (!Number.isSafeInteger(delayMs) || (delayMs as number) < 0 || (delayMs as number) > MAX_DELAY_MS)
    )
      throw new BadRequestError(`${at}.delayMs must be an integer from 0 to ${MAX_DELAY_MS}`);
    return {
      peer: peer as string,
      direction,
      drop: (drop as number | undefined) ?? 0,
      delayMs: (delayMs as number | undefined) ?? 0,
    };
  });
}

/**
 * The rules in force on one node (empty: everything passes, without a draw), and how many peer
 * messages they dropped. It outlives the transport's restarts: a cut stays cut.
 */
export class ChaosFilter {
  private current: readonly ChaosRule[] = [];
  /** Peer messages dropped (a Raft frame counts its messages). */
  dropped = 0;

  constructor(private readonly random: () => number = Math.random) {}

  get rules(): readonly ChaosRule[] {
    return this.current;
  }

  /** Replaces the rules (`[]` heals). */
  set(rules: readonly ChaosRule[]): void {
    this.current = Object.freeze([...rules]);
  }

  /** The fate of `messages` messages to or from `peer`; counts them if dropped. */
  decide(peer: NodeId, direction: ChaosDirection, messages = 1): ChaosVerdict {
    if (this.current.length === 0) return PASS;
    const v = verdict(this.current, peer, direction, this.random);
    if (v.drop) this.dropped += messages;
    return v;
  }
}

// ---- hash ----------------------------------------------------------------------------------

export interface HashRequest {
  readonly revision?: number;
}

export interface TreeHash {
  /** The revision the hash describes. */
  readonly revision: number;
  /** SHA-256 (hex) of every key in path order: key, value, version, revisions, session. */
  readonly hash: string;
  /** Keys at that revision. */
  readonly keys: number;
}

/** Validates the body of `hash`: `{ revision? }` (an absent body is `{}`). Throws `BadRequestError`. */
export function parseHash(body: unknown): HashRequest {
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body)) throw new BadRequestError('hash takes { revision? }');
  for (const k of Object.keys(body))
    if (k !== 'revision') throw new BadRequestError(`hash takes only revision, not ${JSON.stringify(k)}`);
  const revision = (body as { revision?: unknown }).revision;
  if (revision === undefined) return {};
  if (!Number.isSafeInteger(revision) || (revision as number) < 0)
    throw new BadRequestError('revision must be a non-negative integer');
  return { revision: revision as number };
}

export interface TreeHashOptions {
  /** How long to wait for the tree to reach the revision (default 5000 ms), then TIMEOUT. */
  readonly waitMs?: number;
  /** Keys read per page (default 1000); the event loop gets a turn between pages. */
  readonly pageSize?: number;
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Fixed-width fields of one key: version, create revision, mod revision, lengths, session flag. */
function numbers(kv: KeyValue, keyBytes: number, sessionBytes: number): Buffer {
  const b = Buffer.alloc(8 * 3 + 4 * 3 + 1);
  b.writeDoubleBE(kv.version, 0);
  b.writeDoubleBE(kv.createRevision, 8);
  b.writeDoubleBE(kv.modRevision, 16);
  b.writeUInt32BE(keyBytes, 24);
  b.writeUInt32BE(kv.value.length, 28);
  b.writeUInt32BE(sessionBytes, 32);
  b.writeUInt8(kv.session === null ? 0 : 1, 36);
  return b;
}

/**
 * The hash of `tree` at `revision` (default: its current revision). Waits for a revision not
 * applied yet (`TimeoutError` after `waitMs`); throws `CompactedError` for one compacted away
 * (also if compaction overtakes the read), `BadRequestError` for a bad one. Reads pages of
 * `pageSize` keys at that revision, yielding the event loop between them.
 */
export async function treeHash(
  tree: KeyTree,
  revision?: number,
  options: TreeHashOptions = {},
): Promise<TreeHash> {
  const at = revision ?? tree.revision;
  if (at > tree.revision) {
    const deadline = performance.now() + (options.waitMs ?? 5000);
    while (tree.revision < at) {
      if (performance.now() >= deadline)
        throw new TimeoutError(`revision ${at} not applied here within ${options.waitMs ?? 5000} ms`);
      await sleep(10);
    }
  }
  const limit = options.pageSize ?? 1000;
  const h = createHash('sha256');
  let keys = 0;
  let after: string | undefined;
  for (;;) {
    const page = tree.range('/', { revision: at, limit, ...(after === undefined ? {} : { after }) });
    for (const kv of page.kvs) {
      const key = Buffer.from(kv.key);
      const session = kv.session === null ? null : Buffer.from(kv.session);
      h.update(numbers(kv, key.length, session?.length ?? 0));
      h.update(key);
      h.update(kv.value);
      if (session !== null) h.update(session);
      keys++;
    }
    if (!page.more || page.kvs.length === 0) break;
    after = page.kvs.at(-1)!.key;
    await turn();
  }
  return { revision: at, hash: h.digest('hex'), keys };
}
