// The widget's logic: reads the deployment's public configuration, keeps
// the guest session (its token per deployment in localStorage), resumes it
// after a reload or a lost connection from the last sequence seen, sends
// with client message ids (so a resend after a reconnect is idempotent),
// and gates sending behind sign-in when the deployment requires it.

import { api, ApiError } from './api.js';
import { Auth } from './auth.js';
import { Connection } from './connection.js';
import { storage, uuid } from './storage.js';
import { contentText, postbackAnswer, quickAnswerOf, quickReplyAnswer, renderContent, spend } from './structured.js';
import { UI, formatTime, h, palette } from './ui.js';
import { attachmentMessage, renderAttachments, upload, uploadRules } from './attachments.js';

const TYPING_EVERY_MS = 4000;
const EXPIRY_WARNING_MS = 60000;
const SIGN_IN_WHY = 'Please sign in to chat with us: this conversation requires that we know who you are.';

export class Widget {
  // options: {deploymentId, endpoint, redirectUri?}
  constructor(options) {
    this.options = options;
    this.id = options.deploymentId;
    this.base = String(options.endpoint || '').replace(/\/+$/, '');
    this.store = storage(this.id);
    this.listeners = {};
    this.later = [];
    this.provider = null;
    // Messages typed (or answers chosen) but not yet in the log:
    // client id -> {id, text, message, li}.
    this.pending = new Map();
    // The quick replies of each agent message, by message id, so that an
    // answer (this tab's, another's, or replayed) spends them.
    this.quickReplies = new Map();
    // `${conversationId}:${sequence}` of every event shown.
    this.seen = new Set();
    this.conversationId = null;
    this.lastSequence = 0;
    this.configured = false;
    this.readOnly = false;
    // 'expired' or 'closed': the session ended; the visitor decides what next.
    this.ended = null;
    this.notice = null;
    this.retries = 0;
    this.lastTyping = 0;
  }

  // ---- the public command API ---------------------------------------------

  command(name, args) {
    const [a] = args;
    switch (name) {
      case 'open':
        return this.whenReady(() => this.setOpen(true, true));
      case 'close':
        return this.whenReady(() => this.setOpen(false, false));
      case 'toggle':
        return this.whenReady(() => this.setOpen(!this.ui.isOpen, true));
      case 'registerAuthProvider':
        if (typeof a !== 'function') return warn('registerAuthProvider takes an async function');
        this.provider = a;
        if (this.auth) this.auth.provider = a;
        return undefined;
      case 'signIn':
        return this.whenReady(() => this.signIn());
      case 'logout':
        return this.whenReady(() => this.logout());
      case 'sendMessage':
        return this.whenReady(() => this.send(String(a)));
      case 'on':
        if (typeof args[1] !== 'function') return warn('on takes an event name and a function');
        (this.listeners[a] = this.listeners[a] || []).push(args[1]);
        return undefined;
      case 'configure':
        Object.assign(this.options, a);
        return undefined;
      default:
        return warn(`unknown command ${name}`);
    }
  }

  whenReady(fn) {
    if (this.ui) fn();
    else this.later.push(fn);
  }

  emit(name, detail) {
    for (const fn of this.listeners[name] || []) {
      try {
        fn(detail);
      } catch (e) {
        console.error(e);
      }
    }
    window.dispatchEvent(new CustomEvent(`switchboard:${name}`, { detail }));
  }

  // ---- start ------------------------------------------------------------

  async start() {
    if (!this.id || !this.base) return this.fail('the snippet names no deploymentId or endpoint');
    let config;
    try {
      config = await api(this.base).get(`/webdeployments/v1/deployments/${encodeURIComponent(this.id)}/config.json`);
    } catch (e) {
      return this.fail(`the deployment's configuration cannot be read (${e.status ? `HTTP ${e.status}` : e.message})`);
    }
    const messenger = config.messenger || {};
    const conversations = (messenger.apps && messenger.apps.conversations) || {};
    if (config.status !== 'Active' || messenger.enabled === false || conversations.enabled === false) {
      return this.fail('messaging is switched off for this deployment');
    }
    this.config = config;
    this.conversations = conversations;
    this.authRequired = !!(config.auth && config.auth.enabled);
    const apiBase = String(config.apiEndpoint || this.base).replace(/\/+$/, '');
    this.rest = api(apiBase);
    this.auth = new Auth({
      rest: this.rest,
      deploymentId: this.id,
      store: this.store,
      redirectUri: this.options.redirectUri || `${apiBase}/web-snippet/callback`,
      onRefreshed: () => {
        // The socket keeps its session; a fresh JWT keeps it verifiable.
        if (this.configured) this.configure();
      },
      onLost: () => this.signedOut('Your sign-in has expired. Sign in again to continue.'),
    });
    this.auth.provider = this.provider;

    this.ui = new UI({
      toggle: () => this.setOpen(!this.ui.isOpen, true),
      close: () => this.setOpen(false, true),
      send: (text) => this.send(text),
      typing: () => this.typing(),
      signIn: () => this.signIn(),
      signOut: () => this.logout(),
      startNew: () => this.startNew(),
      attach: (file) => this.attach(file),
    });
    this.ui.mount(palette(messenger.styles && messenger.styles.primaryColor));
    this.ui.setAttachments(uploadRules(config));

    const wsBase = String(conversations.messagingEndpoint || apiBase.replace(/^http/, 'ws')).replace(/\/+$/, '');
    this.conn = new Connection(
      `${wsBase}/v1?deploymentId=${encodeURIComponent(this.id)}&application=switchboard-web`,
      {
        open: () => this.configure(),
        push: (frame) => this.onPush(frame),
        down: (attempt) => this.onDown(attempt),
        token: () => this.token,
      },
    );
    this.store.onChange('auth', () => this.authChangedElsewhere());
    this.store.onChange('token', () => this.tokenChangedElsewhere());

    this.refreshGate();
    this.auth.schedule();
    // A returning visitor: connect now, so that the history and anything
    // that came meanwhile are there when the panel opens.
    if (this.store.get('token') && this.canConnect()) this.conn.start();
    if (this.store.getTab('open')) this.setOpen(true, false);
    for (const fn of this.later.splice(0)) fn();
    this.emit('ready', { deploymentId: this.id });
    return undefined;
  }

  fail(reason) {
    warn(reason);
    this.emit('error', { reason });
  }

  get token() {
    let token = this.store.get('token');
    if (typeof token !== 'string' || !token) {
      token = uuid();
      this.store.set('token', token);
    }
    return token;
  }

  // A new guest session: after a logout or an expiry.
  newToken() {
    this.store.set('token', uuid());
    this.forgetConversation();
  }

  forgetConversation() {
    this.conversationId = null;
    this.lastSequence = 0;
    this.seen.clear();
    this.quickReplies.clear();
    this.readOnly = false;
    for (const item of this.pending.values()) this.ui.setMessageState(item.li, 'Not delivered', true);
    this.pending.clear();
    this.ui.clearLog();
  }

  // What the visitor has seen, kept across reloads and tabs, so only
  // messages that came while the chat was closed count as unread.
  markRead() {
    if (this.conversationId) this.store.set('read', { conversationId: this.conversationId, sequence: this.lastSequence });
  }

  wasRead(conversation, sequence) {
    const read = this.store.get('read');
    return !!read && !!sequence && read.conversationId === conversation && sequence <= read.sequence;
  }

  canConnect() {
    return !this.authRequired || this.auth.signedIn;
  }

  setOpen(open, moveFocus) {
    this.ui.setOpen(open, moveFocus);
    this.store.setTab('open', open || null);
    if (open) this.markRead();
    this.emit(open ? 'opened' : 'closed');
    if (!open || this.ended) return;
    if (this.canConnect()) this.conn.start();
    else if (this.provider && !this.triedProvider) {
      // The host page may already hold a code for us: ask once, unprompted.
      this.triedProvider = true;
      this.signIn();
    }
  }

  // What the visitor can do now: sign in, start over, or type.
  refreshGate(error) {
    if (this.authRequired && !this.auth.signedIn) {
      this.ui.setSignedIn(false);
      this.ui.setReadOnly(false);
      this.ui.showGate(SIGN_IN_WHY, error);
      return;
    }
    this.ui.hideGate();
    this.ui.setSignedIn(this.authRequired);
    this.ui.setReadOnly(this.readOnly);
    if (!this.readOnly) this.ui.setComposer(!this.ended, null, 'This chat has ended');
  }

  showNotice(kind, text, action, onAction) {
    this.notice = kind;
    this.ui.showNotice(text, action, onAction);
  }

  hideNotice(kind) {
    if (this.notice !== kind) return;
    this.notice = null;
    this.ui.hideNotice();
  }

  // ---- the session --------------------------------------------------------

  async configure() {
    this.configured = false;
    this.sessionToken = this.token;
    const frame = { token: this.sessionToken, deploymentId: this.id, lastSequence: this.lastSequence };
    if (this.conversationId) frame.conversationId = this.conversationId;
    if (this.startNewPending) frame.startNew = true;
    // The first replay of a page is the history: not announced message by message.
    if (!this.replayedOnce) this.ui.log.setAttribute('aria-live', 'off');
    let answer;
    try {
      if (this.authRequired) {
        const jwt = await this.auth.validJwt();
        if (!jwt) {
          this.conn.stop();
          this.signedOut('Your sign-in has expired. Sign in again to continue.');
          return;
        }
        answer = await this.conn.request({ action: 'configureAuthenticatedSession', ...frame, data: { code: jwt } });
      } else {
        answer = await this.conn.request({ action: 'configureSession', ...frame });
      }
    } catch (e) {
      // The refresh endpoint or the socket failed: try again on a new socket.
      if (e instanceof ApiError || e.message === 'timeout') this.conn.drop();
      return;
    }
    if (answer.code === 200 && answer.class === 'SessionResponse') this.onSession(answer.body || {});
    else this.onRefused(answer);
  }

  onSession(body) {
    this.configured = true;
    this.retries = 0;
    this.conn.healthy();
    if (this.startNewPending) {
      this.startNewPending = false;
      if (this.ui.log.childElementCount) this.ui.addEvent('New conversation', true);
      this.conversationId = null;
      this.lastSequence = 0;
    }
    if (body.conversationId && body.conversationId !== this.conversationId) {
      // switchboard replays that conversation from its start.
      this.switchConversation(body.conversationId);
    }
    this.readOnly = !!body.readOnly;
    this.duration = Number(body.durationSeconds) || 0;
    this.touch();
    this.hideNotice('connection');
    this.ui.setState('');
    if (this.wasDown) {
      this.wasDown = false;
      this.ui.announce('Reconnected');
    }
    this.refreshGate();
    if (!this.replayedOnce) {
      this.replayedOnce = true;
      setTimeout(() => this.ui.log.setAttribute('aria-live', 'polite'), 500);
    }
    this.emit('connected', { conversationId: this.conversationId });
    this.flush();
  }

  onRefused(answer) {
    const text = typeof answer.body === 'string' ? answer.body : '';
    this.retries += 1;
    // 401: the session JWT expired (a refresh helps); 403 "Session
    // authentication failed": it is not this visitor's or was revoked.
    const authFailed = answer.code === 401 || (answer.code === 403 && /^Session authentication failed/i.test(text));
    if (answer.code === 401 && /authentication required/i.test(text)) {
      // The configuration changed to require sign-in since config.json.
      this.authRequired = true;
      this.conn.stop();
      this.refreshGate();
      return;
    }
    if (authFailed && this.retries <= 2) {
      // "Session authentication failed": a fresh JWT first, then a new
      // session (the token may be someone else's sign-in).
      if (this.retries === 2) this.newToken();
      this.auth
        .validJwt(true)
        .then((jwt) => (jwt ? this.configure() : this.signedOut('Sign in again to continue.')))
        .catch(() => this.conn.drop());
      return;
    }
    if (authFailed) {
      this.auth.forget();
      this.newToken();
      this.conn.stop();
      this.signedOut('Your sign-in is no longer valid. Sign in again to continue.');
      return;
    }
    if ((answer.code === 4017 || (answer.code === 403 && /another deployment/.test(text))) && this.retries <= 1) {
      // The stored token names a session this visitor cannot use now.
      this.newToken();
      this.configure();
      return;
    }
    this.showNotice('connection', `The chat cannot start: ${text || `error ${answer.code}`}`);
    this.conn.drop();
  }

  onDown(attempt) {
    this.configured = false;
    if (attempt >= 2 && !this.wasDown) {
      this.wasDown = true;
      this.ui.setState('Reconnecting\u2026');
      this.ui.announce('Connection lost. Reconnecting.');
    }
  }

  switchConversation(id) {
    if (this.conversationId && this.conversationId !== id) this.ui.addEvent('New conversation', true);
    this.conversationId = id;
    this.lastSequence = 0;
    this.readOnly = false;
  }

  startNew() {
    this.startNewPending = true;
    this.readOnly = false;
    this.refreshGate();
    if (this.conn.isOpen) this.configure();
    else this.conn.start();
    this.ui.focusPanel();
  }

  // The visitor did something: the inactivity clock starts again.
  touch() {
    clearTimeout(this.expiryTimer);
    this.hideNotice('expiry');
    if (!this.duration) return;
    const ms = this.duration * 1000;
    const lead = Math.min(EXPIRY_WARNING_MS, ms / 4);
    this.expiresAt = Date.now() + ms;
    this.expiryTimer = setTimeout(() => this.warnExpiry(), ms - lead);
  }

  warnExpiry() {
    if (!this.configured) return;
    const seconds = Math.max(1, Math.round((this.expiresAt - Date.now()) / 1000));
    this.showNotice(
      'expiry',
      `Your chat will end in about ${seconds} seconds because of inactivity.`,
      'Stay connected',
      () => {
        this.hideNotice('expiry');
        // Configuring again counts as activity and replays nothing.
        if (this.conn.isOpen) this.configure();
        else this.conn.start();
        this.ui.focusPanel();
      },
    );
    this.emit('sessionExpiring', { seconds });
  }

  end(kind) {
    this.ended = kind;
    this.configured = false;
    this.conn.stop();
    clearTimeout(this.expiryTimer);
    this.ui.setTyping(null);
    const expired = kind === 'expired';
    // A reload starts afresh too; the transcript stays until the visitor moves on.
    if (expired && this.store.get('token') === this.sessionToken) this.store.set('token', uuid());
    this.showNotice(
      'ended',
      expired ? 'Your chat session ended after a period of inactivity.' : 'This chat was closed in another window.',
      expired ? 'Start a new chat' : 'Reconnect',
      () => {
        this.ended = null;
        this.hideNotice('ended');
        if (expired) this.forgetConversation();
        this.refreshGate();
        if (this.canConnect()) this.conn.start();
        this.ui.focusPanel();
      },
    );
    this.refreshGate();
    this.emit('sessionEnded', { reason: kind });
  }

  // ---- what switchboard pushes ----------------------------------------

  onPush(frame) {
    if (frame.type !== 'message') return;
    switch (frame.class) {
      case 'StructuredMessage':
        this.onEvent(frame.body || {});
        break;
      case 'SessionExpiredEvent':
        this.end('expired');
        break;
      case 'SessionClearedEvent':
        this.forgetConversation();
        this.refreshGate();
        break;
      case 'LogoutEvent':
        this.conn.stop();
        this.auth.forget();
        // A tab that logged out has started the next session already.
        if (this.store.get('token') === this.sessionToken) this.newToken();
        else this.forgetConversation();
        this.signedOut('You are signed out.');
        break;
      case 'ConnectionClosedEvent':
        if (frame.body && frame.body.reason === 'signedIn' && this.auth.signedIn) {
          // Signed in in another tab: continue as that sign-in.
          this.conn.stop();
          this.forgetConversation();
          this.conn.start();
        } else {
          this.end('closed');
        }
        break;
      default:
    }
  }

  onEvent(msg) {
    const metadata = msg.metadata || {};
    const conversation = msg.conversationId || metadata.conversationId;
    const sequence = Number(msg.sequence || metadata.sequence) || 0;
    if (sequence && conversation) {
      if (conversation !== this.conversationId) this.switchConversation(conversation);
      const key = `${conversation}:${sequence}`;
      if (this.seen.has(key)) return;
      this.seen.add(key);
      this.lastSequence = Math.max(this.lastSequence, sequence);
    }
    const outbound = msg.direction === 'Outbound';
    const who = (msg.channel && msg.channel.from && msg.channel.from.nickname) || (outbound ? 'Agent' : 'You');
    if (msg.type === 'Event') {
      for (const event of msg.events || []) this.onEventItem(event, msg, who, outbound);
      return;
    }
    if (!outbound) {
      // Sent from another tab (or this one, seen again in a replay).
      this.touch();
      const answered = quickAnswerOf(msg.content);
      if (answered) spend(this.quickReplies.get(answered.originatingMessageId), answered.text);
      const mine = msg.clientMessageId && this.pending.get(msg.clientMessageId);
      if (mine) {
        this.delivered(mine, msg);
        return;
      }
    } else {
      this.stopTyping();
    }
    const rich = [...(outbound ? this.richContent(msg) : []), ...renderAttachments(msg.content)];
    // A message with nothing to draw still says something.
    const text = msg.text || (rich.length ? '' : contentText(msg.content));
    this.ui.addMessage({ direction: outbound ? 'out' : 'in', who, text, time: msg.channel && msg.channel.time, rich });
    if (outbound) {
      if (this.ui.isOpen) this.markRead();
      else if (!this.wasRead(conversation, sequence)) this.ui.setUnread((this.ui.unread || 0) + 1);
      this.emit('message', { from: who, text: text || contentText(msg.content), sequence, conversationId: conversation });
    }
  }

  // An agent's quick replies, cards and carousels; the visitor's choice is
  // sent as the SDK sends it and shows as the visitor's message.
  richContent(msg) {
    const { nodes, quick } = renderContent(msg.content, {
      reply: (r) => {
        if (this.answer(r.text, quickReplyAnswer(r, msg.id))) spend(quick, r.text);
      },
      postback: (text, payload) => this.answer(text, postbackAnswer(text, payload)),
    });
    if (quick && msg.id) this.quickReplies.set(msg.id, quick);
    return nodes;
  }

  onEventItem(event, msg, who, outbound) {
    if (event.eventType === 'Typing' && outbound) {
      if (this.conversations.showAgentTypingIndicator === false) return;
      clearTimeout(this.typingTimer);
      this.ui.setTyping(who);
      const duration = (event.typing && Number(event.typing.duration)) || 5000;
      this.typingTimer = setTimeout(() => this.ui.setTyping(null), duration);
      return;
    }
    if (event.eventType !== 'Presence' || !event.presence) return;
    const type = event.presence.type;
    if (!outbound) {
      if (type === 'SignIn') this.ui.addEvent('You signed in');
      return;
    }
    if (type === 'Join') {
      this.ui.addEvent(`${who} joined the conversation`);
      this.emit('agentJoined', { name: who });
    } else if (type === 'Leave') {
      this.stopTyping();
      this.ui.addEvent(`${who} left the conversation`);
      this.emit('agentLeft', { name: who });
    } else if (type === 'Disconnect') {
      this.stopTyping();
      this.ui.addEvent(`${who} ended the conversation`);
      if ((msg.metadata || {}).readOnly === 'true') {
        this.readOnly = true;
        this.refreshGate();
      }
      this.emit('conversationEnded', { name: who });
    }
  }

  stopTyping() {
    clearTimeout(this.typingTimer);
    this.ui.setTyping(null);
  }

  // ---- sending --------------------------------------------------------

  send(text) {
    text = text.trim();
    return !!text && this.answer(text, { type: 'Text', text });
  }

  // Shows `text` at once as the visitor's message; `message` (the onMessage
  // body) goes out now or after the reconnect.
  answer(text, message) {
    if (this.ended || this.readOnly || !this.canConnect()) return false;
    const id = uuid();
    const li = this.ui.addMessage({ direction: 'in', text, pending: true });
    this.pending.set(id, { id, text, message, li });
    this.touch();
    this.conn.start();
    this.flush();
    return true;
  }

  // Attaches `file`: shown at once with a progress bar, uploaded and sent
  // in its turn among the waiting messages.
  attach(file) {
    const rules = uploadRules(this.config);
    if (!rules || this.ended || this.readOnly || !this.canConnect()) return false;
    const id = uuid();
    const li = this.ui.addMessage({ direction: 'in', text: `\u{1f4ce} ${file.name || 'file'}`, pending: true });
    if (rules.maxKB && file.size > rules.maxKB * 1024) {
      this.ui.setMessageState(li, `Not sent: larger than ${rules.maxKB} KB`, true);
      return true;
    }
    const bar = h('progress', { max: '1', value: '0', 'aria-label': 'Uploading' });
    li.insertBefore(bar, li.meta);
    this.pending.set(id, { id, text: file.name, file, bar, li, message: null });
    this.touch();
    this.conn.start();
    this.flush();
    return true;
  }

  // Uploads a waiting file; answers whether its message can be sent.
  async uploadFile(item) {
    try {
      const attachmentId = await upload(this.conn, this.token, item.file, (p) => {
        item.bar.value = p;
      });
      item.message = attachmentMessage(attachmentId);
      item.bar.remove();
      return true;
    } catch (e) {
      // Uploaded again, under a new id, once the session is back.
      if (e.message === 'timeout' || e.message === 'disconnected') {
        if (e.message === 'timeout') this.conn.drop();
        return false;
      }
      this.pending.delete(item.id);
      item.bar.remove();
      this.ui.setMessageState(item.li, `Not sent: ${e.message}`, true);
      return null;
    }
  }

  // Sends the waiting messages one at a time, in order.
  async flush() {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.configured) {
        const item = this.pending.values().next().value;
        if (!item || !(await this.post(item))) break;
      }
    } finally {
      this.flushing = false;
    }
  }

  // Answers whether to go on with the next message.
  async post(item) {
    if (item.file && !item.message) {
      const uploaded = await this.uploadFile(item);
      if (uploaded !== true) return uploaded === null;
    }
    let answer;
    try {
      answer = await this.conn.request({
        action: 'onMessage',
        token: this.token,
        message: { ...item.message, id: item.id },
      });
    } catch (e) {
      // Resent, with the same id, once the session is back.
      if (e.message === 'timeout') this.conn.drop();
      return false;
    }
    if (!this.pending.has(item.id)) return true;
    if (answer.code === 200) {
      this.delivered(item, answer.body || {});
      return true;
    }
    const body = answer.body;
    if (answer.code === 429 || answer.code === 5000) {
      const after = answer.code === 429 ? Number(body && body.retryAfter) || 1 : 1;
      setTimeout(() => this.flush(), after * 1000);
      return false;
    }
    if (answer.code === 4007) {
      this.configure();
      return false;
    }
    if (answer.code === 401 || (answer.code === 403 && /^Session authentication failed/i.test(String(body)))) {
      this.onRefused(answer);
      return false;
    }
    this.pending.delete(item.id);
    const reason = typeof body === 'string' ? body : `error ${answer.code}`;
    this.ui.setMessageState(item.li, `Not delivered: ${reason}`, true);
    if (answer.code === 403 && /read only/.test(reason)) {
      this.readOnly = true;
      this.refreshGate();
    }
    return true;
  }

  delivered(item, body) {
    this.pending.delete(item.id);
    // A file of this tab's: its preview or link, from the echo.
    if (item.file) for (const node of renderAttachments(body.content)) item.li.insertBefore(node, item.li.meta);
    const conversation = body.conversationId || (body.metadata && body.metadata.conversationId);
    const sequence = Number(body.sequence || (body.metadata && body.metadata.sequence)) || 0;
    if (conversation && sequence) {
      if (conversation !== this.conversationId) this.switchConversation(conversation);
      this.seen.add(`${conversation}:${sequence}`);
      this.lastSequence = Math.max(this.lastSequence, sequence);
    }
    this.ui.setMessageState(item.li, formatTime(body.channel && body.channel.time));
  }

  typing() {
    if (!this.configured || !this.conversationId || this.readOnly) return;
    if (this.conversations.showUserTypingIndicator === false) return;
    const now = Date.now();
    // Typing counts against the session's message rate.
    if (now - this.lastTyping < TYPING_EVERY_MS) return;
    this.lastTyping = now;
    this.touch();
    this.conn
      .request({
        action: 'onMessage',
        token: this.token,
        message: { type: 'Event', events: [{ eventType: 'Typing', typing: { type: 'On' } }] },
      })
      .catch(() => {});
  }

  // ---- signing in and out ---------------------------------------------

  async signIn() {
    if (this.signingIn || !this.authRequired) return;
    // Opened right in the click, or the browser blocks it.
    const popup = this.auth.provider ? null : window.open('', 'switchboard-signin', 'popup=yes,width=480,height=640');
    this.signingIn = true;
    this.ui.setGateBusy(true);
    try {
      if (this.auth.provider) await this.auth.signInWithProvider();
      else await this.auth.signInWithPopup(popup);
      this.ended = null;
      this.hideNotice('ended');
      this.refreshGate();
      this.emit('signedIn');
      if (this.conn.isOpen) this.configure();
      else this.conn.start();
      if (this.ui.isOpen) this.ui.focusPanel();
    } catch (e) {
      this.refreshGate(e.code === 'cancelled' ? 'Sign-in was cancelled.' : `Sign-in failed: ${e.message}`);
    } finally {
      this.signingIn = false;
      this.ui.setGateBusy(false);
    }
  }

  async logout() {
    if (!this.auth.signedIn) return;
    this.conn.stop();
    this.configured = false;
    await this.auth.logout();
    this.newToken();
    this.signedOut('You are signed out.');
  }

  signedOut(message) {
    this.configured = false;
    this.stopTyping();
    this.refreshGate(message);
    if (this.ui.isOpen) this.ui.focusPanel();
    this.emit('signedOut');
  }

  authChangedElsewhere() {
    if (!this.authRequired) return;
    this.auth.schedule();
    this.refreshGate();
    if (this.auth.signedIn && !this.configured && !this.ended) this.conn.start();
  }

  tokenChangedElsewhere() {
    // Another tab started a new session (after a logout or an expiry).
    this.forgetConversation();
    if (this.conn.isOpen) this.configure();
  }
}

function warn(message) {
  console.warn(`switchboard: ${message}`);
}
