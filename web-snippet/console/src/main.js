// The agent console: one page at /console, served by switchboard.
//
// Staff sign in at their organization's IdP (/auth/login); the session
// cookie then carries every request: the admin API (with the CSRF token
// from /auth/session on changes) and the agent WebSocket. Views are chosen
// by the address's fragment (#/conversations, #/settings/queues, ...); the
// conversations view lives for the whole visit so its socket and open
// conversations survive moving between views.

// The base stylesheet first, so the views' own rules may refine it.
import '../console.css';
import { Api } from './api.js';
import { h, mount } from './dom.js';
import { Workspace } from './workspace.js';
import { renderSettings } from './settings/index.js';

const api = new Api();
const root = document.getElementById('console');

function hasRole(session, role) {
  return session.roles.includes('admin') || session.roles.includes(role);
}

// Short notices at the foot of the page, announced politely.
function notifier(region) {
  return (text, kind = 'info') => {
    const item = h('div', { class: `toast ${kind}` }, text);
    region.append(item);
    setTimeout(() => item.remove(), kind === 'error' ? 8000 : 4000);
  };
}

function signInPage(reason) {
  const org = new URLSearchParams(location.search).get('org');
  const params = new URLSearchParams({ returnTo: '/console' });
  if (org) params.set('org', org);
  const href = `/auth/login?${params}`;
  const problem = h('p', { class: 'problem', role: 'alert', hidden: true });
  // Ask first, so a missing staff integration reads as a sentence rather
  // than as a JSON error page; then let the browser follow the redirect.
  const go = async (event) => {
    event.preventDefault();
    try {
      const r = await fetch(href, { redirect: 'manual', credentials: 'same-origin' });
      if (r.type === 'opaqueredirect' || r.ok) {
        location.assign(href);
        return;
      }
      const body = await r.json().catch(() => ({}));
      if (body.code === 'staff_sso_not_configured') {
        // A fresh install: the operator names the staff IdP on the
        // one-time setup page (with the bootstrap token).
        problem.replaceChildren(
          'Staff sign-in is not set up for this organization yet. ',
          h('a', { href: '/setup' }, 'Set up staff sign-in'),
        );
      } else {
        problem.textContent = `Sign-in cannot start: ${body.message || `HTTP ${r.status}`}`;
      }
      problem.hidden = false;
    } catch (e) {
      problem.textContent = `switchboard cannot be reached: ${e.message}`;
      problem.hidden = false;
    }
  };
  mount(
    root,
    h(
      'main',
      { class: 'signin' },
      h('h1', null, 'switchboard console'),
      h('p', null, reason || 'Sign in with your organization’s account to answer conversations and manage settings.'),
      h('a', { class: 'button primary', href, onclick: go }, 'Sign in'),
      problem,
    ),
  );
}

async function profilePage(container) {
  mount(container, h('h2', null, 'Your profile'), h('p', { role: 'status' }, 'Loading…'));
  try {
    const me = await api.get('/api/v2/members/me');
    const row = (label, value, attrs) => [h('dt', null, label), h('dd', attrs, value ?? '—')];
    mount(
      container,
      h('h2', null, 'Your profile'),
      h('p', null, 'An admin grants roles by your member id.'),
      h(
        'dl',
        { class: 'facts' },
        row('Member id', me.id, { 'data-testid': 'member-id', class: 'mono' }),
        row('Name', me.displayName),
        row('Email', me.email),
        row('Roles', me.roles.join(', ') || 'none'),
        row('Issuer', me.issuer, { class: 'mono' }),
        row('Subject', me.subject, { class: 'mono' }),
        row('Organization', me.orgId, { class: 'mono' }),
      ),
    );
  } catch (e) {
    mount(container, h('h2', null, 'Your profile'), h('p', { class: 'problem', role: 'alert' }, e.message));
  }
}

function start(session) {
  const toasts = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
  const notify = notifier(toasts);
  const isAgent = hasRole(session, 'agent');
  const canSettings = hasRole(session, 'supervisor');

  const conversationsView = h('section', { class: 'view', 'aria-label': 'Conversations', hidden: true });
  const settingsView = h('section', { class: 'view', 'aria-label': 'Settings', hidden: true });
  const profileView = h('section', { class: 'view', 'aria-label': 'Profile', hidden: true });

  const offerCount = h('span', { class: 'count', hidden: true });
  const links = {
    conversations: isAgent ? h('a', { href: '#/conversations' }, 'Conversations', offerCount) : null,
    settings: canSettings ? h('a', { href: '#/settings' }, 'Settings') : null,
    profile: h('a', { href: '#/profile' }, 'Profile'),
  };
  const signOut = h('button', { type: 'button', class: 'link' }, 'Sign out');
  signOut.addEventListener('click', async () => {
    workspace?.stop();
    await api.logout().catch(() => {});
    signInPage('You have signed out.');
  });

  let workspace = null;
  if (isAgent) {
    workspace = new Workspace(conversationsView, {
      notify,
      // A socket that does not open may mean the session is over.
      onSessionCheck: () =>
        api
          .session()
          .then((s) => s || api.onSignedOut())
          .catch(() => {}),
      onOffers: (n) => {
        offerCount.hidden = n === 0;
        offerCount.textContent = String(n);
        offerCount.setAttribute('aria-label', `${n} offered`);
        document.title = n ? `(${n}) switchboard console` : 'switchboard console';
      },
    });
    workspace.start();
  }

  api.onSignedOut = () => {
    workspace?.stop();
    signInPage('Your session is over; sign in again.');
  };

  mount(
    root,
    h(
      'header',
      { class: 'topbar' },
      h('span', { class: 'brand' }, 'switchboard'),
      h('nav', { 'aria-label': 'Console' }, Object.values(links)),
      h('span', { class: 'who' }, session.displayName, h('small', null, session.roles.join(', '))),
      signOut,
    ),
    h('main', null, conversationsView, settingsView, profileView),
    toasts,
  );

  const route = () => {
    const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
    let [view] = parts;
    const section = parts[1];
    if (!links[view]) view = isAgent ? 'conversations' : canSettings ? 'settings' : 'profile';
    for (const [name, link] of Object.entries(links)) {
      if (!link) continue;
      if (name === view) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    conversationsView.hidden = view !== 'conversations';
    settingsView.hidden = view !== 'settings';
    profileView.hidden = view !== 'profile';
    if (view === 'settings') {
      // Roles may have changed since sign-in: the settings shown follow
      // the session as it is now.
      api
        .session()
        .then((now) => renderSettings(settingsView, { api, session: now ?? session, section, notify }))
        .catch(() => renderSettings(settingsView, { api, session, section, notify }));
    } else if (view === 'profile') {
      profilePage(profileView);
    }
  };
  window.addEventListener('hashchange', route);
  route();
}

async function boot() {
  try {
    const session = await api.session();
    if (session) start(session);
    else signInPage();
  } catch (e) {
    mount(root, h('p', { class: 'problem', role: 'alert' }, `The console cannot start: ${e.message}`));
  }
}

boot();
