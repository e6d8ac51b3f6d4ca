// Metric points keyed by name and step: adding the same (step, name) twice keeps one point, so the
// socket, the REST backfill and gap fills can overlap without duplicates. The first load of a long
// run may be downsampled (min and max per pixel); live points and filled gaps are every point.

export class MetricStore {
  constructor() {
    this.byName = new Map(); // name -> Map(step -> value)
    this.lastStep = -1;      // highest step seen for any name
    this.version = 0;
  }

  // points: [{step, name, value}, ...] (the socket's messages)
  add(points) {
    let added = 0;
    for (const { step, name, value } of points) added += this.put(name, step, value);
    if (added) this.version++;
    return added;
  }

  // series: {name: {step: [...], value: [...]}} (the REST API's columns)
  addSeries(series) {
    let added = 0;
    for (const [name, column] of Object.entries(series || {})) {
      const steps = column.step, values = column.value;
      for (let i = 0; i < steps.length; i++) added += this.put(name, steps[i], values[i]);
    }
    if (added) this.version++;
    return added;
  }

  put(name, step, value) {
    let series = this.byName.get(name);
    if (!series) { series = new Map(); this.byName.set(name, series); }
    const isNew = !series.has(step);
    series.set(step, value);
    if (step > this.lastStep) this.lastStep = step;
    return isNew ? 1 : 0;
  }

  names() { return [...this.byName.keys()].sort(); }

  series(name) {
    const series = this.byName.get(name);
    if (!series) return [[], []];
    const steps = [...series.keys()].sort((a, b) => a - b);
    return [steps, steps.map((s) => series.get(s))];
  }

  count(name) { return this.byName.get(name)?.size || 0; }

  // Steps of `name` that are missing between its first and last point, given the logging interval.
  gaps(name, interval) {
    const [steps] = this.series(name);
    const missing = [];
    for (let i = 1; i < steps.length; i++) {
      for (let s = steps[i - 1] + interval; s < steps[i]; s += interval) missing.push(s);
    }
    return missing;
  }
}

// Every point of a step range from the REST API, following its pages (cursor by step); `query` adds
// names=... if wanted. Resolves to the columns merged: {name: {step: [...], value: [...]}}.
export async function fetchRange(api, runId, { start = null, end = null, since = null, query = "" } = {}) {
  const merged = {};
  let cursor = since;
  for (;;) {
    const params = new URLSearchParams();
    if (start !== null) params.set("start", String(Math.max(0, Math.floor(start))));
    if (end !== null) params.set("end", String(Math.ceil(end)));
    if (cursor !== null) params.set("since", String(cursor));
    const data = await api(`/api/runs/${runId}/metrics/?${params}${query}`);
    for (const [name, column] of Object.entries(data.series)) {
      const into = merged[name] || (merged[name] = { step: [], value: [] });
      into.step.push(...column.step);
      into.value.push(...column.value);
    }
    if (data.next === null || data.next === undefined) return merged;
    cursor = data.next;
  }
}
