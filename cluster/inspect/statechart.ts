/**
 * Statecharts for the inspector page: an XState machine config (the JSON of
 * `actorRef.logic.config` an `@xstate.actor` event carries) turned into a graph (`chartOf`),
 * laid out by ELK (`layoutChart`, elkjs's layered algorithm with nested compound nodes) and
 * drawn as SVG markup (`renderSvg`): compound states as boxes holding their children, each
 * transition an edge labelled with its event, the active states highlighted.
 *
 * Targets are resolved as XState v5 does: `#id` (a state's `id`, or its path id
 * `machine.a.b`) and `#id.child`, `.child` (a child of the source), and plain keys (a sibling,
 * `a.b` descending from it). Transitions without a target are no edges: they are listed in their
 * state (a count, and the events in the tooltip). Edges with the same source and targets are
 * drawn as one, labelled with their events.
 *
 * Pure apart from ELK, which runs in the same thread (`elk.bundled.js`: no worker, no network),
 * so the same code runs in Node (the tests) and in the page.
 */
import elkModule from 'elkjs/lib/elk.bundled.js';

export type StateKind = 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
export type EdgeKind = 'event' | 'always' | 'after' | 'done' | 'error';

export interface ChartState {
  /** The path id: `machine.a.b` (the root's is the machine id). */
  readonly id: string;
  readonly key: string;
  readonly parent: string | null;
  readonly kind: StateKind;
  /** The initial child's id (compound states). */
  readonly initial: string | null;
  readonly children: readonly string[];
  /** Events handled here without a target (actions only). */
  readonly internal: readonly string[];
}

export interface ChartEdge {
  readonly id: string;
  readonly source: string;
  readonly targets: readonly string[];
  /** The event (`raft.tick`), or `always`, `after 500ms`, `done`, `done: src`, `error: src`. */
  readonly event: string;
  readonly kind: EdgeKind;
  readonly guard: string | null;
  readonly reenter: boolean;
}

export interface Chart {
  /** The machine id (the root state's id). */
  readonly id: string;
  readonly root: string;
  readonly states: Readonly<Record<string, ChartState>>;
  readonly edges: readonly ChartEdge[];
  /** Targets that name no state (`source`, the target as written). */
  readonly unresolved: readonly { readonly source: string; readonly target: string }[];
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const asArray = (v: unknown): unknown[] => (v === undefined || v === null ? [] : Array.isArray(v) ? v : [v]);

/** A name for a guard, action source or delay as the JSON shows it (`"name"` or `{ type }`). */
function nameOf(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  if (isObject(v) && typeof v.type === 'string' && v.type !== '') return v.type;
  return null;
}

/** The graph of a machine config. Throws `TypeError` unless `config` is an object. */
export function chartOf(config: unknown): Chart {
  if (!isObject(config)) throw new TypeError('a machine config is an object');
  const rootId = typeof config.id === 'string' && config.id !== '' ? config.id : '(machine)';
  const states: Record<string, ChartState> = {};
  const configs = new Map<string, Json>();
  /** `#id` aliases: explicit state ids, and every path id. */
  const byId = new Map<string, string>();

  const visit = (cfg: Json, id: string, key: string, parent: string | null): void => {
    const children = isObject(cfg.states) ? Object.entries(cfg.states).filter(([, c]) => isObject(c)) : [];
    const kind: StateKind =
      cfg.type === 'final'
        ? 'final'
        : cfg.type === 'history'
          ? 'history'
          : cfg.type === 'parallel'
            ? 'parallel'
            : children.length > 0
              ? 'compound'
              : 'atomic';
    const initialKey = typeof cfg.initial === 'string' ? cfg.initial : nameOf(cfg.initial);
    states[id] = {
      id,
      key,
      parent,
      kind,
      initial: kind === 'compound' && initialKey !== null ? `${id}.${initialKey}` : null,
      children: children.map(([k]) => `${id}.${k}`),
      internal: [],
    };
    configs.set(id, cfg);
    byId.set(id, id);
    if (typeof cfg.id === 'string' && cfg.id !== '') byId.set(cfg.id, id);
    for (const [k, c] of children) visit(c as Json, `${id}.${k}`, k, id);
  };
  visit(config, rootId, rootId, null);

  const descend = (from: string, path: readonly string[]): string | null => {
    let at: string | null = from;
    for (const k of path) {
      if (at === null) return null;
      const next: string = `${at}.${k}`;
      at = states[next] ? next : null;
    }
    return at;
  };
  const resolve = (source: string, target: string): string | null => {
    if (target.startsWith('#')) {
      const ref = target.slice(1);
      const direct = byId.get(ref);
      if (direct !== undefined) return direct;
      // `#id.child.grandchild`: the longest prefix that is an id, then keys down from it.
      const parts = ref.split('.');
      for (let i = parts.length - 1; i > 0; i--) {
        const base = byId.get(parts.slice(0, i).join('.'));
        if (base !== undefined) return descend(base, parts.slice(i));
      }
      return null;
    }
    if (target.startsWith('.')) return descend(source, target.slice(1).split('.'));
    const parent = states[source]?.parent ?? null;
    return descend(parent ?? source, target.split('.'));
  };

  const edges: ChartEdge[] = [];
  const unresolved: { source: string; target: string }[] = [];
  const internal = new Map<string, Set<string>>();
  const transitions = (source: string, event: string, kind: EdgeKind, spec: unknown): void => {
    for (const t of asArray(spec)) {
      // '[circular]': a transition object the serializer met twice (shared, not a cycle): its
      // target is unknown, so it counts as handled here.
      const o: Json = t === '[circular]' ? {} : typeof t === 'string' ? { target: t } : isObject(t) ? t : {};
      const targets: string[] = [];
      for (const raw of asArray(o.target)) {
        if (typeof raw !== 'string') continue;
        const r = resolve(source, raw);
        if (r === null) unresolved.push({ source, target: raw });
        else if (!targets.includes(r)) targets.push(r);
      }
      if (targets.length === 0) {
        if (!internal.has(source)) internal.set(source, new Set());
        internal.get(source)!.add(event);
        continue;
      }
      edges.push({
        id: `e${edges.length}`,
        source,
        targets,
        event,
        kind,
        guard: nameOf(o.guard ?? o.cond),
        reenter: o.reenter === true,
      });
    }
  };
  for (const [id, cfg] of configs) {
    if (isObject(cfg.on))
      for (const [event, spec] of Object.entries(cfg.on)) transitions(id, event, 'event', spec);
    if (cfg.always !== undefined) transitions(id, 'always', 'always', cfg.always);
    if (isObject(cfg.after))
      for (const [delay, spec] of Object.entries(cfg.after))
        transitions(id, /^\d+$/.test(delay) ? `after ${delay}ms` : `after ${delay}`, 'after', spec);
    if (cfg.onDone !== undefined) transitions(id, 'done', 'done', cfg.onDone);
    for (const inv of asArray(cfg.invoke)) {
      if (!isObject(inv)) continue;
      const src = nameOf(inv.src) ?? nameOf(inv.id) ?? 'invoke';
      if (inv.onDone !== undefined) transitions(id, `done: ${src}`, 'done', inv.onDone);
      if (inv.onError !== undefined) transitions(id, `error: ${src}`, 'error', inv.onError);
    }
  }
  for (const [id, events] of internal) states[id] = { ...states[id]!, internal: [...events] };
  return { id: rootId, root: rootId, states, edges, unresolved };
}

/**
 * The states a snapshot value makes active: `'follower'` → root and `root.follower`;
 * `{ candidate: 'preVote' }` → root, `root.candidate`, `root.candidate.preVote`; parallel
 * regions by their keys. Keys that name no state are skipped.
 */
export function activeStates(chart: Chart, value: unknown): Set<string> {
  const out = new Set<string>([chart.root]);
  const walk = (at: string, v: unknown): void => {
    if (typeof v === 'string') {
      const id = `${at}.${v}`;
      if (chart.states[id]) out.add(id);
      return;
    }
    if (!isObject(v)) return;
    for (const [k, sub] of Object.entries(v)) {
      const id = `${at}.${k}`;
      if (!chart.states[id]) continue;
      out.add(id);
      walk(id, sub);
    }
  };
  walk(chart.root, value);
  return out;
}

/** A point in the chart's coordinates (the root's top left is 0, 0). */
export interface Point {
  readonly x: number;
  readonly y: number;
}
export interface Box extends Point {
  readonly width: number;
  readonly height: number;
}

export interface LaidState extends Box {
  readonly id: string;
  readonly label: string;
  readonly kind: StateKind;
  /** Drawn as a box holding others. */
  readonly container: boolean;
  readonly depth: number;
  readonly internal: readonly string[];
}

export interface LaidEdge {
  readonly id: string;
  readonly source: string;
  readonly targets: readonly string[];
  /** The transitions it stands for (same source and targets). */
  readonly events: readonly string[];
  readonly label: string;
  /** One polyline per target. */
  readonly paths: readonly (readonly Point[])[];
  readonly labelBox: Box | null;
  /** The initial-state marker's arrow (no event). */
  readonly initial: boolean;
}

export interface LaidChart {
  readonly chart: Chart;
  readonly width: number;
  readonly height: number;
  readonly states: readonly LaidState[];
  /** Initial markers: a dot per compound state with an initial child. */
  readonly dots: readonly (Point & { readonly id: string })[];
  readonly edges: readonly LaidEdge[];
}

/** The part of elkjs's API the layout uses (a test may pass its own instance). */
export interface ElkLike {
  layout(graph: ElkGraph, args?: unknown): Promise<ElkGraph>;
}
interface ElkLabel {
  text?: string;
  width?: number;
  height?: number;
  x?: number;
  y?: number;
}
interface ElkGraph {
  id: string;
  width?: number;
  height?: number;
  x?: number;
  y?: number;
  labels?: ElkLabel[];
  layoutOptions?: Record<string, string>;
  children?: ElkGraph[];
  edges?: ElkEdgeSpec[];
}
interface ElkEdgeSpec {
  id: string;
  sources: string[];
  targets: string[];
  labels?: ElkLabel[];
  sections?: { startPoint: Point; endPoint: Point; bendPoints?: Point[] }[];
}

/** Character width of the chart font (11 px monospace), for label sizes without a DOM. */
const CHAR_W = 6.7;
const LINE_H = 14;
const FONT = 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace';
const textWidth = (s: string) => Math.ceil(s.length * CHAR_W);

/**
 * An edge label: the first event without the machine's own prefix (`raft.tick` of machine `raft`
 * shows as `tick`), its guard when it is the only one, then how many more events the edge
 * stands for (the tooltip lists them all).
 */
function labelOf(machine: string, events: readonly string[], guard: string | null): string {
  const first = events[0] ?? '';
  const short = first.startsWith(`${machine}.`) ? first.slice(machine.length + 1) : first;
  if (events.length === 1) return guard === null ? short : `${short} [${guard}]`;
  return `${short} +${events.length - 1}`;
}

/** elkjs's constructor: CommonJS, whose `default` TypeScript and the bundlers see differently. */
const Elk = ((elkModule as unknown as { default?: unknown }).default ?? elkModule) as new () => ElkLike;
let sharedElk: ElkLike | null = null;

/**
 * Lays a chart out with ELK's layered algorithm: states nested in their parents, transitions
 * routed across levels (`hierarchyHandling: INCLUDE_CHILDREN`), coordinates absolute.
 */
export async function layoutChart(chart: Chart, elk?: ElkLike): Promise<LaidChart> {
  const engine = elk ?? (sharedElk ??= new Elk());
  // Merge edges with the same source and targets.
  const groups = new Map<
    string,
    { source: string; targets: string[]; events: string[]; guards: Set<string> }
  >();
  for (const e of chart.edges) {
    const key = `${e.source}→${e.targets.join('|')}`;
    let g = groups.get(key);
    if (g === undefined)
      groups.set(key, (g = { source: e.source, targets: [...e.targets], events: [], guards: new Set() }));
    if (!g.events.includes(e.event)) g.events.push(e.event);
    if (e.guard !== null) g.guards.add(e.guard);
  }
  const depthOf = (id: string): number => {
    let d = 0;
    for (let p = chart.states[id]?.parent ?? null; p !== null; p = chart.states[p]?.parent ?? null) d++;
    return d;
  };
  const safe = (id: string) => `s:${id}`;
  const node = (id: string): ElkGraph => {
    const s = chart.states[id]!;
    const label = s.key;
    if (s.children.length > 0) {
      const children = s.children.map(node);
      if (s.initial !== null) children.unshift({ id: `i:${id}`, width: 10, height: 10 });
      return {
        id: safe(id),
        labels: [{ text: label, width: textWidth(label), height: LINE_H }],
        layoutOptions: {
          'elk.padding': '[top=30,left=14,bottom=14,right=14]',
          'elk.nodeLabels.placement': 'INSIDE V_TOP H_LEFT',
        },
        children,
      };
    }
    const extra = s.internal.length > 0 ? `${s.internal.length} internal` : '';
    return {
      id: safe(id),
      width: Math.max(70, textWidth(label) + 24, textWidth(extra) + 20),
      height: s.internal.length > 0 ? 44 : 30,
    };
  };
  const edges: ElkEdgeSpec[] = [];
  const merged = [...groups.values()];
  merged.forEach((g, i) => {
    const guard = g.events.length === 1 && g.guards.size === 1 ? [...g.guards][0]! : null;
    const label = labelOf(chart.id, g.events, guard);
    edges.push({
      id: `g${i}`,
      sources: [safe(g.source)],
      targets: g.targets.map(safe),
      labels: [{ text: label, width: textWidth(label), height: LINE_H }],
    });
  });
  for (const s of Object.values(chart.states))
    if (s.initial !== null && chart.states[s.initial])
      edges.push({ id: `init:${s.id}`, sources: [`i:${s.id}`], targets: [safe(s.initial)] });

  const graph: ElkGraph = {
    id: 'graph',
    layoutOptions: {
      'elk.algorithm': 'layered',
      'elk.direction': 'DOWN',
      'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
      'elk.edgeRouting': 'POLYLINE',
      'elk.layered.spacing.nodeNodeBetweenLayers': '36',
      'elk.spacing.nodeNode': '28',
      'elk.spacing.edgeLabel': '4',
      'elk.spacing.edgeNode': '14',
      'elk.edgeLabels.inline': 'false',
      'elk.layered.edgeLabels.sideSelection': 'SMART_DOWN',
      'org.eclipse.elk.json.shapeCoords': 'ROOT',
      'org.eclipse.elk.json.edgeCoords': 'ROOT',
      'elk.padding': '[top=4,left=4,bottom=4,right=4]',
    },
    children: [node(chart.root)],
    edges,
  };
  const out = await engine.layout(graph);

  const states: LaidState[] = [];
  const dots: (Point & { id: string })[] = [];
  const walk = (g: ElkGraph): void => {
    for (const c of g.children ?? []) {
      if (c.id.startsWith('i:')) dots.push({ id: c.id.slice(2), x: (c.x ?? 0) + 5, y: (c.y ?? 0) + 5 });
      else {
        const id = c.id.slice(2);
        const s = chart.states[id]!;
        states.push({
          id,
          label: s.key,
          kind: s.kind,
          container: s.children.length > 0,
          depth: depthOf(id),
          internal: s.internal,
          x: c.x ?? 0,
          y: c.y ?? 0,
          width: c.width ?? 0,
          height: c.height ?? 0,
        });
      }
      walk(c);
    }
  };
  walk(out);
  const laidEdges: LaidEdge[] = (out.edges ?? []).map((e) => {
    const initial = e.id.startsWith('init:');
    const g = initial ? null : merged[Number(e.id.slice(1))]!;
    const l = e.labels?.[0];
    return {
      id: e.id,
      source: initial ? e.id.slice(5) : g!.source,
      targets: initial ? [chart.states[e.id.slice(5)]!.initial!] : g!.targets,
      events: g?.events ?? [],
      label: l?.text ?? '',
      paths: (e.sections ?? []).map((s) => [s.startPoint, ...(s.bendPoints ?? []), s.endPoint]),
      labelBox:
        l === undefined
          ? null
          : {
              x: l.x ?? 0,
              y: l.y ?? 0,
              width: l.width ?? textWidth(l.text ?? ''),
              height: l.height ?? LINE_H,
            },
      initial,
    };
  });
  return { chart, width: out.width ?? 0, height: out.height ?? 0, states, dots, edges: laidEdges };
}

/** How an active state is drawn (the page's stylesheet uses the same colours). */
export const ACTIVE_FILL = '#ffe8a3';
export const ACTIVE_STROKE = '#c46a00';

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const n = (v: number) => (Math.round(v * 10) / 10).toString();

export interface RenderOptions {
  /** Active state ids (`activeStates`): drawn highlighted (class `active`). */
  readonly active?: Iterable<string>;
  /** Prefix of ids inside the SVG (its arrow marker), unique per SVG in one document. */
  readonly idPrefix?: string;
}

/**
 * SVG markup of a laid-out chart. Hooks: `<g class="state" data-state="<id>">` per state
 * (`active` class when active), `<g class="edge" data-source data-events>` per edge. Presentation
 * attributes make it stand alone; a page's CSS may restyle the classes.
 */
export function renderSvg(laid: LaidChart, o: RenderOptions = {}): string {
  const active = new Set(o.active ?? []);
  const marker = `${o.idPrefix ?? 'sc'}-arrow`;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="statechart" data-machine="${esc(laid.chart.id)}" width="${n(laid.width)}" height="${n(laid.height)}" viewBox="0 0 ${n(laid.width)} ${n(laid.height)}" font-family="${FONT}" font-size="11">`,
    `<defs><marker id="${esc(marker)}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#777"/></marker></defs>`,
  );
  // Outer boxes first, so children draw over their parents.
  for (const s of [...laid.states].sort((a, b) => a.depth - b.depth)) {
    // The root is always active: not highlighted.
    const on = active.has(s.id) && s.depth > 0;
    const cls = [
      'state',
      `kind-${s.kind}`,
      s.container ? 'container' : 'leaf',
      s.depth === 0 ? 'root' : '',
      on ? 'active' : '',
    ]
      .filter(Boolean)
      .join(' ');
    const tip = s.internal.length > 0 ? `${s.id}\nhandled here: ${s.internal.join(', ')}` : s.id;
    out.push(`<g class="${cls}" data-state="${esc(s.id)}"><title>${esc(tip)}</title>`);
    const fill = s.container ? 'none' : on ? ACTIVE_FILL : '#fff';
    out.push(
      `<rect x="${n(s.x)}" y="${n(s.y)}" width="${n(s.width)}" height="${n(s.height)}" rx="6" fill="${fill}" stroke="${on ? ACTIVE_STROKE : '#666'}" stroke-width="${on ? 2 : 1}"${s.kind === 'parallel' ? ' stroke-dasharray="4 3"' : ''}/>`,
    );
    if (s.kind === 'final')
      out.push(
        `<rect x="${n(s.x + 3)}" y="${n(s.y + 3)}" width="${n(s.width - 6)}" height="${n(s.height - 6)}" rx="4" fill="none" stroke="#666"/>`,
      );
    const tx = s.container ? s.x + 10 : s.x + s.width / 2;
    const anchor = s.container ? 'start' : 'middle';
    out.push(
      `<text x="${n(tx)}" y="${n(s.y + (s.container ? 18 : 19))}" text-anchor="${anchor}" font-weight="600">${esc(s.label)}</text>`,
    );
    if (!s.container && s.internal.length > 0)
      out.push(
        `<text class="internal" x="${n(tx)}" y="${n(s.y + 34)}" text-anchor="middle" fill="#888" font-size="10">${s.internal.length} internal</text>`,
      );
    out.push('</g>');
  }
  for (const d of laid.dots)
    out.push(`<circle class="initial" cx="${n(d.x)}" cy="${n(d.y)}" r="4" fill="#555"/>`);
  for (const e of laid.edges) {
    const cls = e.initial ? 'edge initial' : 'edge';
    out.push(
      `<g class="${cls}" data-source="${esc(e.source)}" data-targets="${esc(e.targets.join(' '))}" data-events="${esc(e.events.join(' '))}">`,
    );
    if (e.events.length > 0) out.push(`<title>${esc(e.events.join('\n'))}</title>`);
    for (const p of e.paths)
      out.push(
        `<path d="${p.map((q, i) => `${i === 0 ? 'M' : 'L'}${n(q.x)},${n(q.y)}`).join(' ')}" fill="none" stroke="#777" marker-end="url(#${esc(marker)})"/>`,
      );
    if (e.labelBox && e.label !== '')
      out.push(
        `<text class="label" x="${n(e.labelBox.x)}" y="${n(e.labelBox.y + e.labelBox.height - 3)}" fill="#345">${esc(e.label)}</text>`,
      );
    out.push('</g>');
  }
  out.push('</svg>');
  return out.join('');
}
