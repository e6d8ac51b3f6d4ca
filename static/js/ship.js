// Run page: the run's group (source-only → self-training → the launched run) and its exports
// (float and int8 ONNX, their target mIoU and speed, the model card). Both read the REST API and
// poll while something is still running.
import { api } from "./api.js";
import { bytes, el, pct } from "./format.js";

const runId = JSON.parse(document.getElementById("run-id").textContent);
const $ = (id) => document.getElementById(id);
const ROLE = { source_only: "Source-only", self_training: "Self-training", duda: "DUDA" };

function signed(value) {
  if (value === null || value === undefined) return "–";
  return `${value >= 0 ? "+" : ""}${value.toFixed(2)}`;
}

// ---- group -----------------------------------------------------------------------------------
async function loadGroup() {
  let data;
  try {
    data = await api(`/api/runs/${runId}/group/`);
  } catch {
    setTimeout(loadGroup, 10000);
    return;
  }
  const rows = data.rows;
  const head = el("tr", {}, el("th", {}, "Class"),
    rows.map((row) => el("th", { class: "right" }, ROLE[row.role] || row.role, " ",
      row.run ? el("a", { href: row.run.page }, `#${row.run.id}`) : "–",
      row.run ? el("div", {}, el("span", { class: `badge ${row.run.status}` }, row.run.status),
        row.run.reused ? el("span", { class: "muted small" }, " reused") : null) : null)),
    el("th", { class: "right" }, "Δ adaptation"),
    data.gains.over_self_training !== undefined ? el("th", { class: "right" }, "Δ over self-training") : null);
  $("group-table").tHead.replaceChildren(head);
  const last = rows[rows.length - 1], first = rows[0], middle = rows.length > 2 ? rows[1] : null;
  const miou = el("tr", { class: "group-miou" }, el("td", {}, el("b", {}, "target mIoU")),
    rows.map((row) => el("td", { class: "right", "data-role": row.role }, el("b", {}, pct(row.run?.final_miou, 2)))),
    el("td", { class: "right", id: "gain-adaptation" }, signed(data.gains.adaptation)),
    data.gains.over_self_training !== undefined ? el("td", { class: "right", id: "gain-over-self-training" }, signed(data.gains.over_self_training)) : null);
  const diff = (a, b) => (a === null || a === undefined || b === null || b === undefined ? null : a - b);
  const classRows = data.classes.map((c, i) => el("tr", {},
    el("td", {}, el("span", { class: "swatch" }), c.name),
    rows.map((row) => el("td", { class: "right" }, pct(row.ious?.[i], 1))),
    el("td", { class: "right muted" }, signed(diff(last.ious?.[i], first.ious?.[i]))),
    data.gains.over_self_training !== undefined ? el("td", { class: "right muted" }, signed(diff(last.ious?.[i], middle?.ious?.[i]))) : null));
  classRows.forEach((row, i) => { row.querySelector(".swatch").style.background = `rgb(${data.classes[i].colour.join(",")})`; });
  $("group-table").tBodies[0].replaceChildren(miou, ...classRows);
  $("group-state").textContent = data.done ? "all finished" : "training…";
  $("group").dataset.done = data.done ? "1" : "";
  if (!data.done) setTimeout(loadGroup, 3000);
}

// ---- exports ---------------------------------------------------------------------------------
let shownCard = null;

function speedCell(file, wanted) {
  const s = file && file.speed.find(wanted);
  if (!s) return "–";
  return el("span", { title: `${s.height}×${s.width}, p50 ${s.latency_p50_ms.toFixed(1)} ms, p95 ${s.latency_p95_ms.toFixed(1)} ms` },
    s.images_per_second.toFixed(1), el("div", { class: "muted small" }, `p50 ${s.latency_p50_ms.toFixed(0)} / p95 ${s.latency_p95_ms.toFixed(0)} ms`));
}

function showExport(exp) {
  const button = $("export-button");
  const state = $("export-state");
  if (!exp) return;
  state.dataset.export = exp.id;
  if (exp.status === "queued" || exp.status === "running") {
    button.disabled = true;
    state.textContent = `Export #${exp.id} ${exp.status} on ${exp.worker_host || "a worker"}…`;
    setTimeout(loadExports, 2000);
    return;
  }
  button.disabled = false;
  if (exp.status === "failed") {
    state.textContent = `Export #${exp.id} failed: ${exp.error_message}`;
    return;
  }
  const card = exp.card;
  const train = card.training.crop_size;
  state.textContent = `Export #${exp.id} of the student at step ${exp.checkpoint_step}, input ${exp.input_height}×${exp.input_width}: ` +
    `float ONNX vs PyTorch max |diff| ${exp.float_max_abs_diff.toExponential(1)}, argmax agreement ${(exp.float_argmax_agreement * 100).toFixed(2)} %.`;
  $("export-speed-train").textContent = `img/s (${train[1]}×${train[0]})`;
  const files = Object.fromEntries(exp.files.map((f) => [f.kind, f]));
  const cardFiles = Object.fromEntries(card.files.map((f) => [f.kind, f]));
  const rows = ["float", "int8"].filter((k) => files[k]).map((kind) => {
    const f = files[kind], entry = cardFiles[kind];
    const agreement = kind === "int8" ? exp.int8_argmax_agreement : exp.float_argmax_agreement;
    return el("tr", { "data-kind": kind },
      el("td", {}, el("a", { href: f.download, "data-kind": kind, download: f.name }, f.name), el("span", { class: "muted small" }, ` ${kind}`)),
      el("td", { class: "right nowrap" }, bytes(f.size)),
      el("td", { class: "mono small sha", title: f.sha256 }, f.sha256.slice(0, 16) + "…"),
      el("td", { class: "right", "data-miou": kind }, pct(kind === "int8" ? exp.int8_miou : exp.float_miou, 2)),
      el("td", { class: "right" }, agreement === null ? "–" : `${(agreement * 100).toFixed(2)} %`),
      el("td", { class: "right" }, speedCell(entry, (s) => s.height === train[0] && s.width === train[1])),
      el("td", { class: "right" }, speedCell(entry, (s) => s.height === 512 && s.width === 1024)));
  });
  $("export-files").tBodies[0].replaceChildren(...rows);
  $("export-files").hidden = false;
  $("export-card").hidden = false;
  $("export-card-links").replaceChildren(...["card_md", "card_json", "torch_export"].filter((k) => files[k]).map((k) =>
    el("a", { href: files[k].download, "data-kind": k, class: "spaced-left" }, files[k].name)));
  if (shownCard !== exp.id && files.card_md) {
    shownCard = exp.id;
    fetch(files.card_md.download, { credentials: "same-origin" }).then((r) => r.text()).then((text) => { $("export-card-text").textContent = text; });
  }
}

async function loadExports() {
  const list = await api(`/api/runs/${runId}/exports/`);
  showExport(list[0]);
}

async function waitForSuccess() {
  const run = await api(`/api/runs/${runId}/`);
  if (run.status === "succeeded") {
    $("export-button").disabled = false;
    if (!$("export-files").hidden || $("export-state").dataset.export) return;
    $("export-state").textContent = "Float and int8 ONNX, verified against PyTorch, re-measured on the target's validation set, timed on the server's CPU, with a model card.";
  }
  else if (run.status === "queued" || run.status === "running") setTimeout(waitForSuccess, 3000);
}

$("export-button").addEventListener("click", async () => {
  $("export-button").disabled = true;
  try {
    showExport(await api(`/api/runs/${runId}/exports/`, { method: "POST" }));
  } catch (error) {
    $("export-state").textContent = error.message;
    $("export-button").disabled = false;
  }
});

if ($("group")) loadGroup();
loadExports();
if ($("export-button").disabled) waitForSuccess();
window.__dudaShip = { loadGroup, loadExports };
