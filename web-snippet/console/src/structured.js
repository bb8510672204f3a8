// Structured content in the console, in Genesys Web Messaging's shapes
// (docs/agent-protocol.md): what a message event's `content` shows (the
// visitor's ButtonResponse answers, an agent's quick replies and cards),
// and the small composer an agent sends quick replies and a card with.
//
// Content comes from visitors and other agents: it only ever goes in as
// text. Images are not loaded (the console's CSP allows its own origin
// only, and an agent needs the card's words, not its picture): the image
// URL is shown as text instead.

import { h, field } from './dom.js';

const str = (value) => (typeof value === 'string' ? value : '');

// `value` as an absolute http(s) URL, or null: the widget shows nothing
// else, so the composer sends nothing else.
function httpUrl(value) {
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
  } catch {
    return null;
  }
}

// The visitor's answer in `content` (a quick reply or a card button), or
// null.
export function buttonResponseOf(content) {
  for (const c of Array.isArray(content) ? content : []) {
    if (c?.contentType === 'ButtonResponse' && c.buttonResponse) return c.buttonResponse;
  }
  return null;
}

// The nodes that show an agent's structured content under its text.
export function contentView(content) {
  const nodes = [];
  const replies = [];
  for (const c of Array.isArray(content) ? content : []) {
    if (c?.contentType === 'Attachment' && c.attachment) nodes.push(attachmentView(c.attachment));
    else if (c?.contentType === 'QuickReply' && str(c.quickReply?.text)) replies.push(c.quickReply.text);
    else if (c?.contentType === 'Card' && c.card) nodes.push(cardView(c.card));
    else if (c?.contentType === 'Carousel' && Array.isArray(c.carousel?.cards)) {
      nodes.push(h('div', { class: 'rich-carousel' }, c.carousel.cards.filter(Boolean).map(cardView)));
    }
  }
  if (replies.length) {
    nodes.push(h('ul', { class: 'rich-replies', 'aria-label': 'Quick replies' }, replies.map((t) => h('li', null, t))));
  }
  return nodes;
}

// A file in a message: an image as a preview (switchboard serves it from
// this origin, which the CSP allows), anything else as a chip; both link
// to the download. The URL is minted fresh for every frame.
function attachmentView(file) {
  const name = str(file.filename) || 'file';
  const url = httpUrl(file.url);
  const size = Number(file.fileSize) > 0 ? ` · ${formatSize(Number(file.fileSize))}` : '';
  if (!url) return h('span', { class: 'attachment file' }, `📎 ${name}${size}`);
  if (file.mediaType === 'Image') {
    return h('a', { class: 'attachment image', href: url, download: name, target: '_blank', rel: 'noopener noreferrer', title: name },
      h('img', { src: url, alt: name, loading: 'lazy' }));
  }
  return h('a', { class: 'attachment file', href: url, download: name, target: '_blank', rel: 'noopener noreferrer' }, `📎 ${name}${size}`);
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function cardView(card) {
  const actions = (Array.isArray(card.actions) ? card.actions : []).filter((a) => str(a?.text));
  return h(
    'div',
    { class: 'rich-card' },
    h('strong', null, str(card.title)),
    str(card.description) ? h('span', null, card.description) : null,
    str(card.image) ? h('span', { class: 'mono rich-image' }, `Image: ${card.image}`) : null,
    actions.length
      ? h(
          'ul',
          { class: 'rich-replies', 'aria-label': 'Buttons' },
          actions.map((a) => h('li', null, str(a.type).toLowerCase() === 'link' ? `${a.text} → ${str(a.url)}` : a.text)),
        )
      : null,
  );
}

// A transcript's words for a message event: its text, else the text of
// the visitor's answer (a quick-reply answer's own text is empty, as the
// Transport SDK sends it).
export function messageText(e) {
  if (str(e.text)) return e.text;
  const answer = buttonResponseOf(e.content);
  return answer ? str(answer.text) : '';
}

// The composer's extra part: a disclosure holding two small forms, quick
// replies (the options, one a line, and an optional message) and a card
// (title, description, image URL, buttons). `send(text, content)` queues
// the message (as the reply box does) and answers whether it was queued.
export function structuredComposer(name, send) {
  const problem = h('p', { class: 'problem', role: 'alert', hidden: true });
  const fail = (message, control) => {
    problem.textContent = message;
    problem.hidden = false;
    control.setAttribute('aria-invalid', 'true');
    control.focus();
  };
  const clear = (...controls) => {
    problem.hidden = true;
    problem.textContent = '';
    for (const c of controls) c.removeAttribute('aria-invalid');
  };
  const lines = (control) =>
    control.value
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);

  const question = h('input', { type: 'text', maxlength: 4000, autocomplete: 'off' });
  const options = h('textarea', { rows: 3, placeholder: 'Yes\nNo' });
  const quick = h(
    'form',
    {
      class: 'rich-form',
      // The checks below say what is wrong in the console's words.
      novalidate: true,
      'aria-label': `Quick replies for ${name}`,
      onsubmit: (event) => {
        event.preventDefault();
        clear(options);
        const texts = lines(options);
        if (!texts.length) return fail('Write at least one option, one a line.', options);
        const content = texts.map((text) => ({ contentType: 'QuickReply', quickReply: { text, payload: text } }));
        if (send(question.value.trim(), content)) {
          question.value = '';
          options.value = '';
        }
      },
    },
    field('Quick reply message', question, 'Optional: the question the options answer.'),
    field('Quick reply options', options, 'One option a line; the visitor taps one.'),
    h('button', { type: 'submit' }, 'Send quick replies'),
  );

  const title = h('input', { type: 'text', maxlength: 200, autocomplete: 'off' });
  const description = h('input', { type: 'text', maxlength: 1000, autocomplete: 'off' });
  const image = h('input', { type: 'url', autocomplete: 'off', placeholder: 'https://…' });
  const buttons = h('textarea', { rows: 3, placeholder: 'Book now\nDetails | https://shop.example.com/item' });
  const cardForm = h(
    'form',
    {
      class: 'rich-form',
      novalidate: true,
      'aria-label': `A card for ${name}`,
      onsubmit: (event) => {
        event.preventDefault();
        clear(title, image, buttons);
        if (!title.value.trim()) return fail('A card needs a title.', title);
        const imageUrl = image.value.trim();
        if (imageUrl && !httpUrl(imageUrl)) return fail('The image URL must start with https:// or http://.', image);
        const actions = [];
        for (const line of lines(buttons)) {
          const [text, url] = line.split('|').map((p) => p.trim());
          if (!text) return fail(`“${line}” has no label before the |.`, buttons);
          if (url === undefined) actions.push({ type: 'Postback', text, payload: text });
          else if (httpUrl(url)) actions.push({ type: 'Link', text, url: httpUrl(url) });
          else return fail(`The link of “${text}” must start with https:// or http://.`, buttons);
        }
        const card = { title: title.value.trim(), description: description.value.trim(), actions };
        if (imageUrl) card.image = httpUrl(imageUrl);
        if (send('', [{ contentType: 'Card', card }])) {
          for (const c of [title, description, image, buttons]) c.value = '';
        }
      },
    },
    field('Card title', title),
    field('Card description', description),
    field('Card image URL', image, 'Optional; https:// or http:// only.'),
    field('Card buttons', buttons, 'One a line: a label answers with itself; “Label | https://…” opens a link.'),
    h('button', { type: 'submit' }, 'Send card'),
  );

  return h(
    'details',
    { class: 'rich-composer' },
    h('summary', null, 'Quick replies and cards'),
    problem,
    h('div', { class: 'rich-forms' }, quick, cardForm),
  );
}
