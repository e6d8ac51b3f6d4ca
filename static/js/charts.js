// Line charts on uPlot (vendored in static/vendor/uplot): one x axis of steps, several series.
import { COLOURS } from "./format.js";

// Whole iterations only on the x axis (1, 2, 5, 10, 20, 50, ...).
const STEP_INCRS = [1, 2, 5].flatMap((m) => [1, 10, 100, 1000, 10000, 100000].map((p) => m * p)).sort((a, b) => a - b);
const AXIS = { stroke: "#8b98a5", grid: { stroke: "#1f2a36", width: 1 }, ticks: { stroke: "#243040", width: 1 } };

// Merge several [steps, values] series onto one sorted step axis (null where a series has no point).
export function align(seriesList) {
  const steps = [...new Set(seriesList.flatMap(([xs]) => xs))].sort((a, b) => a - b);
  const index = new Map(steps.map((s, i) => [s, i]));
  const columns = seriesList.map(([xs, ys]) => {
    const column = new Array(steps.length).fill(null);
    xs.forEach((x, i) => { column[index.get(x)] = ys[i]; });
    return column;
  });
  return [steps, ...columns];
}

// A chart whose x axis the user can zoom: drag to select a step range, double-click to see the whole.
// `onZoom(range)` is called with {min, max} (steps) or null; while zoomed, `zoom` holds the range and
// the page draws the range's points (fetched at full resolution) instead of its overview.
export class LineChart {
  constructor(container, { yLabel = "", percent = false, height = 260, points = false, dashed = [], onZoom = null } = {}) {
    this.container = container;
    this.yLabel = yLabel;
    this.percent = percent;
    this.height = height;
    this.points = points;
    this.dashed = new Set(dashed);
    this.labels = [];
    this.plot = null;
    this.pointCount = 0;
    this.onZoom = onZoom;
    this.zoom = null;
    new ResizeObserver(() => this.resize()).observe(container);
  }

  width() { return Math.max(280, this.container.clientWidth - 4); }

  resize() { if (this.plot) this.plot.setSize({ width: this.width(), height: this.height }); }

  build(labels) {
    this.labels = labels;
    if (this.plot) this.plot.destroy();
    const series = [{ label: "step" }].concat(labels.map((label, i) => ({
      label,
      stroke: COLOURS[i % COLOURS.length],
      width: 1.6,
      dash: this.dashed.has(label) ? [6, 4] : undefined,
      spanGaps: true,
      points: { show: this.points, size: 5 },
      value: (u, v) => (v === null || v === undefined ? "–" : this.percent ? v.toFixed(2) : v.toPrecision(4)),
    })));
    this.plot = new uPlot({
      width: this.width(),
      height: this.height,
      series,
      scales: { x: { time: false } },
      axes: [
        { ...AXIS, incrs: STEP_INCRS, label: "iteration", labelSize: 18, labelFont: "12px system-ui", font: "11px system-ui" },
        { ...AXIS, label: this.yLabel, labelSize: 18, labelFont: "12px system-ui", font: "11px system-ui", size: 52 },
      ],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      hooks: {
        setSelect: [(u) => {
          if (!this.onZoom || u.select.width < 2) return;
          const min = u.posToVal(u.select.left, "x");
          const max = u.posToVal(u.select.left + u.select.width, "x");
          this.zoom = { min: Math.max(0, Math.floor(min)), max: Math.ceil(max) };
          this.onZoom(this.zoom);
        }],
      },
    }, [[], ...labels.map(() => [])], this.container);
    this.plot.over.addEventListener("dblclick", () => {
      if (!this.zoom) return;
      this.zoom = null;
      this.onZoom?.(null);
    });
  }

  // seriesByLabel: Map(label -> [steps, values])
  setData(seriesByLabel) {
    const labels = [...seriesByLabel.keys()];
    if (labels.join("\u0000") !== this.labels.join("\u0000")) this.build(labels);
    const data = align(labels.map((l) => seriesByLabel.get(l)));
    this.pointCount = data[0].length;
    this.plot.setData(data);
    if (this.zoom) this.plot.setScale("x", this.zoom);
  }
}
