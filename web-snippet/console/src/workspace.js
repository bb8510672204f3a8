// The agent's workspace: presence, incoming offers, and the conversations
// the agent answers, side by side.
//
// Everything shown comes from the agent socket. The snapshot a socket
// opens with says what the agent holds, and `conversation` and `removed`
// frames what changes after; events are merged into each transcript by
// sequence, so a snapshot after a reconnect, a live event and a page of
// history can arrive in any order and each event shows once. A conversation that
// leaves the agent (ended, transferred) stays on screen, read-only, until
// the agent closes it.

import { h, mount, formatTime } from './dom.js';
import { AgentSocket } from './socket.js';
import { buttonResponseOf, contentView, messageText, structuredComposer } from './structured.js';

const WRAP_UPS = ['resolved', 'follow-up', 'no-response', 'duplicate', 'spam'];
const TYPING_SHOWN_MS = 4000;
const TYPING_SENT_EVERY_MS = 1000;
const HISTORY_PAGE = 100;

export class Workspace {
  constructor(container, { notify, onOffers, onSessionCheck }) {
    this.container = container;
    this.notify = notify;
    this.onOffers = onOffers;
    this.agent = null;
    this.directory = { queues: [], agents: [] };
    // Conversation id → Card.
    this.cards = new Map();
    // Conversation id → the offered conversation view.
    this.offers = new Map();
    // Events the server sent for conversations not on screen yet (while
    // offered): the socket sends each event once, so they are kept for the
    // card that shows them after an accept.
    this.early = new Map();
    this.socket = new AgentSocket({
      onFrame: (frame) => this.onFrame(frame),
      onState: (state) => this.onSocketState(state),
      onRefused: () => onSessionCheck?.(),
    });
    this.build();
  }

  start() {
    this.socket.connect();
  }

  stop() {
    this.socket.close();
  }

  build() {
    this.connection = h('span', { class: 'connection', role: 'status' }, 'Connecting…');
    this.statusButtons = {
      available: h('button', { type: 'button', 'aria-pressed': 'false', onclick: () => this.setStatus('available') }, 'Available'),
      away: h('button', { type: 'button', 'aria-pressed': 'false', onclick: () => this.setStatus('away') }, 'Away'),
    };
    this.statusText = h('span', { class: 'status-text' });
    this.offerList = h('ul', { class: 'offers', 'aria-label': 'Offers' });
    this.offerSection = h(
      'section',
      { class: 'offer-area', 'aria-labelledby': 'offers-heading', hidden: true },
      h('h2', { id: 'offers-heading' }, 'Incoming'),
      this.offerList,
    );
    this.grid = h('div', { class: 'conversations' });
    this.empty = h('p', { class: 'empty' });
    mount(
      this.container,
      h(
        'div',
        { class: 'agentbar' },
        h('div', { class: 'presence', role: 'group', 'aria-label': 'Your status' }, this.statusButtons.available, this.statusButtons.away),
        this.statusText,
        this.connection,
      ),
      this.offerSection,
      this.empty,
      this.grid,
    );
  }

  onSocketState(state) {
    this.connection.className = `connection ${state}`;
    this.connection.textContent = state === 'open' ? 'Connected' : state === 'connecting' ? 'Connecting…' : 'Reconnecting…';
    if (state === 'open') {
      this.loadDirectory();
      for (const card of this.cards.values()) card.flush();
    }
  }

  async loadDirectory() {
    try {
      this.directory = await this.socket.request({ type: 'directory' });
      for (const card of this.cards.values()) card.refreshTargets();
    } catch {
      // Transfer targets are a convenience; the next connect tries again.
    }
  }

  queueName(id) {
    return this.directory.queues.find((q) => q.id === id)?.name ?? 'a queue';
  }

  agentName(id) {
    return this.directory.agents.find((a) => a.id === id)?.name ?? 'another agent';
  }

  async setStatus(status) {
    cue.unlock();
    try {
      const result = await this.socket.request({ type: 'setPresence', status });
      this.showStatus(result.status, result.queues);
    } catch (e) {
      this.notify(`Could not change your status: ${e.message}`, 'error');
    }
  }

  showStatus(status, queues) {
    if (this.agent) {
      this.agent.status = status;
      this.agent.queues = queues;
    }
    for (const [name, button] of Object.entries(this.statusButtons)) {
      button.setAttribute('aria-pressed', String(name === status));
    }
    const n = queues?.length ?? 0;
    this.statusText.textContent =
      status === 'available'
        ? `Available on ${n} ${n === 1 ? 'queue' : 'queues'}`
        : status === 'away'
          ? 'Away: no offers'
          : 'Offline';
    if (status === 'available' && n === 0) {
      this.statusText.textContent = 'Available, but no queue lists you yet: an admin adds you to a queue.';
    }
    this.empty.textContent =
      status === 'available'
        ? 'No conversations open. Offers from your queues show up here.'
        : 'No conversations open. Go available to take offers from your queues.';
  }

  onFrame(frame) {
    switch (frame.type) {
      case 'snapshot':
        this.onSnapshot(frame);
        break;
      case 'offer':
        this.addOffer(frame.conversation);
        break;
      case 'offerRevoked':
        this.removeOffer(frame.conversationId);
        break;
      // After the first snapshot, what changed comes one conversation at
      // a time.
      case 'conversation':
        this.onConversation(frame.conversation);
        break;
      case 'removed':
        this.onRemoved(frame.conversationId);
        break;
      case 'event':
        this.addEvents(frame.conversationId, [frame]);
        break;
      case 'typing':
        this.cards.get(frame.conversationId)?.showTyping(frame.from);
        break;
      case 'presence':
        this.showStatus(frame.status, frame.queues);
        break;
      default:
        break;
    }
  }

  onSnapshot({ agent, conversations }) {
    this.agent = agent;
    this.showStatus(agent.status, agent.queues);
    const held = new Set();
    for (const c of conversations) {
      held.add(c.id);
      this.onConversation(c);
    }
    // A snapshot lists everything held: what it does not list is gone.
    for (const id of new Set([...this.early.keys(), ...this.offers.keys(), ...this.cards.keys()])) {
      if (!held.has(id)) this.onRemoved(id);
    }
  }

  // A conversation the agent holds, as a snapshot or a `conversation`
  // frame shows it: an offer, or a card brought up to date.
  onConversation(c) {
    if (c.state === 'offered') {
      this.addOffer(c);
      this.addEvents(c.id, c.events);
      return;
    }
    this.removeOffer(c.id);
    this.card(c).update(c, c.events);
  }

  // A conversation the agent no longer holds: its card stays to read.
  onRemoved(id) {
    this.early.delete(id);
    this.removeOffer(id);
    this.cards.get(id)?.release();
  }

  addEvents(id, events) {
    const card = this.cards.get(id);
    if (card) card.addEvents(events);
    else if (events.length) this.early.set(id, [...(this.early.get(id) ?? []), ...events]);
  }

  card(conversation) {
    let card = this.cards.get(conversation.id);
    if (!card) {
      card = new Card(this, conversation);
      this.cards.set(conversation.id, card);
      this.grid.append(card.el);
      this.empty.hidden = true;
      card.addEvents(this.early.get(conversation.id) ?? []);
      this.early.delete(conversation.id);
    }
    return card;
  }

  closeCard(id) {
    const card = this.cards.get(id);
    if (!card) return;
    card.el.remove();
    this.cards.delete(id);
    this.empty.hidden = this.cards.size > 0;
  }

  addOffer(conversation) {
    const fresh = !this.offers.has(conversation.id);
    this.offers.set(conversation.id, conversation);
    if (fresh) {
      this.offerList.append(this.offerItem(conversation));
      cue.play();
    }
    this.offersChanged();
  }

  removeOffer(id) {
    if (!this.offers.delete(id)) return;
    this.offerList.querySelector(`[data-conversation="${CSS.escape(id)}"]`)?.remove();
    this.offersChanged();
  }

  offersChanged() {
    this.offerSection.hidden = this.offers.size === 0;
    this.onOffers(this.offers.size);
  }

  offerItem(c) {
    const who = c.visitor.displayName;
    const countdown = h('span', { class: 'countdown' });
    // Ticks while the offer stands.
    const tick = () => {
      if (!this.offers.has(c.id)) return;
      const left = Math.max(0, Math.round((new Date(c.offerDeadline) - Date.now()) / 1000));
      countdown.textContent = Number.isFinite(left) ? `${left} s to accept` : '';
      setTimeout(tick, 1000);
    };
    tick();
    const accept = h('button', { type: 'button', class: 'primary', 'aria-label': `Accept ${who}` }, 'Accept');
    const decline = h('button', { type: 'button', 'aria-label': `Decline ${who}` }, 'Decline');
    const act = async (type) => {
      accept.disabled = decline.disabled = true;
      try {
        const result = await this.socket.request({ type, conversationId: c.id });
        this.removeOffer(c.id);
        if (type === 'accept') this.card(result.conversation).update(result.conversation, []);
      } catch (e) {
        this.notify(e.code === 'not_allowed' ? 'That offer is gone.' : `Could not ${type}: ${e.message}`, 'error');
        if (e.code === 'not_allowed') this.removeOffer(c.id);
      } finally {
        accept.disabled = decline.disabled = false;
      }
    };
    accept.addEventListener('click', () => act('accept'));
    decline.addEventListener('click', () => act('decline'));
    return h(
      'li',
      { class: 'offer', 'data-conversation': c.id },
      h('div', { class: 'who' }, visitorBadge(c.visitor), h('strong', null, who)),
      h('div', { class: 'meta' }, `${this.queueName(c.queueId)} · waiting since ${formatTime(c.waitingSince)} · `, countdown),
      h('div', { class: 'actions' }, accept, decline),
    );
  }
}

function visitorBadge(visitor) {
  return visitor.authenticated
    ? h('span', { class: 'badge verified', title: `Signed in at ${visitor.issuer}` }, 'Authenticated')
    : h('span', { class: 'badge guest' }, 'Guest');
}

// One conversation on screen.
class Card {
  constructor(workspace, conversation) {
    this.ws = workspace;
    this.id = conversation.id;
    this.conversation = conversation;
    // Sequence → the transcript item shown for it.
    this.shown = new Map();
    // Messages typed but not yet in the log: client id → {text, content,
    // li, status}.
    this.unsent = new Map();
    this.active = true;
    this.isEnded = false;
    this.typingTimer = null;
    this.lastTypingSent = 0;
    this.build();
  }

  get name() {
    return this.conversation.visitor.displayName;
  }

  build() {
    const v = this.conversation.visitor;
    const title = h('h3', { id: `t-${this.id}` }, this.name);
    this.state = h('span', { class: 'state' });
    const identity = v.authenticated
      ? h(
          'dl',
          { class: 'identity', 'aria-label': 'Verified identity' },
          ...fact('Name', v.name),
          ...fact('Email (verified)', v.email),
          // Whatever the visitor typed at an IdP that did not check it:
          // shown as such, never as who they are.
          ...fact('Email (not verified by the IdP)', v.unverifiedEmail),
          ...fact('Issuer', v.issuer),
          ...fact('Subject', v.subject),
        )
      : h('p', { class: 'identity' }, 'Not signed in: the visitor’s identity is not verified.');
    this.more = h('button', { type: 'button', class: 'link more', hidden: true, onclick: () => this.loadEarlier() }, 'Load earlier messages');
    this.log = h('ol', { class: 'transcript', role: 'log', 'aria-label': `Conversation with ${this.name}` });
    this.typing = h('p', { class: 'typing', role: 'status' });
    this.input = h('textarea', { rows: 2, maxlength: 4000, 'aria-label': `Reply to ${this.name}`, placeholder: 'Type a reply…' });
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.sendReply();
      }
    });
    this.input.addEventListener('input', () => this.sendTyping());
    this.sendButton = h('button', { type: 'submit', class: 'primary' }, 'Send');
    // Sending a file: picked, or dropped on the conversation.
    this.fileInput = h('input', {
      type: 'file',
      class: 'visually-hidden',
      'aria-hidden': 'true',
      tabindex: '-1',
      onchange: () => {
        for (const file of this.fileInput.files) this.attach(file);
        this.fileInput.value = '';
      },
    });
    this.attachButton = h('button', { type: 'button', class: 'attach', title: 'Attach a file', 'aria-label': `Attach a file for ${this.name}`, onclick: () => this.fileInput.click() });
    // A constant paperclip, never data from the network.
    this.attachButton.innerHTML =
      '<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" focusable="false"><path fill="currentColor" d="M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5H9v9a3 3 0 0 0 6 0V5a4.5 4.5 0 0 0-9 0v11.5a6 6 0 0 0 12 0v-10z"/></svg>';
    this.composer = h(
      'form',
      {
        class: 'composer',
        onsubmit: (e) => {
          e.preventDefault();
          this.sendReply();
        },
      },
      this.fileInput,
      this.attachButton,
      this.input,
      this.sendButton,
    );
    this.composer.addEventListener('dragover', (e) => e.preventDefault());
    this.composer.addEventListener('drop', (e) => {
      e.preventDefault();
      for (const file of e.dataTransfer?.files || []) this.attach(file);
    });
    this.rich = structuredComposer(this.name, (text, content) => this.queue(text, content));

    this.target = h('select', { 'aria-label': `Transfer ${this.name} to` });
    this.refreshTargets();
    const transfer = h(
      'form',
      { class: 'inline', onsubmit: (e) => this.transfer(e) },
      this.target,
      h('button', { type: 'submit' }, 'Transfer'),
    );
    const wrapUps = h('datalist', { id: `w-${this.id}` }, WRAP_UPS.map((w) => h('option', { value: w })));
    this.wrapUp = h('input', { list: `w-${this.id}`, maxlength: 128, 'aria-label': 'Wrap-up code', placeholder: 'Wrap-up code', value: 'resolved' });
    const end = h(
      'form',
      { class: 'inline', onsubmit: (e) => this.end(e) },
      this.wrapUp,
      wrapUps,
      h('button', { type: 'submit', class: 'danger' }, 'End'),
    );
    this.actions = h('div', { class: 'card-actions' }, transfer, end);
    this.closeButton = h('button', { type: 'button', hidden: true, onclick: () => this.ws.closeCard(this.id) }, 'Close');

    this.el = h(
      'article',
      { class: 'card', 'aria-labelledby': title.id, 'data-conversation': this.id },
      h('header', null, h('div', { class: 'who' }, h('div', { class: 'name' }, title, visitorBadge(v)), this.state), this.closeButton),
      identity,
      this.more,
      this.log,
      this.typing,
      this.composer,
      this.rich,
      this.actions,
    );
  }

  refreshTargets() {
    const { queues, agents } = this.ws.directory;
    const keep = this.target.value;
    mount(
      this.target,
      h('option', { value: '' }, 'Transfer to…'),
      queues.length ? h('optgroup', { label: 'Queues' }, queues.map((q) => h('option', { value: `queue:${q.id}` }, q.name))) : null,
      agents.length
        ? h('optgroup', { label: 'Agents' }, agents.map((a) => h('option', { value: `agent:${a.id}` }, `${a.name} (${a.status})`)))
        : null,
    );
    this.target.value = keep;
  }

  // A conversation view and events from a snapshot or an accept.
  update(conversation, events) {
    this.conversation = conversation;
    this.active = true;
    this.setState(conversation.state === 'connected' ? `Connected since ${formatTime(conversation.connectedSince)}` : conversation.state);
    this.addEvents(events);
  }

  // The conversation is no longer the agent's (ended, transferred, or
  // taken back after a lost connection): keep it to read.
  release() {
    if (!this.active) return;
    this.active = false;
    if (this.isEnded) return;
    this.setState('No longer yours');
    this.catchUp();
  }

  ended(wrapUp) {
    if (this.isEnded) return;
    this.isEnded = true;
    this.setState(`Ended${wrapUp ? ` · ${wrapUp}` : ''}`);
    this.catchUp();
  }

  // The socket stops sending a conversation's events once it is no longer
  // the agent's; the last ones (the end itself) come from its history,
  // which an agent may read for every conversation it held.
  async catchUp() {
    const last = Math.max(0, ...this.shown.keys());
    try {
      const page = await this.ws.socket.request({ type: 'history', conversationId: this.id, afterSequence: last, limit: HISTORY_PAGE });
      this.addEvents(page.events);
    } catch {
      // Only the closing notes are missing; the conversation is over.
    }
  }

  setState(text) {
    this.state.textContent = text;
    const open = this.active && !this.isEnded;
    this.composer.hidden = !open;
    this.rich.hidden = !open;
    this.actions.hidden = !open;
    this.closeButton.hidden = open;
    this.el.classList.toggle('closed', !open);
  }

  addEvents(events) {
    for (const e of events) {
      if (this.shown.has(e.sequence)) continue;
      const li = this.render(e);
      if (!li) continue;
      li.dataset.seq = String(e.sequence);
      this.shown.set(e.sequence, li);
      const after = [...this.log.children].find((x) => x.dataset.seq && Number(x.dataset.seq) > e.sequence);
      this.log.insertBefore(li, after ?? this.log.querySelector('.pending'));
      if (e.kind === 'message' && e.from.role === 'visitor') this.showTyping(null);
      if (e.clientMessageId && this.unsent.has(e.clientMessageId)) {
        this.unsent.get(e.clientMessageId).li.remove();
        this.unsent.delete(e.clientMessageId);
      }
      if (e.kind === 'ended') this.ended(e.wrapUp);
    }
    const first = Math.min(...this.shown.keys());
    this.more.hidden = !(Number.isFinite(first) && first > 1);
    this.log.scrollTop = this.log.scrollHeight;
  }

  render(e) {
    const who = e.from?.name || (e.from?.role === 'visitor' ? 'Visitor' : 'Agent');
    const mine = e.from?.role === 'agent' && e.from.id === this.ws.agent?.id;
    const time = h('time', { datetime: e.time }, formatTime(e.time));
    switch (e.kind) {
      case 'message': {
        // A visitor's quick reply or card button reads as what they chose.
        const chose = e.from.role === 'visitor' && buttonResponseOf(e.content);
        const rich = chose ? [] : contentView(e.content);
        const text = messageText(e) || (e.content?.length && !rich.length ? '[structured message]' : '');
        return h(
          'li',
          { class: `msg ${e.from.role}${mine ? ' mine' : ''}${rich.length ? ' rich' : ''}` },
          h('span', { class: 'from' }, mine ? 'You' : who, chose ? h('span', { class: 'badge chose' }, 'chose') : null),
          h('span', { class: 'text' }, text),
          rich,
          time,
        );
      }
      case 'presence': {
        const what = { Join: 'joined', Leave: 'left', Disconnect: 'ended the conversation', Clear: 'cleared the conversation', SignIn: 'signed in' }[e.presence];
        return what ? h('li', { class: 'note' }, `${mine ? 'You' : who} ${what}`, time) : null;
      }
      case 'transfer':
        return h(
          'li',
          { class: 'note' },
          `${mine ? 'You' : who} transferred the conversation to ${e.queueId ? this.ws.queueName(e.queueId) : this.ws.agentName(e.agentId)}`,
          time,
        );
      case 'ended':
        return h('li', { class: 'note' }, `Conversation ended${e.wrapUp ? ` (${e.wrapUp})` : ''}`, time);
      default:
        return null;
    }
  }

  showTyping(from) {
    clearTimeout(this.typingTimer);
    this.typing.textContent = from ? `${from.name || this.name} is typing…` : '';
    if (from) this.typingTimer = setTimeout(() => (this.typing.textContent = ''), TYPING_SHOWN_MS);
  }

  sendTyping() {
    const now = Date.now();
    if (now - this.lastTypingSent < TYPING_SENT_EVERY_MS || !this.input.value) return;
    this.lastTypingSent = now;
    this.ws.socket.send({ type: 'typing', conversationId: this.id });
  }

  sendReply() {
    const text = this.input.value.trim();
    if (!text) return;
    this.input.value = '';
    this.queue(text, null);
  }

  // Uploads `file` to a URL the server hands out, then sends it as an
  // Attachment item; the chip shows the upload until the message is sent.
  async attach(file) {
    const chip = h('li', { class: 'msg agent mine pending' }, h('span', { class: 'from' }, 'You'), h('span', { class: 'text' }, `📎 ${file.name} (uploading…)`));
    this.log.append(chip);
    this.log.scrollTop = this.log.scrollHeight;
    try {
      const grant = await this.ws.socket.request({
        type: 'attachmentUrl',
        conversationId: this.id,
        fileName: file.name || 'file',
        fileType: file.type || 'application/octet-stream',
        fileSize: file.size,
      });
      const put = await fetch(grant.url, { method: 'PUT', headers: grant.headers || {}, body: file });
      if (!put.ok) {
        const body = await put.json().catch(() => ({}));
        throw new Error(body.message || `upload failed (${put.status})`);
      }
      chip.remove();
      this.queue('', [{ contentType: 'Attachment', attachment: { id: grant.attachmentId, filename: file.name } }]);
    } catch (e) {
      chip.classList.remove('pending');
      chip.classList.add('failed');
      chip.lastChild.textContent = `📎 ${file.name}: not sent: ${e.message}`;
    }
  }

  // Shows the message (text, structured content, or both) at once as
  // pending; it is sent now, or when the socket is back. The client id
  // makes a resend append nothing twice.
  queue(text, content) {
    if (!text && !content?.length) return false;
    const id = crypto.randomUUID();
    const rich = content ? contentView(content) : [];
    const status = h('small', null, 'sending…');
    const li = h(
      'li',
      { class: `msg agent mine pending${rich.length ? ' rich' : ''}` },
      h('span', { class: 'from' }, 'You'),
      h('span', { class: 'text' }, text),
      rich,
      status,
    );
    this.log.append(li);
    this.log.scrollTop = this.log.scrollHeight;
    this.unsent.set(id, { text, content, li, status });
    this.push(id);
    return true;
  }

  async push(id) {
    const message = this.unsent.get(id);
    if (!message || !this.ws.socket.isOpen) return;
    const { text, content } = message;
    try {
      await this.ws.socket.request({ type: 'send', conversationId: this.id, id, ...(text ? { text } : {}), ...(content ? { content } : {}) });
    } catch (e) {
      if (e.code === 'unavailable' || e.code === 'busy') return; // sent again on reconnect
      message.li.classList.add('failed');
      message.status.textContent = `not sent: ${e.message}`;
      this.unsent.delete(id);
    }
  }

  // After a reconnect: what was typed meanwhile.
  flush() {
    for (const id of this.unsent.keys()) this.push(id);
  }

  async loadEarlier() {
    const first = Math.min(...this.shown.keys());
    const after = Math.max(0, first - 1 - HISTORY_PAGE);
    this.more.disabled = true;
    try {
      const page = await this.ws.socket.request({ type: 'history', conversationId: this.id, afterSequence: after, limit: first - 1 - after });
      const top = this.log.scrollHeight - this.log.scrollTop;
      this.addEvents(page.events);
      this.log.scrollTop = this.log.scrollHeight - top;
    } catch (e) {
      this.ws.notify(`Could not load earlier messages: ${e.message}`, 'error');
    } finally {
      this.more.disabled = false;
    }
  }

  async transfer(event) {
    event.preventDefault();
    const [kind, target] = this.target.value.split(':');
    if (!target) {
      this.target.focus();
      return;
    }
    try {
      await this.ws.socket.request({ type: 'transfer', conversationId: this.id, [kind === 'queue' ? 'queueId' : 'agentId']: target });
      this.ws.notify(`${this.name} transferred.`);
    } catch (e) {
      this.ws.notify(`Could not transfer: ${e.message}`, 'error');
    }
  }

  async end(event) {
    event.preventDefault();
    const wrapUp = this.wrapUp.value.trim();
    try {
      const result = await this.ws.socket.request({ type: 'end', conversationId: this.id, ...(wrapUp ? { wrapUp } : {}) });
      this.ended(result.conversation.wrapUp);
    } catch (e) {
      this.ws.notify(`Could not end the conversation: ${e.message}`, 'error');
    }
  }
}

function fact(label, value) {
  return value ? [h('dt', null, label), h('dd', null, value)] : [];
}

// The offer cue: a short two-tone chime. Browsers allow sound only after
// the page had a click, so the status buttons unlock it.
const cue = {
  context: null,
  unlock() {
    if (this.context || !window.AudioContext) return;
    try {
      this.context = new AudioContext();
    } catch {
      this.context = null;
    }
  },
  play() {
    const ctx = this.context;
    if (!ctx) return;
    const now = ctx.currentTime;
    for (const [i, freq] of [880, 1320].entries()) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + i * 0.18);
      gain.gain.exponentialRampToValueAtTime(0.15, now + i * 0.18 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.18 + 0.16);
      osc.connect(gain).connect(ctx.destination);
      osc.start(now + i * 0.18);
      osc.stop(now + i * 0.18 + 0.17);
    }
  },
};
