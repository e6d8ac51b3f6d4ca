// Launch page, Datasets table: class colour swatches, and the progress of dataset checks still running
// (polls the datasets' status until every check has ended, then shows each verdict).
import { api } from "./api.js";
import { el } from "./format.js";

const table = document.getElementById("dataset-status");

function paintSwatches(root) {
  for (const swatch of root.querySelectorAll(".swatch[data-colour]")) {
    swatch.style.backgroundColor = `rgb(${swatch.dataset.colour})`;
  }
}

function statusCell(entry) {
  if (entry.check && entry.check.state === "checking") {
    const total = entry.check.total || 0;
    return [el("span", { class: "muted" }, "checking "),
      el("progress", { max: String(total || 1), value: String(entry.check.done) }),
      el("span", { class: "muted small" }, ` ${entry.check.done} of ${total || "?"} files`)];
  }
  if (entry.ok) return [el("span", { class: "ok" }, "valid")];
  return [el("span", { class: "bad" }, "not usable"),
    el("ul", { class: "problems" }, ...entry.problems.map((p) => el("li", {}, p)))];
}

async function poll() {
  const data = await api(table.dataset.statusUrl);
  let checking = false;
  for (const entry of data.datasets) {
    const row = table.querySelector(`tr[data-key="${CSS.escape(entry.key)}"]`);
    if (!row) continue;
    const state = entry.check && entry.check.state === "checking" ? "checking" : entry.ok ? "ok" : "bad";
    checking ||= state === "checking";
    if (row.dataset.state === state && state !== "checking") continue;
    row.dataset.state = state;
    row.querySelector("td.status").replaceChildren(...statusCell(entry));
    for (const split of ["train", "val"]) {
      const count = entry.counts[split];
      const unlabelled = count && !entry.counts[`${split}_labelled`];
      row.querySelector(`td.count-${split}`).replaceChildren(count ? String(count) : "–",
        ...(unlabelled ? [" ", el("span", { class: "muted" }, "(unlabelled)")] : []));
    }
    for (const option of document.querySelectorAll(`#id_source option, #id_target option`)) {
      if (option.value === entry.key) option.textContent = entry.choice_label;
    }
  }
  if (checking) setTimeout(poll, 1000);
}

if (table) {
  paintSwatches(table);
  if (table.querySelector('tr[data-state="checking"]')) setTimeout(poll, 1000);
}
