// Run detail: curves drawn from REST, then grown from the socket; per-class IoU against the
// source-only baseline; log tail; checkpoints; status and buttons kept current.
import { api } from "./api.js";
import { LineChart } from "./charts.js";
import { bytes, duration, el, pct, when } from "./format.js";
import { RunSocket } from "./live.js";
import { MetricStore } from "./metrics.js";

const runId = JSON.parse(document.getElementById("run-id").textContent);
const $ = (id) => document.getElementById(id);
const store = new MetricStore();
const lossChart = new LineChart($("loss-chart"), { yLabel: "loss" });
const miouChart = new LineChart($("miou-chart"), { yLabel: "mIoU (%)", percent: true, points: true, dashed: ["source-only (final)"] });
let run = null;
let baselineMiou = null;
let drawQueued = false;

function draw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    const losses = new Map(store.names().filter((n) => n.startsWith("loss/")).map((n) => [n.slice(5), store.series(n)]));
    if (losses.size) lossChart.setData(losses);
    const miou = new Map([["student", store.series("eval/miou")]]);
    if (baselineMiou !== null && store.count("eval/miou")) {
      const [steps] = store.series("eval/miou");
      const span = [0, Math.max(steps[steps.length - 1], run?.total_steps || 0)];
      miou.set("source-only (final)", [span, span.map(() => baselineMiou)]);
    }
    if (store.count("eval/miou")) {
      document.getElementById("miou-empty")?.remove();
      miouChart.setData(miou);
    }
  });
}

function dropQueuedNotice() {
  // "Run #N queued." (shown once, after Launch) is wrong once the run has left the queue.
  for (const notice of document.querySelectorAll(".messages .while-queued")) {
    const list = notice.parentElement;
    notice.remove();
    if (!list.childElementCount) list.remove();
  }
}

function showRun(data) {
  run = { ...run, ...data };
  if (run.status && run.status !== "queued") dropQueuedNotice();
  $("status").className = `badge ${run.status}`;
  $("status").textContent = run.status + (run.cancel_requested && run.status === "running" ? " (cancelling)" : "");
  const share = run.total_steps ? (100 * run.step) / run.total_steps : 0;
  $("progress-bar").style.width = `${share.toFixed(1)}%`;
  $("progress-text").textContent = `${run.step} / ${run.total_steps} iterations`;
  $("eta").textContent = run.status === "running" ? duration(run.eta_seconds) : "–";
  $("best").textContent = pct(run.best_miou, 2);
  $("final").textContent = pct(run.final_miou, 2);
  $("attempts").textContent = run.attempts ?? "–";
  if (run.worker_host) $("worker").textContent = run.worker_host + (run.worker_gpu ? ` · ${run.worker_gpu}` : "");
  $("error").hidden = !run.error_message;
  $("error").textContent = run.error_message || "";
  $("cancel").disabled = !(["queued", "running"].includes(run.status) && !run.cancel_requested);
  $("resume").disabled = !["failed", "cancelled"].includes(run.status);
  $("delete").disabled = run.status === "running";
}

async function loadClassIou() {
  const table = await api(`/api/runs/${runId}/class-iou/`);
  const body = $("class-iou").querySelector("tbody");
  baselineMiou = table.baseline?.miou ?? null;
  $("iou-baseline").textContent = table.baseline ? `baseline #${table.baseline.run_id} at step ${table.baseline.step}` : "no source-only baseline";
  if (!table.steps.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No evaluation yet.")));
    return;
  }
  const step = table.steps[table.steps.length - 1];
  $("iou-step").textContent = `at step ${step}`;
  const ious = table.ious[String(step)];
  body.replaceChildren(...table.classes.map((c, i) => {
    const iou = ious[i];
    const base = table.baseline ? table.baseline.ious[i] : null;
    const delta = table.delta ? table.delta[i] : null;
    const bar = el("div", { class: "iou-bar" }, el("span"));
    bar.firstChild.style.width = `${Math.max(0, Math.min(100, iou ?? 0))}%`;
    bar.firstChild.style.background = `rgb(${c.colour.join(",")})`;
    const deltaText = delta === null ? "–" : `${delta >= 0 ? "+" : ""}${delta.toFixed(1)}`;
    return el("tr", {},
      el("td", {}, el("span", { class: "swatch", style: `background:rgb(${c.colour.join(",")})` }), c.name),
      el("td", { class: "right" }, pct(iou)),
      el("td", {}, bar),
      el("td", { class: "right muted" }, pct(base)),
      el("td", { class: `right ${delta > 0 ? "delta-up" : delta < 0 ? "delta-down" : ""}` }, deltaText),
    );
  }));
  draw();
}

function logLine(event) {
  const box = $("log");
  const stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
  box.append(el("div", { class: event.level }, `${when(event.created_at || event.time)}  ${event.message}`));
  while (box.childElementCount > 500) box.firstChild.remove();
  if (stick) box.scrollTop = box.scrollHeight;
}

async function loadEvents() {
  const events = await api(`/api/runs/${runId}/events/?limit=200`);
  $("log").replaceChildren();
  events.forEach(logLine);
}

async function loadCheckpoints() {
  const rows = await api(`/api/runs/${runId}/checkpoints/`);
  const body = $("checkpoints").querySelector("tbody");
  if (!rows.length) { body.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No checkpoint yet."))); return; }
  body.replaceChildren(...rows.map((c) => el("tr", {},
    el("td", {}, c.kind === "student" ? "student only" : "full training state"),
    el("td", {}, c.step),
    el("td", {}, bytes(c.size)),
    el("td", { class: "mono small", title: c.sha256 }, c.sha256.slice(0, 16) + "…"),
    el("td", {}, el("a", { href: c.download, class: "secondary", "data-kind": c.kind, download: "" }, "Download")),
  )));
}

const socket = new RunSocket(runId, store, {
  onState: (state) => { $("live-state").textContent = state === "live" ? "● live" : state === "reconnecting" ? "reconnecting…" : ""; },
  onBackfill: draw,
  onMessage: (message) => {
    if (message.type === "metrics") {
      draw();
      if (message.progress) showRun({ step: message.progress.step, eta_seconds: message.progress.eta_seconds });
    } else if (message.type === "evaluation") {
      draw();
      loadClassIou();
      if (run && (run.best_miou === null || message.miou > run.best_miou)) showRun({ best_miou: message.miou });
    } else if (message.type === "status") {
      showRun(message);
      loadCheckpoints();
    } else if (message.type === "log") {
      logLine(message);
    } else if (message.type === "checkpoint") {
      loadCheckpoints();
    } else if (message.type === "samples") {
      $("gallery-link").textContent = `Prediction gallery (new: step ${message.step})`;
    }
  },
});

window.__duda = { store, socket, lossChart, miouChart };

$("progress-bar").style.width = `${$("progress-bar").dataset.percent}%`;
for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => { if (!confirm(form.dataset.confirm)) event.preventDefault(); });
}

(async () => {
  showRun(await api(`/api/runs/${runId}/`));
  await Promise.all([loadClassIou(), loadEvents(), loadCheckpoints()]);
  draw();
  // Keep ETA and heartbeat-driven fields fresh even when nothing is published (e.g. while queued).
  setInterval(async () => { if (run && ["queued", "running"].includes(run.status)) showRun(await api(`/api/runs/${runId}/`)); }, 5000);
})();
