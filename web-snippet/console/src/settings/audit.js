// Audit log: who changed which record, when, and what changed (secret
// fields are named without their values), and every staff sign-in; newest
// first, a page at a time, narrowed by a record id or an actor id. Read-only.

import { h, mount, field, formatDateTime } from '../dom.js';
import { errorText, frame } from './kit.js';
import { button, dataTable, mono, row } from './widgets.js';

const PAGE_SIZE = 25;

const ACTIONS = {
  create: 'Created',
  update: 'Changed',
  delete: 'Deleted',
  publish: 'Published',
  signIn: 'Signed in',
  erase: 'Erased',
};

const ACTORS = {
  operator: 'Operator (bootstrap token)',
  apiClient: 'API client',
  member: 'Member',
};

function actorText(actor) {
  const kind = ACTORS[actor.kind] || actor.kind;
  return actor.id ? h('span', null, `${kind} `, mono(actor.id)) : kind;
}

function value(v) {
  return v === undefined ? '—' : JSON.stringify(v);
}

// One change per line: "field: before → after"; a secret field shows
// only that it changed.
function changesText(changes) {
  if (!changes?.length) return '';
  return h(
    'ul',
    { class: 'st-changes' },
    changes.map((c) =>
      h(
        'li',
        null,
        h('code', null, c.field),
        c.before === undefined && c.after === undefined ? ': changed' : `: ${value(c.before)} → ${value(c.after)}`,
      ),
    ),
  );
}

export async function auditSection(ctx) {
  const { api } = ctx;
  const parts = frame(ctx, {
    title: 'Audit log',
    intro: h(
      'p',
      null,
      'Every change an admin made and every staff sign-in, newest first. Entries are kept as long as the organization keeps its conversations.',
    ),
  });
  const record = h('input', { type: 'text', class: 'st-mono', autocomplete: 'off', spellcheck: 'false', size: '38' });
  const actor = h('input', { type: 'text', class: 'st-mono', autocomplete: 'off', spellcheck: 'false', size: '38' });
  let page = 1;

  const show = async () => {
    parts.status.textContent = 'Loading…';
    parts.problem.textContent = '';
    const query = new URLSearchParams({ pageNumber: String(page), pageSize: String(PAGE_SIZE) });
    if (record.value.trim()) query.set('recordId', record.value.trim());
    if (actor.value.trim()) query.set('actorId', actor.value.trim());
    let listing;
    try {
      listing = await api.get(`/api/v2/audit?${query}`);
    } catch (e) {
      parts.status.textContent = '';
      parts.problem.textContent = `The audit log cannot be loaded: ${errorText(e)}`;
      mount(parts.list);
      return;
    }
    const pages = Math.max(1, listing.pageCount);
    parts.status.textContent = listing.total
      ? `${listing.total} ${listing.total === 1 ? 'entry' : 'entries'}; page ${page} of ${pages}.`
      : 'No entries.';
    const rows = listing.entities.map((e) =>
      row(
        formatDateTime(e.time),
        ACTIONS[e.action] || e.action,
        h('span', null, `${e.record.kind} `, mono(e.record.id)),
        actorText(e.actor),
        changesText(e.changes),
      ),
    );
    mount(
      parts.list,
      listing.total ? dataTable('Audit log', ['When', 'What', 'Record', 'Who', 'Changes'], rows) : null,
      h(
        'div',
        { class: 'st-row-actions' },
        button('Newer', { disabled: page <= 1, onclick: () => ((page -= 1), show()) }),
        button('Older', { disabled: page >= pages, onclick: () => ((page += 1), show()) }),
      ),
    );
  };

  mount(
    parts.editor,
    h(
      'form',
      {
        class: 'st-card',
        'aria-label': 'Filter the audit log',
        onsubmit: (event) => {
          event.preventDefault();
          page = 1;
          show();
        },
      },
      field('Record id', record),
      field('Actor id', actor),
      h('div', { class: 'st-row-actions' }, button('Filter', { type: 'submit', class: 'st-button st-primary' })),
    ),
  );
  await show();
}
