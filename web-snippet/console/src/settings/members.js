// Members and roles: staff identities, by their IdP's issuer and subject.

import { ApiError } from '../api.js';
import { h, field } from '../dom.js';
import { PATHS, Problem, recordList, required } from './kit.js';
import { badge, byName, checkField, group, hinted, mono, row, uid } from './widgets.js';

const ROLES = [
  { id: 'admin', label: 'Admin', hint: 'Changes every setting.' },
  { id: 'supervisor', label: 'Supervisor', hint: 'Reads queues and members.' },
  { id: 'agent', label: 'Agent', hint: 'Answers conversations.' },
];

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


function roleBoxes(roles) {
  return ROLES.map((r) => {
    const box = h('input', { type: 'checkbox', value: r.id, checked: roles.includes(r.id) });
    return { id: r.id, box, node: checkField(r.label, box, r.hint) };
  });
}

const rolesGroup = (boxes) => group('Roles', null, boxes.map((b) => b.node));
const checkedRoles = (boxes) => boxes.filter((b) => b.box.checked).map((b) => b.id);

export async function membersSection(ctx) {
  const { api, notify, admin, session } = ctx;
  let members = [];
  const list = recordList(ctx, 'member', {
    title: 'Members and roles',
    label: 'Members',
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
    headers: ['Name', 'Email', 'Roles', 'Issuer', 'Subject', 'Member id'],
    read: async (current) => {
      const all = await api.all(PATHS.members);
      // The issuers suggested when adding come from the newest list.
      if (current()) members = all.sort(byName);
      return all;
    },
    rowOf: (m) => {
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
      // Deleting yourself would end your own access mid-session.
      return row(label, ...cells, list.rowActions(m, m.displayName, { hint: 'Take them out of those queues first.', deletable: !self }));
    },
    edit: (...args) => edit(...args),
  });

  const edit = (m, message, opener) => {
    const self = m.id === session.memberId;
    const displayName = h('input', { type: 'text', value: m.displayName, required: true, maxlength: '200', autocomplete: 'off' });
    const boxes = roleBoxes(m.roles);
    list.openForm(m, opener, {
      error: message,
      onSubmit: async () => {
        const roles = checkedRoles(boxes);
        const body = memberBody(m, { displayName: required(displayName, 'The display name'), roles });
        if (self && m.roles.includes('admin') && !roles.includes('admin')) {
          if (!confirm('Remove your own admin role? You lose access to these settings at once.')) return;
        }
        const saved = await list.save(m, body, opener);
        if (!saved) return;
        notify(`${body.displayName} saved.`);
        await list.done(opener);
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
    list.openForm(null, null, {
      title: 'Add member',
      submitLabel: 'Add member',
      onSubmit: async () => {
        const body = {
          issuer: required(issuer, 'The issuer'),
          subject: required(subject, 'The subject'),
          displayName: required(displayName, 'The display name'),
          email: email.value.trim() || null,
          roles: checkedRoles(boxes),
        };
        try {
          new URL(body.issuer);
        } catch {
          throw new Problem('The issuer must be the identity provider’s issuer URL.', issuer);
        }
        if (body.email && !body.email.includes('@')) throw new Problem('The email is not an email address.', email);
        try {
          await list.save(null, body);
        } catch (e) {
          if (e instanceof ApiError && e.code === 'duplicate') {
            throw new Problem('A member with this issuer and subject exists already: edit that one instead.', subject);
          }
          throw e;
        }
        notify(`${body.displayName} added.`);
        await list.done();
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
  };

  await list.load();
}
