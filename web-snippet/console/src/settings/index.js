// The console's settings: one page per kind of admin record (organization,
// OIDC integrations, messenger configurations, queues, deployments,
// members), each a list with a form to create or edit a record, and the
// audit log of those changes (admins only), all through
// the admin API with the staff session. This module picks the page; each
// page is a module of its own, built with the kit (kit.js, widgets.js).
//
// The server is the authority on roles and rules: this only hides what the
// signed-in role cannot do (a supervisor reads queues and members) and
// checks the obvious before sending. Updates send the whole record with the
// `version` read, so a stale form is refused (409 version_conflict) and
// reloaded rather than overwriting someone else's change. Text from the
// server only ever goes in as text.

import '../settings.css';
import { h, mount } from '../dom.js';
import { organizationSection } from './organization.js';
import { integrationsSection } from './integrations.js';
import { configurationsSection } from './configurations.js';
import { queuesSection } from './queues.js';
import { deploymentsSection } from './deployments.js';
import { membersSection } from './members.js';
import { auditSection } from './audit.js';

export const SECTIONS = [
  { id: 'organization', title: 'Organization' },
  { id: 'integrations', title: 'OIDC integrations' },
  { id: 'configurations', title: 'Messenger configurations' },
  { id: 'queues', title: 'Queues' },
  { id: 'deployments', title: 'Deployments' },
  { id: 'members', title: 'Members and roles' },
  { id: 'audit', title: 'Audit log' },
];

// What a supervisor may read (and only read); the rest is for admins.
const SUPERVISOR_SECTIONS = ['queues', 'members'];

const RENDER = {
  organization: organizationSection,
  integrations: integrationsSection,
  configurations: configurationsSection,
  queues: queuesSection,
  deployments: deploymentsSection,
  members: membersSection,
  audit: auditSection,
};

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

  RENDER[current.id]({ api, session, notify, admin, body });
}
