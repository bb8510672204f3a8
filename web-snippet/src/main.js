// Entry point of widget.js. The loader a site pastes (loader.html) defines
// window.Switchboard as a queue of calls and sets Switchboard.o to its
// options; this replaces it with the real function and replays the queue.
//
//   Switchboard('open' | 'close' | 'toggle' | 'signIn' | 'logout')
//   Switchboard('sendMessage', text)
//   Switchboard('registerAuthProvider', async () => ({code, redirectUri, codeVerifier, nonce}))
//   Switchboard('on', 'ready' | 'error' | 'message' | 'agentJoined' | ..., fn)
//   Switchboard('configure', {redirectUri})   (before the widget starts)

import { Widget } from './widget.js';

(function boot() {
  const stub = window.Switchboard;
  if (stub && stub.loaded) return;
  const options = { ...((stub && stub.o) || {}) };
  if (!options.endpoint && document.currentScript) {
    options.endpoint = new URL(document.currentScript.src).origin;
  }
  const widget = new Widget(options);
  const Switchboard = (name, ...args) => widget.command(name, args);
  Switchboard.loaded = true;
  Switchboard.o = options;
  window.Switchboard = Switchboard;
  for (const call of (stub && stub.q) || []) widget.command(call[0], Array.prototype.slice.call(call, 1));
  const start = () => widget.start();
  if (document.body) start();
  else document.addEventListener('DOMContentLoaded', start, { once: true });
})();
