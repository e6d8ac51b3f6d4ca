// The run's websocket with reconnect: after every (re)connect it asks REST for the points past the
// last step it has (metrics?since=<step - 1>), so the curve has no gap; the store drops duplicates.
import { api } from "./api.js";

export class RunSocket {
  constructor(runId, store, handlers = {}) {
    this.runId = runId;
    this.store = store;
    this.handlers = handlers;
    this.retry = 0;
    this.closedByUs = false;
    this.connects = 0;
    this.backfills = 0;
    this.received = 0; // metrics messages that came over the socket
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
      this.handlers.onState?.("live");
      this.backfill();
    };
    ws.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
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

  async backfill() {
    // step > lastStep - 1: the last step again too, since other names (an evaluation) can share it.
    const since = this.store.lastStep >= 0 ? this.store.lastStep - 1 : -1;
    try {
      const data = await api(`/api/runs/${this.runId}/metrics/?since=${since}`);
      this.backfills++;
      if (this.store.add(data.points)) this.handlers.onBackfill?.(data.points);
    } catch (error) {
      console.warn("backfill failed", error);
    }
  }

  // For tests and for the "reconnect" link: drop the connection as a network failure would.
  drop() { this.ws?.close(); }

  close() { this.closedByUs = true; this.ws?.close(); }
}
