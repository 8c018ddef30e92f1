// The live page at `/` in a real browser: Debian's chromium, headless, driven by puppeteer-core,
// against a running `moeserve serve` with the bundled KJV model.
// Usage: node webui_check.mjs PORT MODE [API_KEY]
//   MODE single: the page loads with no console error; after completions the heatmap's
//                cumulative counts equal /metrics' moeserve:expert_tokens_total cell for cell,
//                and exactly the non-zero cells are painted; under load the requests in flight
//                are listed; the chat tab streams an answer; phone width and dark mode lay out
//                without overflow.
//   MODE eplb:   (a server with -dp 2 --enable-expert-parallel --enable-eplb and a short
//                step_interval) an EPLB rearrangement shows up in the page's list, as /metrics
//                counts it, the EP rank loads are drawn, and the heatmap (both replicas' tokens)
//                equals /metrics.
// MOESERVE_SCREENSHOT_DIR: where to save the screenshots (webui-*.png); MOESERVE_CHROMIUM: the
// browser (default /usr/bin/chromium). Exits non-zero with a message on failure.
import { existsSync, mkdirSync } from 'node:fs';
import puppeteer from 'puppeteer-core';

const [port, mode, apiKey = ''] = process.argv.slice(2);
const base = `http://127.0.0.1:${port}`;
const auth = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
const screenshotDir = process.env.MOESERVE_SCREENSHOT_DIR || '';
const chromium = process.env.MOESERVE_CHROMIUM || '/usr/bin/chromium';
let failures = 0;
function check(condition, what) {
  if (!condition) {
    failures += 1;
    console.error(`FAIL: ${what}`);
  } else {
    console.log(`ok: ${what}`);
  }
}
if (!existsSync(chromium)) {
  console.error(`no browser at ${chromium}: scripts/install-deps.sh installs Debian's chromium`);
  process.exit(1);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(what, predicate, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

// moeserve:expert_tokens_total from /metrics as [layer][expert] (absent series are zero).
async function metricsExpertTokens() {
  const text = await (await fetch(`${base}/metrics`)).text();
  const cells = [];
  for (const match of text.matchAll(/^moeserve:expert_tokens_total\{[^}]*layer="(\d+)",expert="(\d+)"\} (\S+)$/gm)) {
    const [layer, expert, value] = [Number(match[1]), Number(match[2]), Number(match[3])];
    (cells[layer] ??= [])[expert] = value;
  }
  return { cells, text };
}
function metricValue(text, name) {
  const match = text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm'));
  return match ? Number(match[1]) : null;
}

// The engine is idle once the completions have returned (an answer leaves the engine after its
// last step is counted), and the page catches up at its next tick. Both are read again until they
// agree on every cell. Returns /metrics' cells, layer-major.
async function checkHeatmapMatchesMetrics(page, wantLayers, wantExperts) {
  let last = null;
  const matched = await until('the page to match /metrics', async () => {
    const { cells } = await metricsExpertTokens();
    const experts = cells[0]?.length ?? 0;
    const flat = cells.flatMap((row) => Array.from({ length: experts }, (_, e) => row[e] ?? 0));
    last = { layers: cells.length, experts, flat };
    const pageCells = await page.evaluate(() => Array.from(window.moeserve.state.cumulative));
    return pageCells.length === flat.length && pageCells.every((v, i) => v === flat[i]) ? last : null;
  }, 15000).catch(() => null);
  const { layers, experts, flat } = matched ?? last;
  check(layers === wantLayers && experts === wantExperts,
    `/metrics has ${wantLayers} layers x ${wantExperts} experts (got ${layers} x ${experts})`);
  const total = flat.reduce((a, b) => a + b, 0);
  check(total > 0, `the routers chose experts (${total} tokens routed)`);
  check(matched !== null, 'the heatmap\'s cumulative counts equal moeserve:expert_tokens_total cell for cell');
  return { flat, experts };
}

async function complete(prompt, maxTokens) {
  const response = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...auth },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true }),
  });
  if (!response.ok) throw new Error(`completion: ${response.status} ${await response.text()}`);
  return response.json();
}

async function screenshot(page, name, element) {
  if (!screenshotDir) return;
  mkdirSync(screenshotDir, { recursive: true });
  const target = element ? await page.$(element) : page;
  await target.screenshot({ path: `${screenshotDir}/${name}` });
  console.log(`screenshot ${screenshotDir}/${name}`);
}

const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-extensions'],
});
const errors = [];
let closing = false;
try {
  const page = await browser.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error' && !closing) errors.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => errors.push(`page error: ${error.message}`));
  page.on('requestfailed', (request) => {
    if (!closing) errors.push(`request failed: ${request.url()} ${request.failure()?.errorText}`);
  });
  await page.setViewport({ width: 1280, height: 800 });
  if (apiKey) {
    // As a user would: the page asks for the key, which it keeps in localStorage.
    await page.goto(`${base}/`, { waitUntil: 'load' });
    await page.waitForSelector('#key-bar:not([hidden])', { timeout: 15000 });
    check(await page.$eval('#status', (el) => el.textContent) === 'API key needed', 'the page asks for the API key');
    await page.type('#key-input', apiKey);
    await page.click('#key-form button');
  } else {
    await page.goto(`${base}/`, { waitUntil: 'load' });
  }
  await until('the live stream', () => page.evaluate(() => window.moeserve.state.connected
    && window.moeserve.state.ticksReceived >= 1));
  check(await page.$eval('#model-name', (el) => el.textContent) === 'kjv', 'the header names the served model');
  check((await page.$eval('#deployment', (el) => el.textContent)).includes('MixtralForCausalLM'),
    'the deployment panel names the architecture');

  if (mode === 'single') {
    const prompts = ['In the beginning God created', 'And the LORD spake unto Moses, saying',
      'Blessed are the poor in spirit', 'The LORD is my shepherd'];
    await Promise.all(prompts.map((prompt) => complete(prompt, 24)));
    const { flat, experts } = await checkHeatmapMatchesMetrics(page, 4, 8);
    // Paint: in the cumulative view exactly the non-zero cells carry a colour (sampled away from
    // the hottest cell's outline and label).
    await page.click('#heat-mode button[data-mode="all"]');
    const painted = await page.evaluate(() => {
      const { heatmap } = window.moeserve;
      const ctx = heatmap.canvas.getContext('2d');
      const dpr = heatmap.canvas.width / heatmap.canvas.clientWidth;
      const probe = document.createElement('canvas').getContext('2d');
      probe.fillStyle = getComputedStyle(document.documentElement).getPropertyValue('--heat-empty').trim();
      probe.fillRect(0, 0, 1, 1);
      const empty = Array.from(probe.getImageData(0, 0, 1, 1).data);
      const out = [];
      for (let layer = 0; layer < heatmap.layers; ++layer) {
        for (let expert = 0; expert < heatmap.experts; ++expert) {
          const r = heatmap.cellRect(layer, expert);
          const pixel = Array.from(ctx.getImageData(Math.round((r.x + r.w * 0.2) * dpr), Math.round((r.y + r.h * 0.8) * dpr), 1, 1).data);
          out.push(pixel.some((v, i) => Math.abs(v - empty[i]) > 8));
        }
      }
      return out;
    });
    const expectedPaint = flat.map((v) => v > 0);
    check(painted.length === flat.length && painted.every((p, i) => p === expectedPaint[i]),
      `the painted cells are exactly the non-zero ones (${expectedPaint.filter(Boolean).length} of ${flat.length})`);
    const hottest = await page.$$eval('#hottest li', (items) => items.map((li) => li.textContent));
    const maxCell = flat.indexOf(Math.max(...flat));
    check(hottest.length > 0 && hottest[0].startsWith(`layer ${Math.floor(maxCell / experts)} · expert ${maxCell % experts}:`),
      `the hottest expert is labelled first (${hottest[0]})`);
    const tokensOut = await page.$eval('#t-out', (el) => el.textContent);
    check(tokensOut !== '–', `the tiles show tokens/s (${tokensOut})`);
    await page.click('#heat-mode button[data-mode="w10"]');

    // Under load: the requests in flight are listed, the running tile counts them.
    const background = Promise.all(Array.from({ length: 16 }, (_, i) => complete(`${prompts[i % 4]}, ${i}`, 400)));
    const listed = await until('requests in flight on the page', () => page.$$eval('#requests tbody td.id',
      (cells) => (cells.length >= 2 ? cells.map((td) => td.textContent) : null)), 30000).catch(() => []);
    check(listed.length >= 2 && listed.every((id) => id.startsWith('cmpl-')), `the requests in flight are listed (${listed.length})`);
    const running = await page.$eval('#t-running', (el) => Number(el.textContent));
    check(running > 0, `the running tile counts them (${running})`);
    await sleep(2200);
    await screenshot(page, 'webui-dashboard.png');
    await background;

    // The chat tab: a streamed answer with tokens/s.
    await page.click('.tabs button[data-tab="chat"]');
    await page.evaluate(() => {
      window.__chatUpdates = 0;
      new MutationObserver(() => { window.__chatUpdates += 1; })
        .observe(document.getElementById('chat-log'), { childList: true, subtree: true, characterData: true });
    });
    await page.$eval('#chat-temp', (el) => { el.value = '0'; });
    // Long enough that the stream spans many reads: 48 tokens at ~850 tokens/s on a quiet machine
    // arrived in as few as 3 reads (one MutationObserver callback each).
    await page.$eval('#chat-max', (el) => { el.value = '192'; });
    await page.type('#chat-input', 'Who led the children of Israel out of Egypt?');
    await page.keyboard.press('Enter');
    const state = await until('the chat answer', () => page.$eval('.msg.assistant:last-child',
      (el) => (el.dataset.state === 'streaming' ? null : el.dataset.state)), 60000);
    check(state === 'done', `the chat answer finished (${state})`);
    const answer = await page.$eval('.msg.assistant:last-child', (el) => el.textContent);
    check(answer.trim().length > 0, `the chat answer has text: ${JSON.stringify(answer.slice(0, 80))}`);
    const updates = await page.evaluate(() => window.__chatUpdates);
    check(updates > 3, `the answer arrived streamed (${updates} updates of the log)`);
    const stats = await page.$eval('#chat-stats', (el) => el.textContent);
    check(/\d+ tokens · [\d.]+ tokens\/s/.test(stats), `the chat shows tokens/s (${stats})`);
    await screenshot(page, 'webui-chat.png');

    // Phone width, dark mode: nothing wider than the screen, both tabs.
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
    await page.setViewport({ width: 390, height: 844, deviceScaleFactor: 2 });
    await sleep(300);
    check(await page.evaluate(() => document.documentElement.dataset.theme) === 'dark', 'dark mode follows the system');
    for (const tab of ['chat', 'dashboard', 'deployment']) {
      await page.click(`.tabs button[data-tab="${tab}"]`);
      await sleep(300);
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      check(width <= 390, `the ${tab} tab fits a 390 px phone (scroll width ${width})`);
    }
    await page.click('.tabs button[data-tab="dashboard"]');
    await sleep(1500);
    await screenshot(page, 'webui-phone-dark.png');
  } else if (mode === 'eplb') {
    // Load until EPLB rearranges; the page must list it as it happens.
    const prompts = Array.from({ length: 8 }, (_, i) => `And it came to pass in the ${i + 1}th year`);
    const load = Promise.all(prompts.map((prompt) => complete(prompt, 48)));
    const shown = await until('a rearrangement on the page', () => page.$$eval('#eplb-list li[data-index]',
      (items) => (items.length > 0 ? items.map((li) => li.textContent) : null)), 90000).catch(() => []);
    await load;
    await checkHeatmapMatchesMetrics(page, 4, 8);
    check(shown.length > 0, `a rearrangement appears on the page: ${shown[0]}`);
    const { text } = await metricsExpertTokens();
    const applied = metricValue(text, 'moeserve:eplb_rearrangements_total');
    check(applied !== null && applied >= shown.length, `/metrics counts it (${applied} >= ${shown.length})`);
    check(/^#\d+ after step \d+: balancedness [\d.]+ → [\d.]+/.test(shown[0] ?? ''), 'it says when and how it rebalanced');
    check(/layer \d+: \d+ slots? changed/.test(shown[0] ?? ''), 'it says which layers changed');
    const ranks = await page.$$eval('#ep-body .ep-rank', (rows) => rows.length);
    check(ranks === 2, `the EP rank loads are drawn (${ranks} ranks)`);
    await sleep(1200);
    await screenshot(page, 'webui-eplb.png');
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  check(errors.length === 0, `no console errors (${errors.join('; ')})`);
} catch (error) {
  failures += 1;
  console.error(`FAIL: ${error.stack || error}`);
} finally {
  closing = true;
  await browser.close();
}
if (failures > 0) {
  console.error(`${failures} webui check(s) failed`);
  process.exit(1);
}
console.log('webui checks passed');
