// Compare: overlay the mIoU and loss curves of several runs, and their per-class IoU side by side.
// Only the curves drawn are asked for, each drawn to the chart's width; zooming asks for the range.
import { api } from "./api.js";
import { LineChart } from "./charts.js";
import { COLOURS, el, pct } from "./format.js";

const $ = (id) => document.getElementById(id);
let ids = JSON.parse($("compare-ids").textContent);
const miouChart = new LineChart($("miou-chart"), { yLabel: "mIoU (%)", percent: true, points: true, onZoom: (r) => zoom(miouChart, "eval/miou", r) });
const lossChart = new LineChart($("loss-chart"), { yLabel: "loss", onZoom: (r) => zoom(lossChart, $("loss-name").value, r) });
let data = null;

function series(run, name) {
  const column = run.metrics[name];
  return column ? [column.step, column.value] : [[], []];
}

function label(run) { return `#${run.id} ${run.name}`; }

function curves(chart, runs, name) {
  chart.setData(new Map(runs.map((r) => [label(r), series(r, name)])));
}

async function fetchCurves(chart, names, range = null) {
  const query = new URLSearchParams({ ids: ids.join(","), names: names.filter(Boolean).join(","), width: chart.width() });
  if (range) { query.set("start", range.min); query.set("end", range.max); }
  return api(`/api/runs/compare/?${query}`);
}

async function zoom(chart, name, range) {
  if (!name) return;
  const answer = await fetchCurves(chart, [name], range);
  if (chart.zoom !== range) return;
  curves(chart, answer.runs, name);
}

async function drawLoss() {
  const name = $("loss-name").value;
  if (!name) return;
  lossChart.zoom = null;
  curves(lossChart, (await fetchCurves(lossChart, [name])).runs, name);
}

function drawTable() {
  const head = $("class-table").querySelector("thead");
  const body = $("class-table").querySelector("tbody");
  head.replaceChildren(el("tr", {}, el("th", {}, "Class"), data.runs.map((r, i) => el("th", { class: "right" },
    el("span", { class: "swatch", style: `background:${COLOURS[i % COLOURS.length]}` }), label(r), el("div", { class: "muted small" }, `step ${r.class_iou_step ?? "–"}`)))));
  const rows = data.classes.map((c, k) => {
    const values = data.runs.map((r) => (r.class_iou ? r.class_iou[k] : null));
    const present = values.filter((v) => v !== null);
    const best = present.length > 1 && Math.max(...present) > Math.min(...present) ? Math.max(...present) : null;
    return el("tr", {}, el("td", {}, el("span", { class: "swatch", style: `background:rgb(${c.colour.join(",")})` }), c.name),
      values.map((v) => el("td", { class: `right${best !== null && v === best ? " best" : ""}` }, pct(v))));
  });
  const miou = el("tr", {}, el("td", {}, el("b", {}, "mIoU (final)")), data.runs.map((r) => el("td", { class: "right" }, el("b", {}, pct(r.final_miou ?? r.best_miou, 2)))));
  body.replaceChildren(...rows, miou);
}

async function load() {
  history.replaceState(null, "", `?ids=${ids.join(",")}`);
  const select = $("loss-name");
  const previous = select.value;
  data = await fetchCurves(miouChart, ["eval/miou"]);
  const losses = [...new Set(data.runs.flatMap((r) => r.metric_names).filter((n) => n.startsWith("loss/")))].sort();
  select.replaceChildren(...losses.map((n) => new Option(n.slice(5), n)));
  if (losses.includes(previous)) select.value = previous;
  miouChart.zoom = null;
  curves(miouChart, data.runs, "eval/miou");
  drawTable();
  await drawLoss();
}

async function picker() {
  const runs = (await api("/api/runs/?limit=100")).results;
  $("run-picker").replaceChildren(...runs.map((r) => {
    const box = el("input", { type: "checkbox", checked: ids.includes(r.id) });
    box.addEventListener("change", () => {
      ids = box.checked ? [...ids, r.id] : ids.filter((i) => i !== r.id);
      load();
    });
    return el("label", {}, box, `#${r.id} ${r.name}`, el("span", { class: `badge ${r.status}` }, r.status));
  }));
}

$("loss-name").addEventListener("change", drawLoss);
picker();
load();
