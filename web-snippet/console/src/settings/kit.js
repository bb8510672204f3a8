// What the settings pages share beyond small widgets: the API paths,
// errors in words, the section frame, the list-and-form layout of a kind of
// record (recordList), forms in cards and deletes that explain a refusal.

import { ApiError } from '../api.js';
import { h, mount } from '../dom.js';
import { uid, quoted, listText, button, dataTable, actions } from './widgets.js';

// The admin API's records, each list under the plural of its records'
// noun: recordList(ctx, 'queue', …) reads PATHS.queues.
export const PATHS = {
  organization: '/api/v2/organizations/me',
  integrations: '/api/v2/integrations/oidc',
  configurations: '/api/v2/webdeployments/configurations',
  deployments: '/api/v2/webdeployments/deployments',
  queues: '/api/v2/routing/queues',
  members: '/api/v2/members',
};

// A failed client-side check, naming the control to fix.
export class Problem extends Error {
  constructor(message, control) {
    super(message);
    this.control = control;
  }
}

export function errorText(e) {
  if (e instanceof Problem) return e.message;
  if (e instanceof ApiError) {
    if (e.status === 403) return `Not allowed: ${e.message}.`;
    if (e.status === 503) return 'switchboard’s storage is unavailable right now; try again in a moment.';
    return e.message;
  }
  // fetch rejects with a TypeError when the server cannot be reached.
  if (e instanceof TypeError) return `switchboard cannot be reached (${e.message}).`;
  return e?.message || String(e);
}

export const isConflict = (e) => e instanceof ApiError && e.code === 'version_conflict';
export const conflictText = (noun) =>
  `Someone else changed this ${noun} after you opened it. The form now shows the current ${noun}: make your change again and save.`;

// PUTs a whole record and answers what the server saved. On a version
// conflict (someone else changed it first) it runs `stale`, which shows the
// record as it is now, and answers null so the caller stops there.
export async function putFresh(api, path, body, stale) {
  try {
    return await api.put(path, body);
  } catch (e) {
    if (!isConflict(e)) throw e;
    await stale();
    return null;
  }
}

export function required(control, what) {
  const value = control.value.trim();
  if (!value) throw new Problem(`${what} is required.`, control);
  return value;
}

// A list edited as text, one entry a line (allowed domains, app hosts,
// redirect schemes): the textarea, its current lines, and read(), which
// answers them or throws a Problem naming the first one `check` refuses
// (check answers the reason, or null for a good line).
export function lineList(values, { placeholder, check, max = 100, what }) {
  const control = h('textarea', {
    rows: '3',
    spellcheck: 'false',
    autocapitalize: 'off',
    autocomplete: 'off',
    placeholder,
    class: 'st-mono',
  });
  control.value = (values || []).join('\n');
  const lines = () =>
    control.value
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
  const read = () => {
    const list = lines();
    for (const line of list) {
      const problem = check?.(line);
      if (problem) throw new Problem(`${problem}.`, control);
    }
    if (list.length > max) throw new Problem(`At most ${max} ${what}.`, control);
    return list;
  };
  return { control, lines, read };
}

export function numberIn(control, what, min, max) {
  const n = Number(control.value);
  if (control.value.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new Problem(`${what} must be a whole number from ${min} to ${max}.`, control);
  }
  return n;
}

// The frame of a section: heading, intro, a "New ..." button for admins,
// an alert region for list-level failures (a refused delete, say), the
// editor slot and the list.
export function frame(ctx, { title, intro, newLabel, onNew }) {
  const newButton = newLabel && ctx.admin ? button(newLabel, { class: 'st-button st-primary', onclick: () => onNew() }) : null;
  const parts = {
    heading: h('h2', { tabindex: '-1' }, title),
    problem: h('div', { class: 'st-error', role: 'alert' }),
    editor: h('div', { class: 'st-editor' }),
    status: h('p', { class: 'st-status', role: 'status' }, 'Loading…'),
    list: h('div', { class: 'st-list' }),
    newButton,
  };
  mount(
    ctx.body,
    h('div', { class: 'st-head' }, parts.heading, newButton),
    intro ? h('div', { class: 'st-intro' }, intro) : null,
    parts.problem,
    parts.editor,
    parts.status,
    parts.list,
  );
  return parts;
}

export function showLoadFailure(parts, e, what) {
  parts.status.textContent = '';
  parts.problem.textContent = `${what} cannot be loaded: ${errorText(e)}`;
}

export function closeEditor(parts, focusTarget) {
  mount(parts.editor);
  const target = focusTarget?.isConnected ? focusTarget : parts.newButton || parts.heading;
  target?.focus();
}

// Shows `nodes` in the editor slot and moves the focus there: to `focus`,
// or the first control one can change.
export function openInEditor(parts, nodes, focus) {
  parts.problem.textContent = '';
  mount(parts.editor, nodes);
  parts.editor.scrollIntoView?.({ block: 'nearest' });
  (focus || parts.editor.querySelector('input:not([readonly]), select, textarea:not([readonly])'))?.focus();
}

// Redraws a list; the focus, if it was on one of its buttons, moves to
// the new button of the same name rather than being lost.
function redraw(list, node) {
  const active = document.activeElement;
  const name = list.contains(active) ? active.getAttribute('aria-label') : null;
  mount(list, node);
  if (name) [...list.querySelectorAll('[aria-label]')].find((el) => el.getAttribute('aria-label') === name)?.focus();
}

// Only the newest of overlapping loads may draw (a save's reload can race
// an earlier one).
function latestOnly() {
  let seq = 0;
  return () => {
    const mine = ++seq;
    return () => mine === seq;
  };
}

// The layout of a section that lists one kind of record: the frame, a
// table of the records (`read` answers them in order, given whether its
// load is still the newest; `rowOf` draws one), their Edit and Delete
// buttons for admins, and the create-or-save of the section's form, which
// shows the record again when someone else changed it first.
// `edit(record, message, opener)` opens that form, for a new record when
// `record` is null; `noun` names a record in messages ("No queue yet.").
export function recordList(ctx, noun, spec) {
  const path = PATHS[`${noun}s`];
  const { title, label = title, intro, headers, read, rowOf, edit } = spec;
  const { newLabel = `New ${noun}`, onNew = () => edit(null) } = spec;
  const { api } = ctx;
  const parts = frame(ctx, { title, intro, newLabel, onNew });
  const fresh = latestOnly();

  const load = async () => {
    const current = fresh();
    let records;
    try {
      records = await read(current);
    } catch (e) {
      if (current()) showLoadFailure(parts, e, `The ${noun}s`);
      return;
    }
    if (!current()) return;
    parts.status.textContent = records.length ? '' : `No ${noun} yet.`;
    redraw(
      parts.list,
      records.length ? dataTable(label, ctx.admin ? [...headers, 'Actions'] : headers, records.map(rowOf)) : null,
    );
  };

  // A row's buttons: `extra` ones, then Edit and Delete, named after the
  // record so that a screen reader tells one row's from another's.
  const rowActions = (record, name, { hint, extra = [], deletable = true, onEdit, onDeleted } = {}) => {
    const editButton = button('Edit', {
      'aria-label': `Edit ${name}`,
      onclick: () => (onEdit ? onEdit(editButton) : edit(record, null, editButton)),
    });
    const remove = deletable
      ? button('Delete', {
          class: 'st-button st-danger',
          'aria-label': `Delete ${name}`,
          onclick: () =>
            deleteRecord(ctx, parts, {
              noun,
              name,
              path: `${path}/${record.id}`,
              trigger: remove,
              hint,
              onDone: () => {
                onDeleted?.();
                // The form of a deleted record has nothing left to save.
                if (parts.editor.dataset.id === record.id) closeEditor(parts);
                load();
              },
            }),
        })
      : null;
    return actions(...extra, editButton, remove);
  };

  // After a version conflict: the list and the form again, with the
  // record as it is now.
  const reopen = async (id, opener) => {
    try {
      const [record] = await Promise.all([api.get(`${path}/${id}`), load()]);
      await edit(record, conflictText(noun), opener);
    } catch (e) {
      closeEditor(parts, opener);
      parts.problem.textContent = `The ${noun} changed and cannot be read again: ${errorText(e)}`;
    }
  };

  // Creates a record (no `record`) or saves `body` over it; answers what
  // the server stored, or null after a version conflict.
  const save = (record, body, opener) =>
    record ? putFresh(api, `${path}/${record.id}`, body, () => reopen(record.id, opener)) : api.post(path, body);

  // The form of `record` (null for a new one) in the editor slot; Cancel
  // closes it and gives the focus back to the button that opened it.
  const openForm = (record, opener, options) => {
    const card = formCard({
      title: record ? `Edit ${quoted(record.name ?? record.displayName)}` : `New ${noun}`,
      onCancel: () => closeEditor(parts, opener),
      ...options,
    });
    openInEditor(parts, card.form);
    return card;
  };

  // After a save: the form closes and the list shows what was saved.
  const done = (opener) => {
    closeEditor(parts, opener);
    return load();
  };

  return { parts, load, rowActions, save, openForm, done };
}

// A form in a card: labelled by its heading, submitted by Enter or its
// Save button, every control disabled while a request runs, failures shown
// in an alert right above the buttons.
export function formCard({ title, submitLabel = 'Save', onSubmit, onCancel, error, extra, children }) {
  const headingId = uid('form');
  const alert = h('div', { class: 'st-error', role: 'alert' }, error || null);
  const controls = h(
    'fieldset',
    // Only there to disable every control at once; not a group to announce.
    { class: 'st-bare', role: 'none' },
    children,
    alert,
    h(
      'div',
      { class: 'st-actions' },
      h('button', { type: 'submit', class: 'st-button st-primary' }, submitLabel),
      extra,
      onCancel ? button('Cancel', { onclick: onCancel }) : null,
    ),
  );
  const form = h(
    'form',
    { class: 'st-card st-form', novalidate: true, 'aria-labelledby': headingId },
    h('h3', { id: headingId }, title),
    controls,
  );
  let busy = false;
  const card = {
    form,
    dirty: false,
    // Runs `task` with the form disabled; a failure lands in the alert.
    async run(task) {
      if (busy) return false;
      busy = true;
      alert.textContent = '';
      for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
      // Disabling the controls drops the focus; it goes back afterwards.
      const active = document.activeElement;
      controls.disabled = true;
      form.setAttribute('aria-busy', 'true');
      let focus = null;
      let ok = false;
      try {
        await task();
        ok = true;
      } catch (e) {
        alert.textContent = errorText(e);
        if (e instanceof Problem && e.control) {
          e.control.setAttribute('aria-invalid', 'true');
          focus = e.control;
        }
      } finally {
        busy = false;
        controls.disabled = false;
        form.removeAttribute('aria-busy');
        if (focus) focus.focus();
        else if (active?.isConnected && (document.activeElement === document.body || !document.activeElement)) active.focus();
      }
      return ok;
    },
  };
  const touched = () => {
    card.dirty = true;
  };
  form.addEventListener('input', touched);
  form.addEventListener('change', touched);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    card.run(onSubmit);
  });
  return card;
}

// Deletes after asking; a record still in use is explained with the names
// of its users, looked up in their lists.
async function deleteRecord(ctx, parts, { noun, name, path, hint, trigger, onDone }) {
  if (!confirm(`Delete the ${noun} ${quoted(name)}? This cannot be undone.`)) return;
  parts.problem.textContent = '';
  if (trigger) trigger.disabled = true;
  try {
    await ctx.api.delete(path);
    ctx.notify(`Deleted the ${noun} ${quoted(name)}.`);
    // The row goes away; the focus should not go with it.
    (parts.newButton || parts.heading).focus();
    onDone();
  } catch (e) {
    if (e instanceof ApiError && e.code === 'in_use') {
      const users = await describeUsers(ctx.api, e.details?.usedBy || []);
      parts.problem.textContent = `The ${noun} ${quoted(name)} cannot be deleted: ${
        users.length ? `it is used by ${listText(users)}` : e.message
      }.${hint ? ` ${hint}` : ''}`;
    } else {
      parts.problem.textContent = `The ${noun} ${quoted(name)} cannot be deleted: ${errorText(e)}`;
    }
    parts.problem.scrollIntoView?.({ block: 'nearest' });
  } finally {
    if (trigger) trigger.disabled = false;
  }
}

const USER_LISTS = {
  deployment: PATHS.deployments,
  configuration: PATHS.configurations,
  queue: PATHS.queues,
  member: PATHS.members,
};

// `details.usedBy` ([{type, id}]) in words. Published configuration
// versions (ids "<configuration>/<n>") are grouped under their
// configuration.
async function describeUsers(api, usedBy) {
  const names = new Map();
  const kinds = new Set(usedBy.map((u) => (u.type === 'configuration version' ? 'configuration' : u.type)));
  await Promise.all(
    [...kinds]
      .filter((k) => USER_LISTS[k])
      .map(async (k) => {
        try {
          for (const r of await api.all(USER_LISTS[k])) names.set(`${k}:${r.id}`, r.name ?? r.displayName);
        } catch {
          // Ids will do.
        }
      }),
  );
  const nameOf = (kind, id) => {
    const n = names.get(`${kind}:${id}`);
    return n ? quoted(n) : id;
  };
  const configurations = new Map();
  const words = [];
  for (const u of usedBy) {
    if (u.type === 'configuration' || u.type === 'configuration version') {
      const [id, n] = String(u.id).split('/');
      if (!configurations.has(id)) configurations.set(id, { draft: false, versions: [] });
      const c = configurations.get(id);
      if (n) c.versions.push(n);
      else c.draft = true;
    } else if (u.type === 'organization') {
      words.push('the organization’s staff sign-in');
    } else {
      words.push(`the ${u.type} ${nameOf(u.type, u.id)}`);
    }
  }
  for (const [id, c] of configurations) {
    const versions = c.versions.sort((a, b) => a - b);
    const which = versions.length ? `${versions.length === 1 ? 'version' : 'versions'} ${listText(versions)}` : '';
    if (c.draft && which) words.push(`the configuration ${nameOf('configuration', id)} (its draft and published ${which})`);
    else if (c.draft) words.push(`the configuration ${nameOf('configuration', id)}`);
    else words.push(`published ${which} of the configuration ${nameOf('configuration', id)}`);
  }
  return words;
}
