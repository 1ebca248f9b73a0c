/// <reference lib="dom" />
/**
 * The inspector page (bundled by cluster/build.ts into dist/inspect/app.js). It keeps a replica
 * of the server's model: the `hello` of `/events` loads the server's model, then every batch,
 * event and tick is applied in the server's order with the server's time, so both models agree
 * (darkness included) without the page keeping a clock of its own.
 *
 * Hooks for tests and scripts (stable):
 * - `body[data-connected][data-nodes][data-leader]`;
 * - per node `article.node[data-node][data-role][data-dark][data-term][data-leader]`:
 *   `data-role` is the last role the node reported (a dark node's is stale), `data-leader="true"`
 *   on exactly the model's leader;
 * - per machine `figure.chart[data-actor][data-name][data-value]` holding an SVG whose states are
 *   `g.state[data-state]` (`active` class on the current ones);
 * - `section#clients[data-clients]` for applications' machines;
 * - `ol#timeline > li[data-kind][data-about]` (`data-about`: the node, `clients`, or empty).
 */
import {
  type ActorView,
  CLIENTS,
  ClusterModel,
  type NodeView,
  type TimelineEntry,
  type TimelineKind,
  valueText,
} from '../model.ts';
import type { PageMessage } from '../server.ts';
import { activeStates, type Chart, chartOf, layoutChart, renderSvg } from '../statechart.ts';

const model = new ClusterModel();
let cluster: string | null = null;
let drawn = -1;
let frame = 0;

const $ = <T extends Element = HTMLElement>(sel: string, root: ParentNode = document): T => {
  const el = root.querySelector<T>(sel);
  if (el === null) throw new Error(`missing ${sel}`);
  return el;
};
const h = <K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  text?: string,
): HTMLElementTagNameMap[K] => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
};
const setText = (el: Element, text: string) => {
  if (el.textContent !== text) el.textContent = text;
};
const setAttr = (el: Element, name: string, value: string) => {
  if (el.getAttribute(name) !== value) el.setAttribute(name, value);
};

// ---- the stream ------------------------------------------------------------------------------

function listen(): void {
  const es = new EventSource('events');
  es.onopen = () => setConnected(true);
  es.onerror = () => setConnected(false);
  es.onmessage = (ev: MessageEvent<string>) => {
    const m = JSON.parse(ev.data) as PageMessage;
    switch (m.t) {
      case 'hello':
        cluster = m.cluster;
        model.load(m.dump);
        resetTimeline();
        break;
      case 'batch':
        model.applyBatch(m.batch, m.now);
        break;
      case 'event':
        model.applyEvent(m.event, m.origin, m.now);
        break;
      case 'tick':
        model.tick(m.now);
        break;
    }
    schedule();
  };
}

function setConnected(on: boolean): void {
  setAttr(document.body, 'data-connected', String(on));
  setText($('#conn'), on ? 'live' : 'reconnecting…');
}

function schedule(): void {
  if (frame !== 0 || model.version === drawn) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    drawn = model.version;
    render();
  });
}

// ---- rendering -------------------------------------------------------------------------------

/** Machines shown as charts by default on every node; others are picked from the node's list. */
const DEFAULT_CHARTS = ['raft', 'node'];
const picked = new Map<string, Set<string>>();
const panels = new Map<string, HTMLElement>();

function render(): void {
  const nodes = model.nodes;
  const leader = model.leader();
  setText($('#cluster'), cluster === null ? '' : `cluster ${cluster}`);
  setText($('#leader'), leader ? `leader ${leader.id} · term ${leader.term}` : 'no leader');
  setAttr($('#leader'), 'data-leader', leader?.id ?? '');
  setAttr(document.body, 'data-leader', leader?.id ?? '');
  setAttr(document.body, 'data-nodes', String(nodes.length));
  $('#empty').hidden = nodes.length > 0 || model.actors(CLIENTS).length > 0;
  const box = $('#nodes');
  for (const n of nodes) {
    let panel = panels.get(n.id);
    if (panel === undefined) {
      panel = nodePanel(n.id);
      panels.set(n.id, panel);
      // Keep panels in id order.
      const after = [...panels.keys()].sort(byId).filter((id) => byId(id, n.id) > 0)[0];
      box.insertBefore(panel, after === undefined ? null : (panels.get(after) ?? null));
    }
    renderNode(panel, n, leader?.id === n.id);
  }
  renderClients();
  renderTimeline();
}

const byId = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });

function nodePanel(id: string): HTMLElement {
  const p = h('article', { class: 'node', 'data-node': id, 'data-dark': 'false', 'data-leader': 'false' });
  p.innerHTML = `
    <header class="node-head">
      <h2 class="node-id"></h2>
      <span class="badge role"></span>
      <span class="term"></span>
      <span class="age"></span>
    </header>
    <div class="node-body">
      <div class="status">
        <dl class="stats"></dl>
        <table class="progress"><thead><tr><th>peer</th><th>match</th><th>next</th><th>heard</th></tr></thead><tbody></tbody></table>
        <label class="pick">machines <select><option value="">add a chart…</option></select></label>
        <ul class="others"></ul>
      </div>
      <div class="charts"></div>
    </div>`;
  setText($('.node-id', p), id);
  const select = $<HTMLSelectElement>('select', p);
  select.addEventListener('change', () => {
    if (select.value === '') return;
    const set = picked.get(id) ?? new Set(DEFAULT_CHARTS);
    if (set.has(select.value)) set.delete(select.value);
    else set.add(select.value);
    picked.set(id, set);
    select.value = '';
    drawn = -1;
    schedule();
  });
  return p;
}

function renderNode(p: HTMLElement, n: NodeView, isLeader: boolean): void {
  const s = n.status;
  const role = s?.role ?? 'unknown';
  setAttr(p, 'data-role', role);
  setAttr(p, 'data-dark', String(n.dark));
  setAttr(p, 'data-term', String(s?.term ?? 0));
  setAttr(p, 'data-leader', String(isLeader));
  const badge = $('.role', p);
  setText(badge, n.dark ? `dark (was ${role})` : role);
  setAttr(badge, 'data-role', n.dark ? 'dark' : role);
  setText($('.term', p), `term ${s?.term ?? '?'}`);
  const age = n.lastBatchAt === null ? '' : `${((model.now - n.lastBatchAt) / 1000).toFixed(1)} s ago`;
  setText($('.age', p), n.dark ? `last batch ${age}` : '');
  const stats: [string, string][] = [
    ['leader', s?.leader ?? '–'],
    ['commit', String(s?.commit ?? '–')],
    ['applied', String(s?.applied ?? '–')],
    ['last index', String(s?.lastIndex ?? '–')],
    ['sessions', String(s?.sessions ?? '–')],
    ['voters', s?.voters.join(', ') ?? '–'],
    ['learners', s && s.learners.length > 0 ? s.learners.join(', ') : '–'],
    ['vote', s?.vote ?? '–'],
    ['pid', String(s?.pid ?? '–')],
    ['dropped', String(n.dropped)],
  ];
  const dl = $('.stats', p);
  if (dl.children.length !== stats.length * 2) {
    dl.replaceChildren();
    for (const [k] of stats) dl.append(h('dt', {}, k), h('dd', { 'data-stat': k }));
  }
  stats.forEach(([, v], i) => {
    setText(dl.children[i * 2 + 1]!, v);
  });

  const peers = new Set([...(s?.voters ?? []), ...(s?.learners ?? []), ...Object.keys(n.heard)]);
  peers.delete(n.id);
  const rows = [...peers].sort(byId).map((peer) => {
    const pr = s?.progress[peer];
    const heard = n.heard[peer];
    return [
      peer,
      pr ? String(pr.match) : '–',
      pr ? String(pr.next) : '–',
      heard ? `${heard.type.replace(/^raft\./, '')} ${((model.now - heard.at) / 1000).toFixed(1)} s` : '–',
    ];
  });
  const tbody = $('.progress tbody', p);
  if (tbody.children.length !== rows.length) {
    tbody.replaceChildren();
    for (const _ of rows) tbody.append(h('tr', {}));
  }
  rows.forEach((cells, i) => {
    const tr = tbody.children[i]!;
    setAttr(tr, 'data-peer', cells[0]!);
    if (tr.children.length !== cells.length) tr.replaceChildren(...cells.map(() => h('td')));
    cells.forEach((c, j) => {
      setText(tr.children[j]!, c);
    });
  });

  const actors = model.actors(n.id);
  const wanted = picked.get(n.id) ?? new Set(DEFAULT_CHARTS);
  const charted = actors.filter((a) => wanted.has(a.name)).sort((a, b) => order(a.name) - order(b.name));
  renderCharts($('.charts', p), charted, `${n.id}`);
  renderOthers($('.others', p), actors, wanted);
  const select = $<HTMLSelectElement>('select', p);
  const names = [...new Set(actors.filter((a) => a.definition !== null).map((a) => a.name))].sort();
  const labels = names.map((x) => `${wanted.has(x) ? '✓ ' : ''}${x}`);
  if (
    select.options.length !== labels.length + 1 ||
    labels.some((l, i) => select.options[i + 1]?.text !== l)
  ) {
    select.replaceChildren(h('option', { value: '' }, 'add or remove a chart…'));
    names.forEach((x, i) => {
      select.append(h('option', { value: x }, labels[i]));
    });
  }
}

const order = (name: string) => {
  const i = DEFAULT_CHARTS.indexOf(name);
  return i < 0 ? DEFAULT_CHARTS.length : i;
};

/** Actors not drawn as charts: one line each (name, state or status, last event). */
function renderOthers(ul: Element, actors: readonly ActorView[], charted: ReadonlySet<string>): void {
  const rest = actors.filter((a) => !charted.has(a.name));
  if (ul.children.length !== rest.length) {
    ul.replaceChildren();
    for (const _ of rest) ul.append(h('li'));
  }
  rest.forEach((a, i) => {
    const li = ul.children[i]!;
    setAttr(li, 'data-actor', a.sessionId);
    const v = valueText(a.value);
    setText(
      li,
      `${a.name}: ${v === '' ? a.status : v}${a.lastEvent ? ` · ${a.lastEvent}` : ''}${a.events > 0 ? ` · ${a.events} events` : ''}`,
    );
  });
}

// ---- charts ----------------------------------------------------------------------------------

interface Laid {
  readonly chart: Chart;
  readonly svg: (prefix: string) => string;
}
const layouts = new Map<string, Promise<Laid | null>>();
let nextPrefix = 0;

/** The chart of a definition, laid out once per distinct definition text. */
function laidOut(text: string, definition: unknown): Promise<Laid | null> {
  let p = layouts.get(text);
  if (p === undefined) {
    p = (async () => {
      try {
        const chart = chartOf(definition);
        const laid = await layoutChart(chart);
        return { chart, svg: (prefix: string) => renderSvg(laid, { idPrefix: prefix }) };
      } catch (err) {
        console.error('inspector: cannot lay out a machine', err);
        return null;
      }
    })();
    layouts.set(text, p);
  }
  return p;
}

/** One card per actor (keyed by session id), its SVG drawn once, its active states updated. */
function renderCharts(box: Element, actors: readonly ActorView[], scope: string): void {
  const keep = new Set(actors.map((a) => a.sessionId));
  for (const card of [...box.children]) if (!keep.has(card.getAttribute('data-actor') ?? '')) card.remove();
  actors.forEach((a, i) => {
    let card = box.querySelector<HTMLElement>(`:scope > figure[data-actor="${CSS.escape(a.sessionId)}"]`);
    if (card === null) {
      card = h('figure', { class: 'chart', 'data-actor': a.sessionId, 'data-name': a.name });
      card.innerHTML = `<figcaption><strong class="name"></strong> <code class="value"></code> <span class="last"></span></figcaption><div class="svg"></div><details class="context"><summary>context</summary><pre></pre></details>`;
      setText($('.name', card), a.name);
      card.addEventListener('click', (ev) => {
        if ((ev.target as Element).closest('details') === null) card!.classList.toggle('zoom');
      });
    }
    if (box.children[i] !== card) box.insertBefore(card, box.children[i] ?? null);
    const v = valueText(a.value);
    setAttr(card, 'data-value', v);
    setAttr(card, 'data-status', a.status);
    setText($('.value', card), v === '' ? a.status : v);
    setText($('.last', card), a.lastEvent ? `← ${a.lastEvent}` : '');
    const details = $<HTMLDetailsElement>('details', card);
    if (details.open) setText($('pre', card), JSON.stringify(a.context, null, 2));
    else details.ontoggle = () => setText($('pre', card!), JSON.stringify(a.context, null, 2));
    const holder = $('.svg', card);
    const text = a.definitionText;
    if (text === null) {
      setText(holder, 'no definition yet (it comes with the next resync)');
      return;
    }
    if (holder.getAttribute('data-definition') !== String(hash(text))) {
      setAttr(holder, 'data-definition', String(hash(text)));
      setText(holder, 'laying out…');
      void laidOut(text, a.definition).then((laid) => {
        if (holder.getAttribute('data-definition') !== String(hash(text))) return;
        if (laid === null) {
          setText(holder, 'this machine could not be drawn');
          return;
        }
        holder.innerHTML = laid.svg(`${scope}-${nextPrefix++}`);
        holder.removeAttribute('data-highlighted');
        highlight(holder, laid.chart, card!.getAttribute('data-value') ?? '', currentValue(card!));
      });
      return;
    }
    void laidOut(text, a.definition).then((laid) => {
      if (laid) highlight(holder, laid.chart, v, a.value);
    });
  });
}

/** The raw value of a card's actor (for the highlight after an asynchronous layout). */
function currentValue(card: Element): unknown {
  return model.actor(card.getAttribute('data-actor') ?? '')?.value;
}

function highlight(holder: Element, chart: Chart, key: string, value: unknown): void {
  if (holder.getAttribute('data-highlighted') === key || holder.querySelector('svg') === null) return;
  setAttr(holder, 'data-highlighted', key);
  const on = activeStates(chart, value);
  for (const g of holder.querySelectorAll('g.state'))
    g.classList.toggle('active', on.has(g.getAttribute('data-state') ?? ''));
}

function hash(s: string): number {
  let x = 2166136261;
  for (let i = 0; i < s.length; i++) x = Math.imul(x ^ s.charCodeAt(i), 16777619);
  return x >>> 0;
}

// ---- clients ---------------------------------------------------------------------------------

/** Charts drawn in the clients panel at most (the others are listed). */
const CLIENT_CHARTS = 12;

function renderClients(): void {
  const section = $('#clients');
  const actors = model.actors(CLIENTS);
  section.hidden = actors.length === 0;
  setAttr(section, 'data-clients', String(actors.length));
  const live = actors.filter((a) => a.definition !== null).slice(-CLIENT_CHARTS);
  renderCharts($('.charts', section), live, 'clients');
  renderOthers($('.others', section), actors, new Set(live.map((a) => a.name)));
}

// ---- timeline --------------------------------------------------------------------------------

const KINDS: readonly TimelineKind[] = [
  'leader',
  'role',
  'term',
  'dark',
  'back',
  'restart',
  'session',
  'message',
  'dropped',
  'actor',
];
const hidden = new Set<TimelineKind>();
let lastEntry = 0;
const TIMELINE_DOM_MAX = 500;

function setupFilters(): void {
  const box = $('#filters');
  for (const k of KINDS) {
    const input = h('input', { type: 'checkbox', 'data-kind': k });
    (input as HTMLInputElement).checked = true;
    input.addEventListener('change', () => {
      if ((input as HTMLInputElement).checked) hidden.delete(k);
      else hidden.add(k);
      setAttr($('#timeline'), 'data-hidden', [...hidden].join(' '));
    });
    const label = h('label', { class: `kind-${k}` });
    label.append(input, ` ${k}`);
    box.append(label);
  }
}

function resetTimeline(): void {
  $('#timeline').replaceChildren();
  lastEntry = 0;
}

function renderTimeline(): void {
  const ol = $('#timeline');
  const fresh = model.timeline().filter((e) => e.id > lastEntry);
  if (fresh.length === 0) return;
  lastEntry = fresh[fresh.length - 1]!.id;
  const items = fresh.slice(-TIMELINE_DOM_MAX).map(entryItem).reverse();
  ol.prepend(...items);
  while (ol.children.length > TIMELINE_DOM_MAX) ol.lastElementChild?.remove();
}

function entryItem(e: TimelineEntry): HTMLElement {
  const li = h('li', { 'data-kind': e.kind, 'data-about': e.node ?? '' });
  const t = new Date(e.at);
  const time = `${t.toLocaleTimeString('en-GB', { hour12: false })}.${String(t.getMilliseconds()).padStart(3, '0')}`;
  li.append(
    h('time', { datetime: t.toISOString() }, time),
    h('span', { class: 'kind' }, e.kind),
    h('span', { class: 'text' }, e.text),
  );
  return li;
}

setupFilters();
listen();
