// The small pieces the settings pages are built of: words, buttons,
// badges, fields and tables.

import { h, field, uniqueId } from '../dom.js';

export const uid = (prefix) => uniqueId(`st-${prefix}`);

export const quoted = (text) => `“${text}”`;
export const byName = (a, b) =>
  (a.name ?? a.displayName ?? '').localeCompare(b.name ?? b.displayName ?? '', undefined, { sensitivity: 'base' });

export function listText(items) {
  try {
    return new Intl.ListFormat('en', { style: 'long', type: 'conjunction' }).format(items);
  } catch {
    return items.join(', ');
  }
}

export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

export function button(text, attrs = {}) {
  return h('button', { type: 'button', class: 'st-button', ...attrs }, text);
}

export function badge(text, kind = 'neutral') {
  return h('span', { class: `st-badge st-${kind}` }, text);
}

export function signInBadge(content) {
  return content?.authenticationSettings?.enabled ? badge('Sign-in required', 'accent') : badge('Guests', 'neutral');
}

export function mono(text) {
  return h('span', { class: 'st-mono' }, text);
}

export function selectControl(options, value, attrs = {}) {
  const el = h(
    'select',
    attrs,
    options.map((o) => h('option', { value: o.value, disabled: o.disabled || null }, o.label)),
  );
  if (value != null) el.value = value;
  return el;
}

// A hint tied to its control with aria-describedby rather than put inside
// the label, so the control's accessible name stays exactly the label.
function hintFor(control, hint) {
  const note = h('small', { id: uid('hint'), class: 'st-hint' }, hint);
  control.setAttribute('aria-describedby', note.id);
  return note;
}

// dom.js's field(), with the settings pages' hint beneath it.
export function hinted(label, control, hint) {
  if (!hint) return field(label, control);
  const note = hintFor(control, hint);
  return h('div', { class: 'st-field' }, field(label, control), note);
}

// A checkbox (or radio) before its text, as forms usually show them.
export function checkField(label, control, hint) {
  const note = hint ? hintFor(control, hint) : null;
  return h('div', { class: 'st-check' }, h('label', null, control, h('span', null, label)), note);
}

// A group of fields under a legend; `intro`, when given, says what the
// group is for before its fields.
export function group(legend, intro, ...children) {
  return h(
    'fieldset',
    { class: 'st-group' },
    h('legend', null, legend),
    intro ? h('p', { class: 'st-hint' }, intro) : null,
    children,
  );
}

// A table with column headers; rows are built by the caller (the first
// cell of each a row header, see `row`).
export function dataTable(label, headers, rows) {
  return h(
    'div',
    { class: 'st-table-wrap' },
    h(
      'table',
      { class: 'st-table', 'aria-label': label },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          headers.map((t) =>
            t === 'Actions'
              ? h('th', { scope: 'col', class: 'st-actions-col' }, h('span', { class: 'st-vh' }, 'Actions'))
              : h('th', { scope: 'col' }, t),
          ),
        ),
      ),
      h('tbody', null, rows),
    ),
  );
}

export function row(name, ...cells) {
  return h('tr', null, h('th', { scope: 'row' }, name), cells.map((c) => h('td', null, c)));
}

export function actions(...buttons) {
  return h('div', { class: 'st-row-actions' }, buttons);
}

// Copies text to the clipboard; where the browser refuses (plain http on a
// remote host, say), selects it so the member can copy it themselves.
export async function copyText(text, control, notify, what) {
  try {
    await navigator.clipboard.writeText(text);
    notify(`${what} copied.`);
  } catch {
    control.focus();
    control.select?.();
    notify(`The ${what.toLowerCase()} is selected: press Ctrl+C (⌘C on a Mac) to copy it.`);
  }
}
