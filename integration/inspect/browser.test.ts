/**
 * The inspector end to end, in headless Chromium: a real 3-node cluster (node processes of the
 * build, a real nats-server), `ensemble inspect` as a user runs it (admin credentials, leases,
 * `--json`), and its page. The nodes run without `--inspect`: what the page shows comes through
 * the leases the command keeps.
 *
 * - an application's `createWebSocketInspector` (`connect({ inspect })`) shows its session
 *   machine in the clients panel, and a Stately receiver attached to the server gets the nodes'
 *   events;
 * - the page shows 3 nodes and exactly one leader; SIGKILL of the leader's process (by its pid,
 *   one this test started): the page shows another leader within a few election timeouts, and
 *   the old one dark. A screenshot of that is kept in integration/inspect/artifacts/.
 *
 * Chromium is Debian's (`/usr/bin/chromium`), installed with apt when missing (as root).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createWebSocketInspector, createWebSocketReceiver } from '@statelyai/inspect';
import test from 'ava';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { DARK_AFTER_MS } from '../../cluster/inspect/model.ts';
import { natsCredentials } from '../../cluster/nats-server.ts';
import { TestCluster } from '../cluster.ts';
import { type Harness, type ManagedProcess, startHarness } from '../harness.ts';
import { waitFor } from '../wait.ts';

const BIN = fileURLToPath(new URL('../../bin/ensemble.mjs', import.meta.url));
const PAGE = fileURLToPath(new URL('../../dist/inspect/index.html', import.meta.url));
const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Runs a command to its end; rejects with its output if it fails. */
function run(cmd: string, args: string[], timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-8000)));
    child.stderr.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-8000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(' ')}: ${signal ?? `exit ${code}`}\n${out}`));
    });
  });
}

/** Debian's Chromium, installed with apt when missing (as root). */
async function ensureChromium(): Promise<string> {
  if (existsSync(CHROMIUM)) return CHROMIUM;
  if (process.getuid?.() !== 0)
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)`);
  await run('apt-get', ['update'], 300_000);
  await run('apt-get', ['install', '-y', 'chromium'], 600_000);
  if (!existsSync(CHROMIUM)) throw new Error(`apt installed chromium, but ${CHROMIUM} is not there`);
  return CHROMIUM;
}

interface World {
  readonly h: Harness;
  readonly cluster: TestCluster;
  readonly inspect: ManagedProcess;
  readonly url: string;
  readonly port: number;
  readonly browser: BrowserContext;
  readonly page: Page;
}

let world: World | null = null;
const w = (): World => {
  if (world === null) throw new TypeError('the world is used before test.before ran');
  return world;
};

test.before(async () => {
  if (!existsSync(PAGE)) throw new Error(`${PAGE} is missing: run npm run build first`);
  const executablePath = await ensureChromium();
  const h = await startHarness({ label: 'inspect-browser' });
  let browser: BrowserContext | null = null;
  try {
    const cluster = await TestCluster.start(h, { nodes: 3, cluster: 'insp' });
    const none = path.join(await h.tempDir('cwd'), 'connection.json');
    const inspect = h.spawn(
      process.execPath,
      [BIN, 'inspect', '--json', '--port', '0', '--nats', h.natsUrls.join(','), '--cluster', 'insp'],
      {
        env: {
          ...process.env,
          ENSEMBLE_ADMIN_PASSWORD: natsCredentials('admin').pass,
          ENSEMBLE_CONNECTION: none, // not a developer's data/connection.json
        },
      },
    );
    const [line] = (await inspect.waitForOutput(/^\{"url".*\}$/m, 30_000)) as RegExpMatchArray;
    const url = (JSON.parse(line!) as { url: string }).url;
    browser = await chromium.launchPersistentContext(await h.tempDir('chromium-profile'), {
      executablePath,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1500, height: 1100 },
    });
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(url);
    world = { h, cluster, inspect, url, port: Number(new URL(url).port), browser, page };
  } catch (err) {
    await browser?.close().catch(() => {});
    await h.teardown();
    throw err;
  }
});

test.after.always(async () => {
  if (world === null) return;
  await world.browser.close().catch(() => {});
  await world.cluster.close();
  await world.h.teardown();
});

/** Node panels as the page shows them. */
function panels(page: Page) {
  return page.$$eval('article.node', (els) =>
    els.map((e) => ({
      id: e.getAttribute('data-node'),
      role: e.getAttribute('data-role'),
      dark: e.getAttribute('data-dark') === 'true',
      leader: e.getAttribute('data-leader') === 'true',
      term: Number(e.getAttribute('data-term')),
      pid: Number(e.querySelector('dd[data-stat="pid"]')?.textContent),
    })),
  );
}

test.serial("an application's createWebSocketInspector shows its session machine on the page", async (t) => {
  const { page, port, cluster } = w();
  // A Stately receiver attached to the server hears the nodes (their raft machines tick).
  const heard: { sessionId?: string }[] = [];
  createWebSocketReceiver({ server: `ws://127.0.0.1:${port}` }).subscribe((e) => heard.push(e));
  const inspector = createWebSocketInspector({ url: `ws://127.0.0.1:${port}` });
  t.teardown(() => inspector.stop());
  const client = await cluster.client({ inspect: inspector.inspect });
  await page.waitForFunction(
    () =>
      document.querySelector(
        '#clients:not([hidden]) figure.chart[data-name="session"][data-value="active"] svg g.state.active[data-state="session.active"]',
      ) !== null,
    undefined,
    { timeout: 20_000 },
  );
  t.true(Number(await page.getAttribute('#clients', 'data-clients')) >= 1);
  t.true(
    await page.$$eval('#timeline li[data-kind="session"]', (els) =>
      els.some((e) => /session \S+ opened/.test(e.textContent ?? '')),
    ),
    'the timeline says the session opened',
  );
  await client.close();
  await page.waitForFunction(
    () =>
      document.querySelector('#clients figure.chart[data-name="session"]')?.getAttribute('data-value') ===
      'closed',
    undefined,
    { timeout: 20_000 },
  );
  await waitFor(() => heard.some((e) => /^n[123]:/.test(e.sessionId ?? '')), {
    what: "a node's event at the Stately receiver",
    timeoutMs: 10_000,
  });
  t.pass();
});

test.serial(
  '3 nodes and exactly one leader; the leader killed, another shown and the old one dark',
  async (t) => {
    const { page, cluster, inspect } = w();
    await page.waitForFunction(
      () =>
        document.querySelectorAll('article.node[data-dark="false"]').length === 3 &&
        document.querySelectorAll('article.node[data-leader="true"]').length === 1 &&
        document.querySelectorAll('article.node figure.chart[data-name="raft"] svg g.state.active').length >=
          3,
      undefined,
      { timeout: 30_000 },
    );
    const before = await panels(page);
    t.is(before.length, 3);
    const leaders = before.filter((p) => p.leader);
    t.is(leaders.length, 1, 'exactly one leader');
    const old = leaders[0]!;
    t.is(old.role, 'leader');
    t.is(old.pid, cluster.procs.get(old.id!)!.pid, "the page shows the leader's own process");
    t.true(before.filter((p) => p.role === 'follower').length === 2);
    // The leader's raft chart has `leader` active, the supervisor's `running`.
    t.is(
      await page.getAttribute(`article[data-node="${old.id}"] figure[data-name="raft"]`, 'data-value'),
      'leader',
    );
    t.truthy(
      await page.$(
        `article[data-node="${old.id}"] figure[data-name="raft"] g.state.active[data-state="raft.leader"]`,
      ),
    );
    t.truthy(
      await page.$(
        `article[data-node="${old.id}"] figure[data-name="node"] g.state.active[data-state="node.running"]`,
      ),
    );

    const admin = await cluster.admin();
    const { electionTimeoutMs } = await admin.status();
    await cluster.kill(old.id!); // SIGKILL, by the pid of the process this test started
    const deadline = DARK_AFTER_MS + 6 * electionTimeoutMs + 5000;
    await page.waitForFunction(
      (was) => {
        const leader = document.querySelectorAll('article.node[data-leader="true"]');
        const gone = document.querySelector(`article.node[data-node="${was}"]`);
        return (
          leader.length === 1 &&
          leader[0]!.getAttribute('data-node') !== was &&
          leader[0]!.getAttribute('data-dark') === 'false' &&
          gone?.getAttribute('data-dark') === 'true'
        );
      },
      old.id,
      { timeout: deadline },
    );
    const after = await panels(page);
    const next = after.find((p) => p.leader)!;
    t.not(next.id, old.id);
    t.is(next.role, 'leader');
    t.true(next.term > old.term, 'a new term');
    t.true(after.find((p) => p.id === old.id)!.dark);
    t.is(await page.getAttribute('body', 'data-leader'), next.id);
    t.true(
      await page.$$eval(
        '#timeline li',
        (els, ids) => {
          const texts = els.map((e) => e.textContent ?? '');
          return (
            texts.some((x) => x.includes(`${ids[0]} went dark`)) &&
            texts.some((x) => x.includes(`leader ${ids[1]}`))
          );
        },
        [old.id!, next.id!],
      ),
      'the timeline tells it',
    );
    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'leader-failover.png');
    await page.screenshot({ path: shot, fullPage: true });
    t.true(existsSync(shot));
    t.log(`screenshot: ${path.relative(process.cwd(), shot)}`);
    t.regex(
      inspect.output(),
      /^\{"url":"http:\/\/127\.0\.0\.1:\d+\/"\}\n$/,
      '--json: one line, nothing else',
    );
  },
);
