// Drives the Maestro dashboard in headless Chromium like a user would, against a running server.
//
//   MAESTRO_URL=http://127.0.0.1:8003 MAESTRO_TOKEN=… MAESTRO_SCREENSHOTS=target/dashboard-screenshots \
//     node tests/browser/dashboard.mjs
//
// Uses Debian's Chromium (/usr/bin/chromium, or MAESTRO_CHROMIUM) through playwright-core; it
// never downloads a browser. Exits non-zero with a message on the first failure. See
// docs/dashboard.md.

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = (process.env.MAESTRO_URL || 'http://127.0.0.1:8003').replace(/\/$/, '');
const TOKEN = process.env.MAESTRO_TOKEN || '';
const SHOTS = resolve(process.env.MAESTRO_SCREENSHOTS || 'screenshots');
const CHROMIUM = process.env.MAESTRO_CHROMIUM || '/usr/bin/chromium';
const WAIT = 20_000;

mkdirSync(SHOTS, { recursive: true });

const log = (...a) => console.log('[dashboard]', ...a);

class Failure extends Error {}

function check(cond, message) {
  if (!cond) throw new Failure(message);
}

/** Calls the API directly (setting up workflows the UI then runs). */
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${BASE}/api/v1/${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Failure(`${method} ${path}: HTTP ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const workflows = {
  pipeline: {
    id: 'browser_pipeline',
    name: 'Browser pipeline',
    description: 'extract, then two transforms in parallel, then load',
    nodes: [
      { id: 'extract', name: 'Extract', executor: 'sleep', config: { duration_ms: 1500 } },
      { id: 'clean', name: 'Clean', executor: 'sleep', config: { duration_ms: 1500 }, depends_on: ['extract'] },
      { id: 'enrich', name: 'Enrich', executor: 'sleep', config: { duration_ms: 800 }, depends_on: ['extract'] },
      { id: 'load', name: 'Load', executor: 'noop', depends_on: ['clean', 'enrich'] },
    ],
  },
  invalid: {
    id: 'browser_invalid',
    nodes: [
      { id: 'a', executor: 'no_such_executor', depends_on: ['b'] },
      { id: 'b', executor: 'noop', depends_on: ['a'] },
    ],
  },
  failure: {
    id: 'browser_failure',
    name: 'Browser failure',
    nodes: [
      { id: 'prepare', executor: 'sleep', config: { duration_ms: 600 } },
      { id: 'upload', executor: 'fail', config: { message: 'disk full on /var/data' }, depends_on: ['prepare'] },
      { id: 'notify', executor: 'noop', depends_on: ['upload'] },
    ],
  },
  review: {
    id: 'browser_review',
    name: 'Browser release with review',
    nodes: [
      { id: 'build', executor: 'sleep', config: { duration_ms: 400 } },
      { id: 'approve_release', name: 'Approve the release', type: 'human_review', depends_on: ['build'] },
      { id: 'deploy', executor: 'noop', depends_on: ['approve_release'] },
    ],
  },
  // Names, a description and an error carrying markup, and node ids that are the names of
  // Object.prototype's members: all must show as text, and every node as itself.
  hostile: {
    id: 'browser_hostile',
    name: '<img src=x onerror=alert(1)> "quotes" & <b>',
    description: '<script>alert(2)</script> & <b>bold</b>',
    nodes: [
      { id: '__proto__', name: '<img src=x onerror=alert(1)>', executor: 'sleep', config: { duration_ms: 300 } },
      { id: 'constructor', name: '"quotes" & <b>', executor: 'noop', depends_on: ['__proto__'] },
      { id: 'boom', name: '<svg onload=alert(3)>', executor: 'fail', config: { message: '<script>alert(1)</script><img src=x onerror=alert(4)>' }, depends_on: ['constructor'] },
      { id: 'hasOwnProperty', executor: 'noop', depends_on: ['boom'] },
    ],
  },
  slow: {
    id: 'browser_slow',
    name: 'Browser slow job',
    nodes: [
      { id: 'long_job', executor: 'sleep', config: { duration_ms: 60000 } },
      { id: 'report', executor: 'noop', depends_on: ['long_job'] },
    ],
  },
};

const problems = [];
let expectBlocked = false;
const blockedByPolicy = [];

async function main() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('dialog', (d) => {
      problems.push(`a ${d.type()} dialog opened: ${d.message()}`);
      d.dismiss().catch(() => {});
    });
    page.on('console', (m) => {
      const text = m.text();
      // A Content-Security-Policy violation is a bug of the page; failed fetches are reported
      // by the page itself (the 401 that opens the token dialog is expected).
      if (/Content Security Policy|Refused to/i.test(text)) {
        // While the page parses a DAG laced with inline handlers and styles on purpose (see
        // hostile()), the policy reports them from the parsed, never-shown document and blocks
        // them; what matters there is that none reaches the page, which hostile() checks.
        if (expectBlocked && /has been blocked/.test(text)) blockedByPolicy.push(text);
        else problems.push(`CSP: ${text}`);
      }
      else if (m.type() === 'error' && !/status of 401|401 \(Unauthorized\)/.test(text)) {
        log(`console error: ${text}`);
      }
    });
    page.on('requestfailed', (r) => {
      if (!r.url().startsWith(BASE.replace(/^http/, 'ws')) && !/\/ws\?/.test(r.url())) {
        log(`request failed: ${r.url()} ${r.failure() && r.failure().errorText}`);
      }
    });
    try {
      await scenario(page);
    } catch (e) {
      await page.screenshot({ path: join(SHOTS, 'failure.png') }).catch(() => {});
      log(`failure screenshot ${join(SHOTS, 'failure.png')}; page text:\n${(await page.textContent('body').catch(() => '')).slice(0, 2000)}`);
      throw e;
    }
    check(problems.length === 0, `the page reported problems:\n  ${problems.join('\n  ')}`);
  } finally {
    await browser.close();
  }
}

async function shot(page, name) {
  const path = join(SHOTS, name);
  await page.screenshot({ path, fullPage: false });
  log(`screenshot ${path}`);
}

/** The status class of every node of the drawn DAG: {node_id: status}. */
function statuses(page) {
  return page.$$eval('svg.maestro-dag g.node', (gs) => Object.fromEntries(gs.map((g) => [
    g.getAttribute('data-node-id'),
    (Array.from(g.classList).find((c) => c.startsWith('status-')) || 'status-none').slice(7),
  ])));
}

/** Records, in the page, every status each node shows from now on. */
async function record(page) {
  await page.evaluate(() => {
    const seen = Object.create(null); // node ids such as __proto__ are plain keys here
    window.__seen = seen;
    const sample = () => {
      for (const g of document.querySelectorAll('svg.maestro-dag g.node')) {
        const id = g.getAttribute('data-node-id');
        const s = (Array.from(g.classList).find((c) => c.startsWith('status-')) || 'status-none').slice(7);
        seen[id] = seen[id] || [];
        if (seen[id][seen[id].length - 1] !== s) seen[id].push(s);
      }
    };
    sample();
    new MutationObserver(sample).observe(document.querySelector('svg.maestro-dag'), {
      subtree: true, attributes: true, attributeFilter: ['class'],
    });
  });
}

async function waitNode(page, node, status) {
  try {
    await page.waitForSelector(`svg.maestro-dag g.node[data-node-id="${node}"].status-${status}`);
  } catch (e) {
    throw new Failure(`node ${node} never showed ${status}; the DAG shows ${JSON.stringify(await statuses(page))}`);
  }
}

async function waitRun(page, status) {
  try {
    await page.waitForSelector(`#run-status .badge.status-${status}`);
  } catch (e) {
    const now = await page.textContent('#run-status').catch(() => '?');
    throw new Failure(`the run never showed ${status} (it shows "${now}")`);
  }
}

async function openWorkflow(page, id) {
  await page.goto(`${BASE}/#/workflows/${id}`);
  await page.waitForSelector('svg.maestro-dag g.node');
}

async function startRun(page, inputs) {
  if (inputs !== undefined) await page.fill('#run-inputs', JSON.stringify(inputs));
  await page.click('#start-run');
  await page.waitForURL(/#\/runs\//);
  await page.waitForSelector('svg.maestro-dag g.node');
  await page.waitForSelector('#event-log .event');
  return page.url().split('#/runs/')[1];
}

async function scenario(page) {
  // 1. The page loads without a token; the first API call's 401 asks for one.
  await page.goto(`${BASE}/`);
  if (TOKEN) {
    await page.waitForSelector('#token-dialog[open]');
    await shot(page, 'token-dialog.png');
    await page.fill('#token-input', TOKEN);
    await page.press('#token-input', 'Enter');
    await page.waitForSelector('#token-dialog', { state: 'hidden' });
  }
  await page.waitForSelector('.workflows-table, .empty');
  log('workflow list shown');

  // 2. A definition with errors: every problem listed with its code and node ids.
  await page.click('a[data-nav="new"]');
  await page.waitForSelector('#definition');
  await page.fill('#definition', JSON.stringify(workflows.invalid, null, 2));
  await page.click('#new-workflow-form button[type="submit"]');
  await page.waitForSelector('#definition-result .problem-errors li');
  const errors = await page.textContent('#definition-result');
  for (const needle of ['validation_failed', 'unknown_executor', 'cycle', 'no_such_executor']) {
    check(errors.includes(needle), `the 422 shown does not mention ${needle}: ${errors}`);
  }
  await shot(page, 'new-workflow-errors.png');
  log('validation errors shown');

  // 3. A valid one, created through the form; its page draws the DAG.
  await page.fill('#definition', JSON.stringify(workflows.pipeline, null, 2));
  await page.click('#new-workflow-form button[type="submit"]');
  await page.waitForURL(/#\/workflows\/browser_pipeline/);
  await page.waitForSelector('svg.maestro-dag g.node');
  const nodes = await page.$$eval('svg.maestro-dag g.node', (gs) => gs.map((g) => g.getAttribute('data-node-id')).sort());
  check(JSON.stringify(nodes) === JSON.stringify(['clean', 'enrich', 'extract', 'load']), `the DAG draws ${nodes}`);
  const edges = await page.$$eval('svg.maestro-dag .edge', (ps) => ps.length);
  check(edges === 4, `the DAG draws ${edges} edges, not 4`);
  const rows = await page.$$eval('.nodes-table tbody tr', (rs) => rs.length);
  check(rows === 4, `the node table has ${rows} rows`);
  const table = await page.textContent('.nodes-table');
  check(table.includes('sleep') && table.includes('noop'), 'the node table shows the executors');
  await shot(page, 'workflow-dag.png');
  log('workflow page and DAG shown');

  // 4. A run through completion, the colours following the live events.
  const runId = await startRun(page, { source: 'browser' });
  log(`run ${runId} started`);
  await record(page);
  await waitNode(page, 'extract', 'running');
  await page.waitForSelector('#live.good');
  await waitNode(page, 'clean', 'running');
  await shot(page, 'run-live.png');
  await waitRun(page, 'completed');
  for (const n of ['extract', 'clean', 'enrich', 'load']) await waitNode(page, n, 'completed');
  const seen = await page.evaluate(() => window.__seen);
  for (const n of ['extract', 'clean', 'enrich']) {
    const s = seen[n] || [];
    check(s.includes('running') && s[s.length - 1] === 'completed' && s.indexOf('running') < s.lastIndexOf('completed'),
      `node ${n} went through ${JSON.stringify(s)}, not running then completed`);
  }
  const progress = await page.textContent('#run-progress');
  check(progress.startsWith('4/4 completed'), `progress says "${progress}"`);
  const types = await page.$$eval('#event-log .event', (es) => es.map((e) => e.dataset.type));
  check(types[0] === 'workflow_started' && types[types.length - 1] === 'workflow_completed',
    `the event log runs from ${types[0]} to ${types[types.length - 1]}`);
  const seqs = await page.$$eval('#event-log .event', (es) => es.map((e) => Number(e.dataset.seq)));
  check(seqs.every((s, i) => s === i + 1), `the event log has gaps or repeats: ${seqs}`);
  // Keyboard: focus a node and open it with Enter.
  await page.focus('svg.maestro-dag g.node[data-node-id="clean"]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#node-panel h2 code');
  const panel = await page.textContent('#node-panel');
  check(panel.includes('clean') && panel.includes('completed') && panel.includes('slept_ms'),
    `the node panel shows ${panel}`);
  check(await page.isDisabled('#run-cancel') && await page.isDisabled('#run-pause') && await page.isDisabled('#run-retry'),
    'a completed run has its control buttons disabled');
  await shot(page, 'run-completed.png');
  // A reload rebuilds the same picture from the run and its history.
  await page.reload();
  await waitRun(page, 'completed');
  for (const n of ['extract', 'clean', 'enrich', 'load']) await waitNode(page, n, 'completed');
  await page.waitForFunction((n) => document.querySelectorAll('#event-log .event').length === n, seqs.length);
  log('run completed');

  // 5. A failure: the node turns failed, its dependant is skipped, the run fails.
  await api('POST', 'workflows', workflows.failure);
  await openWorkflow(page, 'browser_failure');
  await startRun(page);
  await record(page);
  await waitNode(page, 'upload', 'failed');
  await waitRun(page, 'failed');
  await waitNode(page, 'notify', 'skipped');
  const failSeen = await page.evaluate(() => window.__seen);
  check((failSeen.prepare || []).includes('completed'), `prepare went through ${failSeen.prepare}`);
  await page.click('svg.maestro-dag g.node[data-node-id="upload"]');
  await page.waitForSelector('#node-panel pre.error-text');
  const failText = await page.textContent('#node-panel');
  check(failText.includes('disk full on /var/data'), `the failed node's panel shows ${failText}`);
  check(!(await page.isDisabled('#run-retry')), 'a failed run can be retried');
  check(await page.isDisabled('#run-cancel'), 'a failed run cannot be cancelled');
  await shot(page, 'run-failed.png');
  // Retry: the run starts again on the same page (a new socket), and fails again.
  await page.click('#run-retry');
  await page.waitForFunction(() => document.querySelectorAll('#event-log .event[data-type="workflow_failed"]').length === 2);
  await waitRun(page, 'failed');
  await waitNode(page, 'upload', 'failed');
  log('failed run shown and retried');

  // 6. A human review, approved with the button.
  await api('POST', 'workflows', workflows.review);
  await openWorkflow(page, 'browser_review');
  await startRun(page);
  await waitNode(page, 'approve_release', 'waiting_approval');
  await page.waitForSelector('.approval-box');
  await page.focus('svg.maestro-dag g.node[data-node-id="approve_release"]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#approve-node');
  check(await page.isDisabled('#run-pause') === false, 'a running run can be paused');
  await shot(page, 'run-approval.png');
  await page.click('#approve-node');
  await waitNode(page, 'approve_release', 'completed');
  await waitNode(page, 'deploy', 'completed');
  await waitRun(page, 'completed');
  log('human review approved');

  // 7. A cancelled run.
  await api('POST', 'workflows', workflows.slow);
  await openWorkflow(page, 'browser_slow');
  await startRun(page);
  await waitNode(page, 'long_job', 'running');
  check(!(await page.isDisabled('#run-cancel')), 'a running run can be cancelled');
  await page.click('#run-pause');
  await waitRun(page, 'paused');
  check(await page.isDisabled('#run-pause') && !(await page.isDisabled('#run-resume')), 'a paused run can be resumed, not paused');
  await page.click('#run-resume');
  await waitRun(page, 'running');
  await page.click('#run-cancel');
  await waitRun(page, 'cancelled');
  await waitNode(page, 'long_job', 'cancelled');
  await waitNode(page, 'report', 'cancelled');
  check(!(await page.isDisabled('#run-retry')), 'a cancelled run can be retried');
  await shot(page, 'run-cancelled.png');
  log('run cancelled');

  // 8. Hostile names, ids and errors: shown as text, never as markup; __proto__ is a node.
  await hostile(page);

  // 9. A run of 600 nodes (1,202 events): the log keeps the last 1,000 rows and says so.
  await wide(page);

  // 10. A malformed address shows a readable "not found", not a blank page.
  await page.goto(`${BASE}/#/runs/%E0%A4%A`);
  await page.waitForSelector('#not-found');
  const notFound = await page.textContent('#view');
  check(notFound.includes('Nothing here') && notFound.includes('%E0%A4%A'), `a malformed address shows ${notFound}`);
  await page.goto(`${BASE}/#/no/such/page`);
  await page.waitForSelector('#not-found');
  log('malformed and unknown addresses shown as not found');

  // 11. The workflow list, with the runs.
  await page.goto(`${BASE}/#/`);
  await page.waitForSelector('.workflows-table tr[data-workflow-id="browser_pipeline"]');
  await page.waitForSelector('.runs-table');
  await shot(page, 'workflows.png');
}

/** No element made from the hostile strings, anywhere on the page. */
async function noInjectedMarkup(page, where) {
  const found = await page.evaluate(() => {
    const bad = [];
    if (document.querySelector('img[src="x"]')) bad.push('img[src=x]');
    if (document.querySelector('#view b, .nodes-table b, #node-panel b, #event-log b')) bad.push('a <b> element');
    if (document.querySelector('#view script, #view img, #view foreignObject, #view image')) bad.push('a script, img or image element');
    if (document.querySelector('svg.maestro-dag svg')) bad.push('an <svg> inside the DAG');
    for (const el of document.querySelectorAll('#view *, #view')) {
      for (const a of el.attributes) {
        if (/^on/i.test(a.name)) bad.push(`${el.localName}[${a.name}]`);
        if (/href$/i.test(a.name) && /^\s*javascript:/i.test(a.value)) bad.push(`${el.localName}[${a.name}=${a.value}]`);
      }
    }
    return bad;
  });
  check(found.length === 0, `${where}: markup from the data became elements: ${found.join(', ')}`);
}

/** The hostile workflow: its page, a run of it, and a DAG laced with active SVG content. */
async function hostile(page) {
  const wf = workflows.hostile;
  await api('POST', 'workflows', wf);
  // The server escapes everything it draws; to exercise the page's own SVG allow-list, the
  // DAG of this workflow is answered with the server's picture plus elements and attributes
  // that must not survive.
  const graphRoute = new RegExp(`/api/v1/workflows/${wf.id}/graph\\?`);
  let laced = 0;
  await page.route(graphRoute, async (route) => {
    laced += 1;
    const res = await route.fetch();
    const body = (await res.text())
      .replace('<svg ', '<svg xmlns:xlink="http://www.w3.org/1999/xlink" onload="alert(11)" ')
      .replace('<g class="nodes">', '<g class="nodes"><script>alert(12)</script>'
        + '<foreignObject width="10" height="10"><img xmlns="http://www.w3.org/1999/xhtml" src="x" onerror="alert(13)"/></foreignObject>'
        + '<a href="javascript:alert(14)"><text>click</text></a><image href="x" onerror="alert(15)"/>'
        + '<set attributeName="onmouseover" to="alert(16)"/><animate attributeName="href" to="javascript:alert(17)"/>'
        + '<use xlink:href="#maestro-arrow"/><iframe xmlns="http://www.w3.org/1999/xhtml" src="javascript:alert(18)"/>')
      .replace('<rect class="box"', '<rect class="box" onclick="alert(19)" style="fill:red" xlink:href="x"');
    await route.fulfill({ response: res, body });
  });
  expectBlocked = true;
  try {
    await openWorkflow(page, wf.id);
    const nodes = await page.$$eval('svg.maestro-dag g.node', (gs) => gs.map((g) => g.getAttribute('data-node-id')));
    check(JSON.stringify(nodes.sort()) === JSON.stringify(['__proto__', 'boom', 'constructor', 'hasOwnProperty']),
      `the hostile DAG draws ${nodes}`);
    const svgBad = await page.$$eval('svg.maestro-dag *', (els) => els
      .filter((el) => !['g', 'defs', 'marker', 'path', 'rect', 'text', 'title', 'circle'].includes(el.localName)
        || el.hasAttribute('style') || el.hasAttribute('href') || el.hasAttributeNS('http://www.w3.org/1999/xlink', 'href'))
      .map((el) => el.localName));
    check(svgBad.length === 0, `the DAG kept elements or attributes outside the allow-list: ${svgBad}`);
    check(await page.$eval('svg.maestro-dag', (s) => !s.hasAttribute('onload')), 'the DAG kept an onload attribute');
    const table = await page.textContent('.nodes-table');
    for (const text of [wf.nodes[0].name, wf.nodes[1].name, wf.nodes[2].name]) {
      check(table.includes(text), `the node table does not show ${JSON.stringify(text)} literally: ${table}`);
    }
    const titles = await page.$$eval('svg.maestro-dag g.node title', (ts) => ts.map((t) => t.textContent).join('\n'));
    check(titles.includes(wf.nodes[0].name) && titles.includes(wf.nodes[1].name),
      `the DAG's titles do not show the names literally: ${titles}`);
    const head = await page.textContent('.page-head');
    check(head.includes(wf.name) && head.includes(wf.description), `the page head shows ${head}`);
    check((await page.title()).includes(wf.name), `the document title is ${await page.title()}`);
    await noInjectedMarkup(page, 'the hostile workflow page');
  } finally {
    await page.unroute(graphRoute);
  }
  // Only the parsing of that picture may have been reported; from here on the policy must
  // report nothing at all.
  await page.waitForTimeout(100);
  expectBlocked = false;
  check(laced > 0, 'the laced DAG was never asked for');
  log(`the DAG's allow-list kept none of the active SVG content (the policy blocked ${blockedByPolicy.length} parts of the parsed source)`);

  // A run: __proto__ completes, boom fails with its markup as text, hasOwnProperty is skipped.
  await startRun(page);
  await waitRun(page, 'failed');
  await waitNode(page, '__proto__', 'completed');
  await waitNode(page, 'constructor', 'completed');
  await waitNode(page, 'boom', 'failed');
  await waitNode(page, 'hasOwnProperty', 'skipped');
  for (const [id, status] of [['__proto__', 'completed'], ['constructor', 'completed'], ['boom', 'failed'], ['hasOwnProperty', 'skipped']]) {
    await page.waitForSelector(`.nodes-table tr[data-node-id="${id}"] .badge[data-status="${status}"]`);
  }
  const progress = await page.textContent('#run-progress');
  check(progress.startsWith('2/4 completed') && progress.includes('1 failed') && progress.includes('1 skipped'),
    `the hostile run's progress says "${progress}"`);
  await page.click('svg.maestro-dag g.node[data-node-id="boom"]');
  await page.waitForSelector('#node-panel pre.error-text');
  const error = await page.textContent('#node-panel pre.error-text');
  check(error.includes(wf.nodes[2].config.message), `the error is not shown literally: ${error}`);
  const panelText = await page.textContent('#node-panel');
  check(panelText.includes(wf.nodes[2].name), `the panel does not show the name literally: ${panelText}`);
  const logText = await page.textContent('#event-log');
  check(logText.includes(wf.nodes[2].config.message) && logText.includes('__proto__'),
    `the event log does not show the error and __proto__ literally: ${logText}`);
  await page.click('.nodes-table tr[data-node-id="__proto__"] button');
  await page.waitForSelector('#node-panel h2 code');
  const protoPanel = await page.textContent('#node-panel');
  check(protoPanel.includes('__proto__') && protoPanel.includes('completed') && protoPanel.includes(wf.nodes[0].name),
    `the __proto__ node's panel shows ${protoPanel}`);
  await noInjectedMarkup(page, 'the hostile run page');
  await shot(page, 'run-hostile.png');
  // A reload rebuilds it from the snapshot and the history, __proto__ included.
  await page.reload();
  await waitRun(page, 'failed');
  await waitNode(page, '__proto__', 'completed');
  await page.waitForSelector('.nodes-table tr[data-node-id="__proto__"] .badge[data-status="completed"]');
  await noInjectedMarkup(page, 'the reloaded hostile run page');
  log('hostile names, ids and errors shown as text');
}

/** A wide workflow's run, opened while it runs: every node ends completed, and the event log
 *  keeps its last 1,000 rows, saying how many older ones it left out. */
async function wide(page) {
  const layers = 6;
  const width = 100;
  const nodes = [];
  for (let l = 0; l < layers; l += 1) {
    for (let i = 0; i < width; i += 1) {
      nodes.push({ id: `w${l}_${i}`, executor: 'noop', depends_on: l ? [`w${l - 1}_${i}`, `w${l - 1}_${(i + 1) % width}`] : [] });
    }
  }
  await api('POST', 'workflows', { id: 'browser_wide', name: 'Browser wide', nodes });
  const { run_id: runId } = await api('POST', 'workflows/browser_wide/runs', { inputs: {} });
  const started = Date.now();
  await page.goto(`${BASE}/#/runs/${runId}`);
  await page.waitForSelector('svg.maestro-dag g.node');
  await waitRun(page, 'completed');
  await page.waitForFunction((n) => document.querySelectorAll('svg.maestro-dag g.node.status-completed').length === n,
    nodes.length, { timeout: 60_000 });
  await page.waitForFunction(() => document.querySelectorAll('#event-log .event').length === 1000);
  const total = nodes.length * 2 + 2; // workflow_started, node_started and node_completed each, workflow_completed
  const seqs = await page.$$eval('#event-log .event', (es) => es.map((e) => Number(e.dataset.seq)));
  check(seqs[0] === total - 999 && seqs[999] === total && seqs.every((s, i) => i === 0 || s === seqs[i - 1] + 1),
    `the log keeps ${seqs[0]}..${seqs[seqs.length - 1]}, not the last 1,000 of ${total} events in order`);
  const count = await page.textContent('#event-log-count');
  check(count.includes(`(${total - 1000} older not shown)`),
    `the log's count says "${count}"`);
  const progress = await page.textContent('#run-progress');
  check(progress.startsWith(`${nodes.length}/${nodes.length} completed`), `the wide run's progress says "${progress}"`);
  const rows = await page.$$eval('.nodes-table tbody tr .badge[data-status="completed"]', (bs) => bs.length);
  check(rows === nodes.length, `the node table shows ${rows} completed nodes, not ${nodes.length}`);
  const clicked = Date.now();
  await page.click('svg.maestro-dag g.node[data-node-id="w0_0"]');
  await page.waitForSelector('#node-panel h2 code');
  log(`a run of ${nodes.length} nodes shown live in ${Date.now() - started} ms; a node's panel opened in ${Date.now() - clicked} ms`);
}

main().then(() => {
  log(`all checks passed; screenshots in ${SHOTS}`);
}, (e) => {
  console.error(`[dashboard] FAILED: ${e instanceof Failure ? e.message : (e && e.stack) || e}`);
  process.exitCode = 1;
});
