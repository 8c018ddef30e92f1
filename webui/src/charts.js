// The time series (uPlot): throughput (prompt and generated tokens/s) and KV cache use with the
// queue (running / waiting requests). Points: {t (unix ms), prompt_per_s, generation_per_s,
// kv_cache_usage (0..1), running, waiting}; the last MAX_POINTS are shown.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export const MAX_POINTS = 300;

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function axes(extra = []) {
  const stroke = cssVar('--muted');
  const grid = { stroke: cssVar('--grid'), width: 1 };
  return [
    { stroke, grid, ticks: grid },
    { stroke, grid, ticks: grid, size: 50 },
    ...extra.map((axis) => ({ stroke, grid: { show: false }, ticks: grid, ...axis })),
  ];
}

export class Charts {
  constructor(throughputEl, kvEl) {
    this.throughputEl = throughputEl;
    this.kvEl = kvEl;
    this.points = [];
    this.build();
    new ResizeObserver(() => this.resize()).observe(throughputEl);
    new ResizeObserver(() => this.resize()).observe(kvEl);
  }

  build() {
    this.throughput?.destroy();
    this.kv?.destroy();
    const size = (el) => ({ width: Math.max(200, el.clientWidth), height: 150 });
    this.throughput = new uPlot({
      ...size(this.throughputEl),
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: axes(),
      series: [
        {},
        { label: 'prompt', stroke: cssVar('--series-1'), width: 2, value: (u, v) => (v == null ? '–' : v.toFixed(1)) },
        { label: 'generated', stroke: cssVar('--series-2'), width: 2, value: (u, v) => (v == null ? '–' : v.toFixed(1)) },
      ],
    }, this.data('throughput'), this.throughputEl);
    this.kv = new uPlot({
      ...size(this.kvEl),
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, pct: { range: [0, 100] }, reqs: { range: (u, min, max) => [0, Math.max(4, max * 1.2)] } },
      axes: axes([{ scale: 'reqs', side: 1, size: 40 }]).map((axis, i) => (i === 1 ? { ...axis, scale: 'pct', values: (u, v) => v.map((x) => `${x}%`) } : axis)),
      series: [
        {},
        { label: 'KV cache %', scale: 'pct', stroke: cssVar('--series-3'), width: 2, fill: `${cssVar('--series-3')}22`, value: (u, v) => (v == null ? '–' : `${v.toFixed(1)}%`) },
        { label: 'running', scale: 'reqs', stroke: cssVar('--series-1'), width: 2 },
        { label: 'waiting', scale: 'reqs', stroke: cssVar('--series-4'), width: 2 },
      ],
    }, this.data('kv'), this.kvEl);
  }

  data(which) {
    const xs = this.points.map((p) => p.t / 1000);
    if (which === 'throughput') {
      return [xs, this.points.map((p) => p.prompt_per_s), this.points.map((p) => p.generation_per_s)];
    }
    return [xs, this.points.map((p) => 100 * p.kv_cache_usage), this.points.map((p) => p.running),
      this.points.map((p) => p.waiting)];
  }

  push(point) {
    this.points.push(point);
    if (this.points.length > MAX_POINTS) this.points.splice(0, this.points.length - MAX_POINTS);
  }

  setPoints(points) {
    this.points = points.slice(-MAX_POINTS);
    this.update();
  }

  update() {
    this.throughput.setData(this.data('throughput'));
    this.kv.setData(this.data('kv'));
  }

  resize() {
    for (const [chart, el] of [[this.throughput, this.throughputEl], [this.kv, this.kvEl]]) {
      if (el.clientWidth > 0) chart.setSize({ width: el.clientWidth, height: 150 });
    }
  }
}
