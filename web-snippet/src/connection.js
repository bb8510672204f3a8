// The guest WebSocket: one socket at a time, reopened after any loss with
// exponential backoff (and at once when the browser comes back online),
// requests matched to their answers by tracingId, and an echo heartbeat
// that notices a socket the network silently dropped.

const HEARTBEAT_MS = 25000;
const HEARTBEAT_TIMEOUT_MS = 10000;
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 30000;

export class Connection {
  // handlers: open() when a socket opens, push(frame) for pushed frames,
  // down(attempt) when the socket is lost and a reconnect is scheduled,
  // token() the session token for the heartbeat.
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.wanted = false;
    this.attempt = 0;
    this.retryTimer = 0;
    this.heartbeatTimer = 0;
    this.seq = 0;
    this.pending = new Map();
    window.addEventListener('online', () => {
      if (this.wanted && !this.ws) this.open();
    });
    window.addEventListener('offline', () => this.drop());
  }

  get isOpen() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  // Keep a socket open from now on.
  start() {
    this.wanted = true;
    if (!this.ws) this.open();
  }

  // Close and stay closed until start().
  stop() {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    this.retryTimer = 0;
    const ws = this.ws;
    this.detach();
    if (ws) ws.close(1000);
  }

  // Close this socket; a new one follows (after the backoff).
  drop() {
    const ws = this.ws;
    if (!ws) return;
    this.detach();
    ws.close(4000);
    this.scheduleRetry();
  }

  // The session is configured on this socket: the next loss starts the
  // backoff from its first step again.
  healthy() {
    this.attempt = 0;
  }

  open() {
    clearTimeout(this.retryTimer);
    this.retryTimer = 0;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.startHeartbeat();
      this.handlers.open();
    };
    ws.onmessage = (e) => {
      let frame;
      try {
        frame = JSON.parse(e.data);
      } catch {
        return;
      }
      // Matched by tracingId alone: the echo of a message is a `message`
      // frame, as Genesys sends it, and answers are `response`s.
      const waiting = frame.tracingId && this.pending.get(frame.tracingId);
      if (waiting) {
        this.pending.delete(frame.tracingId);
        clearTimeout(waiting.timer);
        waiting.resolve(frame);
      } else {
        this.handlers.push(frame);
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.detach();
      this.scheduleRetry();
    };
  }

  detach() {
    const ws = this.ws;
    this.ws = null;
    clearInterval(this.heartbeatTimer);
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
    }
    for (const waiting of this.pending.values()) {
      clearTimeout(waiting.timer);
      waiting.reject(new Error('disconnected'));
    }
    this.pending.clear();
  }

  scheduleRetry() {
    if (!this.wanted || this.retryTimer) return;
    const step = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    // Jitter, so that the visitors of a restarted node do not all return at once.
    const delay = step / 2 + Math.random() * (step / 2);
    this.attempt += 1;
    this.handlers.down(this.attempt);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = 0;
      if (this.wanted && !this.ws) this.open();
    }, delay);
  }

  // Sends a request and resolves with its answer (a `response` frame,
  // successful or not); rejects when the socket goes or no answer comes.
  request(frame, timeoutMs = 15000) {
    return new Promise((resolve, reject) => {
      if (!this.isOpen) {
        reject(new Error('disconnected'));
        return;
      }
      this.seq += 1;
      const tracingId = `sb-${this.seq}`;
      const timer = setTimeout(() => {
        this.pending.delete(tracingId);
        reject(new Error('timeout'));
      }, timeoutMs);
      this.pending.set(tracingId, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...frame, tracingId }));
    });
  }

  startHeartbeat() {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(() => {
      this.request(
        { action: 'echo', token: this.handlers.token(), message: { type: 'Text', text: 'ping' } },
        HEARTBEAT_TIMEOUT_MS,
      ).catch((e) => {
        if (e.message === 'timeout') this.drop();
      });
    }, HEARTBEAT_MS);
  }
}
