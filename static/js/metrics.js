// Metric points keyed by name and step: adding the same (step, name) twice keeps one point, so the
// socket and the REST backfill after a reconnect can overlap without duplicates.

export class MetricStore {
  constructor() {
    this.byName = new Map(); // name -> Map(step -> value)
    this.lastStep = -1;      // highest step seen for any name
    this.version = 0;
  }

  add(points) {
    let added = 0;
    for (const { step, name, value } of points) {
      let series = this.byName.get(name);
      if (!series) { series = new Map(); this.byName.set(name, series); }
      if (!series.has(step)) added++;
      series.set(step, value);
      if (step > this.lastStep) this.lastStep = step;
    }
    if (added) this.version++;
    return added;
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
