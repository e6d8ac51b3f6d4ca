// Launch form: a benchmark fills in its defaults; a pair shows the dataset pickers; the auxiliary
// backbone only matters for DUDA; the baseline list follows the target and the student.
import { api } from "./api.js";

const options = JSON.parse(document.getElementById("launch-options").textContent);
const form = document.getElementById("launch");
const f = (name) => form.elements[name];
const field = (name) => form.querySelector(`[data-field="${name}"]`);
const benchmarks = new Map(options.benchmarks.map((b) => [b.key, b]));

// A blank field takes the base config's value, which its placeholder shows.
function setDefaults(defaults) {
  for (const [key, value] of Object.entries(defaults)) {
    const input = f(key);
    if (!input || key === "method" || key === "student" || key === "auxiliary") continue;
    input.value = key === "crop_size" ? value.join("x") : value;
    input.placeholder = input.value;
  }
}

function layout() {
  const pair = !f("benchmark").value;
  field("source").hidden = !pair;
  field("target").hidden = !pair;
  field("auxiliary").hidden = f("method").value !== "duda";
  field("teachers").hidden = f("method").value !== "duda";
  field("precompute_teachers").hidden = f("method").value !== "duda";
  field("baseline").hidden = f("method").value === "source_only";
}

let baselinesAsked = 0;
async function loadBaselines() {
  const asked = ++baselinesAsked; // an answer to an earlier choice of target or student must not win
  const bench = benchmarks.get(f("benchmark").value);
  const target = bench ? bench.target : f("target").value;
  const select = f("baseline");
  const previous = select.value;
  const runs = target ? await api(`/api/baselines/?target=${encodeURIComponent(target)}&student=${encodeURIComponent(f("student").value)}`) : [];
  if (asked !== baselinesAsked) return;
  const short = (name) => (name.length > 22 ? `${name.slice(0, 21)}…` : name); // the select fits a phone's width
  const choices = [["auto", runs.length ? `latest: #${runs[0].id} ${short(runs[0].name)} (${(runs[0].final_miou ?? 0).toFixed(1)} mIoU)` : "latest source-only run (none yet)"]]
    .concat(runs.map((r) => [String(r.id), `#${r.id} ${short(r.name)} (${(r.final_miou ?? 0).toFixed(1)} mIoU)`]))
    .concat([["", "none"]]);
  select.replaceChildren(...choices.map(([value, label]) => new Option(label, value)));
  select.value = choices.some(([v]) => v === previous) ? previous : "auto";
}

// A pair of datasets starts from the recipe for their kinds (configs/real/), any other pair from the
// engine's defaults.
const datasetKinds = new Map(options.datasets.map((d) => [d.key, d.kind]));
function pairDefaults() {
  const source = datasetKinds.get(f("source").value);
  const target = datasetKinds.get(f("target").value);
  if (!source || !target) return null;
  const recipe = options.recipes.find((r) => r.source_kind === source && r.target_kind === target);
  return recipe ? recipe.defaults : options.engine_defaults;
}

f("benchmark").addEventListener("change", () => {
  const bench = benchmarks.get(f("benchmark").value);
  const defaults = bench ? bench.defaults : pairDefaults();
  if (defaults) setDefaults(defaults);
  layout();
  loadBaselines();
});
for (const name of ["source", "target"]) {
  f(name).addEventListener("change", () => {
    const defaults = f("benchmark").value ? null : pairDefaults();
    if (defaults) setDefaults(defaults);
  });
}
for (const name of ["method", "student", "target"]) f(name).addEventListener("change", () => { layout(); loadBaselines(); });
layout();
loadBaselines();
