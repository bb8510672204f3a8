// The agent WebSocket (docs/agent-protocol.md), authenticated by the
// staff session cookie. It reconnects by itself with backoff (1 s doubling
// to 30 s, with jitter); a reconnect needs no bookkeeping here because the
// server's first snapshot restores everything the agent holds.

const MAX_BACKOFF_MS = 30000;

export class AgentSocket {
  // onFrame(frame) for every server frame but responses; onState(state)
  // with 'connecting', 'open' or 'closed'; onRefused() after a socket that
  // never opened, so the console can check whether the session is over.
  constructor({ onFrame, onState, onRefused }) {
    this.onFrame = onFrame;
    this.onState = onState;
    this.onRefused = onRefused;
    this.pending = new Map();
    this.nextId = 0;
    this.backoff = 1000;
    this.stopped = false;
    this.ws = null;
    this.timer = null;
    this.online = () => {
      if (this.ws === null && !this.stopped) this.connectNow();
    };
    window.addEventListener('online', this.online);
  }

  connect() {
    this.stopped = false;
    this.connectNow();
  }

  connectNow() {
    clearTimeout(this.timer);
    this.onState('connecting');
    const url = new URL('/api/v2/agent/ws', location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(url);
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.backoff = 1000;
      this.onState('open');
    };
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type === 'response') this.settle(frame);
      else this.onFrame(frame);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      for (const { reject } of this.pending.values()) reject(new SocketError('unavailable', 'the connection was lost; try again'));
      this.pending.clear();
      this.onState('closed');
      if (this.stopped) return;
      if (!opened) this.onRefused();
      const delay = this.backoff * (0.75 + Math.random() * 0.5);
      this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
      this.timer = setTimeout(() => this.connectNow(), delay);
    };
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  // Sends a request and resolves with its result, or rejects with a
  // SocketError carrying the server's code.
  request(frame) {
    if (!this.isOpen) return Promise.reject(new SocketError('unavailable', 'not connected; reconnecting…'));
    this.nextId += 1;
    const requestId = `c${this.nextId}`;
    return new Promise((resolve, reject) => {
      this.pending.set(requestId, { resolve, reject });
      this.ws.send(JSON.stringify({ ...frame, requestId }));
    });
  }

  // A frame nobody waits for (typing).
  send(frame) {
    if (this.isOpen) this.ws.send(JSON.stringify(frame));
  }

  settle(frame) {
    const waiter = this.pending.get(frame.requestId);
    if (!waiter) return;
    this.pending.delete(frame.requestId);
    if (frame.ok) waiter.resolve(frame.result ?? null);
    else waiter.reject(new SocketError(frame.error?.code, frame.error?.message));
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    window.removeEventListener('online', this.online);
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
  }
}

export class SocketError extends Error {
  constructor(code, message) {
    super(message || code || 'request failed');
    this.code = code || 'error';
  }
}
