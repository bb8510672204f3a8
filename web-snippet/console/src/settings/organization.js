// Organization: its name and the integration staff sign in with.

import { h, mount, field, formatDateTime } from '../dom.js';
import { PATHS, conflictText, formCard, frame, numberIn, putFresh, required, showLoadFailure } from './kit.js';
import { button, byName, copyText, hinted, mono, selectControl } from './widgets.js';

export async function organizationSection(ctx) {
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
    // Empty: the node's default.
    const retention = h('input', { type: 'number', min: '1', max: '36500', step: '1', value: org.retentionDays ?? '', inputmode: 'numeric' });
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
          retentionDays: retention.value.trim() === '' ? null : numberIn(retention, 'The retention', 1, 36500),
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
        hinted(
          'Retention (days)',
          retention,
          'How long ended conversations and their messages, visitors’ sessions and records, and audit entries are kept before they are deleted (1 to 36500; empty for the server’s default). A deployment may keep its conversations for less or longer.',
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
