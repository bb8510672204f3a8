// Structured content in Genesys Web Messaging's shapes: what an agent's
// message may carry (quick replies, cards, carousels of cards) and what the
// visitor answers with (ButtonResponse items).
//
// Everything here comes from the network. Text only ever goes in as text
// nodes; a URL is used (as an image source or a link) only when it parses
// as http or https, so no javascript: link or data: image gets through;
// links open in a new tab without a handle back to this page.

import { h } from './ui.js';

// `value` as an absolute http(s) URL, or null.
export function httpUrl(value) {
  if (typeof value !== 'string') return null;
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
  } catch {
    return null;
  }
}

// A string field, or '' for anything else (content is only as well-formed
// as whoever sent it).
export const str = (value) => (typeof value === 'string' ? value : '');

// The answers the widget sends, exactly as Genesys's Messenger Transport
// SDK does: a quick reply is a Text message with empty text, naming the
// message it answers; a card button is a Structured message whose text is
// the button's.
export function quickReplyAnswer(reply, originatingMessageId) {
  const buttonResponse = { text: str(reply.text), payload: str(reply.payload) || str(reply.text), type: 'QuickReply' };
  if (originatingMessageId) buttonResponse.originatingMessageId = originatingMessageId;
  return { type: 'Text', text: '', content: [{ contentType: 'ButtonResponse', buttonResponse }] };
}

export function postbackAnswer(text, payload) {
  return {
    type: 'Structured',
    text,
    content: [{ contentType: 'ButtonResponse', buttonResponse: { text, payload: payload || text, type: 'Button' } }],
  };
}

// The nodes that show `content` under a message's text: cards and
// carousels in order, then the quick replies as one group of buttons
// (`quick` is that group, for disabling once one is chosen). Handlers:
// reply(quickReply, button) and postback(text, payload).
export function renderContent(content, { reply, postback }) {
  const nodes = [];
  const replies = [];
  for (const item of Array.isArray(content) ? content : []) {
    if (!item) continue;
    if (item.contentType === 'QuickReply' && item.quickReply && str(item.quickReply.text)) replies.push(item.quickReply);
    else if (item.contentType === 'Card' && item.card) nodes.push(card(item.card, postback));
    else if (item.contentType === 'Carousel' && item.carousel) nodes.push(carousel(item.carousel.cards, postback));
  }
  let quick = null;
  if (replies.length) {
    quick = h('div', { class: 'quick', role: 'group', 'aria-label': 'Quick replies' });
    for (const r of replies) {
      const button = h('button', { type: 'button', onclick: () => reply(r, button) }, r.text);
      quick.append(button);
    }
    nodes.push(quick);
  }
  return { nodes: nodes.filter(Boolean), quick };
}

// After a choice: the group's buttons are spent, the chosen one marked.
export function spend(quick, chosenText) {
  if (!quick) return;
  for (const button of quick.querySelectorAll('button')) {
    button.disabled = true;
    if (button.textContent === chosenText) button.classList.add('chosen');
  }
}

function newTab(href, text, className) {
  return h(
    'a',
    { href, target: '_blank', rel: 'noopener', class: className },
    text,
    h('span', { class: 'sr' }, ' (opens in a new tab)'),
  );
}

function card(c, postback) {
  const title = str(c.title);
  const image = httpUrl(c.image);
  // Only a link may be a card's default action (as in the SDK).
  const action = c.defaultAction;
  const link = action && str(action.type).toLowerCase() === 'link' ? httpUrl(action.url) : null;
  const buttons = (Array.isArray(c.actions) ? c.actions : []).map((a) => cardAction(a, postback)).filter(Boolean);
  return h(
    'div',
    { class: 'card', role: 'group', 'aria-label': title || 'Card' },
    // The title says what the picture is about: nothing more to announce.
    image ? h('img', { src: image, alt: '', loading: 'lazy', referrerpolicy: 'no-referrer' }) : null,
    h('div', { class: 'title' }, link ? newTab(link, title) : title),
    str(c.description) ? h('p', {}, c.description) : null,
    buttons.length ? h('div', { class: 'actions' }, ...buttons) : null,
  );
}

function cardAction(a, postback) {
  const text = a && str(a.text);
  if (!text) return null;
  const type = str(a.type).toLowerCase();
  if (type === 'link') {
    const url = httpUrl(a.url);
    return url ? newTab(url, text, 'button') : null;
  }
  // "Button" is what the SDK maps Postback to; both answer the same way.
  if (type === 'postback' || type === 'button') {
    return h('button', { type: 'button', onclick: () => postback(text, str(a.payload)) }, text);
  }
  return null;
}

function carousel(cards, postback) {
  const items = (Array.isArray(cards) ? cards : []).filter(Boolean).map((c) => h('li', {}, card(c, postback)));
  if (!items.length) return null;
  // Focusable, so the keyboard can scroll it sideways.
  return h('ul', { class: 'carousel', tabindex: '0', 'aria-label': `${items.length} cards, scroll sideways` }, ...items);
}

// Words for content: what a notification, or a bubble with nothing this
// widget can draw, says.
export function contentText(content) {
  const parts = [];
  for (const c of Array.isArray(content) ? content : []) {
    const reply = c && (c.quickReply || c.buttonResponse);
    if (reply && str(reply.text)) parts.push(reply.text);
    const cards = c && (c.card ? [c.card] : c.carousel && Array.isArray(c.carousel.cards) ? c.carousel.cards : []);
    for (const one of cards || []) if (one && str(one.title)) parts.push(one.title);
  }
  return parts.join(' \u00b7 ') || '(a message this chat cannot show)';
}

// The quick reply a visitor's message answers, if it is one:
// {text, originatingMessageId}.
export function quickAnswerOf(content) {
  for (const c of Array.isArray(content) ? content : []) {
    const b = c && c.contentType === 'ButtonResponse' && c.buttonResponse;
    if (b && b.type === 'QuickReply') return { text: str(b.text), originatingMessageId: str(b.originatingMessageId) };
  }
  return null;
}
