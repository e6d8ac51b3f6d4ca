// The comparison gallery: per sampled target image, input | ground truth | source-only | adapted
// student | teacher (and a second run's predictions side by side), masks drawn over the image.
//
// Ground truth and prediction PNGs hold class ids as their pixel values. Each is read once into a
// class-id map (classIdsOfPng: the ids themselves, not their colours, so classes that share a colour
// stay apart); every redraw then maps ids through a 256-entry RGBA lookup table, so hiding a class,
// changing the opacity or the step costs one pass over the pixels per panel and no network.
import { api } from "./api.js";
import { classIdsOfPng } from "./class_ids.js";
import { el, escapeHtml, pct } from "./format.js";

const config = JSON.parse(document.getElementById("gallery-config").textContent);
const $ = (id) => document.getElementById(id);

const state = {
  classes: [],
  unlabelled: 255,    // the pixel value of "no class" in a class-id PNG (the server says which)
  hidden: new Set(),
  opacity: Number($("opacity").value),
  errorsOnly: false,
  steps: [],          // the first run's evaluation steps (a second run shows its latest at or before each)
  index: 0,           // position in `steps`
  runs: [],           // [{id, name, method, data, steps, ious, teacher, tag}]
  images: [],         // sample names (of the first run)
  panels: [],
  renders: 0,
};
const masks = new Map();   // url -> Promise<{width, height, ids}>
const bitmaps = new Map(); // url -> Promise<ImageBitmap>
let lut = new Uint32Array(256);
let generation = 0;
let playing = null;

// --- decoding -------------------------------------------------------------------------------

async function fetchBlob(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.blob();
}

function canvasOf(width, height) {
  if (typeof OffscreenCanvas !== "undefined") return new OffscreenCanvas(width, height);
  return Object.assign(document.createElement("canvas"), { width, height });
}

function bitmap(url) {
  if (!bitmaps.has(url)) bitmaps.set(url, fetchBlob(url).then((b) => createImageBitmap(b)));
  return bitmaps.get(url);
}

function mask(url) {
  if (!masks.has(url)) masks.set(url, fetchBlob(url).then(async (blob) => classIdsOfPng(await blob.arrayBuffer())));
  return masks.get(url);
}

// --- colour lookup --------------------------------------------------------------------------

function rebuildLut() {
  lut = new Uint32Array(256);
  const alpha = Math.round(state.opacity * 255);
  for (const c of state.classes) {
    if (state.hidden.has(c.index)) continue;
    const [r, g, b] = c.colour;
    lut[c.index] = ((alpha << 24) | (b << 16) | (g << 8) | r) >>> 0; // little-endian RGBA
  }
}

// --- layout ---------------------------------------------------------------------------------

function latestStep(run, step) {
  let found = null;
  for (const s of run.steps) if (s <= step) found = s;
  return found;
}

function columns() {
  const [a, b] = state.runs;
  const cols = [{ key: "input", label: "Input" }, { key: "ground_truth", label: "Ground truth" }];
  if (a.method !== "source_only") {
    cols.push({ key: "source", label: a.data.baseline ? `Source-only · #${a.data.baseline.run_id}` : "Source-only" });
  }
  cols.push({ key: "student", run: a, label: a.method === "source_only" ? "Source-only student" : "Adapted student" });
  if (a.teacher) cols.push({ key: "teacher", run: a, label: "Teacher" });
  if (b) {
    cols.push({ key: "student", run: b, label: `#${b.id} student`, second: true });
    if (b.teacher) cols.push({ key: "teacher", run: b, label: `#${b.id} teacher`, second: true });
  }
  return cols;
}

function build() {
  const gallery = $("gallery");
  gallery.replaceChildren();
  state.panels = [];
  const [a] = state.runs;
  if (!a.data.images.length) {
    gallery.append(el("p", { class: "muted", id: "gallery-empty" }, "No predictions yet: they appear at the first evaluation."));
    return;
  }
  const cols = columns();
  const template = `repeat(${cols.length}, minmax(0, 1fr))`;
  const head = el("div", { class: "head-row" }, cols.map((c) => el("div", { class: c.second ? "run-b" : "" }, c.label)));
  head.style.gridTemplateColumns = template;
  gallery.append(head);
  for (const [index, image] of a.data.images.entries()) {
    const grid = el("div", { class: "panels" });
    grid.style.gridTemplateColumns = template;
    for (const col of cols) {
      const canvas = el("canvas", { width: image.width, height: image.height, "data-role": col.key, "data-image": image.name });
      const caption = el("div", { class: "caption" }, el("span", {}, col.label), el("span", { class: "where" }));
      const panel = el("div", { class: `panel${col.second ? " run-b" : ""}` }, canvas, caption);
      grid.append(panel);
      const entry = { col, image, canvas, panel, caption: caption.lastChild, maskUrl: null, current: null };
      canvas.addEventListener("mousemove", (e) => hover(e, entry));
      canvas.addEventListener("mouseleave", () => { $("tooltip").style.display = "none"; });
      canvas.addEventListener("click", () => zoom(entry));
      state.panels.push(entry);
    }
    gallery.append(el("div", { class: "sample", "data-index": index }, el("p", { class: "sample-title mono" }, image.name), grid));
  }
}

// Which PNG a panel shows at the selected step, and the caption saying where it comes from.
function source(entry, step) {
  const { col, image } = entry;
  const a = state.runs[0];
  if (col.key === "input") return { input: image.input, caption: "" };
  if (col.key === "ground_truth") return { input: image.input, mask: image.ground_truth, caption: "" };
  if (col.key === "source") {
    const base = a.data.baseline;
    const url = base?.predictions[image.name];
    return url ? { input: image.input, mask: url, caption: `step ${base.step}` }
      : { input: image.input, missing: base ? "not sampled by the baseline" : "no source-only baseline for this target and student" };
  }
  const run = col.run;
  const at = latestStep(run, step);
  const url = at === null ? null : run.data.steps.find((s) => s.step === at)?.predictions[image.name]?.[col.key];
  if (!url) return { input: image.input, missing: at === null ? `no evaluation at or before step ${step}` : "not sampled" };
  return { input: image.input, mask: url, caption: `step ${at}`, step: at };
}

// --- drawing --------------------------------------------------------------------------------

const scratch = { canvas: null, ctx: null };
function overlay(width, height) {
  if (!scratch.canvas || scratch.canvas.width !== width || scratch.canvas.height !== height) {
    scratch.canvas = canvasOf(width, height);
    scratch.ctx = scratch.canvas.getContext("2d");
  }
  return scratch;
}

function paint(entry, input, maskData, truth) {
  const { canvas } = entry;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(input, 0, 0, canvas.width, canvas.height);
  if (!maskData) return;
  const { width, height, ids } = maskData;
  const { canvas: layer, ctx: layerCtx } = overlay(width, height);
  const pixels = layerCtx.createImageData(width, height);
  const out = new Uint32Array(pixels.data.buffer);
  const errorsOnly = state.errorsOnly && truth && entry.col.key !== "ground_truth" && truth.ids.length === ids.length;
  if (errorsOnly) {
    const gt = truth.ids;
    for (let i = 0; i < ids.length; i++) out[i] = gt[i] === state.unlabelled || gt[i] === ids[i] ? 0 : lut[ids[i]];
  } else {
    for (let i = 0; i < ids.length; i++) out[i] = lut[ids[i]];
  }
  layerCtx.putImageData(pixels, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(layer, 0, 0, canvas.width, canvas.height);
}

async function render() {
  const mine = ++generation;
  const step = state.steps[state.index] ?? 0;
  updateStepLabel(step);
  await Promise.all(state.panels.map(async (entry) => {
    const what = source(entry, step);
    entry.caption.textContent = what.caption || "";
    entry.panel.dataset.step = what.step ?? "";
    entry.canvas.dataset.step = what.step ?? "";
    let placeholder = entry.panel.querySelector(".placeholder");
    // A missing panel keeps its (blank) canvas, so it is as tall as the images beside it; the note lies over it.
    entry.panel.classList.toggle("missing", Boolean(what.missing));
    if (what.missing) {
      entry.canvas.getContext("2d").clearRect(0, 0, entry.canvas.width, entry.canvas.height);
      if (!placeholder) entry.panel.append(placeholder = el("div", { class: "placeholder" }));
      placeholder.textContent = what.missing;
      placeholder.title = what.missing;
      entry.current = null;
      return;
    }
    placeholder?.remove();
    const [input, maskData, truth] = await Promise.all([
      bitmap(what.input),
      what.mask ? mask(what.mask) : null,
      state.errorsOnly && entry.image.ground_truth ? mask(entry.image.ground_truth) : null,
    ]);
    if (mine !== generation) return; // a newer render started meanwhile
    entry.current = { mask: maskData, truthUrl: entry.image.ground_truth };
    paint(entry, input, maskData, truth);
  }));
  if (mine === generation) {
    if (state.zoomed) drawZoom();
    state.renders++;
    document.body.dataset.galleryRendered = String(state.renders);
  }
}

// --- enlarged view: click a panel; it follows the step, opacity and legend --------------------

function zoom(entry) {
  state.zoomed = entry;
  $("zoom").hidden = false;
  drawZoom();
}

function drawZoom() {
  const entry = state.zoomed;
  const canvas = $("zoom-canvas");
  canvas.width = entry.canvas.width;
  canvas.height = entry.canvas.height;
  canvas.getContext("2d").drawImage(entry.canvas, 0, 0);
  $("zoom-caption").textContent = `${entry.image.name} · ${entry.col.label}${entry.caption.textContent ? " · " + entry.caption.textContent : ""}`;
}

function unzoom() {
  state.zoomed = null;
  $("zoom").hidden = true;
}

// --- controls -------------------------------------------------------------------------------

function updateStepLabel(step) {
  const a = state.runs[0];
  const at = latestStep(a, step);
  const entry = a.data.steps.find((s) => s.step === at);
  const parts = [`step ${step}`, `${state.index + 1}/${state.steps.length}`];
  if (entry?.miou !== null && entry?.miou !== undefined) parts.push(`mIoU ${entry.miou.toFixed(2)}`);
  const b = state.runs[1];
  if (b) parts.push(`#${b.id} at step ${latestStep(b, step) ?? "–"}`); // its latest evaluation at or before `step`
  $("step-label").textContent = parts.join(" · ");
  const ious = a.ious?.ious?.[String(at)];
  for (const chip of $("legend").children) {
    const i = Number(chip.dataset.class);
    chip.querySelector(".iou").textContent = ious && ious[i] !== null && ious[i] !== undefined ? pct(ious[i]) : "";
  }
}

function legend() {
  $("legend").replaceChildren(...state.classes.map((c) => {
    const chip = el("button", { type: "button", "data-class": c.index, title: "click: hide/show · shift-click: only this class" },
      el("span", { class: "swatch", style: `background:rgb(${c.colour.join(",")})` }), c.name, el("span", { class: "iou" }));
    chip.addEventListener("click", (e) => {
      if (e.shiftKey) {
        const solo = state.hidden.size === state.classes.length - 1 && !state.hidden.has(c.index);
        state.hidden = solo ? new Set() : new Set(state.classes.map((k) => k.index).filter((k) => k !== c.index));
      } else if (state.hidden.has(c.index)) state.hidden.delete(c.index);
      else state.hidden.add(c.index);
      syncLegend();
      rebuildLut();
      render();
    });
    return chip;
  }));
  syncLegend();
}

function syncLegend() {
  for (const chip of $("legend").children) {
    const off = state.hidden.has(Number(chip.dataset.class));
    chip.classList.toggle("off", off);
    chip.setAttribute("aria-pressed", String(!off));
  }
}

function hover(event, entry) {
  const tip = $("tooltip");
  const rect = entry.canvas.getBoundingClientRect();
  const current = entry.current;
  const truthPromise = entry.image.ground_truth ? masks.get(entry.image.ground_truth) : null;
  if (!current && entry.col.key !== "input") { tip.style.display = "none"; return; }
  const fx = (event.clientX - rect.left) / rect.width, fy = (event.clientY - rect.top) / rect.height;
  const name = (ids, w, h) => {
    const x = Math.min(w - 1, Math.floor(fx * w)), y = Math.min(h - 1, Math.floor(fy * h));
    const id = ids[y * w + x];
    return id === state.unlabelled ? "ignored" : state.classes[id]?.name ?? `class ${id}`;
  };
  const show = (truth) => {
    const lines = [];
    if (current?.mask && entry.col.key !== "ground_truth") lines.push(`${escapeHtml(entry.col.label)}: <b>${escapeHtml(name(current.mask.ids, current.mask.width, current.mask.height))}</b>`);
    if (truth) lines.push(`truth: <b>${escapeHtml(name(truth.ids, truth.width, truth.height))}</b>`);
    tip.innerHTML = lines.join("<br>");
    tip.style.display = lines.length ? "block" : "none";
    tip.style.left = `${event.clientX + 14}px`;
    tip.style.top = `${event.clientY + 12}px`;
  };
  if (truthPromise) truthPromise.then(show); else show(null);
}

function setIndex(index) {
  state.index = Math.max(0, Math.min(state.steps.length - 1, index));
  $("step").value = String(state.index);
  render();
  prefetch();
}

function togglePlay() {
  if (playing) { clearInterval(playing); playing = null; $("play").textContent = "▶ Replay"; return; }
  if (state.index >= state.steps.length - 1) setIndex(0);
  $("play").textContent = "❚❚ Pause";
  playing = setInterval(() => {
    if (state.index >= state.steps.length - 1) { togglePlay(); return; }
    setIndex(state.index + 1);
  }, 900);
}

// Decode the neighbouring steps' masks in the background, nearest first, so the slider is instant.
function prefetch() {
  const order = state.steps.map((s, i) => [Math.abs(i - state.index), s]).sort((x, y) => x[0] - y[0]).map(([, s]) => s);
  const urls = [];
  for (const step of order) {
    for (const run of state.runs) {
      const entry = run.data.steps.find((s) => s.step === step);
      for (const predictions of Object.values(entry?.predictions || {})) urls.push(...Object.values(predictions));
    }
  }
  let next = 0;
  const worker = async () => { while (next < urls.length) { await mask(urls[next++]).catch(() => null); } };
  setTimeout(() => { for (let i = 0; i < 4; i++) worker(); }, 50);
}

async function loadRun(id) {
  const [data, ious, detail] = await Promise.all([
    api(`/api/runs/${id}/samples/`), api(`/api/runs/${id}/class-iou/`), api(`/api/runs/${id}/`),
  ]);
  const teacher = data.steps.some((s) => Object.values(s.predictions).some((p) => p.teacher));
  return { id, name: detail.name, method: detail.method, data, ious, steps: data.steps.map((s) => s.step), teacher };
}

async function setRuns(compareId) {
  const a = state.runs[0] || await loadRun(config.run);
  state.runs = [a];
  if (compareId) state.runs.push(await loadRun(Number(compareId)));
  state.steps = [...a.steps]; // never a step only the second run evaluated: the first run's panels would be mislabelled
  const slider = $("step");
  slider.max = String(Math.max(0, state.steps.length - 1));
  slider.disabled = state.steps.length < 2;
  $("play").disabled = state.steps.length < 2;
  build();
  setIndex(state.steps.length - 1);
}

async function main() {
  const first = await loadRun(config.run);
  state.runs = [first];
  state.classes = first.data.classes;
  state.unlabelled = first.data.unlabelled_id;
  rebuildLut();
  legend();
  await setRuns($("compare-run").value);

  $("step").addEventListener("input", (e) => setIndex(Number(e.target.value)));
  $("opacity").addEventListener("input", (e) => { state.opacity = Number(e.target.value); rebuildLut(); render(); });
  $("errors").addEventListener("change", (e) => { state.errorsOnly = e.target.checked; render(); });
  $("show-all").addEventListener("click", () => { state.hidden.clear(); syncLegend(); rebuildLut(); render(); });
  $("hide-all").addEventListener("click", () => { state.hidden = new Set(state.classes.map((c) => c.index)); syncLegend(); rebuildLut(); render(); });
  $("play").addEventListener("click", togglePlay);
  $("compare-run").addEventListener("change", async (e) => {
    const url = new URL(location.href);
    if (e.target.value) url.searchParams.set("compare", e.target.value); else url.searchParams.delete("compare");
    history.replaceState(null, "", url);
    await setRuns(e.target.value);
  });
  $("zoom").addEventListener("click", unzoom);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") unzoom();
    if (["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement?.tagName)) return; // a focused slider steps itself
    if (e.key === "ArrowLeft") { e.preventDefault(); setIndex(state.index - 1); }
    if (e.key === "ArrowRight") { e.preventDefault(); setIndex(state.index + 1); }
    if (e.key === " ") { e.preventDefault(); togglePlay(); }
  });
}

window.__gallery = { state, ready: main() };
