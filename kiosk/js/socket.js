/** The one WebSocket to the server: snapshot then updates in, heartbeats out, reconnect with back-off + jitter. */

const MAX_DELAY_MS = 30_000;
const FIRST_DELAY_MS = 1_000;
const HEARTBEAT_MS = 30_000;

/** Capped exponential back-off with jitter, so a room full of pages does not reconnect in lockstep. */
export function backoffMs(attempt, random = Math.random) {
  const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.min(attempt, 10));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export class LiveSocket {
  /**
   * handlers: onSnapshot(msg), onUpdate(msg), onCommand(msg), onOnline(), onOffline();
   * heartbeat(): the object to send every 30 s, and right after each snapshot (so the server knows our role).
   */
  constructor(url, handlers, heartbeat) {
    this.url = url;
    this.handlers = handlers;
    this.heartbeat = heartbeat;
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.heartbeatTimer = null;
  }

  start() {
    this._connect();
  }

  _connect() {
    this.retryTimer = null;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      console.error("homeboard: cannot open the socket", err);
      this._retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.heartbeatTimer = setInterval(() => this._sendHeartbeat(), HEARTBEAT_MS);
    };
    ws.onmessage = (event) => this._receive(event.data);
    ws.onclose = () => {
      clearInterval(this.heartbeatTimer);
      this.heartbeatTimer = null;
      if (this.ws === ws) this.ws = null;
      this.handlers.onOffline();
      this._retry();
    };
    // onerror is always followed by onclose, which does the work.
    ws.onerror = () => {};
  }

  _retry() {
    if (this.retryTimer !== null) return;
    const delay = backoffMs(this.attempt);
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this._connect(), delay);
  }

  _receive(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (err) {
      console.error("homeboard: a message that is not JSON", err);
      return;
    }
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "snapshot") {
      this.attempt = 0; // only a snapshot proves the server is really back
      this.handlers.onOnline();
      this.handlers.onSnapshot(msg);
      // Right away, not in 30 s: the server learns our role (wall or viewer) and the version we show.
      this._sendHeartbeat();
    } else if (msg.type === "update") {
      this.handlers.onUpdate(msg);
    } else {
      this.handlers.onCommand(msg);
    }
  }

  _sendHeartbeat() {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    try {
      ws.send(JSON.stringify(this.heartbeat()));
    } catch (err) {
      console.error("homeboard: heartbeat failed", err);
    }
  }
}
