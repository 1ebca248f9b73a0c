import test from 'ava';
import { createRaftMachine, messageTypes } from '../../machines/raft/index.ts';
import { sessionMachine } from '../../machines/session/index.ts';
import { watcherMachine } from '../../machines/watch/index.ts';
import { activeStates, type Chart, chartOf, type LaidChart, layoutChart, renderSvg } from './statechart.ts';

/** A machine's config as an `@xstate.actor` event carries it (functions as `{ type: name }`). */
const definition = (machine: { config: unknown }): unknown =>
  JSON.parse(
    JSON.stringify(machine.config, (_k, v: unknown) =>
      typeof v === 'function' ? { type: (v as { name: string }).name } : v,
    ),
  );

const raft = chartOf(definition(createRaftMachine({ log: {} as never })));

const edges = (c: Chart, source: string, event: string) =>
  c.edges.filter((e) => e.source === source && e.event === event);

test('the raft machine: roles as states, the candidacy a compound state starting in preVote', (t) => {
  t.deepEqual(Object.keys(raft.states).sort(), [
    'raft',
    'raft.candidate',
    'raft.candidate.campaign',
    'raft.candidate.preVote',
    'raft.follower',
    'raft.leader',
  ]);
  t.is(raft.states.raft!.initial, 'raft.follower');
  t.is(raft.states['raft.candidate']!.kind, 'compound');
  t.is(raft.states['raft.candidate']!.initial, 'raft.candidate.preVote');
  t.is(raft.states['raft.follower']!.kind, 'atomic');
  t.deepEqual(raft.unresolved, []);
});

test('the raft machine: its transitions, targets resolved (#raft.x, siblings, children)', (t) => {
  // An election timeout: pre-vote first (guarded), else a campaign.
  const tick = edges(raft, 'raft.follower', 'raft.tick');
  t.deepEqual(
    tick.map((e) => [e.targets, e.guard, e.reenter]),
    [
      [['raft.candidate.preVote'], 'and', true],
      [['raft.candidate.campaign'], 'electionDue', true],
    ],
  );
  t.deepEqual(
    edges(raft, 'raft.follower', 'raft.timeoutNow').map((e) => [e.targets, e.guard]),
    [
      [['raft.follower'], 'fromNewerTerm'],
      [['raft.candidate.campaign'], 'promotable'],
    ],
  );
  // `always` with a sibling key (`campaign`) and with `#raft.leader`.
  t.deepEqual(
    edges(raft, 'raft.candidate.preVote', 'always').map((e) => [e.targets, e.guard]),
    [
      [['raft.candidate.campaign'], 'electionWon'],
      [['raft.follower'], 'electionLost'],
    ],
  );
  t.deepEqual(
    edges(raft, 'raft.candidate.campaign', 'always').map((e) => e.targets),
    [['raft.leader'], ['raft.follower']],
  );
  // The leader steps down on a lost quorum, or when removed (a plain sibling key).
  t.deepEqual(
    edges(raft, 'raft.leader', 'raft.tick').map((e) => [e.targets, e.guard]),
    [[['raft.follower'], 'quorumLost']],
  );
  t.deepEqual(
    edges(raft, 'raft.leader', 'always').map((e) => [e.targets, e.guard]),
    [[['raft.follower'], 'removedFromConfig']],
  );
  // §5.1: a message of a newer term makes any role a follower first.
  for (const role of ['raft.follower', 'raft.candidate.preVote', 'raft.candidate.campaign', 'raft.leader'])
    for (const type of messageTypes)
      t.true(
        edges(raft, role, type).some(
          (e) => e.guard === 'fromNewerTerm' && e.targets[0] === 'raft.follower' && e.reenter,
        ),
        `${role} on ${type}`,
      );
  // Transitions without a target are no edges; the state lists their events.
  t.true(raft.states['raft.leader']!.internal.includes('raft.propose'));
  t.true(raft.states['raft.follower']!.internal.includes('raft.persisted'));
  t.false(raft.edges.some((e) => e.event === 'raft.persisted'));
});

test('every target form: #id, #id.child, .child, sibling paths, arrays, after, invoke, parallel', (t) => {
  const c = chartOf({
    id: 'm',
    initial: 'a',
    on: { reset: '.a', bad: 'nowhere', shared: '[circular]' },
    states: {
      a: {
        on: {
          go: 'b',
          deep: 'b.y',
          both: { target: ['#far', '#m.b.x'], guard: { type: 'ok' } },
          list: [{ target: '.inner', guard: 'g1' }, 'b'],
        },
        after: { 500: 'b', slow: { target: 'b' } },
        initial: 'inner',
        states: { inner: { always: { target: '#m.a', reenter: true } } },
      },
      b: {
        type: 'parallel',
        states: { x: { id: 'far' }, y: { type: 'final' } },
        invoke: { src: { type: 'fetcher' }, onDone: 'a', onError: '#m.a.inner' },
        onDone: 'a',
      },
    },
  });
  const of = (source: string, event: string) => edges(c, source, event).map((e) => e.targets);
  t.deepEqual(of('m', 'reset'), [['m.a']]);
  t.deepEqual(of('m.a', 'go'), [['m.b']]);
  t.deepEqual(of('m.a', 'deep'), [['m.b.y']]);
  t.deepEqual(of('m.a', 'both'), [['m.b.x']], 'two names of one state: one target');
  t.is(edges(c, 'm.a', 'both')[0]!.guard, 'ok');
  t.deepEqual(of('m.a', 'list'), [['m.a.inner'], ['m.b']]);
  t.deepEqual(of('m.a', 'after 500ms'), [['m.b']]);
  t.deepEqual(of('m.a', 'after slow'), [['m.b']]);
  t.deepEqual(of('m.a.inner', 'always'), [['m.a']]);
  t.deepEqual(of('m.b', 'done: fetcher'), [['m.a']]);
  t.deepEqual(of('m.b', 'error: fetcher'), [['m.a.inner']]);
  t.deepEqual(of('m.b', 'done'), [['m.a']]);
  t.is(c.states['m.b']!.kind, 'parallel');
  t.is(c.states['m.b']!.initial, null);
  t.is(c.states['m.b.y']!.kind, 'final');
  t.deepEqual(c.unresolved, [{ source: 'm', target: 'nowhere' }]);
  t.deepEqual(c.states.m!.internal, ['bad', 'shared']);
  t.throws(() => chartOf('raft'), { instanceOf: TypeError });
});

test('active states of a snapshot value, nested and parallel', (t) => {
  t.deepEqual([...activeStates(raft, 'leader')].sort(), ['raft', 'raft.leader']);
  t.deepEqual([...activeStates(raft, { candidate: 'preVote' })].sort(), [
    'raft',
    'raft.candidate',
    'raft.candidate.preVote',
  ]);
  t.deepEqual([...activeStates(raft, 'nonsense')], ['raft']);
  const p = chartOf({
    id: 'p',
    type: 'parallel',
    states: { a: { initial: 'x', states: { x: {} } }, b: { initial: 'y', states: { y: {} } } },
  });
  t.deepEqual([...activeStates(p, { a: 'x', b: 'y' })].sort(), ['p', 'p.a', 'p.a.x', 'p.b', 'p.b.y']);
});

/** Whether box `inner` lies within box `outer`. */
const inside = (inner: { x: number; y: number; width: number; height: number }, outer: typeof inner) =>
  inner.x >= outer.x - 0.5 &&
  inner.y >= outer.y - 0.5 &&
  inner.x + inner.width <= outer.x + outer.width + 0.5 &&
  inner.y + inner.height <= outer.y + outer.height + 0.5;

const overlap = (a: LaidChart['states'][number], b: LaidChart['states'][number]) =>
  a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;

function checkLayout(t: import('ava').ExecutionContext, c: Chart, laid: LaidChart): void {
  t.is(laid.states.length, Object.keys(c.states).length);
  const byId = new Map(laid.states.map((s) => [s.id, s]));
  for (const s of laid.states) {
    t.true(s.width > 0 && s.height > 0, `${s.id} has a size`);
    const parent = c.states[s.id]!.parent;
    if (parent !== null) t.true(inside(s, byId.get(parent)!), `${s.id} is drawn inside ${parent}`);
  }
  // Siblings do not overlap.
  for (const a of laid.states)
    for (const b of laid.states)
      if (a.id < b.id && c.states[a.id]!.parent === c.states[b.id]!.parent)
        t.false(overlap(a, b), `${a.id} and ${b.id} overlap`);
  const root = byId.get(c.root)!;
  for (const e of laid.edges) {
    t.true(e.paths.length >= 1, `edge ${e.id} is routed`);
    for (const p of e.paths) {
      t.true(p.length >= 2);
      for (const q of p)
        t.true(inside({ ...q, width: 0, height: 0 }, root), `edge ${e.id} stays in the chart`);
    }
    if (!e.initial) t.truthy(e.labelBox, `edge ${e.id} has a label`);
  }
  t.true(laid.width >= root.width && laid.height >= root.height);
}

test('ELK lays out the raft machine: children inside parents, every edge routed and labelled', async (t) => {
  const laid = await layoutChart(raft);
  checkLayout(t, raft, laid);
  // One drawn edge per (source, targets), however many transitions it stands for.
  const followerSelf = laid.edges.filter(
    (e) => e.source === 'raft.follower' && e.targets[0] === 'raft.follower',
  );
  t.is(followerSelf.length, 1);
  t.true(followerSelf[0]!.events.length >= messageTypes.length);
  t.regex(followerSelf[0]!.label, /^[a-zA-Z]+ \+\d+$/);
  t.deepEqual(
    laid.dots.map((d) => d.id).sort(),
    ['raft', 'raft.candidate'],
    'initial markers of the root and the candidacy',
  );
});

test('ELK lays out the client session and the watcher machines', async (t) => {
  for (const m of [sessionMachine, watcherMachine]) {
    const c = chartOf(definition(m));
    t.deepEqual(c.unresolved, []);
    checkLayout(t, c, await layoutChart(c));
  }
});

test('the SVG: a group per state and per edge, the active states marked, text escaped', async (t) => {
  const laid = await layoutChart(raft);
  const svg = renderSvg(laid, { active: activeStates(raft, { candidate: 'campaign' }), idPrefix: 'n1-0' });
  t.true(svg.startsWith('<svg '));
  t.true(svg.endsWith('</svg>'));
  for (const id of Object.keys(raft.states)) t.true(svg.includes(`data-state="${id}"`), id);
  const activeIds = [...svg.matchAll(/class="state [^"]*\bactive\b[^"]*" data-state="([^"]+)"/g)].map(
    (m) => m[1],
  );
  t.deepEqual(activeIds.sort(), ['raft.candidate', 'raft.candidate.campaign'], 'the root is not highlighted');
  t.true(svg.includes('marker-end="url(#n1-0-arrow)"'));
  t.is((svg.match(/<g class="edge/g) ?? []).length, laid.edges.length);
  const odd = chartOf({ id: 'x<y', initial: 'a&b', states: { 'a&b': { on: { '"go"': 'c' } }, c: {} } });
  const oddSvg = renderSvg(await layoutChart(odd));
  t.true(oddSvg.includes('data-state="x&lt;y.a&amp;b"'));
  t.false(oddSvg.includes('"go"'));
});
