// The live page: subscribes to GET /live (server/live_feed.h) and keeps the dashboard, the
// deployment panel and the chat tab up to date. window.moeserve exposes the state for the
// browser test (tests/e2e/node/webui_check.mjs).
import './style.css';
import { Heatmap } from './heatmap.js';
import { Charts } from './charts.js';
import { Chat } from './chat.js';
import { authHeaders, readSse, setApiKey } from './sse.js';

const $ = (id) => document.getElementById(id);

// ---- state -------------------------------------------------------------------------------
// cumulative: Float64Array [layers × experts] = the base totals (hello / snapshot) plus every
// tick's delta since: what moeserve:expert_tokens_total said at the last tick.
// windows: the last 60 ticks' deltas, newest last, for the windowed views.
const state = {
  deployment: {},
  layers: 0,
  experts: 0,
  cumulative: new Float64Array(0),
  windows: [],
  tick: 0,
  ticksReceived: 0,
  ep: null,
  epWindow: [],  // the last 10 ticks' per-rank loads
  rearrangements: [],  // oldest first
  connected: false,
};
const WINDOW_TICKS = { w10: 10, w60: 60 };
let heatMode = 'w10';

const heatmap = new Heatmap($('heatmap'), $('heat-tip'), $('heat-legend'));
const charts = new Charts($('chart-throughput'), $('chart-kv'));
window.moeserve = { state, heatmap, charts };

function flatten(rows, layers, experts) {
  const out = new Float64Array(layers * experts);
  rows.forEach((row, layer) => row.forEach((value, expert) => { out[layer * experts + expert] = value; }));
  return out;
}

function setShape(layers, experts) {
  if (layers === state.layers && experts === state.experts) return;
  state.layers = layers;
  state.experts = experts;
  state.cumulative = new Float64Array(layers * experts);
  state.windows = [];
}

function setTotals(totals) {
  setShape(totals.layers, totals.experts);
  state.cumulative = flatten(totals.expert_tokens, totals.layers, totals.experts);
}

// ---- formatting --------------------------------------------------------------------------
const fmtInt = (v) => Math.round(v).toLocaleString();
const fmtRate = (v) => (v >= 100 ? fmtInt(v) : v.toFixed(1));
function fmtSeconds(v) {
  if (v == null) return '–';
  return v < 1 ? `${(v * 1000).toFixed(v < 0.01 ? 1 : 0)} ms` : `${v.toFixed(2)} s`;
}
const fmtPct = (v) => (v == null ? '–' : `${(100 * v).toFixed(1)}%`);

// ---- rendering ---------------------------------------------------------------------------
function heatValues() {
  if (heatMode === 'all') return state.cumulative;
  const n = WINDOW_TICKS[heatMode];
  const out = new Float64Array(state.layers * state.experts);
  for (const delta of state.windows.slice(-n)) {
    for (let i = 0; i < out.length; ++i) out[i] += delta[i];
  }
  return out;
}

function renderHeatmap() {
  heatmap.setData(heatValues(), state.layers, state.experts);
  $('heat-caption').textContent = state.layers
    ? `${state.layers} layers × ${state.experts} experts, ${heatMode === 'all' ? 'since start' : `last ${WINDOW_TICKS[heatMode]} s`}`
    : '';
  const list = $('hottest');
  list.replaceChildren(...heatmap.hottest(5).map((cell) => {
    const li = document.createElement('li');
    li.textContent = `layer ${cell.layer} · expert ${cell.expert}: ${fmtInt(cell.value)} (${(100 * cell.share).toFixed(0)}%)`;
    return li;
  }));
}

function renderTiles(tick) {
  $('t-running').textContent = tick.engine.running;
  $('t-waiting').textContent = tick.engine.waiting;
  $('t-kv').textContent = fmtPct(tick.engine.kv_cache_usage);
  $('t-prefix').textContent = fmtPct(tick.prefix_cache.hit_rate_total);
  $('t-in').textContent = fmtRate(tick.tokens.prompt_per_s);
  $('t-out').textContent = fmtRate(tick.tokens.generation_per_s);
  // "47 / 48 / 52 ms" (one unit for the three when they share it).
  const p = (x) => {
    const values = [x.p50, x.p90, x.p99];
    if (values.some((v) => v == null)) return '–';
    if (values.every((v) => v < 1)) return `${values.map((v) => (v * 1000).toFixed(v < 0.01 ? 1 : 0)).join(' / ')} ms`;
    return `${values.map((v) => v.toFixed(2)).join(' / ')} s`;
  };
  $('t-ttft').textContent = p(tick.latency.ttft_s);
  $('t-tpot').textContent = p(tick.latency.tpot_s);
}

function renderRequests(requests) {
  $('req-count').textContent = requests.count > requests.items.length
    ? `${requests.count} (oldest ${requests.items.length} shown)` : `${requests.count}`;
  const rows = requests.items.map((r) => {
    const tr = document.createElement('tr');
    const decode = r.ttft_s == null ? 0 : r.age_s - r.ttft_s;
    const rate = decode > 0 && r.output_tokens > 1 ? fmtRate((r.output_tokens - 1) / decode) : '–';
    const cells = [[r.id, 'id'], [`${r.kind}${r.stream ? ' · stream' : ''}${r.choices > 1 ? ` · n=${r.choices}` : ''}`, ''],
      [fmtInt(r.prompt_tokens), 'num'], [fmtInt(r.output_tokens), 'num'], [fmtSeconds(r.age_s), 'num'],
      [r.ttft_s == null ? 'waiting' : fmtSeconds(r.ttft_s), 'num'], [rate, 'num']];
    for (const [text, cls] of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement('tr');
    const td = document.createElement('td');
    td.colSpan = 7;
    td.className = 'muted';
    td.textContent = 'no requests in flight';
    tr.appendChild(td);
    rows.push(tr);
  }
  $('requests').tBodies[0].replaceChildren(...rows);
}

function renderEp() {
  const body = $('ep-body');
  const ep = state.ep;
  if (!ep) return;
  const loads = new Array(ep.ranks).fill(0);
  for (const w of state.epWindow) w.forEach((v, r) => { loads[r] += v; });
  const max = Math.max(1, ...loads);
  const rows = loads.map((load, rank) => {
    const row = document.createElement('div');
    row.className = 'ep-rank';
    const label = document.createElement('span');
    label.textContent = `rank ${rank}`;
    const bar = document.createElement('div');
    bar.className = 'bar';
    const fill = document.createElement('span');
    fill.style.width = `${(100 * load) / max}%`;
    bar.appendChild(fill);
    const value = document.createElement('span');
    value.textContent = fmtInt(load);
    row.append(label, bar, value);
    return row;
  });
  const sum = loads.reduce((a, b) => a + b, 0);
  const summary = document.createElement('p');
  summary.className = 'muted';
  summary.textContent = `balancedness (mean / max tokens per rank): last step ${ep.balancedness.toFixed(3)}`
    + (sum > 0 ? `, last 10 s ${(sum / loads.length / Math.max(...loads)).toFixed(3)}` : '');
  const ranks = document.createElement('div');
  ranks.className = 'ep-ranks';
  ranks.append(...rows);
  body.replaceChildren(ranks, summary);
  $('eplb-count').textContent = ep.rearrangements_total ? `(${ep.rearrangements_total} so far)` : '';
}

function rearrangementItem(record, fresh) {
  const li = document.createElement('li');
  li.dataset.index = record.index;
  if (fresh) li.className = 'fresh';
  const head = document.createElement('div');
  head.textContent = `#${record.index} after step ${record.step}: balancedness ${record.balancedness_before.toFixed(3)} → ${record.balancedness_after.toFixed(3)}`;
  li.appendChild(head);
  for (const layer of record.layers) {
    const line = document.createElement('div');
    line.className = 'muted';
    const moves = layer.arrivals.map((a) => `expert ${a.expert} → rank ${a.rank}`).join(', ');
    line.textContent = `layer ${layer.layer}: ${layer.slots_changed} slot${layer.slots_changed === 1 ? '' : 's'} changed${moves ? `; ${moves}` : ''}`;
    li.appendChild(line);
  }
  return li;
}

function addRearrangements(records, fresh) {
  for (const record of records) {
    if (state.rearrangements.some((r) => r.index === record.index)) continue;
    state.rearrangements.push(record);
  }
  state.rearrangements.sort((a, b) => a.index - b.index);
  if (state.rearrangements.length === 0) return;
  const list = $('eplb-list');
  list.replaceChildren(...state.rearrangements.slice().reverse().map((r) => rearrangementItem(r, fresh && records.includes(r))));
}

const DEPLOYMENT_LABELS = {
  served_model_name: 'served as', model: 'model directory', architecture: 'architecture', layers: 'layers',
  experts: 'experts per MoE layer', experts_per_token: 'experts per token', parameters: 'parameters',
  active_parameters: 'active per token', weights_dtype: 'weights dtype', compute_dtype: 'compute dtype',
  backend: 'backend', layout: 'layout', plan: 'plan', kv_cache: 'KV cache', scheduler: 'scheduler',
  eplb: 'EPLB', version: 'moeserve',
};

function renderDeployment() {
  const d = state.deployment || {};
  $('model-name').textContent = d.served_model_name || '';
  if (d.served_model_name) document.title = `moeserve · ${d.served_model_name}`;
  const dl = $('deployment');
  const items = [];
  for (const [key, value] of Object.entries(d)) {
    const dt = document.createElement('dt');
    dt.textContent = DEPLOYMENT_LABELS[key] || key.replaceAll('_', ' ');
    const dd = document.createElement('dd');
    dd.textContent = typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value);
    dd.dataset.key = key;
    items.push(dt, dd);
  }
  dl.replaceChildren(...items);
}

// ---- the stream --------------------------------------------------------------------------
function onEvent(data) {
  const event = JSON.parse(data);
  if (event.type === 'hello') {
    state.deployment = event.deployment || {};
    setTotals(event.totals);
    state.tick = event.tick;
    state.ep = event.ep;
    if (event.ep) addRearrangements(event.ep.recent_rearrangements || [], false);
    charts.setPoints(event.history || []);
    renderDeployment();
    renderHeatmap();
    renderEp();
  } else if (event.type === 'snapshot') {
    setTotals(event.totals);
    state.tick = event.tick;
    if (event.ep) {
      state.ep = event.ep;
      addRearrangements(event.ep.recent_rearrangements || [], true);
    }
    renderHeatmap();
  } else if (event.type === 'tick') {
    state.tick = event.tick;
    state.ticksReceived += 1;
    setShape(event.layers, event.experts);
    const delta = flatten(event.expert_tokens, event.layers, event.experts);
    for (let i = 0; i < delta.length; ++i) state.cumulative[i] += delta[i];
    state.windows.push(delta);
    if (state.windows.length > 60) state.windows.shift();
    if (event.ep) {
      state.ep = { ...state.ep, ...event.ep };
      state.epWindow.push(event.ep.rank_tokens);
      if (state.epWindow.length > 10) state.epWindow.shift();
      addRearrangements(event.ep.rearrangements, true);
      renderEp();
    }
    charts.push({
      t: event.t, prompt_per_s: event.tokens.prompt_per_s, generation_per_s: event.tokens.generation_per_s,
      kv_cache_usage: event.engine.kv_cache_usage, running: event.engine.running, waiting: event.engine.waiting,
    });
    if (!document.hidden) {
      charts.update();
      renderHeatmap();
    }
    renderTiles(event);
    renderRequests(event.requests);
  }
}

function setStatus(text, kind) {
  const el = $('status');
  el.textContent = text;
  el.dataset.state = kind;
}

function showKeyBar() {
  $('key-bar').hidden = false;
  $('key-input').focus();
}

// Whether the server wants an API key (--api-key): it says so in the page it serves.
const keyRequired = () => document.querySelector('meta[name="moeserve-auth"]')?.content === 'api-key';

let streamController = null;
async function connect() {
  streamController?.abort();
  const controller = new AbortController();
  streamController = controller;
  setStatus('connecting', 'connecting');
  try {
    const response = await fetch('/live', { headers: authHeaders(), signal: controller.signal, cache: 'no-store' });
    if (response.status === 401) {
      setStatus('API key needed', 'error');
      showKeyBar();
      return;
    }
    if (!response.ok) throw new Error(`${response.status}`);
    setStatus('live', 'live');
    state.connected = true;
    await readSse(response, onEvent);
  } catch (error) {
    if (controller.signal.aborted) return;
  }
  if (controller.signal.aborted) return;
  state.connected = false;
  setStatus('reconnecting', 'error');
  setTimeout(connect, 2000);
}

// ---- tabs, theme, key --------------------------------------------------------------------
function selectTab(name) {
  for (const button of document.querySelectorAll('.tabs button')) {
    button.setAttribute('aria-selected', String(button.dataset.tab === name));
  }
  for (const section of document.querySelectorAll('.tab')) {
    section.dataset.active = String(section.id === `tab-${name}`);
  }
  if (name === 'dashboard') {
    charts.resize();
    renderHeatmap();
  }
  if (name === 'chat') $('chat-input').focus();
}
for (const button of document.querySelectorAll('.tabs button')) {
  button.addEventListener('click', () => {
    history.replaceState(null, '', `#${button.dataset.tab}`);
    selectTab(button.dataset.tab);
  });
}
const TABS = ['dashboard', 'chat', 'deployment'];
const tabFromHash = () => (TABS.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'dashboard');
window.addEventListener('hashchange', () => selectTab(tabFromHash()));

for (const button of document.querySelectorAll('#heat-mode button')) {
  button.addEventListener('click', () => {
    heatMode = button.dataset.mode;
    for (const b of document.querySelectorAll('#heat-mode button')) b.setAttribute('aria-checked', String(b === button));
    renderHeatmap();
  });
}

const THEMES = ['auto', 'light', 'dark'];
const darkQuery = window.matchMedia('(prefers-color-scheme: dark)');
function applyTheme() {
  let choice = 'auto';
  try { choice = localStorage.getItem('moeserve.theme') || 'auto'; } catch { /* no storage */ }
  const resolved = choice === 'auto' ? (darkQuery.matches ? 'dark' : 'light') : choice;
  document.documentElement.dataset.theme = resolved;
  $('theme').textContent = choice;
  charts.build();
  renderHeatmap();
}
$('theme').addEventListener('click', () => {
  let choice = 'auto';
  try { choice = localStorage.getItem('moeserve.theme') || 'auto'; } catch { /* no storage */ }
  const next = THEMES[(THEMES.indexOf(choice) + 1) % THEMES.length];
  try { localStorage.setItem('moeserve.theme', next); } catch { /* no storage */ }
  applyTheme();
});
darkQuery.addEventListener('change', applyTheme);

$('key-button').addEventListener('click', () => { $('key-bar').hidden = !$('key-bar').hidden; });
$('key-form').addEventListener('submit', (event) => {
  event.preventDefault();
  setApiKey($('key-input').value.trim());
  $('key-bar').hidden = true;
  connect();
});

new Chat({
  log: $('chat-log'), form: $('chat-form'), input: $('chat-input'), maxTokens: $('chat-max'),
  temperature: $('chat-temp'), send: $('chat-send'), clear: $('chat-clear'), stats: $('chat-stats'),
  onUnauthorized: showKeyBar, model: () => state.deployment.served_model_name,
});

applyTheme();
selectTab(tabFromHash());
renderRequests({ count: 0, items: [] });
(async () => {
  if (!authHeaders().Authorization && keyRequired()) {
    setStatus('API key needed', 'error');
    showKeyBar();
  } else {
    connect();
  }
})();
