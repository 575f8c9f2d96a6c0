// Browser test of the Tollgate console, run by console_test.go against a
// live `tollgate serve`: Playwright (playwright-core) drives Debian's
// chromium headless; axe-core checks accessibility basics. Every step
// asserts; the first failure exits non-zero with what was on the page.
//
// Environment (set by console_test.go): CONSOLE_URL, CONSOLE_TOKEN,
// OPERATOR_ID, OPERATOR_SEED, INCIDENT_RUN, LIVE_RUN, SCREENSHOTS,
// CHROMIUM, SPEND (1 when ClickHouse is configured), RETRY_RUN (a run with
// a retried hop and one re-routed to a fallback), LOOP_URL (the URL
// `tollgate demo --scenario loop --console` printed), INJECTION_URL (the
// same for the injection scenario).
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const axePath = require.resolve('axe-core/axe.min.js');
const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const base = env('CONSOLE_URL').replace(/\/$/, '');
const shots = env('SCREENSHOTS');
mkdirSync(shots, { recursive: true });
const incident = env('INCIDENT_RUN');
const live = env('LIVE_RUN');

let step = 'launch';
const log = (msg) => console.log(`[browser] ${msg}`);
function check(cond, what) {
  if (!cond) throw new Error(`${step}: ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-default-apps',
    '--disable-sync', '--no-first-run', '--disable-dev-shm-usage', '--metrics-recording-only', '--disable-breakpad'],
});
// bypassCSP lets the test inject axe-core; the console itself runs under its CSP.
const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, bypassCSP: true });
const page = await context.newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text()); });
// Failed requests, but the expected ones: the session probe before login,
// the wrong token, and spend without ClickHouse.
page.on('response', (r) => {
  const u = new URL(r.url()).pathname;
  const expected = (r.status() === 401 && (u.endsWith('/api/session') || u.endsWith('/api/login'))) ||
    (r.status() === 404 && u.endsWith('/api/spend') && process.env.SPEND !== '1');
  if (r.status() >= 400 && !expected) consoleErrors.push(`${r.status()} ${u}`);
});
page.on('pageerror', (e) => consoleErrors.push(String(e)));

async function shot(name) {
  await page.screenshot({ path: path.join(shots, name), fullPage: true });
  log(`screenshot ${name}`);
}

// axe checks WCAG 2 A and AA rules (labels, names, contrast, keyboard).
async function axe(name) {
  await page.addScriptTag({ path: axePath });
  const res = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    return r.violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ') + ' [' + (n.failureSummary || '') + '] ' + (document.querySelector(n.target[0])?.getAttribute('aria-label') || '') + ' / ' + (document.querySelector(n.target[0])?.textContent || '')).join(' | ')}`);
  });
  check(res.length === 0, `axe found accessibility violations on ${name}:\n  ${res.join('\n  ')}`);
  log(`axe: ${name} clean`);
}

try {
  step = 'anonymous: login page, no data';
  await page.goto(`${base}/`);
  await page.waitForSelector('#token');
  check(!(await page.content()).includes(incident), 'the login page shows the run');
  await axe('login');
  await shot('login.png');

  step = 'token login';
  await page.fill('#token', 'tgc_wrong');
  await page.click('text=Log in with token');
  await page.waitForFunction(() => document.getElementById('login-error')?.textContent?.includes('not configured'));
  await page.fill('#token', env('CONSOLE_TOKEN'));
  await page.click('text=Log in with token');

  step = 'runs list shows the demo run';
  const row = page.locator(`tr[data-run="${incident}"]`);
  await row.waitFor();
  const rowText = await row.innerText();
  for (const want of ['completed', 'looping', 'tomas', 'research-brief', 'orchestrator']) check(rowText.includes(want), `row lacks ${want}: ${rowText}`);
  check(await page.locator(`tr[data-run="${live}"] .status-running`).count() === 1, 'the live run is not listed as running');
  const order = await page.locator('tbody tr').evaluateAll((rs) => rs.map((r) => r.getAttribute('data-run')));
  check(order.indexOf(live) < order.indexOf(incident), `not newest first: ${order}`);
  await axe('runs');
  await shot('runs.png');

  step = 'search filters the list';
  await page.fill('#q', incident.slice(0, 18));
  await page.waitForFunction((n) => document.querySelectorAll('tbody tr').length === n, 1);
  await page.fill('#q', '');
  await page.selectOption('#status', 'running');
  await page.waitForFunction((id) => [...document.querySelectorAll('tbody tr')].every((r) => r.getAttribute('data-run') === id), live);
  await page.selectOption('#status', '');

  step = 'run page draws the graph with the denied edge marked';
  await page.click(`tr[data-run="${incident}"] a`);
  await page.waitForSelector('#callgraph svg .edge');
  const denied = page.locator('#callgraph .edge.denied[data-from="research"][data-to="orchestrator"]');
  check(await denied.count() === 1, 'no denied research -> orchestrator edge');
  check((await denied.getAttribute('class')).includes('cycle'), 'the denied edge is not marked as a cycle');
  check(await page.locator('#callgraph .edge.denied').count() === 1, 'more than one denied edge');
  check(await page.locator('#tree .node.denied').count() === 1, 'the tree lacks the denied hop');
  check(await page.locator('#callgraph .node').count() === 5, 'the call graph lacks a node per identity');
  check((await page.locator('#callgraph').innerText()).includes('$0.0300'), 'node spend missing');
  check((await page.locator('#verification').innerText()).includes('Ledger verified'), 'verification not shown');
  check(await page.locator('.legend li').count() >= 5, 'no legend');
  await axe('run');
  await shot('run.png');

  step = 'keyboard: a hop node opens its detail';
  await page.locator('#tree .node.denied').focus();
  await page.keyboard.press('Enter');
  await page.waitForSelector('#hop-detail');
  const detail = await page.locator('#hop-detail').innerText();
  for (const want of ['research → orchestrator', 'denied', 'no-agent-invokes-an-orchestrator', 'already in the ancestry', 'Guardrail', 'Taint', 'Trace']) {
    check(detail.includes(want), `hop detail lacks ${want}:\n${detail}`);
  }
  check(await page.evaluate(() => document.activeElement?.id) === 'hop-h', 'focus did not move to the detail');
  const trace = await page.getAttribute('#hop-detail a[href^="http://localhost:16686/trace/"]', 'href');
  check(/^http:\/\/localhost:16686\/trace\/[0-9a-f]{32}$/.test(trace || ''), `no trace link from admin.console.trace_url: ${trace}`);
  await shot('hop.png');

  step = 'the slider replays the run event by event';
  const max = Number(await page.getAttribute('#slider', 'max'));
  check(max >= 10, `slider max ${max}`);
  await page.locator('#slider').focus();
  await page.keyboard.press('Home');
  await page.waitForFunction(() => document.getElementById('slider-text')?.textContent?.startsWith('event 1 of'));
  await page.waitForFunction(() => document.querySelectorAll('#tree .node').length <= 2);
  check(await page.locator('#callgraph .edge.denied').count() === 0, 'the denied edge shows before it happened');
  const seen = [];
  for (let i = 2; i <= max; i++) {
    await page.keyboard.press('ArrowRight');
    await page.waitForFunction((n) => document.getElementById('slider-text')?.textContent?.startsWith(`event ${n} of`), i);
    seen.push(await page.locator('#tree .node').count());
    if (i === 4) await shot('run-slider.png');
  }
  check(seen.every((n, i) => i === 0 || n >= seen[i - 1]), `hops did not appear in order: ${seen}`);
  check(await page.locator('#callgraph .edge.denied').count() === 1, 'the denied edge is not back at the end');

  step = 'what-if against a candidate set the gateway knows';
  await page.selectOption('#whatif-set', 'candidates');
  await page.click('#whatif-run');
  await page.waitForSelector('.whatif-summary');
  const wi = await page.locator('#whatif-result').innerText();
  check(wi.includes('1 of') && wi.includes('research → orchestrator') && wi.includes('redenied'), `what-if: ${wi}`);
  await page.locator('#whatif-result').scrollIntoViewIfNeeded();
  await shot('whatif.png');

  step = 'spend';
  await page.click('nav >> text=Spend');
  await page.waitForSelector('#spend-chart > *');
  if (process.env.SPEND === '1') {
    await page.waitForSelector('#spend-chart svg rect', { timeout: 30000 });
    check((await page.locator('#spend-sql').innerText()).includes('FROM'), 'no SQL shown');
  } else {
    check((await page.locator('#spend-chart').innerText()).includes('ClickHouse'), 'no word about ClickHouse');
  }
  await axe('spend');
  await shot('spend.png');

  step = 'halting a live run (operator)';
  await page.click('text=Log out');
  await page.waitForSelector('#operator');
  await page.fill('#operator', env('OPERATOR_ID'));
  await page.fill('#seed', env('OPERATOR_SEED'));
  await page.click('text=Log in as operator');
  await page.waitForFunction(() => document.getElementById('who')?.textContent?.includes('(operator)'));
  await page.click('nav >> text=Runs');
  await page.waitForSelector(`tr[data-run="${live}"]`);
  await page.click(`tr[data-run="${live}"] a`);
  await page.waitForSelector('#halt-reason');
  check(await page.locator('.run-head .status-running').count() === 1, 'live run not running');
  // A second tab on the runs list sees the halt without reloading: the
  // event stream from the LEDGER stream updates it.
  const listPage = await context.newPage();
  await listPage.goto(`${base}/`);
  await listPage.waitForSelector(`tr[data-run="${live}"] .status-running`);
  page.once('dialog', (d) => d.accept());
  await page.fill('#halt-reason', 'stuck: halted from the console');
  await page.click('#halt-button');
  await page.waitForSelector('.run-head .status-halted', { timeout: 20000 });
  const head = await page.locator('.run-head').innerText();
  check(head.includes(`by ${env('OPERATOR_ID')}`) && head.includes('halted from the console'), `halt not shown: ${head}`);
  check(await page.locator('#tree .node.halt').count() === 1, 'the halt is not drawn');
  step = 'the runs list in another tab updates live';
  await listPage.waitForSelector(`tr[data-run="${live}"] .status-halted`, { timeout: 15000 });
  await listPage.close();
  step = 'the held hop shows its guardrail finding';
  await page.locator('#tree .node[role=button]').first().focus();
  await page.keyboard.press('Enter');
  await page.waitForSelector('#hop-detail');
  const held = await page.locator('#hop-detail').innerText();
  check(held.includes('flag') && held.includes('instruction-override/addressed-to-ai'), `guardrail finding not shown:\n${held}`);
  check(held.includes('canceled') && held.includes('gateway'), `the halt's cancel not shown:\n${held}`);
  step = 'the halted run page';
  await axe('halted run');
  await shot('halted.png');

  step = 'demo --console: the printed URL shows the loop halted by a limit';
  const loopCtx = await browser.newContext({ viewport: { width: 1440, height: 1000 }, bypassCSP: true });
  const loopPage = await loopCtx.newPage();
  loopPage.on('pageerror', (e) => consoleErrors.push(String(e)));
  await loopPage.goto(env('LOOP_URL'));
  await loopPage.waitForSelector('#tree .node.halt');
  check(!loopPage.url().includes('token='), `the token stays in the address bar: ${loopPage.url()}`);
  check(await loopPage.locator('#callgraph .edge.tripped[data-from="research"][data-to="orchestrator"]').count() === 1, 'the tripped edge is not marked');
  check(await loopPage.locator('#tree .node.tripped').count() === 1, 'the hop that tripped the limit is not marked');
  check((await loopPage.locator('.run-head').innerText()).includes('limit cycle'), 'the halt does not name the limit');
  await loopPage.screenshot({ path: path.join(shots, 'loop.png'), fullPage: true });
  log('screenshot loop.png');
  await loopCtx.close();

  step = 'demo --scenario injection --console: taint and guardrail findings';
  const injCtx = await browser.newContext({ viewport: { width: 1440, height: 1000 }, bypassCSP: true });
  const injPage = await injCtx.newPage();
  injPage.on('pageerror', (e) => consoleErrors.push(String(e)));
  await injPage.goto(env('INJECTION_URL'));
  await injPage.waitForSelector('#callgraph svg .edge');
  check(await injPage.locator('#tree .node.tainted').count() >= 3, 'tainted hops are not marked');
  check(await injPage.locator('#callgraph .edge.denied[data-from="writer"][data-to="payments"]').count() === 1, 'the denied writer -> payments edge is not marked');
  await injPage.locator('.hop-button', { hasText: 'writer → payments' }).click();
  await injPage.waitForSelector('#hop-detail');
  const inj = await injPage.locator('#hop-detail').innerText();
  check(inj.includes('tainted: untrusted:web-fetch') && inj.includes('guardrail:instruction-override/ignore-previous'), `taint not shown:\n${inj}`);
  await injPage.screenshot({ path: path.join(shots, 'injection.png'), fullPage: true });
  log('screenshot injection.png');
  await injCtx.close();

  step = 'a run with a retry and a fallback';
  const retry = env('RETRY_RUN');
  await page.goto(`${base}/runs/${retry}`);
  await page.waitForSelector('#callgraph svg .edge');
  check(await page.locator('#callgraph .edge.retried[data-from="orchestrator"][data-to="writer"]').count() === 1, 'the retried edge is not marked');
  check(await page.locator('#callgraph .edge.rerouted-away[data-from="orchestrator"][data-to="reviewer"]').count() === 1, 'the edge to the target re-routed away from is not marked');
  check(await page.locator('#callgraph .edge.fallback[data-from="orchestrator"][data-to="editor"]').count() === 1, 'the fallback edge is not marked');
  check(((await page.locator('#callgraph .edge.rerouted-away').textContent()) || '').includes('re-routed away'), 'the re-routed edge has no label');
  check(await page.locator('#tree .node.retried').count() === 1, 'the retried hop is not marked in the tree');
  check(await page.locator('#tree .node.rerouted').count() === 1, 'the re-routed hop is not marked in the tree');
  check((await page.locator('#tree').innerText()).includes('fallback from reviewer'), 'the tree does not say where the fallback came from');
  const legendText = await page.locator('.legend').innerText();
  check(legendText.includes('retried') && legendText.includes('re-routed to a fallback'), `legend lacks retries and re-routes: ${legendText}`);
  await page.locator('.hop-button', { hasText: 'orchestrator → writer' }).click();
  await page.waitForSelector('#attempts');
  const tries = await page.locator('#attempts li').allInnerTexts();
  check(tries.length === 2 && tries[0].includes('attempt 1 → writer: failed (rate_limited): model overloaded') && tries[0].includes('model overloaded') &&
    tries[0].includes('10 tok') && tries[1].includes('attempt 2 → writer: completed') && tries[1].includes('20 tok'), `writer's attempts: ${tries.join(' | ')}`);
  await page.locator('.hop-button', { hasText: 'orchestrator → editor' }).click();
  await page.waitForSelector('#reroutes');
  const fb = await page.locator('#hop-detail').innerText();
  check(fb.includes('reviewer → editor (no_consumer)') && fb.includes('reviewer: not delivered (unavailable: no_consumer)') && fb.includes('attempt 1 → editor: completed'),
    `fallback hop detail:\n${fb}`);
  await axe('retried run');
  await shot('retry.png');

  check(consoleErrors.length === 0, `browser console errors: ${consoleErrors.join('; ')}`);
  log('all browser checks passed');
} catch (e) {
  console.error(`[browser] FAILED at ${step}: ${e.message}`);
  try {
    await shot('failure.png');
    console.error((await page.locator('main').innerText()).slice(0, 3000));
  } catch {}
  if (consoleErrors.length) console.error('browser console errors:', consoleErrors.join('; '));
  await browser.close();
  process.exit(1);
}
await browser.close();
