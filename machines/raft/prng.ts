/**
 * A small seeded generator (mulberry32): the machine's only source of randomness, kept as a
 * number in context so a step stays a pure function of (snapshot, log, event).
 */
export function nextRandom(state: number): [value: number, state: number] {
  const s = (state + 0x6d2b79f5) | 0;
  let t = s;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return [((t ^ (t >>> 14)) >>> 0) / 4294967296, s];
}

/** A seed folded from a string and a number, so each node of a cluster draws its own stream. */
export function seedFrom(text: string, seed: number): number {
  let h = seed | 0;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x5bd1e995);
  return (h ^ (h >>> 13)) | 0;
}
