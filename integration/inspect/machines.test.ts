/**
 * The inspector's statecharts of a node's machines as the node publishes them: the definitions
 * `actors/inspection.ts` puts in its `@xstate.actor` events (not only a plain serialization), for
 * the supervisor (`node`) and the Raft machine. Here rather than beside statechart.ts because it
 * imports the supervisor, which actors/index.ts does not export (the layers' rule).
 */
import test from 'ava';
import { definitionOf } from '../../actors/inspection.ts';
import { nodeMachine } from '../../actors/supervisor.ts';
import {
  activeStates,
  type Chart,
  chartOf,
  layoutChart,
  renderSvg,
} from '../../cluster/inspect/statechart.ts';
import { createRaftMachine } from '../../machines/raft/index.ts';

const plain = (m: { config: unknown }): unknown =>
  JSON.parse(
    JSON.stringify(m.config, (_k, v: unknown) =>
      typeof v === 'function' ? { type: (v as { name: string }).name } : v,
    ),
  );
const published = (m: unknown): unknown => {
  const text = definitionOf(m);
  if (text === undefined) throw new Error('no definition');
  return JSON.parse(text);
};
const edges = (c: Chart, source: string, event: string) =>
  c.edges.filter((e) => e.source === source && e.event === event).map((e) => e.targets);

test('the node supervisor: running, and two final states; restarts are no transition', (t) => {
  const node = chartOf(published(nodeMachine));
  t.deepEqual(Object.keys(node.states).sort(), ['node', 'node.failed', 'node.running', 'node.stopped']);
  t.is(node.states.node!.initial, 'node.running');
  t.is(node.states['node.failed']!.kind, 'final');
  t.is(node.states['node.stopped']!.kind, 'final');
  t.deepEqual(edges(node, 'node.running', 'node.fatal'), [['node.failed']]);
  t.deepEqual(edges(node, 'node.running', 'node.stop'), [['node.stopped']]);
  t.deepEqual(edges(node, 'node.running', 'node.stopActor'), [['node.failed']], 'the crash branch');
  t.deepEqual(edges(node, 'node.running', 'xstate.error.actor.*'), [['node.failed']]);
  t.true(node.states['node.running']!.internal.includes('node.stopActor'), 'the restart branch');
  t.deepEqual(node.unresolved, []);
});

test('the charts of the published definitions are those of the machines', (t) => {
  for (const m of [nodeMachine, createRaftMachine({ log: {} as never })]) {
    const a = chartOf(published(m));
    const b = chartOf(plain(m as { config: unknown }));
    t.deepEqual(a.edges, b.edges, `${a.id}: the same transitions`);
    t.deepEqual(Object.keys(a.states), Object.keys(b.states));
    t.deepEqual(a.unresolved, []);
  }
});

test('ELK lays the supervisor out; the running state is drawn active', async (t) => {
  const node = chartOf(published(nodeMachine));
  const laid = await layoutChart(node);
  const root = laid.states.find((s) => s.id === 'node')!;
  for (const s of laid.states) {
    t.true(s.width > 0 && s.height > 0);
    t.true(s.x >= root.x && s.y >= root.y && s.x + s.width <= root.x + root.width + 0.5, `${s.id} inside`);
  }
  t.true(laid.edges.every((e) => e.paths.length > 0 && e.paths.every((p) => p.length >= 2)));
  const svg = renderSvg(laid, { active: activeStates(node, 'running') });
  t.regex(svg, /class="state kind-atomic leaf active" data-state="node\.running"/);
});
