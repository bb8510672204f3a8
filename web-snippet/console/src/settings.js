// The console's settings: one page per kind of admin record (organization,
// OIDC integrations, messenger configurations, queues, deployments,
// members), each a list with a form to create or edit a record, all through
// the admin API with the staff session.
//
// The server is the authority on roles and rules: this only hides what the
// signed-in role cannot do (a supervisor reads queues and members) and
// checks the obvious before sending. Updates send the whole record with the
// `version` read, so a stale form is refused (409 version_conflict) and
// reloaded rather than overwriting someone else's change. Text from the
// server only ever goes in as text.

import './settings.css';
import { ApiError } from './api.js';
import { h, mount, field, formatDateTime, uniqueId } from './dom.js';

export const SECTIONS = [
  { id: 'organization', title: 'Organization' },
  { id: 'integrations', title: 'OIDC integrations' },
  { id: 'configurations', title: 'Messenger configurations' },
  { id: 'queues', title: 'Queues' },
  { id: 'deployments', title: 'Deployments' },
  { id: 'members', title: 'Members and roles' },
];

// What a supervisor may read (and only read); the rest is for admins.
const SUPERVISOR_SECTIONS = ['queues', 'members'];

const PATHS = {
  organization: '/api/v2/organizations/me',
  integrations: '/api/v2/integrations/oidc',
  configurations: '/api/v2/webdeployments/configurations',
  deployments: '/api/v2/webdeployments/deployments',
  queues: '/api/v2/routing/queues',
  members: '/api/v2/members',
};

const ROLES = [
  { id: 'admin', label: 'Admin', hint: 'Changes every setting.' },
  { id: 'supervisor', label: 'Supervisor', hint: 'Reads queues and members.' },
  { id: 'agent', label: 'Agent', hint: 'Answers conversations.' },
];

const DEFAULT_SCOPES = 'openid profile email';
const DEFAULT_COLOR = '#1f5eff';

export function renderSettings(container, { api, session, section, notify }) {
  const admin = session.roles.includes('admin');
  const readable = SECTIONS.filter((s) => admin || SUPERVISOR_SECTIONS.includes(s.id));
  let current = SECTIONS.find((s) => s.id === section);
  // An address that names no section lands on the first one the role may
  // read (a supervisor's is Queues).
  if (!current) {
    current = readable[0] || SECTIONS[0];
    history.replaceState(null, '', `#/settings/${current.id}`);
  }

  const body = h('div', { class: 'st-body' });
  mount(
    container,
    h(
      'div',
      { class: 'st-settings' },
      h(
        'nav',
        { class: 'st-subnav', 'aria-label': 'Settings sections' },
        h(
          'ul',
          null,
          readable.map((s) =>
            h('li', null, h('a', { href: `#/settings/${s.id}`, 'aria-current': s === current ? 'page' : null }, s.title)),
          ),
        ),
      ),
      body,
    ),
  );

  if (!readable.includes(current)) {
    mount(
      body,
      h('h2', null, current.title),
      h(
        'p',
        { class: 'st-note' },
        `${current.title}: admins only. `,
        readable.length ? 'Your role reads queues and members.' : 'Your role has no settings to see.',
      ),
    );
    return;
  }

  const ctx = { api, session, notify, admin, body };
  const render = {
    organization: organizationSection,
    integrations: integrationsSection,
    configurations: configurationsSection,
    queues: queuesSection,
    deployments: deploymentsSection,
    members: membersSection,
  }[current.id];
  render(ctx);
}

// ---------------------------------------------------------------------------
// Building blocks

const uid = (prefix) => uniqueId(`st-${prefix}`);

// A failed client-side check, naming the control to fix.
class Problem extends Error {
  constructor(message, control) {
    super(message);
    this.control = control;
  }
}

function errorText(e) {
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

const isConflict = (e) => e instanceof ApiError && e.code === 'version_conflict';
const conflictText = (noun) =>
  `Someone else changed this ${noun} after you opened it. The form now shows the current ${noun}: make your change again and save.`;

// PUTs a whole record and answers what the server saved. On a version
// conflict (someone else changed it first) it runs `stale`, which shows the
// record as it is now, and answers null so the caller stops there.
async function putFresh(api, path, body, stale) {
  try {
    return await api.put(path, body);
  } catch (e) {
    if (!isConflict(e)) throw e;
    await stale();
    return null;
  }
}

const quoted = (text) => `“${text}”`;
const byName = (a, b) =>
  (a.name ?? a.displayName ?? '').localeCompare(b.name ?? b.displayName ?? '', undefined, { sensitivity: 'base' });

function listText(items) {
  try {
    return new Intl.ListFormat('en', { style: 'long', type: 'conjunction' }).format(items);
  } catch {
    return items.join(', ');
  }
}

function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

function button(text, attrs = {}) {
  return h('button', { type: 'button', class: 'st-button', ...attrs }, text);
}

function badge(text, kind = 'neutral') {
  return h('span', { class: `st-badge st-${kind}` }, text);
}

function selectControl(options, value, attrs = {}) {
  const el = h(
    'select',
    attrs,
    options.map((o) => h('option', { value: o.value, disabled: o.disabled || null }, o.label)),
  );
  if (value != null) el.value = value;
  return el;
}

// A field whose hint is tied to the control with aria-describedby rather
// than put inside its label, so the control's accessible name stays exactly
// the label.
function hinted(label, control, hint) {
  if (!hint) return field(label, control);
  const id = uid('hint');
  control.setAttribute('aria-describedby', id);
  return h('div', { class: 'st-field' }, field(label, control), h('small', { id, class: 'st-hint' }, hint));
}

// A checkbox (or radio) before its text, as forms usually show them.
function checkField(label, control, hint) {
  let note = null;
  if (hint) {
    note = h('small', { id: uid('hint'), class: 'st-hint' }, hint);
    control.setAttribute('aria-describedby', note.id);
  }
  return h('div', { class: 'st-check' }, h('label', null, control, h('span', null, label)), note);
}

function mono(text) {
  return h('span', { class: 'st-mono' }, text);
}

// A table with column headers; rows are built by the caller (the first
// cell of each a row header, see `row`).
function dataTable(label, headers, rows) {
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

function row(name, ...cells) {
  return h('tr', null, h('th', { scope: 'row' }, name), cells.map((c) => h('td', null, c)));
}

function actions(...buttons) {
  return h('div', { class: 'st-row-actions' }, buttons);
}

// Copies text to the clipboard; where the browser refuses (plain http on a
// remote host, say), selects it so the member can copy it themselves.
async function copyText(text, control, notify, what) {
  try {
    await navigator.clipboard.writeText(text);
    notify(`${what} copied.`);
  } catch {
    control.focus();
    control.select?.();
    notify(`The ${what.toLowerCase()} is selected: press Ctrl+C (⌘C on a Mac) to copy it.`);
  }
}

// The frame of a section: heading, intro, a "New ..." button for admins,
// an alert region for list-level failures (a refused delete, say), the
// editor slot and the list.
function frame(ctx, { title, intro, newLabel, onNew }) {
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

function showLoadFailure(parts, e, what) {
  parts.status.textContent = '';
  parts.problem.textContent = `${what} cannot be loaded: ${errorText(e)}`;
}

function closeEditor(parts, focusTarget) {
  mount(parts.editor);
  const target = focusTarget?.isConnected ? focusTarget : parts.newButton || parts.heading;
  target?.focus();
}

// Shows `nodes` in the editor slot and moves the focus there: to `focus`,
// or the first control one can change.
function openInEditor(parts, nodes, focus) {
  parts.problem.textContent = '';
  mount(parts.editor, nodes);
  parts.editor.scrollIntoView?.({ block: 'nearest' });
  (focus || parts.editor.querySelector('input:not([readonly]), select, textarea:not([readonly])'))?.focus();
}

// A form in a card: labelled by its heading, submitted by Enter or its
// Save button, every control disabled while a request runs, failures shown
// in an alert right above the buttons.
function formCard({ title, submitLabel = 'Save', onSubmit, onCancel, error, extra, children }) {
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
  form.addEventListener('input', () => {
    card.dirty = true;
  });
  form.addEventListener('change', () => {
    card.dirty = true;
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    card.run(onSubmit);
  });
  return card;
}

function required(control, what) {
  const value = control.value.trim();
  if (!value) throw new Problem(`${what} is required.`, control);
  return value;
}

function numberIn(control, what, min, max) {
  const n = Number(control.value);
  if (control.value.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new Problem(`${what} must be a whole number from ${min} to ${max}.`, control);
  }
  return n;
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

function humanDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds <= 0) return '';
  const parts = [];
  const d = Math.floor(seconds / 86400);
  const hrs = Math.floor((seconds % 86400) / 3600);
  const min = Math.floor((seconds % 3600) / 60);
  const sec = seconds % 60;
  if (d) parts.push(plural(d, 'day'));
  if (hrs) parts.push(plural(hrs, 'hour'));
  if (min) parts.push(plural(min, 'minute'));
  if (sec) parts.push(plural(sec, 'second'));
  return parts.join(' ');
}

// <input type=color> only takes #rrggbb; the API also allows #rgb and
// #rrggbbaa.
function colorForInput(color) {
  const m = /^#([0-9a-f]{3}|[0-9a-f]{6}|[0-9a-f]{8})$/i.exec(color || '');
  if (!m) return DEFAULT_COLOR;
  let hex = m[1];
  if (hex.length === 3) hex = [...hex].map((c) => c + c).join('');
  return `#${hex.slice(0, 6).toLowerCase()}`;
}

function swatch(color) {
  const el = h('span', { class: 'st-swatch', 'aria-hidden': 'true' });
  el.style.background = colorForInput(color);
  return el;
}

function signInBadge(content) {
  return content?.authenticationSettings?.enabled ? badge('Sign-in required', 'accent') : badge('Guests', 'neutral');
}

// Checks one allowed-domain line the way the server does: an origin only.
function originProblem(line) {
  let url;
  try {
    url = new URL(line);
  } catch {
    return `${quoted(line)} is not an origin like https://shop.example.com`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `${quoted(line)} must use http or https`;
  if (url.username || url.password) return `${quoted(line)} must name a host and nothing else`;
  if (url.pathname !== '/' || url.search || url.hash) {
    return `${quoted(line)} is an origin only: no path, query or fragment`;
  }
  return null;
}

// ---------------------------------------------------------------------------
// Organization: its name and the integration staff sign in with.

async function organizationSection(ctx) {
  const { api, notify } = ctx;
  const parts = frame(ctx, {
    title: 'Organization',
    intro: h(
      'p',
      null,
      'Staff sign in to this console at the identity provider of the organization’s staff sign-in integration. Without one, nobody can sign in to the console.',
    ),
  });
  mount(parts.list);

  const show = async (message) => {
    parts.status.textContent = 'Loading…';
    let org;
    let integrations;
    try {
      [org, integrations] = await Promise.all([api.get(PATHS.organization), api.all(PATHS.integrations)]);
    } catch (e) {
      showLoadFailure(parts, e, 'The organization');
      return;
    }
    parts.status.textContent = '';
    integrations.sort(byName);
    const name = h('input', { type: 'text', value: org.name, required: true, maxlength: '200', autocomplete: 'off' });
    const staff = selectControl(
      [
        { value: '', label: 'None: staff sign-in is off' },
        ...integrations.map((i) => ({ value: i.id, label: `${i.name} (${i.issuer})${i.active ? '' : ', inactive'}` })),
      ],
      org.staffIntegrationId || '',
    );
    const redirect = `${location.origin}/auth/callback`;
    const redirectBox = h('input', { type: 'text', readonly: true, value: redirect, class: 'st-mono', size: '40' });
    const signInLink = `${location.origin}/console?org=${org.id}`;
    const linkBox = h('input', { type: 'text', readonly: true, value: signInLink, class: 'st-mono', size: '40' });
    const changed = h('dd', null, formatDateTime(org.dateModified));

    const card = formCard({
      title: 'Organization settings',
      error: message,
      onSubmit: async () => {
        const body = {
          name: required(name, 'The name'),
          staffIntegrationId: staff.value || null,
          version: org.version,
        };
        const before = integrations.find((i) => i.id === org.staffIntegrationId);
        const after = integrations.find((i) => i.id === body.staffIntegrationId);
        if (before && !after) {
          const off =
            'Turn staff sign-in off? Nobody can sign in to the console until an admin chooses a staff integration again; ' +
            'sessions already open keep working until they expire.';
          if (!confirm(off)) return;
        } else if (after && before && after.issuer !== before.issuer) {
          // Members are (issuer, subject): a new IdP means new members.
          const move =
            `Staff will sign in at ${after.issuer} instead of ${before.issuer}. Members are matched by issuer and subject, ` +
            'so people signing in there become new members with the agent role: add an admin for that IdP first (Members and roles). Switch?';
          if (!confirm(move)) return;
        }
        // The form stays; what it sends next must carry the new version.
        const saved = await putFresh(api, PATHS.organization, body, () => show(conflictText('organization')));
        if (!saved) return;
        org = saved;
        changed.textContent = formatDateTime(org.dateModified);
        notify('Organization saved.');
      },
      children: [
        field('Name', name),
        hinted(
          'Staff sign-in integration',
          staff,
          integrations.length
            ? 'The OIDC integration whose identity provider staff sign in with.'
            : h('span', null, 'There is no OIDC integration yet: ', h('a', { href: '#/settings/integrations' }, 'add one'), ' first.'),
        ),
        h(
          'div',
          { class: 'st-field' },
          field('Redirect URI for staff sign-in', redirectBox),
          h('small', { class: 'st-hint' }, 'The staff integration’s client at the identity provider must allow this redirect URI.'),
          button('Copy redirect URI', { onclick: () => copyText(redirect, redirectBox, notify, 'Redirect URI') }),
        ),
      ],
    });

    mount(
      parts.editor,
      card.form,
      h(
        'div',
        { class: 'st-card' },
        h('h3', null, 'Signing in'),
        h(
          'dl',
          { class: 'st-facts' },
          h('dt', null, 'Organization id'),
          h('dd', null, mono(org.id)),
          h('dt', null, 'Last changed'),
          changed,
        ),
        h(
          'div',
          { class: 'st-field' },
          field('Console sign-in address', linkBox),
          h('small', { class: 'st-hint' }, 'Staff of this organization sign in here.'),
          button('Copy address', { onclick: () => copyText(signInLink, linkBox, notify, 'Address') }),
        ),
      ),
    );
  };
  await show();
}

// ---------------------------------------------------------------------------
// OIDC integrations: the identity providers visitors and staff sign in at.

const STEP_NAMES = { discovery: 'Discovery', issuer: 'Issuer', jwks: 'Signing keys', algorithms: 'Algorithms' };

function integrationBody(record, overrides) {
  return {
    name: record.name,
    issuer: record.issuer,
    clientId: record.clientId,
    scopes: record.scopes,
    authorizeParams: record.authorizeParams || {},
    allowedAlgorithms: record.allowedAlgorithms,
    maxRefreshTokenLifetimeSeconds: record.maxRefreshTokenLifetimeSeconds,
    active: record.active,
    version: record.version,
    ...overrides,
  };
}

function diagnosisView(integration, report, onClose) {
  const steps = report.steps || [];
  const seen = new Set(steps.map((s) => s.name));
  // Steps after the first failure never ran; say so rather than leave
  // them out.
  const notRun = Object.keys(STEP_NAMES).filter((n) => !seen.has(n));
  const facts = [
    ['Issuer', report.issuer],
    ['Authorization endpoint', report.authorizationEndpoint],
    ['Token endpoint', report.tokenEndpoint],
    ['Algorithms offered', report.algorithmsOffered?.length ? report.algorithmsOffered.join(', ') : null],
  ].filter(([, v]) => v);
  return h(
    'div',
    { class: `st-diagnosis ${report.ok ? 'st-passed' : 'st-failed'}` },
    h(
      'h3',
      null,
      report.ok
        ? `Test of ${quoted(integration.name)}: every check passed`
        : `Test of ${quoted(integration.name)}: a check failed`,
    ),
    h(
      'ul',
      { class: 'st-steps' },
      steps.map((s) =>
        h(
          'li',
          null,
          s.ok ? badge('Pass', 'ok') : badge('Fail', 'danger'),
          h('strong', null, STEP_NAMES[s.name] || s.name),
          h('span', null, s.detail),
        ),
      ),
      report.ok
        ? null
        : notRun.map((n) => h('li', null, badge('Not run', 'neutral'), h('strong', null, STEP_NAMES[n]), h('span', null, 'skipped after the failure'))),
    ),
    report.problem ? h('p', null, 'Problem code: ', mono(report.problem.code)) : null,
    facts.length
      ? h(
          'dl',
          { class: 'st-facts' },
          facts.map(([k, v]) => [h('dt', null, k), h('dd', null, mono(v))]),
        )
      : null,
    button('Close', { 'aria-label': `Close the test of ${integration.name}`, onclick: onClose }),
  );
}

async function integrationsSection(ctx) {
  const { api, notify } = ctx;
  const origin = location.origin;
  const parts = frame(ctx, {
    title: 'OIDC integrations',
    newLabel: 'New integration',
    onNew: () => edit(null),
    intro: [
      h('p', null, 'The identity providers (Okta, Entra ID, Auth0, Keycloak, …) that visitors of sign-in deployments and staff sign in at.'),
      h(
        'p',
        null,
        'Redirect URIs the provider’s client must allow: ',
        mono(`${origin}/web-snippet/callback`),
        ' for visitors signing in through the widget, ',
        mono(`${origin}/auth/callback`),
        ' for staff signing in to this console.',
      ),
    ],
  });
  const fresh = latestOnly();
  const results = new Map();

  const load = async () => {
    const current = fresh();
    let integrations;
    try {
      integrations = await api.all(PATHS.integrations);
    } catch (e) {
      if (current()) showLoadFailure(parts, e, 'The integrations');
      return;
    }
    if (!current()) return;
    parts.status.textContent = integrations.length ? '' : 'No integration yet.';
    integrations.sort(byName);
    redraw(
      parts.list,
      integrations.length
        ? dataTable(
            'OIDC integrations',
            ['Name', 'Issuer', 'Client id', 'Status', 'Client secret', 'Actions'],
            integrations.map((i) => integrationRows(i)),
          )
        : null,
    );
  };

  const integrationRows = (i) => {
    const result = h('tr', { class: 'st-detail', hidden: true }, h('td', { colspan: '6' }));
    const show = (report) => {
      results.set(i.id, report);
      if (!report) {
        result.hidden = true;
        mount(result.firstChild);
        return;
      }
      result.hidden = false;
      mount(
        result.firstChild,
        report instanceof Error
          ? h('p', { class: 'st-error' }, `The test of ${quoted(i.name)} could not run: ${errorText(report)}`)
          : diagnosisView(i, report, () => {
              show(null);
              test.focus();
            }),
      );
    };
    const test = button('Test', {
      'aria-label': `Test ${i.name}`,
      onclick: async () => {
        test.disabled = true;
        test.textContent = 'Testing…';
        try {
          const report = await api.post(`${PATHS.integrations}/${i.id}/test`);
          show(report);
          notify(report.ok ? `${i.name}: every check passed.` : `${i.name}: ${report.problem?.message || 'a check failed'}`, report.ok ? 'info' : 'error');
        } catch (e) {
          show(e);
          notify(`The test of ${i.name} could not run.`, 'error');
        } finally {
          test.disabled = false;
          test.textContent = 'Test';
        }
      },
    });
    const editButton = button('Edit', { 'aria-label': `Edit ${i.name}`, onclick: () => edit(i, null, editButton) });
    const remove = button('Delete', {
      class: 'st-button st-danger',
      'aria-label': `Delete ${i.name}`,
      onclick: () =>
        deleteRecord(ctx, parts, {
          noun: 'integration',
          name: i.name,
          path: `${PATHS.integrations}/${i.id}`,
          trigger: remove,
          hint: 'Choose another integration there first (published configuration versions never change: delete their configuration, or keep this integration).',
          onDone: () => {
            results.delete(i.id);
            load();
          },
        }),
    });
    const main = row(
      i.name,
      mono(i.issuer),
      mono(i.clientId),
      i.active ? badge('Active', 'ok') : badge('Inactive', 'neutral'),
      i.clientSecretSet ? 'Set' : 'Not set',
      actions(test, editButton, remove),
    );
    if (results.has(i.id)) show(results.get(i.id));
    return [main, result];
  };

  const edit = (record, message, opener) => {
    const isNew = !record;
    const name = h('input', { type: 'text', value: record?.name ?? '', required: true, maxlength: '200', autocomplete: 'off' });
    const issuer = h('input', {
      type: 'url',
      value: record?.issuer ?? '',
      required: true,
      placeholder: 'https://login.example.com/',
      autocomplete: 'off',
      spellcheck: 'false',
    });
    const clientId = h('input', { type: 'text', value: record?.clientId ?? '', required: true, maxlength: '255', autocomplete: 'off', spellcheck: 'false' });
    const secret = h('input', { type: 'password', value: '', autocomplete: 'new-password', spellcheck: 'false' });
    const scopes = h('input', { type: 'text', value: record ? record.scopes.join(' ') : DEFAULT_SCOPES, autocomplete: 'off', spellcheck: 'false' });
    const active = h('input', { type: 'checkbox', checked: record ? record.active : true });
    let secretHint = 'Write-only: switchboard keeps it sealed and never shows it again.';
    if (!isNew) {
      secretHint = record.clientSecretSet
        ? 'A secret is set. Leave this empty to keep it; type a new one to replace it.'
        : 'No secret is set. Leave this empty for a public client.';
    }

    const card = formCard({
      title: isNew ? 'New integration' : `Edit ${quoted(record.name)}`,
      error: message,
      onCancel: () => closeEditor(parts, opener),
      onSubmit: async () => {
        const wanted = {
          name: required(name, 'The name'),
          issuer: required(issuer, 'The issuer'),
          clientId: required(clientId, 'The client id'),
          scopes: scopes.value.split(/\s+/).filter(Boolean),
          active: active.checked,
        };
        try {
          new URL(wanted.issuer);
        } catch {
          throw new Problem('The issuer must be an absolute URL, such as https://login.example.com/.', issuer);
        }
        if (!wanted.scopes.includes('openid')) throw new Problem('The scopes must include openid.', scopes);
        // An empty secret on edit keeps the stored one: leave it out.
        if (secret.value) wanted.clientSecret = secret.value;
        if (isNew) {
          const created = await api.post(PATHS.integrations, wanted);
          notify(`Integration ${quoted(created.name)} created. Test it to check the identity provider.`);
        } else {
          const saved = await putFresh(api, `${PATHS.integrations}/${record.id}`, integrationBody(record, wanted), () =>
            reopen(record.id, opener),
          );
          if (!saved) return;
          notify(`Integration ${quoted(wanted.name)} saved.`);
        }
        closeEditor(parts, opener);
        await load();
      },
      children: [
        field('Name', name),
        hinted('Issuer', issuer, 'Exactly as the provider’s discovery document states it: a trailing slash matters.'),
        field('Client id', clientId),
        hinted('Client secret', secret, secretHint),
        hinted('Scopes', scopes, 'Separated by spaces; must include openid.'),
        checkField('Active', active),
      ],
    });
    openInEditor(parts, card.form);
  };

  const reopen = async (id, opener) => {
    try {
      edit(await api.get(`${PATHS.integrations}/${id}`), conflictText('integration'), opener);
    } catch (e) {
      closeEditor(parts, opener);
      parts.problem.textContent = `The integration changed and cannot be read again: ${errorText(e)}`;
    }
    load();
  };

  await load();
}

// ---------------------------------------------------------------------------
// Messenger configurations: an editable draft, published as versions 1, 2, …

async function configurationsSection(ctx) {
  const { api, notify } = ctx;
  const base = PATHS.configurations;
  const parts = frame(ctx, {
    title: 'Messenger configurations',
    newLabel: 'New configuration',
    onNew: () => create(),
    intro: h(
      'p',
      null,
      'What the widget looks like and whether visitors sign in. You edit a draft; publishing freezes it as the next version. ' +
        'Deployments keep the version they use until you move them to a newer one.',
    ),
  });
  const fresh = latestOnly();

  const load = async () => {
    const current = fresh();
    let configurations;
    try {
      configurations = await api.all(base);
    } catch (e) {
      if (current()) showLoadFailure(parts, e, 'The configurations');
      return;
    }
    // Whether each draft changed since its latest version was published.
    const latest = await Promise.all(
      configurations.map((c) => (c.latestVersion ? api.get(`${base}/${c.id}/versions/${c.latestVersion}`).catch(() => null) : null)),
    );
    if (!current()) return;
    parts.status.textContent = configurations.length ? '' : 'No configuration yet.';
    const rows = configurations
      .map((c, n) => ({ c, v: latest[n] }))
      .sort((a, b) => byName(a.c, b.c))
      .map(({ c, v }) => {
        const editButton = button('Edit', { 'aria-label': `Edit ${c.name}`, onclick: () => edit(c.id, {}, editButton) });
        const remove = button('Delete', {
          class: 'st-button st-danger',
          'aria-label': `Delete ${c.name}`,
          onclick: () =>
            deleteRecord(ctx, parts, {
              noun: 'configuration',
              name: c.name,
              path: `${base}/${c.id}`,
              trigger: remove,
              hint: 'Move those deployments to another configuration first.',
              onDone: () => {
                if (parts.editor.dataset.id === c.id) closeEditor(parts);
                load();
              },
            }),
        });
        return row(
          c.name,
          c.latestVersion ? `Version ${c.latestVersion}` : 'None',
          String(c.publishedVersions),
          draftState(c, v),
          signInBadge(c),
          formatDateTime(c.dateModified),
          actions(editButton, remove),
        );
      });
    redraw(
      parts.list,
      configurations.length
        ? dataTable('Messenger configurations', ['Name', 'Latest version', 'Published', 'Draft', 'Draft visitors', 'Draft changed', 'Actions'], rows)
        : null,
    );
  };

  // Publishing stamps the draft and the new version with the same instant,
  // so a later draft change means changes not yet published.
  const draftState = (c, latestVersion) => {
    if (!c.latestVersion) return badge('Not published', 'warn');
    if (latestVersion && new Date(c.dateModified) > new Date(latestVersion.datePublished)) return badge('Unpublished changes', 'warn');
    return badge(`Same as version ${c.latestVersion}`, 'ok');
  };

  const create = () => {
    const name = h('input', { type: 'text', required: true, maxlength: '200', autocomplete: 'off' });
    const card = formCard({
      title: 'New configuration',
      submitLabel: 'Create',
      onCancel: () => closeEditor(parts),
      onSubmit: async () => {
        // Everything else has defaults: a guest messenger in en-us.
        const created = await api.post(base, { name: required(name, 'The name') });
        notify(`Configuration ${quoted(created.name)} created. Adjust the draft, then publish it.`);
        load();
        await edit(created.id, {});
      },
      children: [hinted('Name', name, 'Then set the draft up and publish it as version 1.')],
    });
    openInEditor(parts, card.form);
  };

  // The draft's editor, with Publish and the published versions.
  const edit = async (id, { message, notice, focusSave } = {}, opener) => {
    parts.editor.dataset.id = id;
    mount(parts.editor, h('p', { class: 'st-status', role: 'status' }, 'Loading the draft…'));
    let draft;
    let integrations;
    let versions;
    let deployments;
    try {
      [draft, integrations, versions, deployments] = await Promise.all([
        api.get(`${base}/${id}/versions/draft`),
        api.all(PATHS.integrations),
        api.all(`${base}/${id}/versions`),
        api.all(PATHS.deployments),
      ]);
    } catch (e) {
      mount(parts.editor, h('p', { class: 'st-error', role: 'alert' }, `The configuration cannot be loaded: ${errorText(e)}`));
      return;
    }
    integrations.sort(byName);
    versions.sort((a, b) => Number(b.version) - Number(a.version));
    const users = deployments.filter((d) => d.configuration.id === id);

    const auth = draft.authenticationSettings || {};
    const conversations = draft.messenger?.apps?.conversations || {};
    const storedColor = draft.messenger?.styles?.primaryColor || DEFAULT_COLOR;

    const name = h('input', { type: 'text', value: draft.name, required: true, maxlength: '200', autocomplete: 'off' });
    const description = h('textarea', { rows: '2', maxlength: '2000' });
    description.value = draft.description || '';
    const authRequired = h('input', { type: 'checkbox', checked: !!auth.enabled });
    const integration = selectControl(
      [
        { value: '', label: 'Choose an integration' },
        ...integrations.map((i) => ({ value: i.id, label: `${i.name} (${i.issuer})${i.active ? '' : ', inactive'}` })),
      ],
      auth.integrationId || '',
    );
    const color = h('input', { type: 'color', value: colorForInput(storedColor) });
    const colorText = h('output', { class: 'st-mono' }, storedColor);
    let colorTouched = false;
    color.addEventListener('input', () => {
      colorTouched = true;
      colorText.textContent = color.value;
    });
    const agentTyping = h('input', { type: 'checkbox', checked: conversations.showAgentTypingIndicator !== false });
    const userTyping = h('input', { type: 'checkbox', checked: conversations.showUserTypingIndicator !== false });
    const duration = h('input', {
      type: 'number',
      min: '60',
      max: '2592000',
      step: '1',
      value: conversations.sessionDurationSeconds ?? 1800,
      inputmode: 'numeric',
    });
    const durationHint = h('span');
    const describeDuration = () => {
      const text = humanDuration(Number(duration.value));
      durationHint.textContent = `${text ? `${text}. ` : ''}A visitor’s session with no activity for this long expires (60 seconds to 30 days).`;
    };
    describeDuration();
    duration.addEventListener('input', describeDuration);

    // The draft as read, with the form's changes: fields this form does not
    // show go back exactly as they came.
    const edited = () => {
      const next = JSON.parse(JSON.stringify(draft));
      next.name = required(name, 'The name');
      next.description = description.value;
      if (authRequired.checked && !integration.value) {
        throw new Problem('Choose the integration visitors sign in with, or clear “Authentication required”.', integration);
      }
      next.authenticationSettings = {
        ...next.authenticationSettings,
        enabled: authRequired.checked,
        integrationId: integration.value || null,
      };
      const seconds = numberIn(duration, 'The session duration', 60, 2592000);
      next.messenger = next.messenger || {};
      next.messenger.styles = { ...next.messenger.styles, primaryColor: colorTouched ? color.value : storedColor };
      next.messenger.apps = next.messenger.apps || {};
      next.messenger.apps.conversations = {
        ...next.messenger.apps.conversations,
        showAgentTypingIndicator: agentTyping.checked,
        showUserTypingIndicator: userTyping.checked,
        sessionDurationSeconds: seconds,
      };
      return next;
    };

    // Saves the draft; false when it was stale (the editor then shows the
    // current draft).
    const save = async () => {
      const saved = await putFresh(api, `${base}/${id}/versions/draft`, edited(), async () => {
        load();
        await edit(id, { message: conflictText('configuration') }, opener);
      });
      return saved !== null;
    };

    const publish = button('Publish', {
      class: 'st-button st-accent',
      onclick: () =>
        card.run(async () => {
          const latest = versions[0];
          const unchanged = latest && !card.dirty && !(new Date(draft.dateModified) > new Date(latest.datePublished));
          if (unchanged && !confirm(`The draft is the same as version ${latest.version}. Publish it again as a new version?`)) return;
          // Publish what the form shows, not an older stored draft.
          if (card.dirty && !(await save())) return;
          const published = await api.post(`${base}/${id}/versions/draft/publish`);
          notify(`Published version ${published.version} of ${quoted(published.name)}.`);
          const behind = users.filter((d) => d.configuration.version !== published.version);
          load();
          // Publishing changes the draft's version: read it again.
          await edit(id, { notice: { version: published.version, behind } }, opener);
        }),
    });

    const card = formCard({
      title: `Edit ${quoted(draft.name)}`,
      error: message,
      extra: publish,
      onCancel: () => {
        delete parts.editor.dataset.id;
        closeEditor(parts, opener);
      },
      onSubmit: async () => {
        if (!(await save())) return;
        notify(`Draft of ${quoted(name.value.trim())} saved. Publish it to use it in deployments.`);
        load();
        await edit(id, { focusSave: true }, opener);
      },
      children: [
        publishState(draft, versions),
        field('Name', name),
        field('Description', description),
        h(
          'fieldset',
          { class: 'st-group' },
          h('legend', null, 'Sign-in'),
          checkField('Authentication required', authRequired, 'Visitors sign in at the integration’s identity provider before they can send messages.'),
          hinted(
            'Sign-in integration',
            integration,
            integrations.length ? null : h('span', null, 'There is no OIDC integration yet: ', h('a', { href: '#/settings/integrations' }, 'add one'), '.'),
          ),
        ),
        h(
          'fieldset',
          { class: 'st-group' },
          h('legend', null, 'Messenger'),
          h('div', { class: 'st-color' }, field('Primary colour', color), colorText),
          checkField('Agent typing indicator', agentTyping, 'Visitors see when an agent is typing.'),
          checkField('Visitor typing indicator', userTyping, 'Agents see when the visitor is typing.'),
          hinted('Session duration (seconds)', duration, durationHint),
          h(
            'p',
            { class: 'st-hint' },
            `Languages: ${(draft.languages || []).join(', ') || 'none'} (default ${draft.defaultLanguage || 'none'}). ` +
              'Other settings keep their values; the API changes them.',
          ),
        ),
        h('p', { class: 'st-hint' }, 'Publish saves the form’s changes first, then freezes the draft as the next version.'),
      ],
    });

    const shown = notice ? publishedNotice(notice) : null;
    // After publishing, the focus goes to what happened; after saving,
    // back to Save; otherwise to the top of the form.
    const saveButton = card.form.querySelector('button[type=submit]');
    openInEditor(parts, [shown, card.form, versionsCard(versions, users)], shown || (focusSave ? saveButton : null));
  };

  const publishState = (draft, versions) => {
    const latest = versions[0];
    let state;
    if (!latest) state = [badge('Not published', 'warn'), ' Publish the draft to use it in a deployment.'];
    else if (new Date(draft.dateModified) > new Date(latest.datePublished)) {
      state = [badge('Unpublished changes', 'warn'), ` The draft differs from version ${latest.version}.`];
    } else state = [badge(`Same as version ${latest.version}`, 'ok'), ` Published ${formatDateTime(latest.datePublished)}.`];
    return h('p', { class: 'st-publish-state' }, state);
  };

  const publishedNotice = ({ version, behind }) =>
    h(
      'div',
      { class: 'st-card st-notice', role: 'status', tabindex: '-1' },
      h('p', null, h('strong', null, `Version ${version} is published.`)),
      behind.length
        ? h(
            'p',
            null,
            `${listText(behind.map((d) => `${quoted(d.name)} (version ${d.configuration.version})`))} still ${
              behind.length === 1 ? 'uses an older version' : 'use older versions'
            }: move ${behind.length === 1 ? 'it' : 'them'} in `,
            h('a', { href: '#/settings/deployments' }, 'Deployments'),
            '.',
          )
        : null,
    );

  await load();
}

function versionsCard(versions, users) {
  const usedBy = (v) => {
    const names = users.filter((d) => d.configuration.version === v.version).map((d) => d.name);
    return names.length ? names.join(', ') : '—';
  };
  return h(
    'div',
    { class: 'st-card' },
    h('h3', null, 'Published versions'),
    versions.length
      ? dataTable(
          'Published versions',
          ['Version', 'Published', 'Visitors', 'Primary colour', 'Used by'],
          versions.map((v) =>
            row(
              `Version ${v.version}`,
              formatDateTime(v.datePublished),
              signInBadge(v),
              h('span', { class: 'st-color-cell' }, swatch(v.messenger?.styles?.primaryColor), mono(v.messenger?.styles?.primaryColor || '')),
              usedBy(v),
            ),
          ),
        )
      : h('p', null, 'None yet.'),
  );
}

// ---------------------------------------------------------------------------
// Queues: where conversations wait for agents.

async function queuesSection(ctx) {
  const { api, notify, admin } = ctx;
  const parts = frame(ctx, {
    title: 'Queues',
    newLabel: 'New queue',
    onNew: () => edit(null),
    intro: [
      h('p', null, 'Conversations of a deployment go to its queue and are offered to the queue’s members who are available.'),
      admin ? null : h('p', { class: 'st-note' }, 'Read-only: only admins change queues.'),
    ],
  });
  const fresh = latestOnly();
  let members = [];

  const load = async () => {
    const current = fresh();
    let queues;
    let memberList;
    try {
      [queues, memberList] = await Promise.all([api.all(PATHS.queues), api.all(PATHS.members)]);
    } catch (e) {
      if (current()) showLoadFailure(parts, e, 'The queues');
      return;
    }
    if (!current()) return;
    members = memberList.sort(byName);
    const memberName = new Map(members.map((m) => [m.id, m.displayName]));
    parts.status.textContent = queues.length ? '' : 'No queue yet.';
    queues.sort(byName);
    const rows = queues.map((q) => {
      const names = q.memberIds.map((id) => memberName.get(id) || id);
      const cells = [
        `${q.offerTimeoutSeconds} s`,
        plural(q.agentCapacity, 'conversation'),
        h('span', { title: names.join(', ') || null }, q.memberIds.length ? `${q.memberIds.length}: ${names.join(', ')}` : '0'),
      ];
      if (!admin) return row(q.name, ...cells);
      const editButton = button('Edit', { 'aria-label': `Edit ${q.name}`, onclick: () => edit(q, null, editButton) });
      const remove = button('Delete', {
        class: 'st-button st-danger',
        'aria-label': `Delete ${q.name}`,
        onclick: () =>
          deleteRecord(ctx, parts, {
            noun: 'queue',
            name: q.name,
            path: `${PATHS.queues}/${q.id}`,
            trigger: remove,
            hint: 'Give those deployments another queue first.',
            onDone: load,
          }),
      });
      return row(q.name, ...cells, actions(editButton, remove));
    });
    redraw(
      parts.list,
      queues.length
        ? dataTable('Queues', ['Name', 'Offer timeout', 'Capacity per agent', 'Members', admin ? 'Actions' : null].filter(Boolean), rows)
        : null,
    );
  };

  const edit = async (record, message, opener) => {
    // The member checkboxes need the list of the first load.
    await firstLoad;
    const isNew = !record;
    const name = h('input', { type: 'text', value: record?.name ?? '', required: true, maxlength: '200', autocomplete: 'off' });
    const timeout = h('input', { type: 'number', min: '5', max: '600', step: '1', value: record?.offerTimeoutSeconds ?? 30, inputmode: 'numeric' });
    const capacity = h('input', { type: 'number', min: '1', max: '50', step: '1', value: record?.agentCapacity ?? 3, inputmode: 'numeric' });
    const chosen = new Set(record?.memberIds || []);
    const boxes = members.map((m) => {
      const box = h('input', { type: 'checkbox', value: m.id, checked: chosen.has(m.id) });
      return { id: m.id, box, node: checkField(m.displayName, box, [m.email, m.roles.join(', ')].filter(Boolean).join(' · ') || null) };
    });
    const card = formCard({
      title: isNew ? 'New queue' : `Edit ${quoted(record.name)}`,
      error: message,
      onCancel: () => closeEditor(parts, opener),
      onSubmit: async () => {
        const body = {
          name: required(name, 'The name'),
          offerTimeoutSeconds: numberIn(timeout, 'The offer timeout', 5, 600),
          agentCapacity: numberIn(capacity, 'The capacity', 1, 50),
          // Only members this list knows: an id of a deleted member would
          // be refused.
          memberIds: boxes.filter((b) => b.box.checked).map((b) => b.id),
        };
        if (isNew) {
          const created = await api.post(PATHS.queues, body);
          notify(`Queue ${quoted(created.name)} created.`);
        } else {
          const saved = await putFresh(api, `${PATHS.queues}/${record.id}`, { ...body, version: record.version }, () =>
            reopen(record.id, opener),
          );
          if (!saved) return;
          notify(`Queue ${quoted(body.name)} saved.`);
        }
        closeEditor(parts, opener);
        await load();
      },
      children: [
        field('Name', name),
        hinted('Offer timeout (seconds)', timeout, 'How long an agent has to accept an offer before it goes to another (5 to 600).'),
        hinted('Capacity per agent', capacity, 'Conversations one agent of this queue handles at once (1 to 50).'),
        h(
          'fieldset',
          { class: 'st-group' },
          h('legend', null, 'Members'),
          boxes.length
            ? h('div', { class: 'st-checklist' }, boxes.map((b) => b.node))
            : h('p', null, 'There are no members yet: ', h('a', { href: '#/settings/members' }, 'add them'), ' first.'),
        ),
      ],
    });
    openInEditor(parts, card.form);
  };

  const reopen = async (id, opener) => {
    try {
      const [queue] = await Promise.all([api.get(`${PATHS.queues}/${id}`), load()]);
      await edit(queue, conflictText('queue'), opener);
    } catch (e) {
      closeEditor(parts, opener);
      parts.problem.textContent = `The queue changed and cannot be read again: ${errorText(e)}`;
    }
  };

  const firstLoad = load();
  await firstLoad;
}

// ---------------------------------------------------------------------------
// Deployments: a published configuration version on the allowed origins,
// with its queue and the snippet a site pastes.

function deploymentBody(d, overrides) {
  return {
    name: d.name,
    description: d.description || '',
    configuration: { id: d.configuration.id, version: d.configuration.version },
    allowedDomains: d.allowedDomains,
    allowAllDomains: d.allowAllDomains,
    status: d.status,
    queueId: d.queueId,
    version: d.version,
    ...overrides,
  };
}

async function deploymentsSection(ctx) {
  const { api, notify } = ctx;
  const origin = location.origin;
  const cfgBase = PATHS.configurations;
  const parts = frame(ctx, {
    title: 'Deployments',
    newLabel: 'New deployment',
    onNew: () => edit(null),
    intro: h(
      'p',
      null,
      'A deployment puts a published configuration version on the sites you allow and sends its conversations to a queue. Sites paste its snippet before ',
      mono('</body>'),
      '.',
    ),
  });
  const fresh = latestOnly();
  let configurations = [];
  let queues = [];
  // Published versions are immutable: each is read once per visit.
  const versionContent = new Map();
  const contentOf = (id, version) => {
    const key = `${id}/${version}`;
    if (!versionContent.has(key)) {
      versionContent.set(key, api.get(`${cfgBase}/${id}/versions/${version}`).catch(() => null));
    }
    return versionContent.get(key);
  };
  const versionLists = new Map();
  const versionsOf = (id) => {
    if (!versionLists.has(id)) {
      const loading = api.all(`${cfgBase}/${id}/versions`).then((vs) => {
        for (const v of vs) versionContent.set(`${id}/${v.version}`, Promise.resolve(v));
        return vs.sort((a, b) => Number(b.version) - Number(a.version));
      });
      loading.catch(() => versionLists.delete(id));
      versionLists.set(id, loading);
    }
    return versionLists.get(id);
  };

  const load = async () => {
    const current = fresh();
    let deployments;
    let configurationList;
    let queueList;
    try {
      [deployments, configurationList, queueList] = await Promise.all([api.all(PATHS.deployments), api.all(cfgBase), api.all(PATHS.queues)]);
    } catch (e) {
      if (current()) showLoadFailure(parts, e, 'The deployments');
      return;
    }
    if (!current()) return;
    configurations = configurationList.sort(byName);
    queues = queueList.sort(byName);
    // A configuration published since the last look has new versions.
    versionLists.clear();
    const configById = new Map(configurations.map((c) => [c.id, c]));
    const queueById = new Map(queues.map((q) => [q.id, q]));
    const used = await Promise.all(deployments.map((d) => contentOf(d.configuration.id, d.configuration.version)));
    const newest = await Promise.all(
      deployments.map((d) => {
        const c = configById.get(d.configuration.id);
        return c?.latestVersion && Number(c.latestVersion) > Number(d.configuration.version)
          ? contentOf(c.id, c.latestVersion)
          : null;
      }),
    );
    if (!current()) return;
    parts.status.textContent = deployments.length ? '' : 'No deployment yet.';
    const rows = deployments
      .map((d, n) => ({ d, content: used[n], latest: newest[n] }))
      .sort((a, b) => byName(a.d, b.d))
      .map(({ d, content, latest }) => {
        const c = configById.get(d.configuration.id);
        const editButton = button('Edit', { 'aria-label': `Edit ${d.name}`, onclick: () => edit(d, null, editButton) });
        const remove = button('Delete', {
          class: 'st-button st-danger',
          'aria-label': `Delete ${d.name}`,
          onclick: () =>
            deleteRecord(ctx, parts, {
              noun: 'deployment',
              name: d.name,
              path: `${PATHS.deployments}/${d.id}`,
              trigger: remove,
              hint: '',
              onDone: () => {
                if (parts.editor.dataset.id === d.id) closeEditor(parts);
                load();
              },
            }),
        });
        return row(
          d.name,
          d.status === 'Active' ? badge('Active', 'ok') : badge('Inactive', 'neutral'),
          h(
            'div',
            null,
            h('div', null, `${c ? c.name : d.configuration.id}, version ${d.configuration.version}`),
            latest ? upgrade(d, c, content, latest) : null,
          ),
          content ? signInBadge(content) : badge('Unknown', 'neutral'),
          queueById.get(d.queueId)?.name || d.queueId,
          actions(editButton, remove),
        );
      });
    redraw(
      parts.list,
      deployments.length ? dataTable('Deployments', ['Name', 'Status', 'Configuration', 'Visitors', 'Queue', 'Actions'], rows) : null,
    );
  };

  // "Version N is published — Use version N": moves a deployment to its
  // configuration's newest version in one click.
  const upgrade = (d, c, content, latest) => {
    const n = c.latestVersion;
    const use = button(`Use version ${n}`, {
      class: 'st-button st-small st-accent',
      'aria-label': `Use version ${n} for ${d.name}`,
      onclick: async () => {
        const before = !!content?.authenticationSettings?.enabled;
        const after = !!latest?.authenticationSettings?.enabled;
        if (before !== after) {
          const change = after ? 'requires visitors to sign in' : 'lets guests chat without signing in';
          if (!confirm(`Version ${n} of ${quoted(c.name)} ${change}. Move ${quoted(d.name)} to it?`)) return;
        }
        parts.problem.textContent = '';
        use.disabled = true;
        try {
          await api.put(`${PATHS.deployments}/${d.id}`, deploymentBody(d, { configuration: { id: c.id, version: n } }));
          notify(`${d.name} now uses version ${n} of ${c.name}.`);
        } catch (e) {
          parts.problem.textContent = isConflict(e)
            ? `${quoted(d.name)} was changed by someone else; the list now shows it as it is.`
            : `${quoted(d.name)} cannot move to version ${n}: ${errorText(e)}`;
          use.disabled = false;
        }
        await load();
      },
    });
    return h('div', { class: 'st-upgrade' }, h('span', null, `Version ${n} is published`), use);
  };

  const edit = async (record, message, opener, focusCopy = false) => {
    // The form's selects need the lists of the first load.
    await firstLoad;
    const isNew = !record;
    parts.editor.dataset.id = record?.id || '';
    const published = configurations.filter((c) => c.publishedVersions > 0);
    if (isNew && (!published.length || !queues.length)) {
      const missing = [];
      if (!published.length) missing.push(h('li', null, 'a published ', h('a', { href: '#/settings/configurations' }, 'messenger configuration')));
      if (!queues.length) missing.push(h('li', null, 'a ', h('a', { href: '#/settings/queues' }, 'queue')));
      const note = h(
        'div',
        { class: 'st-card st-notice', tabindex: '-1' },
        h('p', null, 'A deployment needs:'),
        h('ul', null, missing),
        button('Close', { onclick: () => closeEditor(parts) }),
      );
      mount(parts.editor, note);
      note.focus();
      return;
    }

    const name = h('input', { type: 'text', value: record?.name ?? '', required: true, maxlength: '200', autocomplete: 'off' });
    const description = h('textarea', { rows: '2', maxlength: '2000' });
    description.value = record?.description ?? '';
    const configuration = selectControl(
      [
        ...(isNew ? [{ value: '', label: 'Choose a configuration' }] : []),
        ...configurations.map((c) => ({
          value: c.id,
          label: c.publishedVersions ? c.name : `${c.name} (not published)`,
          disabled: !c.publishedVersions,
        })),
      ],
      record?.configuration.id ?? (published.length === 1 ? published[0].id : ''),
    );
    const version = h('select', null);
    const versionHint = h('span');
    const allowAll = h('input', { type: 'checkbox', checked: !!record?.allowAllDomains });
    const domains = h('textarea', { rows: '3', spellcheck: 'false', placeholder: 'https://shop.example.com', class: 'st-mono' });
    domains.value = (record?.allowedDomains || []).join('\n');
    const status = selectControl(
      [
        { value: 'Active', label: 'Active' },
        { value: 'Inactive', label: 'Inactive: the widget does not show' },
      ],
      record?.status ?? 'Active',
    );
    const queue = selectControl(
      [{ value: '', label: 'Choose a queue' }, ...queues.map((q) => ({ value: q.id, label: q.name }))],
      record?.queueId ?? (queues.length === 1 ? queues[0].id : ''),
    );

    // The version select lists the chosen configuration's published
    // versions, newest ("latest") first.
    let versions = [];
    const describeVersion = () => {
      const v = versions.find((x) => x.version === version.value);
      mount(
        versionHint,
        v ? [signInBadge(v), ` Published ${formatDateTime(v.datePublished)}.`] : null,
      );
      domainAdvice();
    };
    const fillVersions = async (keep) => {
      versions = [];
      mount(version, h('option', { value: '' }, configuration.value ? 'Loading…' : 'Choose a configuration first'));
      version.disabled = true;
      describeVersion();
      if (!configuration.value) return;
      const chosen = configuration.value;
      try {
        const list = await versionsOf(chosen);
        if (configuration.value !== chosen) return;
        versions = list;
      } catch (e) {
        mount(version, h('option', { value: '' }, 'Versions cannot be loaded'));
        mount(versionHint, errorText(e));
        return;
      }
      mount(
        version,
        versions.map((v, n) => h('option', { value: v.version }, n === 0 ? `Version ${v.version} (latest)` : `Version ${v.version}`)),
      );
      version.disabled = false;
      if (keep && versions.some((v) => v.version === keep)) version.value = keep;
      else if (versions.length) version.value = versions[0].version;
      describeVersion();
    };
    configuration.addEventListener('change', () => fillVersions(null));
    version.addEventListener('change', describeVersion);

    // The demo page and the widget's sign-in popup run on this server's
    // own origin, so it must be allowed for either to work.
    const advice = h('div', { class: 'st-hint' });
    const domainAdvice = () => {
      const lines = domains.value.split('\n').map((l) => l.trim()).filter(Boolean);
      const allowed = allowAll.checked || lines.some((l) => l.replace(/\/$/, '').toLowerCase() === origin.toLowerCase());
      domains.disabled = allowAll.checked;
      if (allowed) {
        mount(advice);
        return;
      }
      const signIn = versions.find((x) => x.version === version.value)?.authenticationSettings?.enabled;
      mount(
        advice,
        `${origin} is not allowed: `,
        signIn ? 'visitors cannot sign in through the widget’s popup, and ' : '',
        'the demo page (Try it) cannot connect. ',
        button(`Add ${origin}`, {
          class: 'st-button st-small',
          onclick: () => {
            domains.value = [...lines, origin].join('\n');
            domains.dispatchEvent(new Event('input', { bubbles: true }));
            domains.focus();
          },
        }),
      );
    };
    domains.addEventListener('input', domainAdvice);
    allowAll.addEventListener('change', domainAdvice);

    const card = formCard({
      title: isNew ? 'New deployment' : `Edit ${quoted(record.name)}`,
      error: message,
      onCancel: () => {
        delete parts.editor.dataset.id;
        closeEditor(parts, opener);
      },
      onSubmit: async () => {
        const wanted = {
          name: required(name, 'The name'),
          description: description.value,
          status: status.value,
        };
        if (!configuration.value) throw new Problem('Choose a configuration.', configuration);
        if (!version.value) throw new Problem('Choose a published version of the configuration.', version);
        if (!queue.value) throw new Problem('Choose a queue.', queue);
        wanted.configuration = { id: configuration.value, version: version.value };
        wanted.queueId = queue.value;
        wanted.allowAllDomains = allowAll.checked;
        // The two are exclusive: allowing all sends no list.
        wanted.allowedDomains = [];
        if (!allowAll.checked) {
          const lines = domains.value.split('\n').map((l) => l.trim()).filter(Boolean);
          for (const line of lines) {
            const problem = originProblem(line);
            if (problem) throw new Problem(`${problem}.`, domains);
          }
          if (lines.length > 100) throw new Problem('At most 100 allowed domains.', domains);
          wanted.allowedDomains = lines;
        }
        let saved;
        if (isNew) {
          saved = await api.post(PATHS.deployments, wanted);
          notify(`Deployment ${quoted(saved.name)} created: copy its snippet below.`);
        } else {
          try {
            saved = await api.put(`${PATHS.deployments}/${record.id}`, deploymentBody(record, wanted));
          } catch (e) {
            if (isConflict(e)) {
              await load();
              let current;
              try {
                current = await api.get(`${PATHS.deployments}/${record.id}`);
              } catch (again) {
                closeEditor(parts, opener);
                parts.problem.textContent = `The deployment changed and cannot be read again: ${errorText(again)}`;
                return;
              }
              await edit(current, conflictText('deployment'), opener);
              return;
            }
            throw e;
          }
          notify(`Deployment ${quoted(saved.name)} saved.`);
        }
        await load();
        // Stay on the record: its snippet is what one came for.
        await edit(saved, null, opener, true);
      },
      children: [
        field('Name', name),
        field('Description', description),
        field('Configuration', configuration),
        hinted('Configuration version', version, versionHint),
        h(
          'fieldset',
          { class: 'st-group' },
          h('legend', null, 'Where it runs'),
          checkField('Allow all domains', allowAll, 'Any site may embed it. Prefer listing the sites.'),
          hinted('Allowed domains', domains, 'One origin per line, such as https://shop.example.com: scheme, host and port only.'),
          advice,
        ),
        field('Status', status),
        hinted(
          'Queue',
          queue,
          queues.length ? null : h('span', null, 'There is no queue yet: ', h('a', { href: '#/settings/queues' }, 'add one'), '.'),
        ),
      ],
    });

    const snippet = record ? snippetCard(record) : null;
    // Right after a save, the snippet is what one came for.
    openInEditor(parts, [card.form, snippet?.card], focusCopy ? snippet?.copy : null);
    await fillVersions(record?.configuration.version);
  };

  const snippetCard = (d) => {
    const snippet = h('textarea', { readonly: true, rows: '12', class: 'st-mono st-snippet', spellcheck: 'false' });
    snippet.value = d.snippet;
    const demo = `/demo?deploymentId=${encodeURIComponent(d.id)}`;
    const copy = button('Copy snippet', { class: 'st-button st-primary', onclick: () => copyText(d.snippet, snippet, notify, 'Snippet') });
    const card = h(
      'div',
      { class: 'st-card' },
      h('h3', null, 'Embed on a site'),
      hinted('Snippet', snippet, ['Paste it before ', mono('</body>'), ' on every page of the allowed sites.']),
      h(
        'div',
        { class: 'st-actions' },
        copy,
        h('a', { class: 'st-button', href: demo, target: '_blank', rel: 'noopener' }, 'Try it', h('span', { class: 'st-vh' }, ' (opens in a new tab)')),
      ),
      h('p', { class: 'st-hint' }, 'Deployment id: ', mono(d.id)),
    );
    return { card, copy };
  };

  const firstLoad = load();
  await firstLoad;
}

// ---------------------------------------------------------------------------
// Members and roles: staff identities, by their IdP's issuer and subject.

function memberBody(m, overrides) {
  return {
    issuer: m.issuer,
    subject: m.subject,
    displayName: m.displayName,
    email: m.email ?? null,
    roles: m.roles,
    version: m.version,
    ...overrides,
  };
}

async function membersSection(ctx) {
  const { api, notify, admin, session } = ctx;
  const parts = frame(ctx, {
    title: 'Members and roles',
    newLabel: 'Add member',
    onNew: () => add(),
    intro: [
      h(
        'p',
        null,
        'A first sign-in makes a member with the agent role; grant more roles here. Add a member ahead of their first sign-in to give them roles from the start.',
      ),
      admin ? null : h('p', { class: 'st-note' }, 'Read-only: only admins change members.'),
    ],
  });
  const fresh = latestOnly();
  let members = [];

  const load = async () => {
    const current = fresh();
    try {
      members = await api.all(PATHS.members);
    } catch (e) {
      if (current()) showLoadFailure(parts, e, 'The members');
      return;
    }
    if (!current()) return;
    members.sort(byName);
    parts.status.textContent = members.length ? '' : 'No member yet.';
    const rows = members.map((m) => {
      const self = m.id === session.memberId;
      const cells = [
        m.email || '—',
        h('span', { class: 'st-badges' }, m.roles.length ? m.roles.map((r) => badge(r, r === 'admin' ? 'accent' : 'neutral')) : 'none'),
        mono(m.issuer),
        mono(m.subject),
        mono(m.id),
      ];
      const label = self ? [m.displayName, ' ', badge('you', 'ok')] : m.displayName;
      if (!admin) return row(label, ...cells);
      const editButton = button('Edit', { 'aria-label': `Edit ${m.displayName}`, onclick: () => edit(m, null, editButton) });
      // Deleting yourself would end your own access mid-session.
      const remove = self
        ? null
        : button('Delete', {
            class: 'st-button st-danger',
            'aria-label': `Delete ${m.displayName}`,
            onclick: () =>
              deleteRecord(ctx, parts, {
                noun: 'member',
                name: m.displayName,
                path: `${PATHS.members}/${m.id}`,
                trigger: remove,
                hint: 'Take them out of those queues first.',
                onDone: load,
              }),
          });
      return row(label, ...cells, actions(editButton, remove));
    });
    redraw(
      parts.list,
      members.length
        ? dataTable('Members', ['Name', 'Email', 'Roles', 'Issuer', 'Subject', 'Member id', admin ? 'Actions' : null].filter(Boolean), rows)
        : null,
    );
  };

  const roleBoxes = (roles) =>
    ROLES.map((r) => {
      const box = h('input', { type: 'checkbox', value: r.id, checked: roles.includes(r.id) });
      return { id: r.id, box, node: checkField(r.label, box, r.hint) };
    });

  const rolesGroup = (boxes) => h('fieldset', { class: 'st-group' }, h('legend', null, 'Roles'), boxes.map((b) => b.node));

  const edit = (m, message, opener) => {
    const self = m.id === session.memberId;
    const displayName = h('input', { type: 'text', value: m.displayName, required: true, maxlength: '200', autocomplete: 'off' });
    const boxes = roleBoxes(m.roles);
    const card = formCard({
      title: `Edit ${quoted(m.displayName)}`,
      error: message,
      onCancel: () => closeEditor(parts, opener),
      onSubmit: async () => {
        const roles = boxes.filter((b) => b.box.checked).map((b) => b.id);
        const body = memberBody(m, { displayName: required(displayName, 'The display name'), roles });
        if (self && m.roles.includes('admin') && !roles.includes('admin')) {
          if (!confirm('Remove your own admin role? You lose access to these settings at once.')) return;
        }
        const saved = await putFresh(api, `${PATHS.members}/${m.id}`, body, () => reopen(m.id, opener));
        if (!saved) return;
        notify(`${body.displayName} saved.`);
        closeEditor(parts, opener);
        await load();
      },
      children: [
        h(
          'dl',
          { class: 'st-facts' },
          h('dt', null, 'Issuer'),
          h('dd', null, mono(m.issuer)),
          h('dt', null, 'Subject'),
          h('dd', null, mono(m.subject)),
          h('dt', null, 'Email'),
          h('dd', null, m.email || '—'),
          h('dt', null, 'Member id'),
          h('dd', null, mono(m.id)),
        ),
        field('Display name', displayName),
        rolesGroup(boxes),
      ],
    });
    openInEditor(parts, card.form);
  };

  const reopen = async (id, opener) => {
    try {
      const [member] = await Promise.all([api.get(`${PATHS.members}/${id}`), load()]);
      edit(member, conflictText('member'), opener);
    } catch (e) {
      closeEditor(parts, opener);
      parts.problem.textContent = `The member changed and cannot be read again: ${errorText(e)}`;
    }
  };

  const add = async () => {
    // Suggest the issuers already in use, the staff integration's first:
    // most members sign in there.
    let staffIssuer = '';
    const issuers = new Set();
    try {
      const [org, integrations] = await Promise.all([api.get(PATHS.organization), api.all(PATHS.integrations)]);
      const staff = integrations.find((i) => i.id === org.staffIntegrationId);
      if (staff) staffIssuer = staff.issuer;
      for (const i of integrations) issuers.add(i.issuer);
    } catch {
      // Suggestions only.
    }
    for (const m of members) issuers.add(m.issuer);
    const listId = uid('issuers');
    const issuer = h('input', {
      type: 'url',
      value: staffIssuer,
      required: true,
      list: listId,
      autocomplete: 'off',
      spellcheck: 'false',
      placeholder: 'https://login.example.com/',
    });
    const subject = h('input', { type: 'text', required: true, maxlength: '255', autocomplete: 'off', spellcheck: 'false' });
    const displayName = h('input', { type: 'text', required: true, maxlength: '200', autocomplete: 'off' });
    const email = h('input', { type: 'email', autocomplete: 'off', spellcheck: 'false' });
    const boxes = roleBoxes(['agent']);
    const card = formCard({
      title: 'Add member',
      submitLabel: 'Add member',
      onCancel: () => closeEditor(parts),
      onSubmit: async () => {
        const body = {
          issuer: required(issuer, 'The issuer'),
          subject: required(subject, 'The subject'),
          displayName: required(displayName, 'The display name'),
          email: email.value.trim() || null,
          roles: boxes.filter((b) => b.box.checked).map((b) => b.id),
        };
        try {
          new URL(body.issuer);
        } catch {
          throw new Problem('The issuer must be the identity provider’s issuer URL.', issuer);
        }
        if (body.email && !body.email.includes('@')) throw new Problem('The email is not an email address.', email);
        try {
          await api.post(PATHS.members, body);
        } catch (e) {
          if (e instanceof ApiError && e.code === 'duplicate') {
            throw new Problem('A member with this issuer and subject exists already: edit that one instead.', subject);
          }
          throw e;
        }
        notify(`${body.displayName} added.`);
        closeEditor(parts);
        await load();
      },
      children: [
        h('datalist', { id: listId }, [...issuers].map((i) => h('option', { value: i }))),
        hinted('Issuer', issuer, 'The identity provider’s issuer, exactly as in its ID tokens.'),
        hinted('Subject', subject, 'The provider’s sub claim for this person. After a sign-in, a member finds it on their Profile page.'),
        field('Display name', displayName),
        field('Email', email),
        rolesGroup(boxes),
      ],
    });
    openInEditor(parts, card.form);
  };

  await load();
}
