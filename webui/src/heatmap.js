// The expert-load heatmap: layers (rows) × experts (columns) on a canvas, a log colour scale
// (log1p(tokens) / log1p(max)), the hottest expert of each layer labelled in its cell, and a
// tooltip. values: Float64Array [layers × experts], layer-major.

// A perceptual ramp (dark blue → teal → green → yellow), sampled linearly between stops.
const STOPS = [
  [68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37],
];

export function rampColor(t) {
  const x = Math.min(1, Math.max(0, t)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const f = x - i;
  const c = STOPS[i].map((v, k) => Math.round(v + (STOPS[i + 1][k] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

export class Heatmap {
  constructor(canvas, tip, legend) {
    this.canvas = canvas;
    this.tip = tip;
    this.legend = legend;
    this.layers = 0;
    this.experts = 0;
    this.values = new Float64Array(0);
    this.layout = null;
    canvas.addEventListener('mousemove', (event) => this.hover(event));
    canvas.addEventListener('mouseleave', () => { this.tip.hidden = true; });
    new ResizeObserver(() => this.draw()).observe(canvas.parentElement);
  }

  setData(values, layers, experts) {
    this.values = values;
    this.layers = layers;
    this.experts = experts;
    this.draw();
  }

  max() {
    let max = 0;
    for (const v of this.values) max = Math.max(max, v);
    return max;
  }

  // CSS-pixel geometry of the grid for the current size.
  computeLayout(width) {
    const left = 34;
    const top = 18;
    const cellW = Math.max(1, (width - left) / Math.max(1, this.experts));
    const cellH = Math.max(6, Math.min(36, cellW, 480 / Math.max(1, this.layers)));
    return { left, top, cellW, cellH, width, height: top + cellH * this.layers + 2 };
  }

  // The cell's rectangle in CSS pixels (relative to the canvas).
  cellRect(layer, expert) {
    const { left, top, cellW, cellH } = this.layout;
    const gap = cellW > 4 && cellH > 4 ? 1 : 0;
    return { x: left + expert * cellW, y: top + layer * cellH, w: cellW - gap, h: cellH - gap };
  }

  draw() {
    const width = this.canvas.parentElement.clientWidth;
    if (width <= 0) return;
    const style = getComputedStyle(document.documentElement);
    const empty = style.getPropertyValue('--heat-empty').trim();
    const text = style.getPropertyValue('--text').trim();
    const muted = style.getPropertyValue('--muted').trim();
    this.layout = this.computeLayout(width);
    const dpr = window.devicePixelRatio || 1;
    const { height } = this.layout;
    this.canvas.style.height = `${height}px`;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    const ctx = this.canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    if (this.layers === 0) {
      ctx.fillStyle = muted;
      ctx.font = '12px system-ui, sans-serif';
      ctx.fillText('no tokens routed yet', 8, 14);
      this.drawLegend(0);
      return;
    }
    const max = this.max();
    const logMax = Math.log1p(max);
    const { cellW, cellH, left, top } = this.layout;
    ctx.font = '10px system-ui, sans-serif';
    ctx.fillStyle = muted;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'right';
    const layerStep = Math.ceil(12 / cellH);
    for (let layer = 0; layer < this.layers; layer += layerStep) {
      ctx.fillText(`L${layer}`, left - 4, top + (layer + 0.5) * cellH);
    }
    ctx.textAlign = 'center';
    const expertStep = Math.ceil(22 / cellW);
    for (let expert = 0; expert < this.experts; expert += expertStep) {
      ctx.fillText(`${expert}`, left + (expert + 0.5) * cellW, 8);
    }
    for (let layer = 0; layer < this.layers; ++layer) {
      let hottest = -1;
      let hottestValue = 0;
      for (let expert = 0; expert < this.experts; ++expert) {
        const value = this.values[layer * this.experts + expert];
        const r = this.cellRect(layer, expert);
        ctx.fillStyle = value > 0 ? rampColor(Math.log1p(value) / logMax) : empty;
        ctx.fillRect(r.x, r.y, r.w, r.h);
        if (value > hottestValue) {
          hottestValue = value;
          hottest = expert;
        }
      }
      // The layer's hottest expert: outlined, and its index written where the cell has room.
      if (hottest >= 0) {
        const r = this.cellRect(layer, hottest);
        ctx.strokeStyle = text;
        ctx.lineWidth = 1.5;
        ctx.strokeRect(r.x + 0.75, r.y + 0.75, Math.max(0, r.w - 1.5), Math.max(0, r.h - 1.5));
        if (r.w >= 16 && r.h >= 12) {
          ctx.fillStyle = '#000';
          ctx.font = `600 ${Math.min(12, r.h - 2)}px system-ui, sans-serif`;
          ctx.fillText(`${hottest}`, r.x + r.w / 2, r.y + r.h / 2 + 0.5);
        }
      }
    }
    this.drawLegend(max);
  }

  drawLegend(max) {
    const ctx = this.legend.getContext('2d');
    const { width, height } = this.legend;
    for (let x = 0; x < width; ++x) {
      ctx.fillStyle = rampColor(x / (width - 1));
      ctx.fillRect(x, 0, 1, height);
    }
    const label = document.getElementById('heat-max');
    if (label) label.textContent = max > 0 ? Math.round(max).toLocaleString() : '–';
  }

  // The hottest cells: [{layer, expert, value, share}] (share of the layer's tokens), best first.
  hottest(count) {
    const cells = [];
    for (let layer = 0; layer < this.layers; ++layer) {
      let sum = 0;
      for (let e = 0; e < this.experts; ++e) sum += this.values[layer * this.experts + e];
      for (let e = 0; e < this.experts; ++e) {
        const value = this.values[layer * this.experts + e];
        if (value > 0) cells.push({ layer, expert: e, value, share: value / sum });
      }
    }
    cells.sort((a, b) => b.value - a.value);
    return cells.slice(0, count);
  }

  hover(event) {
    if (!this.layout || this.layers === 0) return;
    const box = this.canvas.getBoundingClientRect();
    const x = event.clientX - box.left;
    const y = event.clientY - box.top;
    const expert = Math.floor((x - this.layout.left) / this.layout.cellW);
    const layer = Math.floor((y - this.layout.top) / this.layout.cellH);
    if (expert < 0 || expert >= this.experts || layer < 0 || layer >= this.layers) {
      this.tip.hidden = true;
      return;
    }
    const value = this.values[layer * this.experts + expert];
    let sum = 0;
    for (let e = 0; e < this.experts; ++e) sum += this.values[layer * this.experts + e];
    const share = sum > 0 ? ` (${((100 * value) / sum).toFixed(1)}% of the layer)` : '';
    this.tip.textContent = `layer ${layer}, expert ${expert}: ${Math.round(value).toLocaleString()} tokens${share}`;
    this.tip.hidden = false;
    this.tip.style.left = `${Math.min(x + 12, box.width - this.tip.offsetWidth - 4)}px`;
    this.tip.style.top = `${y + 14}px`;
  }
}
