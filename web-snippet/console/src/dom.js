// A small DOM builder. Text from the network only ever goes in as text
// nodes or attribute values, never as HTML.

// h('button', {class: 'primary', onclick: fn}, 'Save') builds an element.
// Attributes: `on*` add listeners, `class` sets the class name, `value` and
// `checked` set the properties, `false`/`null` leave an attribute out,
// `true` sets it empty. Children: nodes, strings, arrays, or null to skip.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v == null) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value' || k === 'checked') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

// Replaces an element's children.
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let ids = 0;

// An id no other element of the page has.
export function uniqueId(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

// A labelled form field whose accessible name is exactly `label`. The
// label wraps the control (clicking it focuses the control), except for a
// select, which is labelled by `for`: a wrapping label's text would take in
// every option's text. A hint sits outside the label, tied to the control
// with aria-describedby.
export function field(label, control, hint) {
  let labelled;
  if (control.tagName === 'SELECT') {
    control.id ||= uniqueId('field');
    labelled = h('div', { class: 'field' }, h('label', { class: 'label', for: control.id }, label), control);
  } else {
    labelled = h('label', { class: 'field' }, h('span', { class: 'label' }, label), control);
  }
  if (!hint) return labelled;
  const note = h('small', { id: uniqueId('hint'), class: 'hint' }, hint);
  control.setAttribute('aria-describedby', note.id);
  return h('div', null, labelled, note);
}

export function formatTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export function formatDateTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}
