// The run's websocket with reconnect. After every (re)connect it asks REST for what it has not got:
// the curves drawn to the chart's width the first time, every point past its last step after a
// reconnect. Each message carries a per-run number (`seq`, `first_seq` when several were joined) and
// its publisher's `epoch`: a hole in the numbers means messages were lost on the way, and the missing
// step range is fetched from REST at once, without reconnecting. The store drops duplicates.
import { api } from "./api.js";
import { fetchRange } from "./metrics.js";

export class RunSocket {
  constructor(runId, store, handlers = {}, { width = null } = {}) {
    this.runId = runId;
    this.store = store;
    this.handlers = handlers;
    this.width = width; // pixels of the first load (null: every point)
    this.retry = 0;
    this.closedByUs = false;
    this.connects = 0;
    this.backfills = 0;
    this.received = 0; // metrics messages that came over the socket
    this.lastSeq = new Map(); // epoch -> the highest seq received
    this.gaps = []; // [{from_seq, to_seq, start, end}] detected and filled
    this.connect();
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}/ws/runs/${this.runId}/`;
  }

  connect() {
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => {
      this.retry = 0;
      this.connects++;
      this.lastSeq.clear(); // what came before this socket is the backfill's job
      this.handlers.onState?.("live");
      this.backfill();
    };
    ws.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      this.checkSequence(message);
      if (message.type === "metrics" && Array.isArray(message.points)) {
        this.received++;
        this.store.add(message.points);
      } else if (message.type === "evaluation" && Array.isArray(message.points)) {
        this.store.add(message.points); // eval/miou and eval/pixel_accuracy come with their evaluation
      }
      this.handlers.onMessage?.(message);
    };
    ws.onclose = () => {
      this.handlers.onState?.(this.closedByUs ? "closed" : "reconnecting");
      if (this.closedByUs) return;
      const delay = Math.min(10000, 500 * 2 ** this.retry++);
      setTimeout(() => this.connect(), delay);
    };
  }

  // A message numbered past the one expected: fetch the steps between the last point we hold and
  // this message's first (open-ended when the message carries no points). A publisher's first message
  // on this socket may be numbered anywhere if the socket opened while it was publishing (the backfill
  // covers what came before); but a publisher that starts while the socket is already receiving (a
  // resumed run's new worker) numbers from 1, so a later first number is a loss too. (A rare message
  // of a process that published for the run earlier, such as a cancel, costs one needless fetch.)
  checkSequence(message) {
    if (typeof message.seq !== "number" || !message.epoch) return;
    const first = typeof message.first_seq === "number" ? message.first_seq : message.seq;
    const known = this.lastSeq.get(message.epoch);
    const last = known ?? (this.lastSeq.size > 0 ? 0 : undefined);
    this.lastSeq.set(message.epoch, Math.max(known ?? 0, message.seq));
    if (last === undefined || first <= last + 1) return;
    const start = Math.max(0, this.store.lastStep);
    const end = typeof message.first_step === "number" ? message.first_step : null;
    this.fill({ from_seq: last + 1, to_seq: first - 1, start, end });
  }

  async fill(gap) {
    this.gaps.push(gap);
    try {
      const series = await fetchRange(api, this.runId, { start: gap.start, end: gap.end });
      gap.filled = true;
      if (this.store.addSeries(series)) this.handlers.onBackfill?.(series);
    } catch (error) {
      console.warn("gap fill failed", error);
    }
  }

  async backfill() {
    try {
      let series;
      if (this.store.lastStep < 0 && this.width) {
        const data = await api(`/api/runs/${this.runId}/metrics/?width=${this.width}`);
        series = data.series;
        this.downsampled = data.downsampled;
      } else {
        // step > lastStep - 1: the last step again too, since other names (an evaluation) can share it.
        const since = this.store.lastStep >= 0 ? this.store.lastStep - 1 : -1;
        series = await fetchRange(api, this.runId, { since });
      }
      this.backfills++;
      if (this.store.addSeries(series)) this.handlers.onBackfill?.(series);
    } catch (error) {
      console.warn("backfill failed", error);
    }
  }

  // For tests and for the "reconnect" link: drop the connection as a network failure would.
  drop() { this.ws?.close(); }

  close() { this.closedByUs = true; this.ws?.close(); }
}
