// The widget's DOM: a launcher button and a chat panel in a shadow root.
// Text from the network only ever goes in as text nodes.
//
// Accessibility: the launcher and every control are buttons with names;
// the panel is a labelled (non-modal) dialog; new messages are announced
// by the transcript's role="log" live region, typing and connection state
// by a polite status region, expiry warnings by role="alert"; Escape closes
// the panel and gives the focus back to the launcher.

import { STYLES } from './styles.js';

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v == null) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c != null) el.append(c);
  return el;
}

const ICON =
  '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"/></svg>';
const CLIP =
  '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5H9v9a3 3 0 0 0 6 0V5a4.5 4.5 0 0 0-9 0v11.5a6 6 0 0 0 12 0v-10z"/></svg>';

// The colour must be one CSS knows; the text on it black or white,
// whichever reads better.
export function palette(color) {
  const fallback = '#1f5eff';
  const ok = typeof color === 'string' && !!window.CSS && CSS.supports('color', color);
  const primary = ok ? color : fallback;
  const probe = document.createElement('span');
  probe.style.color = primary;
  document.documentElement.append(probe);
  const rgb = getComputedStyle(probe).color.match(/\d+(\.\d+)?/g) || [31, 94, 255];
  probe.remove();
  const [r, g, b] = rgb.slice(0, 3).map((x) => {
    const c = Number(x) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  // Contrast against white (1.05 / (L + .05)) vs against black ((L + .05) / .05).
  const onPrimary = 1.05 / (luminance + 0.05) >= (luminance + 0.05) / 0.05 ? '#fff' : '#000';
  return { primary, onPrimary };
}

export class UI {
  constructor(handlers) {
    this.handlers = handlers;
    this.host = h('div', { 'data-switchboard': '' });
    const root = this.host.attachShadow({ mode: 'open' });
    this.shadow = root;
    // A constructed stylesheet where the browser has them: a page whose
    // Content-Security-Policy allows no inline style (switchboard's own
    // demo page) still styles the widget. A <style> element otherwise.
    let style = null;
    if (root.adoptedStyleSheets !== undefined && typeof CSSStyleSheet === 'function'
      && typeof CSSStyleSheet.prototype.replaceSync === 'function') {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLES);
      root.adoptedStyleSheets = [sheet];
    } else {
      style = h('style');
      style.textContent = STYLES;
    }

    this.badge = h('span', { class: 'badge', 'aria-hidden': 'true', hidden: true });
    this.launcher = h('button', {
      class: 'launcher',
      type: 'button',
      'aria-label': 'Chat',
      'aria-expanded': 'false',
      'aria-controls': 'sb-panel',
      onclick: () => handlers.toggle(),
    });
    this.launcher.innerHTML = ICON;
    this.launcher.append(this.badge);

    this.title = h('h2', { id: 'sb-title' }, 'Chat with us');
    this.state = h('span', { class: 'state', 'aria-hidden': 'true' });
    this.signOut = h('button', { type: 'button', class: 'signout', hidden: true, onclick: () => handlers.signOut() }, 'Sign out');
    const close = h('button', { type: 'button', class: 'close', 'aria-label': 'Close chat', onclick: () => handlers.close() }, '\u00d7');

    this.notice = h('div', { class: 'notice', role: 'alert', hidden: true });
    this.log = h('ol', {
      class: 'log',
      role: 'log',
      'aria-live': 'polite',
      'aria-relevant': 'additions',
      'aria-label': 'Conversation',
      tabindex: '0',
    });
    this.typing = h('div', { class: 'typing', 'aria-hidden': 'true', hidden: true });
    this.status = h('div', { class: 'sr', role: 'status', 'aria-live': 'polite' });

    this.gateText = h('p', { id: 'sb-gate-why' });
    this.gateError = h('p', { class: 'error', role: 'alert', hidden: true });
    this.gateButton = h('button', { type: 'button', onclick: () => handlers.signIn() }, 'Sign in');
    this.gate = h('div', { class: 'gate', hidden: true }, this.gateText, this.gateButton, this.gateError);

    this.readOnlyText = h('p', {}, 'This conversation has ended.');
    this.readOnly = h(
      'div',
      { class: 'readonly', hidden: true },
      this.readOnlyText,
      h('button', { type: 'button', onclick: () => handlers.startNew() }, 'Start a new conversation'),
    );

    this.input = h('textarea', {
      id: 'sb-input',
      rows: '1',
      maxlength: '4000',
      placeholder: 'Type a message',
      oninput: () => handlers.typing(),
      onkeydown: (e) => {
        if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
          e.preventDefault();
          this.submit();
        }
      },
      // A pasted screenshot is attached.
      onpaste: (e) => {
        const files = [...((e.clipboardData && e.clipboardData.files) || [])];
        if (files.length && this.files(files)) e.preventDefault();
      },
    });
    this.send = h('button', { type: 'submit' }, 'Send');
    // Attaching: a button that opens the file picker; shown only while the
    // deployment takes files (see setAttachments).
    this.fileInput = h('input', {
      type: 'file',
      class: 'sr',
      tabindex: '-1',
      'aria-hidden': 'true',
      onchange: () => {
        this.files([...this.fileInput.files]);
        this.fileInput.value = '';
      },
    });
    this.attach = h('button', {
      type: 'button',
      class: 'attach',
      'aria-label': 'Attach a file',
      hidden: true,
      onclick: () => this.fileInput.click(),
    });
    // A constant, never data from the network.
    this.attach.innerHTML = CLIP;
    this.form = h(
      'form',
      {
        onsubmit: (e) => {
          e.preventDefault();
          this.submit();
        },
      },
      h('label', { class: 'sr', for: 'sb-input' }, 'Message'),
      this.fileInput,
      this.attach,
      this.input,
      this.send,
    );

    this.panel = h(
      'section',
      {
        id: 'sb-panel',
        class: 'panel',
        role: 'dialog',
        'aria-modal': 'false',
        'aria-labelledby': 'sb-title',
        hidden: true,
        onkeydown: (e) => {
          if (e.key === 'Escape') {
            e.stopPropagation();
            handlers.close();
          }
        },
        // Files dropped anywhere on the panel are attached.
        ondragover: (e) => {
          if (!this.attach.hidden) e.preventDefault();
        },
        ondrop: (e) => {
          const files = [...((e.dataTransfer && e.dataTransfer.files) || [])];
          if (files.length && this.files(files)) e.preventDefault();
        },
      },
      h('header', {}, this.title, this.state, this.signOut, close),
      this.notice,
      this.log,
      this.typing,
      this.status,
      this.gate,
      this.readOnly,
      this.form,
    );
    root.append(...(style ? [style] : []), h('div', { class: 'root' }, this.panel, this.launcher));
  }

  mount(colors) {
    this.host.style.setProperty('--sb-primary', colors.primary);
    this.host.style.setProperty('--sb-on-primary', colors.onPrimary);
    // Custom properties inherit into the shadow tree from the host.
    document.body.append(this.host);
  }

  // Hands files to the widget; answers whether they were taken.
  files(list) {
    if (this.attach.hidden || this.input.disabled || !list.length) return false;
    for (const file of list) this.handlers.attach(file);
    return true;
  }

  // Attaching on (with the accepted types) or off.
  setAttachments(rules) {
    this.attach.hidden = !rules;
    if (rules) this.fileInput.accept = rules.accept;
  }

  submit() {
    const text = this.input.value.trim();
    if (!text || this.input.disabled) return;
    if (this.handlers.send(text)) this.input.value = '';
  }

  get isOpen() {
    return !this.panel.hidden;
  }

  setOpen(open, moveFocus) {
    this.panel.hidden = !open;
    this.launcher.setAttribute('aria-expanded', String(open));
    this.launcher.setAttribute('aria-label', this.launcherLabel());
    if (open) {
      this.setUnread(0);
      this.scrollDown();
      if (moveFocus) this.focusPanel();
    } else if (moveFocus) {
      this.launcher.focus();
    }
  }

  // The first thing to act on: the message box, or the sign-in button.
  focusPanel() {
    const target = !this.gate.hidden ? this.gateButton : !this.input.disabled ? this.input : this.log;
    target.focus();
  }

  launcherLabel() {
    const n = this.unread || 0;
    // A toggle: its name stays, aria-expanded tells whether it is open.
    return n ? `Chat, ${n} unread message${n > 1 ? 's' : ''}` : 'Chat';
  }

  setUnread(n) {
    this.unread = n;
    this.badge.hidden = !n;
    this.badge.textContent = String(n);
    this.launcher.setAttribute('aria-label', this.launcherLabel());
  }

  scrollDown() {
    this.log.scrollTop = this.log.scrollHeight;
  }

  // A message bubble. direction: 'in' (the visitor's) or 'out' (agent's);
  // `rich`: nodes of structured content shown under the text (the bubble
  // then takes the panel's width, for cards and carousels).
  addMessage({ direction, who, text, time, pending, rich }) {
    const meta = h('span', { class: 'meta' });
    const li = h(
      'li',
      { class: `msg ${direction}${rich && rich.length ? ' rich' : ''}` },
      h('span', { class: direction === 'in' ? 'sr' : 'who' }, direction === 'in' ? 'You: ' : `${who}: `),
      text,
      ...(rich || []),
      meta,
    );
    li.meta = meta;
    this.setMessageState(li, pending ? 'Sending\u2026' : formatTime(time));
    this.log.append(li);
    this.scrollDown();
    return li;
  }

  setMessageState(li, text, failed) {
    li.meta.textContent = text;
    li.classList.toggle('failed', !!failed);
  }

  addEvent(text, divider) {
    this.log.append(h('li', { class: divider ? 'event divider' : 'event' }, text));
    this.scrollDown();
  }

  clearLog() {
    this.log.replaceChildren();
  }

  setBusy(busy) {
    this.log.setAttribute('aria-busy', String(busy));
  }

  setTyping(name) {
    // Announced when it starts, not on every renewal.
    if (name && this.typing.hidden) this.announce(`${name} is typing`);
    this.typing.hidden = !name;
    this.typing.textContent = name ? `${name} is typing\u2026` : '';
  }

  announce(text) {
    // Cleared first so that the same words are announced again.
    this.status.textContent = '';
    setTimeout(() => {
      this.status.textContent = text;
    }, 50);
  }

  setState(text) {
    this.state.textContent = text;
  }

  showNotice(text, action, onAction) {
    this.notice.replaceChildren(h('span', {}, text));
    if (action) this.notice.append(' ', h('button', { type: 'button', onclick: onAction }, action));
    this.notice.hidden = false;
  }

  hideNotice() {
    this.notice.hidden = true;
    this.notice.replaceChildren();
  }

  // Sending is off until the visitor signs in; the message says why.
  showGate(why, error) {
    this.gateText.textContent = why;
    this.gateError.hidden = !error;
    this.gateError.textContent = error || '';
    this.gate.hidden = false;
    this.gateButton.disabled = false;
    this.setComposer(false, 'sb-gate-why', 'Sign in to send a message');
  }

  hideGate() {
    this.gate.hidden = true;
  }

  setGateBusy(busy) {
    this.gateButton.disabled = busy;
    this.gateButton.textContent = busy ? 'Signing in\u2026' : 'Sign in';
  }

  setReadOnly(on, text) {
    this.readOnly.hidden = !on;
    if (text) this.readOnlyText.textContent = text;
    if (on) this.setComposer(false, null, 'This conversation has ended');
  }

  setComposer(enabled, describedBy, placeholder) {
    this.input.disabled = !enabled;
    this.send.disabled = !enabled;
    this.attach.disabled = !enabled;
    if (describedBy) this.input.setAttribute('aria-describedby', describedBy);
    else this.input.removeAttribute('aria-describedby');
    this.input.placeholder = enabled ? 'Type a message' : placeholder || 'Sending is not possible right now';
  }

  setSignedIn(on) {
    this.signOut.hidden = !on;
  }
}

export function formatTime(time) {
  const date = time ? new Date(time) : new Date();
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}
