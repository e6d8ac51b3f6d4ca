// Runs list: filters, live progress (polls while a run is active), selection for the compare view.
import { api } from "./api.js";
import { duration, el, pct, when } from "./format.js";

const form = document.getElementById("filters");
const body = document.querySelector("#runs tbody");
const empty = document.getElementById("empty");
const count = document.getElementById("count");
const compare = document.getElementById("compare");
const selected = new Set();
const expanded = new Set(); // ids of group leads whose baselines are shown
form.addEventListener("submit", (event) => event.preventDefault());
let timer = null;

for (const [key, value] of new URLSearchParams(location.search)) {
  if (form.elements[key]) form.elements[key].value = value;
}

function row(run) {
  const box = el("input", { type: "checkbox", checked: selected.has(run.id), onchange: (e) => {
    e.target.checked ? selected.add(run.id) : selected.delete(run.id);
    compare.disabled = selected.size < 2;
  } });
  box.style.width = "auto";
  const progress = el("div", { class: "progress", title: `${run.step} / ${run.total_steps}` }, el("span"));
  progress.firstChild.style.width = `${(run.progress * 100).toFixed(1)}%`;
  const pair = run.benchmark ? `${run.benchmark}` : `${run.source_dataset} → ${run.target_dataset}`;
  return el("tr", { "data-run": run.id },
    el("td", {}, box),
    el("td", {}, el("a", { href: run.page }, `#${run.id} ${run.name}`), groupToggle(run)),
    el("td", {}, el("span", { class: `badge ${run.status}` }, run.status), run.cancel_requested && run.status === "running" ? el("span", { class: "muted small" }, " cancelling") : null),
    el("td", { class: "small" }, run.method),
    el("td", { class: "small" }, pair),
    el("td", { class: "small" }, run.student, run.auxiliary ? ` / ${run.auxiliary}` : ""),
    el("td", {}, progress, el("div", { class: "muted small" }, `${run.step} / ${run.total_steps}`)),
    el("td", { class: "small nowrap" }, run.status === "running" ? duration(run.eta_seconds) : "–"),
    el("td", { class: "right" }, pct(run.best_miou, 2)),
    el("td", { class: "small muted nowrap" }, when(run.created_at)),
  );
}

// A run launched with its baselines reads as one line; its toggle shows the baselines under it.
function groupToggle(run) {
  const members = run.group && run.group.lead === run.id ? run.group.runs : [];
  if (!members.length) return null;
  return el("button", { type: "button", class: "link group-toggle", "data-group": run.group.id, "aria-expanded": expanded.has(run.id) ? "true" : "false",
    onclick: () => { expanded.has(run.id) ? expanded.delete(run.id) : expanded.add(run.id); load(); } },
    `${expanded.has(run.id) ? "▾" : "▸"} ${members.length} baseline${members.length === 1 ? "" : "s"}`);
}

function memberRow(member) {
  return el("tr", { class: "group-member", "data-run": member.id },
    el("td"),
    el("td", {}, "↳ ", el("a", { href: `/runs/${member.id}/` }, `#${member.id} ${member.name}`)),
    el("td", {}, el("span", { class: `badge ${member.status}` }, member.status)),
    el("td", { class: "small" }, member.method),
    el("td", { class: "small" }, member.target_dataset),
    el("td", { class: "small" }, member.student),
    el("td", { class: "muted small", colspan: 2 }, "final mIoU"),
    el("td", { class: "right" }, pct(member.final_miou, 2)),
    el("td"),
  );
}

function rowsOf(results) {
  const shown = new Set(results.map((r) => r.id));
  const rows = [];
  for (const run of results) {
    if (run.group && run.group.lead !== run.id && shown.has(run.group.lead)) continue; // folded under its lead
    rows.push(row(run));
    if (run.group && run.group.lead === run.id && expanded.has(run.id)) rows.push(...run.group.runs.map(memberRow));
  }
  return rows;
}

async function load() {
  clearTimeout(timer);
  const params = new URLSearchParams();
  for (const name of ["status", "method", "q"]) if (form.elements[name].value) params.set(name, form.elements[name].value);
  history.replaceState(null, "", `${location.pathname}${params.toString() ? "?" + params : ""}`);
  params.set("limit", "200");
  const data = await api(`/api/runs/?${params}`);
  body.replaceChildren(...rowsOf(data.results));
  empty.hidden = data.results.length > 0;
  count.textContent = `${data.count} run${data.count === 1 ? "" : "s"}`;
  if (data.results.some((r) => r.status === "running" || r.status === "queued")) timer = setTimeout(load, 3000);
}

form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(load, 250); });
compare.addEventListener("click", () => { location.href = `/runs/compare/?ids=${[...selected].join(",")}`; });
load();
