/**
 * Who may do what: the one check every request passes before it is served. Peers and admins may
 * do everything; a client may do no admin op, and touches only keys its grants cover (etcd's
 * model with auth on: a user with no grant reads and writes nothing). A read needs a `read`
 * grant, a write a `write` grant, on a prefix that covers every key the request may touch: for
 * a range, a subtree delete, a sequential create or a prefix watch, the request's whole prefix;
 * for a txn, every compare and every op of both branches (whichever runs).
 */
import {
  type Caller,
  type EnsembleError,
  opKinds,
  PermissionDeniedError,
  type ValidRequest,
} from '../../protocol/index.ts';

/** One thing a request needs: a key, or every key starting with a raw prefix. */
interface Need {
  readonly perm: 'read' | 'write';
  readonly key?: string;
  readonly prefix?: string;
}

const below = (path: string): string => (path === '/' ? '/' : `${path}/`);

function needsOf(v: ValidRequest): Need[] {
  switch (v.op) {
    case 'get':
      return [{ perm: 'read', key: v.request.key }];
    case 'list':
      return [{ perm: 'read', prefix: below(v.request.key) }];
    case 'range':
      return [{ perm: 'read', prefix: v.request.prefix }];
    case 'put':
      return [{ perm: 'write', key: v.request.key }];
    case 'delete':
      return deleteNeeds(v.request);
    case 'createSequential':
      return [{ perm: 'write', prefix: v.request.prefix }];
    case 'txn': {
      const r = v.request;
      const out: Need[] = r.compare.map((c) => ({ perm: 'read', key: c.key }));
      for (const op of [...r.success, ...r.failure]) {
        if (op.op === 'get') out.push({ perm: 'read', key: op.key });
        else if (op.op === 'put') out.push({ perm: 'write', key: op.key });
        else out.push(...deleteNeeds(op));
      }
      return out;
    }
    case 'watch': {
      const r = v.request;
      if (r.key !== undefined) return [{ perm: 'read', key: r.key }];
      if (r.prefix !== undefined) return [{ perm: 'read', prefix: r.prefix }];
      const s = r.subtree!;
      return s === '/'
        ? [{ perm: 'read', prefix: '/' }]
        : [
            { perm: 'read', key: s },
            { perm: 'read', prefix: `${s}/` },
          ];
    }
    default:
      return [];
  }
}

function deleteNeeds(d: { readonly key: string; readonly subtree?: boolean }): Need[] {
  if (!d.subtree) return [{ perm: 'write', key: d.key }];
  if (d.key === '/') return [{ perm: 'write', prefix: '/' }];
  return [
    { perm: 'write', key: d.key },
    { perm: 'write', prefix: `${d.key}/` },
  ];
}

/** What a user may do, by prefix (the key tree's grant table). */
export type Perms = ReadonlyMap<string, { readonly read: boolean; readonly write: boolean }>;

function covered(perms: Perms, n: Need): boolean {
  const target = n.key ?? n.prefix!;
  for (const [prefix, p] of perms)
    if ((n.perm === 'read' ? p.read : p.write) && target.startsWith(prefix)) return true;
  return false;
}

/**
 * The error to answer with if `caller` may not make request `v`, else null. `perms` gives a
 * user's grants (the key tree's, as applied on this node).
 */
export function authorize(
  v: ValidRequest,
  caller: Caller,
  perms: (user: string) => Perms,
): EnsembleError | null {
  if (caller.kind !== 'client') return null;
  if (opKinds[v.op] === 'admin')
    return new PermissionDeniedError(caller.user, `${v.op} needs an admin; ${caller.user} is a client`);
  const needs = needsOf(v);
  if (needs.length === 0) return null;
  const mine = perms(caller.user);
  for (const n of needs) {
    if (!covered(mine, n)) {
      const what = n.key !== undefined ? `key ${n.key}` : `keys under ${JSON.stringify(n.prefix)}`;
      return new PermissionDeniedError(caller.user, `${caller.user} has no ${n.perm} grant on ${what}`);
    }
  }
  return null;
}
