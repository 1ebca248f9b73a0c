/**
 * Key paths: `/a/b/c`. Absolute, no empty, `.` or `..` segments, no trailing slash, no control
 * characters, well-formed Unicode, at most `maxBytes` UTF-8 bytes. Paths sort by segments
 * (`comparePaths`): a key is followed by its whole subtree, then by its next sibling, so a
 * subtree, a folder's children and every raw string prefix are contiguous ranges.
 */
const SLASH = 0x2f;

/** Path and prefix validation live in the protocol (one set of rules for requests and for
 * apply): `checkPath(path, maxBytes, allowRoot)` throws `BadRequestError` for a non-string,
 * `BadPathError` for a malformed path (or `/` unless `allowRoot`), `TooLargeError` beyond
 * `maxBytes`; `checkPrefix` the same for raw prefixes. */
export { checkKey as checkPath, checkPrefix } from '../../protocol/index.ts';

/** Maps a UTF-16 code unit so that unit order gives code point order (UTF-8 byte order). */
const fix = (u: number): number => (u < 0xd800 ? u : u >= 0xe000 ? u - 0x800 : u + 0x2000);

/**
 * Total order of paths by segments: `"/"` sorts below every other character, so `/a/b` <
 * `/a/b/c` < `/a/b-x`; within a segment, characters compare by code point.
 */
export function comparePaths(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) {
      if (x === SLASH) return -1;
      if (y === SLASH) return 1;
      return fix(x) - fix(y);
    }
  }
  return a.length - b.length;
}

/** The smallest string above every path in the subtree of `path` (and above `path`). */
export const afterSubtree = (path: string): string => `${path}\u0000`;

/** `/a/b` for `/a/b/c`; `/` for `/a`. */
export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

/** Proper ancestors of a key, nearest last: `/a`, `/a/b` for `/a/b/c`. */
export function ancestorsOf(path: string): string[] {
  const out: string[] = [];
  for (let i = path.indexOf('/', 1); i > 0; i = path.indexOf('/', i + 1)) out.push(path.slice(0, i));
  return out;
}

/** The prefix every descendant of `path` starts with. */
export const childPrefix = (path: string): string => (path === '/' ? '/' : `${path}/`);
